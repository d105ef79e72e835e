"""cgrpo_ros: Continuous GRPO (Khanda et al., 2025) for ROS 2 robots."""

__version__ = "0.1.0"
