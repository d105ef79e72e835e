"""Wire format: exact round trips, every rejection names its field, and fuzzing of the decoders."""

from __future__ import annotations

import array
import contextlib
import json
import struct
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cgrpo_ros.core.buffers import RolloutBatch
from cgrpo_ros.wire.frame import FORMAT_VERSION, WireFormatError, from_uint8_msg, to_uint8_msg
from cgrpo_ros.wire.metrics import decode_metrics, encode_metrics
from cgrpo_ros.wire.policy import decode_policy, encode_policy
from cgrpo_ros.wire.trajectory import _section_sizes, decode_trajectory, encode_trajectory

META = {"policy_id": 1, "policy_version": 7, "worker_id": "w-3", "seq": 42, "task": "Hopper-v5"}
V = struct.pack("<H", FORMAT_VERSION)  # the version field of a hand-built frame


def make_batch(T: int = 12, obs_dim: int = 3, act_dim: int = 2, seed: int = 0) -> RolloutBatch:
    rng = np.random.default_rng(seed)
    dones = np.zeros(T, bool)
    dones[[4, T - 1]] = True
    terminated = np.zeros(T, bool)
    terminated[4] = True
    return RolloutBatch(
        obs=rng.standard_normal((T, obs_dim)).astype(np.float32),
        actions=rng.standard_normal((T, act_dim)).astype(np.float32),
        rewards=rng.standard_normal(T).astype(np.float32),
        dones=dones,
        terminated=terminated,
        episode_returns=np.array([1.25, -3.5]),
        episode_lengths=np.array([5, 300], dtype=np.int64),  # the 2nd began in an earlier batch
    )


def frame(
    batch: RolloutBatch | None = None, successes: list[bool] | None = None, sign: Any = None
) -> bytes:
    batch = batch if batch is not None else make_batch()
    return encode_trajectory(batch, **META, episode_successes=successes, sign=sign)


def reframe(data: bytes, header_edit: dict[str, Any] | None = None, drop: str = "") -> bytes:
    """Rewrite a valid frame's header (the payload is kept) to build malformed frames."""
    magic, version, length = struct.unpack_from("<4sHI", data)
    header = json.loads(data[10 : 10 + length])
    header.update(header_edit or {})
    header.pop(drop, None)
    text = json.dumps(header).encode()
    return struct.pack("<4sHI", magic, version, len(text)) + text + data[10 + length :]


def test_trajectory_round_trip_is_exact() -> None:
    batch = make_batch()
    for data in [frame(batch), bytearray(frame(batch)), array.array("B", frame(batch))]:
        decoded = decode_trajectory(data)
        assert {k: getattr(decoded, k) for k in META} == META
        for name, expected in batch._asdict().items():
            got = getattr(decoded.batch, name)
            if expected is None:  # branch_group of a plain rollout
                assert got is None, name
                continue
            assert got.dtype == expected.dtype and np.array_equal(got, expected), name
            assert got.flags.writeable
    assert decode_trajectory(list(frame(batch))).seq == 42


def test_success_flags_round_trip() -> None:
    batch = make_batch()
    plain = decode_trajectory(frame(batch))
    assert plain.episode_successes is None  # a task that reports no success (locomotion)
    for flags in ([True, False], [False, True], [1, 0], np.array([True, True])):
        decoded = decode_trajectory(frame(batch, successes=flags))  # type: ignore[arg-type]
        assert decoded.episode_successes == [bool(f) for f in flags]
        assert all(type(f) is bool for f in decoded.episode_successes)
        assert np.array_equal(decoded.batch.episode_returns, batch.episode_returns)
    # A task that reports success, but no episode ended in this batch: [] rather than None.
    no_episodes = batch._replace(episode_returns=np.zeros(0), episode_lengths=np.zeros(0, np.int64))
    assert decode_trajectory(frame(no_episodes, successes=[])).episode_successes == []
    assert decode_trajectory(frame(no_episodes)).episode_successes is None
    # The section is always there (zeros without success): one byte per episode, before the
    # 8-byte branch_group of each of the 12 steps.
    assert len(frame(batch, [True, False])) == len(frame(batch))
    (header_len,) = struct.unpack_from("<I", frame(batch, [False, True]), 6)
    assert frame(batch, [False, True])[10 + header_len :][-2 - 8 * 12 : -8 * 12] == b"\x00\x01"


