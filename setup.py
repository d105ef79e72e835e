"""ament_python package definition; also installs with plain pip (see README)."""

from glob import glob

from setuptools import find_packages, setup

package_name = "cgrpo_ros"

setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(include=["cgrpo_ros", "cgrpo_ros.*", "sim_bridge", "sim_bridge.*"]),
    package_data={"cgrpo_ros.robot": ["assets/*.xml"]},
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + package_name]),
        ("share/" + package_name, ["package.xml"]),
        ("share/" + package_name + "/launch", glob("launch/*.launch.py")),
        ("share/" + package_name + "/config", glob("config/*.yaml")),
        ("share/" + package_name + "/config/robots", glob("config/robots/*.yaml")),
        ("share/" + package_name + "/config/baselines", glob("config/baselines/*.yaml")),
        ("share/" + package_name + "/config/cgrpo", glob("config/cgrpo/*.yaml")),
    ],
    install_requires=["setuptools"],
    # colcon test picks its pytest step only for packages with a pytest test dependency;
    # without one it ran unittest and found 0 tests (as `ros2 pkg create` writes for Kilted).
    extras_require={"test": ["pytest"]},
    zip_safe=True,
    maintainer="cgrpo_ros developers",
    maintainer_email="cgrpo-ros@example.com",
    description="Continuous GRPO training and ONNX deployment for ROS 2 robots",
    license="Apache-2.0",
    python_requires=">=3.11",
    entry_points={
        "console_scripts": [
            "cgrpo = cgrpo_ros.cli:main",
            "rollout_worker = cgrpo_ros.nodes.rollout_worker:main",
            "learner = cgrpo_ros.nodes.learner:main",
            "policy_server = cgrpo_ros.nodes.policy_server:main",
            "sim_bridge = sim_bridge.node:main",
        ],
    },
)
