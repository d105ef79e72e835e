"""The ROS-free CGRPO algorithm core. Nothing here imports rclpy."""