def test_branch_groups_round_trip_and_are_checked() -> None:
    batch = make_batch()._replace(branch_group=np.repeat(np.arange(3), 4))
    decoded = decode_trajectory(frame(batch))
    assert decoded.batch.branch_group is not None
    assert decoded.batch.branch_group.tolist() == batch.branch_group.tolist()
    bad = make_batch()._replace(branch_group=np.full(12, 12))
    with pytest.raises(WireFormatError, match=r"branch_group\[0\] is 12; allowed: 0..11"):
        frame(bad)
    # A plain frame claiming groups it does not hold (all -1) is refused too.
    forged = reframe(frame(), {"has_groups": 1})
    with pytest.raises(WireFormatError, match=r"branch_group\[0\] is -1; allowed: 0..11"):
        decode_trajectory(forged)


def test_hand_built_version_4_frame_decodes_as_documented() -> None:
    """docs/wire_format.md, byte by byte: the success section is u8 [E] after episode_lengths,
    then branch_group i8 [T]; `signed` 0: nothing after the payload."""
    b = make_batch()
    header = {**META, "obs_dim": 3, "act_dim": 2, "num_steps": 12, "num_episodes": 2,
              "reports_success": 1, "has_groups": 1, "signed": 0}  # fmt: skip
    text = json.dumps(header).encode()
    text += b" " * (-(10 + len(text)) % 8)
    payload = b"".join([
        b.obs.astype("<f4").tobytes(), b.actions.astype("<f4").tobytes(),
        b.rewards.astype("<f4").tobytes(), b.dones.astype("u1").tobytes(),
        b.terminated.astype("u1").tobytes(), b.episode_returns.astype("<f8").tobytes(),
        b.episode_lengths.astype("<i8").tobytes(), bytes([0, 1]),
        np.repeat(np.arange(6), 2).astype("<i8").tobytes(),
    ])  # fmt: skip
    data = b"CGRT" + struct.pack("<HI", 4, len(text)) + text + payload
    decoded = decode_trajectory(data)
    assert decoded.signature is None and decoded.signed_bytes is None
    assert decoded.episode_successes == [False, True]
    assert np.array_equal(decoded.batch.episode_lengths, b.episode_lengths)
    assert decoded.batch.branch_group is not None
    assert decoded.batch.branch_group.tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    assert len(payload) == 4 * 12 * (3 + 2 + 1) + 2 * 12 + 17 * 2 + 8 * 12  # documented size


@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        ([True], "episode_successes has length 1; allowed: exactly num_episodes=2"),
        ([True, False, True], "episode_successes has length 3; allowed: exactly num_episodes=2"),
        ([[True, False]], "episode_successes has shape (1, 2)"),
        ([True, 2], "episode_successes[1] is 2; allowed: True/False (or 0/1)"),
        ([0.5, 1.0], "episode_successes[0] is 0.5; allowed: True/False"),
        ([True, None], "episode_successes[1] is None; allowed: True/False"),
        (["yes", "no"], "episode_successes[0] is 'yes'; allowed: True/False"),
    ],
)
def test_encoder_refuses_bad_success_flags(flags: Any, needle: str) -> None:
    with pytest.raises(WireFormatError) as info:
        frame(make_batch(), successes=flags)
    assert needle in str(info.value)


def test_version_1_frame_is_refused_naming_the_allowed_version() -> None:
    old = frame()[:4] + struct.pack("<H", 1) + frame()[6:]
    with pytest.raises(WireFormatError) as info:
        decode_trajectory(old)
    assert str(info.value) == (
        f"trajectory frame format version is 1; allowed: {FORMAT_VERSION} "
        "(sender and receiver run different cgrpo_ros releases)"
    )
    assert FORMAT_VERSION == 4


