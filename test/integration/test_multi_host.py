"""Training across hosts: a rollout worker in its own network namespace, DDS over UDP.

Issue 6: the worker's "host" is a network namespace joined to the root namespace by a veth
pair (10.213.7.1/24 root side, .2 worker side, addresses that exist only on these links);
discovery uses ROS_AUTOMATIC_DISCOVERY_RANGE=SUBNET plus ROS_STATIC_PEERS, as between real
machines where multicast may not reach. Fast DDS is limited to UDPv4: processes in different
namespaces still share /dev/shm, and its shared-memory transport would bypass the link (and
the packet loss) entirely. Loss: nftables `numgen random mod 100 < 5 drop` on both hooks of
the worker's namespace (tc netem is missing from some kernels). Everything is torn down in
`finally`. Needs root, `ip` and `nft` (scripts/install_test_tools.sh); skips otherwise.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from cgrpo_ros.testing.ros_processes import (
    isolated_ros_env,
    process_output,
    start_node_process,
    stop_process,
)

pytest.importorskip("rclpy")
from stack_helpers import learner_argv, record_figure, worker_argv

pytestmark = pytest.mark.integration

ROOT_IP, WORKER_IP, PREFIX = "10.213.7.1", "10.213.7.2", 24
ITERATIONS, STEPS = 3, 256
RUN_TIMEOUT_S = 50.0


def _missing_tools() -> str | None:
    if os.geteuid() != 0:
        return "needs root for ip netns/veth (run as root, or in CI)"
    for tool in ("ip", "nft"):
        if shutil.which(tool) is None:
            return f"`{tool}` not found: run scripts/install_test_tools.sh"
    return None


def _run(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True, timeout=20)


@pytest.fixture
def worker_netns() -> Iterator[str]:
    """A namespace with one veth link to the root namespace; removed afterwards."""
    reason = _missing_tools()
    if reason:
        pytest.skip(reason)
    tag = uuid.uuid4().hex[:6]
    ns, host_if, ns_if = f"cgrpo_{tag}", f"cgh{tag}", f"cgw{tag}"
    try:
        _run("ip", "netns", "add", ns)
        _run("ip", "link", "add", host_if, "type", "veth", "peer", "name", ns_if)
        _run("ip", "link", "set", ns_if, "netns", ns)
        _run("ip", "addr", "add", f"{ROOT_IP}/{PREFIX}", "dev", host_if)
        _run("ip", "link", "set", host_if, "up")
        _run("ip", "-n", ns, "addr", "add", f"{WORKER_IP}/{PREFIX}", "dev", ns_if)
        _run("ip", "-n", ns, "link", "set", ns_if, "up")
        _run("ip", "-n", ns, "link", "set", "lo", "up")
        yield ns
    finally:
        # Deleting the namespace deletes its veth end, and with it the root-side peer.
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=20)
        subprocess.run(["ip", "link", "del", host_if], capture_output=True, timeout=20)


def _drop_5_percent(ns: str) -> None:
    rules = (
        "table inet cgrpo_loss {\n"
        "  chain out { type filter hook output priority 0; numgen random mod 100 < 5 drop; }\n"
        "  chain in { type filter hook input priority 0; numgen random mod 100 < 5 drop; }\n"
        "}\n"
    )
    subprocess.run(["ip", "netns", "exec", ns, "nft", "-f", "-"], input=rules.encode(),
                   check=True, capture_output=True, timeout=20)  # fmt: skip


def _env(peer: str) -> dict[str, str]:
    env = isolated_ros_env()
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "SUBNET"
    env["ROS_STATIC_PEERS"] = peer
    env["FASTDDS_BUILTIN_TRANSPORTS"] = "UDPv4"  # no shared memory across "hosts"
    return env


@pytest.mark.parametrize("loss", [False, True], ids=["no_loss", "loss_5pct"])
def test_worker_in_another_namespace_trains_over_dds(
    worker_netns: str, tmp_path: Path, loss: bool
) -> None:
    if loss:
        _drop_5_percent(worker_netns)
    learner_env = _env(WORKER_IP)
    worker_env = {**_env(ROOT_IP), "ROS_DOMAIN_ID": learner_env["ROS_DOMAIN_ID"]}
    run_dir = tmp_path / "run"
    learner = start_node_process(
        learner_argv(run_dir, iterations=ITERATIONS, steps_per_iteration=STEPS), learner_env
    )
    argv = ["ip", "netns", "exec", worker_netns]
    argv += worker_argv("rollout_worker_0", [0, 1], steps_per_iteration=STEPS)
    worker = start_node_process(argv, worker_env)
    try:
        learner.wait(timeout=RUN_TIMEOUT_S)
        worker.wait(timeout=20)
    except subprocess.TimeoutExpired:
        pass
    finally:
        codes = stop_process(learner), stop_process(worker)
    out = process_output(learner) + process_output(worker)
    assert codes == (0, 0), out
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["iterations"] == ITERATIONS, out
    # With or without loss, the same steps: reliable DDS resends what the link dropped.
    assert summary["env_steps"] == ITERATIONS * 2 * STEPS, summary
    # The batches really crossed the link (not shared memory): the worker side sent at least
    # the trajectory payloads (4 bytes x (obs 4 + act 1 + reward 1) per step).
    sent = _tx_bytes(worker_netns)
    assert sent > ITERATIONS * 2 * STEPS * 24, sent
    lost = ITERATIONS * 2 * STEPS - summary["env_steps"]
    record_figure("worker in another netns" + (", 5% loss" if loss else ""),
                  wall_s=summary["wall_s"], link_tx_bytes=sent, steps_lost=lost)  # fmt: skip


def _tx_bytes(ns: str) -> int:
    """Bytes sent by the namespace's veth end (its only interface besides lo)."""
    stats = json.loads(subprocess.run(["ip", "-n", ns, "-j", "-s", "link", "show"], check=True,
                                      capture_output=True, timeout=20).stdout)  # fmt: skip
    return sum(int(link["stats64"]["tx"]["bytes"]) for link in stats if link["ifname"] != "lo")
