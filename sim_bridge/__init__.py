"""MuJoCo side of cgrpo_ros: the arm7 model, the reach task and the sim_bridge node.

Submodules (imported on demand so that reading a robot config needs neither MuJoCo nor rclpy):
    robot_config  RobotConfig, load_robot_config, default_robot_config_path
    arm_sim       ArmSim (MuJoCo, position commands), forward_kinematics
    reach_task    ReachTask (observation, reward, success; shared by gymnasium and ROS)
    envs          Arm7ReachEnv, register_envs -> "cgrpo_ros/Arm7Reach-v0"
    node          SimBridgeNode, main (the `sim_bridge` executable)
"""