def test_signature_sections_travel_after_the_payload() -> None:
    """Version 4 (issue 18): `signed` 1 and the signature section after the payload; the
    codecs carry it (the nodes verify it) and refuse a frame whose length fits neither."""
    signed = frame(make_batch(), sign=lambda data: b"SIG:" + bytes([len(data) % 256]))
    decoded = decode_trajectory(signed)
    assert decoded.signature is not None and decoded.signature.startswith(b"SIG:")
    assert decoded.signed_bytes == signed[: -len(decoded.signature)]
    assert decoded.signature[4] == len(decoded.signed_bytes) % 256  # signed what it carries
    stripped = signed[: -len(decoded.signature)]  # signed = 1 but no section: refused
    with pytest.raises(WireFormatError, match=r"plus a signature section of 1\.\.65536 bytes"):
        decode_trajectory(stripped)
    with pytest.raises(WireFormatError, match=r"\(signed = 0\)"):
        decode_trajectory(frame() + b"x")  # bytes after an unsigned payload
    onnx = b"model bytes"
    policy = encode_policy(onnx, policy_id=0, policy_version=1, num_policies=1,
                                signature=b"{envelope}")  # fmt: skip
    got = decode_policy(policy)
    assert (got.onnx_bytes, got.signature) == (onnx, b"{envelope}")
    plain = decode_policy(encode_policy(onnx, policy_id=0, policy_version=1,
                                                  num_policies=1))  # fmt: skip
    assert plain.signature is None and plain.onnx_bytes == onnx
    with pytest.raises(WireFormatError, match="signature section is 0 bytes"):
        encode_policy(onnx, policy_id=0, policy_version=1, num_policies=1, signature=b"")


def test_ros_message_round_trip() -> None:
    msg = to_uint8_msg(frame())
    assert isinstance(msg.data, array.array)
    assert from_uint8_msg(msg) == frame()


def test_payload_is_8_byte_aligned() -> None:
    (length,) = struct.unpack_from("<I", frame(), 6)
    assert (10 + length) % 8 == 0


def payload_of(data: bytes) -> tuple[bytes, int]:
    (length,) = struct.unpack_from("<I", data, 6)
    return data[: 10 + length], 10 + length


def corrupt(section: str, index: int, value: bytes, successes: Any = None) -> bytes:
    """Overwrite one element of a payload section of a valid frame."""
    data = bytearray(frame(successes=successes))
    _, offset = payload_of(bytes(data))
    h = {"num_steps": 12, "obs_dim": 3, "act_dim": 2, "num_episodes": 2}
    for name, dtype, shape in _section_sizes(h):
        if name == section:
            start = offset + index * dtype.itemsize
            data[start : start + len(value)] = value
            return bytes(data)
        offset += dtype.itemsize * int(np.prod(shape))
    raise AssertionError(section)


