"""`ros2 launch` exits non-zero, naming the node, when a node of the launch fails (issue 16).

Runs the real `ros2 launch` as a subprocess, so it needs a ROS 2 install (ros2launch) with
cgrpo_ros built with colcon and its workspace sourced; skipped elsewhere. launch_testing cannot
check this: it ignores the launch's own return code (its tests read the nodes' exit codes from
proc_info). Each case makes one node refuse to start (exit code 2) and expects `ros2 launch`
to exit 1 with launch's "Caught exception in launch" line naming that node, and the other
nodes to have been stopped cleanly (cgrpo_ros/launch_exits.py). Run:
    colcon test --packages-select cgrpo_ros --pytest-args test/launch
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

pytest.importorskip("ros2launch", reason="ros2launch is not installed (needs a ROS 2 install)")
from ament_index_python.packages import PackageNotFoundError, get_package_share_directory

from cgrpo_ros.testing.ros_processes import unique_domain_id

try:
    get_package_share_directory("cgrpo_ros")
except PackageNotFoundError:
    pytest.skip("cgrpo_ros is not installed: colcon build, then source install/setup.bash",
                allow_module_level=True)  # fmt: skip
ROS2 = shutil.which("ros2")
if ROS2 is None:
    pytest.skip("the ros2 command is not on PATH", allow_module_level=True)

pytestmark = pytest.mark.integration
LAUNCH_TIMEOUT_S = 180.0
# (launch file, its arguments, the node that refuses to start, the nodes stopped after it).
# Read by test/unit/test_launch_static.py: every argument must be one the launch file declares.
CASES = (
    (
        "train_sim.launch.py",
        ("env_id:=InvertedPendulum-v5", "num_groups:=5", "iterations:=1"),  # K > N: refused
        "learner",
        ("rollout_worker",),
    ),
    (
        "deploy.launch.py",
        ("model_path:=missing.onnx", "use_sim:=true"),  # no such model: refused
        "policy_server",
        ("sim_bridge",),
    ),
)


@pytest.mark.parametrize(("launch_file", "arguments", "failing", "stopped"), CASES)
def test_a_failing_node_fails_ros2_launch(
    launch_file: str, arguments: tuple[str, ...], failing: str, stopped: tuple[str, ...],
    tmp_path: Path,
) -> None:  # fmt: skip
    env = dict(os.environ)
    env.update(ROS_DOMAIN_ID=str(unique_domain_id()), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")
    env.pop("ROS_LOCALHOST_ONLY", None)
    env["ROS_LOG_DIR"] = str(tmp_path / "ros_log")  # launch's own log files stay in tmp_path
    run_dir = [f"run_dir:={tmp_path / 'run'}"] if launch_file.startswith("train") else []
    result = subprocess.run(
        [ROS2, "launch", "cgrpo_ros", launch_file, *arguments, *run_dir],
        cwd=tmp_path, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
        timeout=LAUNCH_TIMEOUT_S,
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    named = rf"Caught exception in launch .*: {failing} \(process {failing}-\d+, pid \d+\) exited "
    assert re.search(named + "with code 2", output), output
    for name in stopped:
        assert re.search(rf"\[{name}-\d+\]: process has finished cleanly", output), output
