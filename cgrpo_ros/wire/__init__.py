"""The training stack's wire format on standard ROS message types (see docs/wire_format.md).

Trajectories and policies travel as `std_msgs/UInt8MultiArray` frames:

    magic (4 bytes) | format version (u16 LE) | header length H (u32 LE) | header | payload

The header is UTF-8 JSON (a flat dict of scalars, padded with spaces so that the payload starts
8-byte aligned); the payload is raw little-endian arrays. Metrics are JSON in `std_msgs/String`.
Version 2 added the per-episode success flags of trajectory frames (`reports_success`,
`episode_successes`); version 3 the same-state group of every step (`has_groups`,
`branch_group`); version 4 the `signed` flag and an optional signature section after the
payload of both frames (issue 18, cgrpo_ros/core/signing.py); a decoder accepts only its own
version. The codecs only carry the signature bytes; the nodes verify them.

Frames come from the network, so decoding treats them as untrusted: every problem raises
`WireFormatError` naming the field, its value and what is allowed, sizes are checked against
the actual frame before anything is allocated, and nothing is ever unpickled.

Modules: `frame` (the frame, limits, WireFormatError, ROS message conversion), `trajectory`
(workers -> learner), `policy` (learner -> workers), `metrics` (JSON status and metrics).
"""