NAN32 = np.float32(np.nan).tobytes()
REJECTIONS = [
    (lambda: b"XXXX" + frame()[4:], "magic is b'XXXX'"),
    (lambda: frame()[:4] + struct.pack("<H", 9) + frame()[6:], "format version is 9"),
    (lambda: frame()[:6] + struct.pack("<I", 10**6) + frame()[10:], "header length is 1000000"),
    (lambda: frame()[:5], "at least the 10-byte prefix"),
    (lambda: frame()[:4] + struct.pack("<H", 1) + frame()[6:], "format version is 1; allowed: 4"),
    (lambda: b"CGRT" + V + b"\x02\x00\x00\x00\xff\xfe", "not valid UTF-8"),
    (lambda: b"CGRT" + V + b"\x02\x00\x00\x00{x", "not valid JSON"),
    (lambda: b"CGRT" + V + b"\x02\x00\x00\x00[]", "JSON list; allowed: object"),
    (lambda: reframe(frame(), drop="seq"), "missing ['seq']"),
    (lambda: reframe(frame(), {"evil": 1}), "unexpected ['evil']"),
    (lambda: reframe(frame(), {"seq": "1"}), "'seq' is '1' (str); allowed: int"),
    (lambda: reframe(frame(), {"seq": True}), "'seq' is True (bool)"),
    (lambda: reframe(frame(), {"obs_dim": -3}), "'obs_dim' is -3; allowed: 1..4096"),
    (lambda: reframe(frame(), {"num_steps": 10**9}), "'num_steps' is 1000000000"),
    (lambda: reframe(frame(), {"worker_id": ""}), "'worker_id' is '' (0 chars)"),
    (lambda: reframe(frame(), drop="reports_success"), "missing ['reports_success']"),
    (lambda: reframe(frame(), {"reports_success": 2}), "'reports_success' is 2; allowed: 0..1"),
    (lambda: reframe(frame(), {"reports_success": True}), "'reports_success' is True (bool)"),
    # Claims a million steps of 4096-d observations (~32 GB) in a frame of a few hundred bytes.
    (
        lambda: reframe(frame(), {"num_steps": 10**6, "obs_dim": 4096}),
        "payload is 442 bytes; allowed: exactly 16406000034",
    ),
    (lambda: frame() + b"\0", "payload is 443 bytes; allowed: exactly 442"),
    (lambda: frame()[:-1], "payload is 441 bytes; allowed: exactly 442"),
    (lambda: corrupt("obs", 5, NAN32), "obs[1, 2] is nan"),
    (lambda: corrupt("actions", 0, np.float32(np.inf).tobytes()), "actions[0, 0] is inf"),
    (lambda: corrupt("rewards", 3, NAN32), "rewards[3] is nan"),
    (lambda: corrupt("episode_returns", 1, np.float64(np.nan).tobytes()), "returns[1] is nan"),
    (lambda: corrupt("dones", 2, b"\x02"), "dones[2] is 2; allowed: 0 or 1"),
    (lambda: corrupt("terminated", 0, b"\x07"), "terminated[0] is 7"),
    (lambda: corrupt("episode_lengths", 0, np.int64(0).tobytes()), "episode_lengths[0] is 0"),
    (lambda: corrupt("episode_lengths", 1, np.int64(-5).tobytes()), "episode_lengths[1] is -5"),
    (lambda: corrupt("dones", 4, b"\x00"), "num_episodes is 2; allowed: <= the 1 steps"),
    (
        lambda: corrupt("episode_successes", 1, b"\x02", successes=[True, False]),
        "episode_successes[1] is 2; allowed: 0 or 1",
    ),
    (
        lambda: corrupt("episode_successes", 0, b"\xff", successes=[False, False]),
        "episode_successes[0] is 255; allowed: 0 or 1",
    ),
    # reports_success 0 promises all-zero flags: a 1 there is a sender bug, not a success.
    (
        lambda: corrupt("episode_successes", 1, b"\x01"),
        "episode_successes[1] is 1; allowed: 0 when reports_success is 0",
    ),
]


@pytest.mark.parametrize(("make_frame", "needle"), REJECTIONS)
def test_trajectory_rejections_name_the_problem(make_frame: Any, needle: str) -> None:
    with pytest.raises(WireFormatError) as info:
        decode_trajectory(make_frame())
    assert needle in str(info.value)


def test_duplicate_header_key_rejected() -> None:
    data = frame()
    _, offset = payload_of(data)
    text = data[10:offset].rstrip().rstrip(b"}") + b',"seq":1}'
    bad = b"CGRT" + V + struct.pack("<I", len(text)) + text + data[offset:]
    with pytest.raises(WireFormatError, match="'seq' appears twice"):
        decode_trajectory(bad)


