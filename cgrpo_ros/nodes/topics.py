"""Every topic the training stack's nodes share, in one place (docs/wire_format.md).

The deployment side's topics (`/joint_states`, `/<controller>/commands`) follow ros2_control
and come from the robot config and the node parameters.
"""

POLICIES_TOPIC = "/cgrpo/policies"
"""learner -> workers: policy artifacts (latched, versioned; wire.encode_policy_frame)."""
TRAJECTORIES_TOPIC = "/cgrpo/trajectories"
"""workers -> learner: one batch per policy per iteration (wire.encode_trajectory_frame)."""
WORKER_STATUS_TOPIC = "/cgrpo/worker_status"
"""workers -> learner: JSON status lines (which policies a worker runs, its state)."""
LEARNER_STATUS_TOPIC = "/cgrpo/learner_status"
"""learner -> workers: JSON status (latched); `done` ends the workers."""
METRICS_TOPIC = "/cgrpo/metrics"
"""learner -> anyone: JSON metrics of every iteration."""