def test_encoder_refuses_what_the_decoder_would_reject() -> None:
    batch = make_batch()
    batch.obs[0, 0] = np.nan
    with pytest.raises(WireFormatError, match=r"obs\[0, 0\] is nan"):
        frame(batch)
    with pytest.raises(WireFormatError, match="rewards has shape"):
        frame(make_batch()._replace(rewards=np.zeros(3, np.float32)))
    with pytest.raises(WireFormatError, match="'policy_id' is -1"):
        encode_trajectory(make_batch(), **(META | {"policy_id": -1}))


def test_policy_round_trip_and_rejections() -> None:
    onnx = bytes(range(256)) * 3
    data = encode_policy(onnx, policy_id=2, policy_version=5, num_policies=4)
    decoded = decode_policy(data)
    assert (decoded.onnx_bytes, decoded.policy_id, decoded.policy_version) == (onnx, 2, 5)
    assert decoded.num_policies == 4
    tampered = data[:-1] + bytes([data[-1] ^ 1])
    with pytest.raises(WireFormatError, match="sha256 is"):
        decode_policy(tampered)
    with pytest.raises(WireFormatError, match="payload is 767 bytes; allowed: exactly"):
        decode_policy(data[:-1])
    with pytest.raises(WireFormatError, match=r"'policy_id' is 4; allowed: 0\.\.3"):
        decode_policy(reframe(data, {"policy_id": 4}))
    with pytest.raises(WireFormatError, match="magic is b'CGRT'; allowed: b'CGRP'"):
        decode_policy(frame())
    with pytest.raises(WireFormatError, match="'sha256' is 'ZZ"):
        decode_policy(reframe(data, {"sha256": "Z" * 64}))


def test_metrics_round_trip_and_rejections() -> None:
    text = encode_metrics({"loss": np.float32(0.5), "nan": float("nan"), "n": np.int64(3)})
    assert decode_metrics(text) == {"loss": 0.5, "nan": None, "n": 3}
    with pytest.raises(WireFormatError, match="NaN"):
        decode_metrics('{"x": NaN}')
    with pytest.raises(WireFormatError, match="JSON list"):
        decode_metrics("[1]")
    with pytest.raises(WireFormatError, match="not valid JSON"):
        decode_metrics("{")
    with pytest.raises(TypeError):
        encode_metrics({"x": object()})


VALID_TRAJECTORY = frame(make_batch(T=6, obs_dim=2, act_dim=1))
VALID_SUCCESS_TRAJECTORY = frame(make_batch(T=6, obs_dim=2, act_dim=1), successes=[True, False])
VALID_POLICY = encode_policy(b"onnx" * 8, policy_id=0, policy_version=1, num_policies=1)


@st.composite
def mangled_frames(draw: st.DrawFn) -> bytes:
    base = draw(st.sampled_from([VALID_TRAJECTORY, VALID_SUCCESS_TRAJECTORY, VALID_POLICY]))
    kind = draw(st.sampled_from(["random", "truncate", "flip", "splice"]))
    if kind == "random":
        return draw(st.binary(max_size=300))
    if kind == "truncate":
        return base[: draw(st.integers(0, len(base)))]
    if kind == "splice":
        at = draw(st.integers(0, len(base)))
        return base[:at] + draw(st.binary(max_size=16)) + base[at:]
    data = bytearray(base)
    for position in draw(st.lists(st.integers(0, len(base) - 1), min_size=1, max_size=4)):
        data[position] ^= 1 << draw(st.integers(0, 7))
    return bytes(data)


@settings(max_examples=200, deadline=None)
@given(data=mangled_frames())
def test_fuzzed_frames_raise_only_wire_format_error(data: bytes) -> None:
    for decode in (decode_trajectory, decode_policy):
        with contextlib.suppress(WireFormatError):
            decode(data)


@settings(max_examples=100, deadline=None)
@given(text=st.text(max_size=200))
def test_fuzzed_metrics_raise_only_wire_format_error(text: str) -> None:
    with contextlib.suppress(WireFormatError):
        decode_metrics(text)
