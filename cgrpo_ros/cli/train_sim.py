"""`cgrpo train-sim`: the ROS 2 training stack without `ros2 launch` (a pip install).

Starts the same executables with the same parameter file as `launch/train_sim.launch.py`:
one `learner` and `--workers` `rollout_worker` processes, each with its own DDS participant,
talking only over topics. Ctrl-C and SIGTERM are forwarded to all of them (the learner then
writes its final checkpoint); if one dies, all are stopped with a message saying which and
why; the learner's log lines are the progress report; the summary is printed at the end.

Signing (issue 18, docs/security.md): by default the run gets ephemeral key pairs, made in a
private temporary directory and deleted at the end: the learner signs its policy frames and
the workers trust only its public key; the workers (all on this host) sign their trajectories
with one worker key the learner trusts. `--signing-key` signs with a long-lived learner key
instead (the run's .onnx files are then deployable to a server trusting it); `--unsigned`
runs as before issue 18.

Only the standard library is imported at module level: `cgrpo --help` must stay fast and the
launch files import `assign_policies` from here.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import IO, Any

from cgrpo_ros.cli.args import add_training_args, check_positive, print_summary
from cgrpo_ros.cli.supervisor import StopRequests, node_command, stop_processes, yaml_str
from cgrpo_ros.core.run_shape import WORKER_SHAPE_FIELDS, RunShape
from cgrpo_ros.run_logging import default_run_dir

PARAMS_FILE = "train_sim.yaml"
WORKER_GRACE_S = 10.0  # after the learner ends, workers leave on its `done` status
LEARNER_STOP_TIMEOUT_S = 120.0  # an update and the final checkpoint can take a while
TAIL_LINES = 30


def assign_policies(num_workers: int, num_policies: int) -> list[list[int]]:
    """Round-robin split of policy ids over workers (worker w runs w, w + W, w + 2W, ...)."""
    if not 1 <= num_workers <= num_policies:
        raise ValueError(
            f"--workers={num_workers} is outside the allowed range [1, {num_policies}] "
            f"(each worker runs at least one of the {num_policies} policies)"
        )
    return [list(range(w, num_policies, num_workers)) for w in range(num_workers)]


def find_params_file(name: str = PARAMS_FILE) -> Path:
    """config/<name> in the source tree, an ament install, or a pip install's share/."""
    from cgrpo_ros.share import find_share_file

    return find_share_file(Path("config") / name, hint="pass --params-file")


def add_train_sim_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "train-sim",
        help="train with the ROS 2 node stack (learner + rollout workers over DDS)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_training_args(parser)
    parser.add_argument("--workers", type=int, default=1, help="rollout worker processes")
    parser.add_argument(
        "--params-file", type=Path, default=None, help=f"node parameters (default: {PARAMS_FILE})"
    )
    parser.add_argument(
        "--unsigned",
        action="store_true",
        help="no signatures (default: ephemeral per-run keys, or --signing-key)",
    )
    parser.set_defaults(func=cmd_train_sim)
    return parser


def make_run_keys(args: argparse.Namespace, directory: Path) -> dict[str, str]:
    """Key parameters of the run's nodes (docs/security.md); {} with --unsigned.

    The learner signs with --signing-key or an ephemeral key; the workers trust its public
    half. One ephemeral worker key signs every worker's trajectories (all on this host).
    """
    if args.unsigned:
        if args.signing_key is not None:
            raise ValueError("--unsigned and --signing-key exclude each other")
        return {}
    from cgrpo_ros.core.signing import SigningKey, generate_key_pair

    if args.signing_key is not None:
        learner_key = Path(args.signing_key).resolve()
        learner = SigningKey.load(learner_key)  # refused here (exit 2) if unusable
    else:
        learner_key, _ = generate_key_pair(directory / "learner.key")
        learner = SigningKey.load(learner_key)
    learner_pub = learner.write_public(directory / "learner.pub")
    worker_key, worker_pub = generate_key_pair(directory / "worker.key")
    return {
        "learner_key": str(learner_key),
        "learner_pub": str(learner_pub),
        "worker_key": str(worker_key),
        "worker_pub": str(worker_pub),
        "learner_key_id": learner.key_id,
    }


def build_commands(
    args: argparse.Namespace,
    run_dir: Path,
    params_file: Path,
    keys: dict[str, str] | None = None,
) -> list[tuple[str, list[str]]]:
    """(node name, argv) of the learner and every worker (supervisor.node_command)."""
    shape = RunShape.from_flags(args)
    common: dict[str, Any] = {"env_id": yaml_str(args.env)}
    learner = {
        **common,
        **shape.values(),
        "variant": args.variant,
        "run_dir": yaml_str(str(run_dir.resolve())),
        "resume": "true" if args.resume else "false",
        "checkpoint_every": args.checkpoint_every,
    }
    if args.config is not None:
        learner["config_file"] = yaml_str(str(Path(args.config).resolve()))
    worker_keys: dict[str, Any] = {}
    if keys:
        learner["signing_key"] = yaml_str(keys["learner_key"])
        learner["trusted_worker_keys"] = f"[{yaml_str(keys['worker_pub'])}]"
        worker_keys = {
            "trusted_keys": f"[{yaml_str(keys['learner_pub'])}]",
            "signing_key": yaml_str(keys["worker_key"]),
        }
    nodes = [("learner", "cgrpo_ros.nodes.learner", learner)]
    for w, ids in enumerate(assign_policies(args.workers, shape.num_policies)):
        worker = {
            **common,
            **shape.values(WORKER_SHAPE_FIELDS),
            **worker_keys,
            "policy_ids": f"[{','.join(str(i) for i in ids)}]",
        }
        nodes.append((f"rollout_worker_{w}", "cgrpo_ros.nodes.rollout_worker", worker))
    return [
        (name, node_command(module, name, params_file, params)) for name, module, params in nodes
    ]


def stack_environment(base: dict[str, str] | None = None) -> dict[str, str]:
    """Localhost-only discovery and a private domain unless the user chose otherwise."""
    env = dict(os.environ if base is None else base)
    if "ROS_AUTOMATIC_DISCOVERY_RANGE" not in env and "ROS_LOCALHOST_ONLY" not in env:
        env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    # Not the default domain 0: two runs (or a robot on the LAN) must not mix trajectories.
    env.setdefault("ROS_DOMAIN_ID", str(1 + os.getpid() % 100))
    from cgrpo_ros.share import PACKAGE_ROOT

    root = str(PACKAGE_ROOT)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    env["RCUTILS_LOGGING_BUFFERED_STREAM"] = "0"
    return env


class _Child:
    """A node process whose output is read by a thread (a full pipe never blocks it)."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], echo: bool) -> None:
        self.name = name
        self.tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        self.echo_all = threading.Event()  # set for the stack dump of a child that hangs
        # Own session: Ctrl-C reaches only this CLI, which forwards it exactly once.
        self.proc = subprocess.Popen(
            argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, errors="replace", start_new_session=True,
        )  # fmt: skip
        self.thread = threading.Thread(target=self._read, args=(echo,), daemon=True)
        self.thread.start()

    def _read(self, echo: bool) -> None:
        stream: IO[str] | None = self.proc.stdout
        assert stream is not None
        for line in stream:
            line = line.rstrip("\n")
            self.tail.append(line)
            # The learner's lines are the progress report; workers only speak up when wrong.
            if (
                echo
                or self.echo_all.is_set()
                or any(mark in line for mark in ("[WARN]", "[ERROR]", "Traceback"))
            ):
                print(f"[{self.name}] {line}", flush=True)

    def signal(self, signum: int) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signum)

    def stop(self, timeout: float) -> int:
        if self.proc.poll() is None:
            self.echo_all.set()  # a stack dump, if it comes to that, reaches the terminal
        stop_processes({self.name: self.proc}, timeout, "cgrpo train-sim")
        self.thread.join(timeout=2.0)
        return int(self.proc.returncode)


def cmd_train_sim(args: argparse.Namespace) -> int:
    shape = RunShape.from_flags(args)
    check_positive("--checkpoint-every", args.checkpoint_every)
    assign_policies(args.workers, shape.num_policies)  # refuse a bad --workers before starting
    params_file = Path(args.params_file) if args.params_file else find_params_file()
    run_dir = Path(args.run_dir or default_run_dir(args.env, args.variant))
    env = stack_environment()
    # Private (0700) and removed at the end: the ephemeral private keys never outlive the run.
    key_dir = Path(tempfile.mkdtemp(prefix="cgrpo-keys-"))
    try:
        keys = make_run_keys(args, key_dir)
        signing = (
            "unsigned frames (--unsigned)"
            if not keys
            else f"frames signed (learner key {keys['learner_key_id']}"
            + (", ephemeral" if args.signing_key is None else f", {args.signing_key}")
            + "; ephemeral worker key)"
        )
        print(
            f"cgrpo train-sim: learner + {args.workers} rollout worker(s) on ROS_DOMAIN_ID="
            f"{env['ROS_DOMAIN_ID']} ({env.get('ROS_AUTOMATIC_DISCOVERY_RANGE', 'default')} "
            f"discovery), {signing}, parameters {params_file}, run directory {run_dir}",
            flush=True,
        )
        code = _run_stack(args, run_dir, params_file, env, keys)
        if keys and run_dir.is_dir():
            # The public half, so `cgrpo verify` can check the run's files after the run.
            shutil.copyfile(keys["learner_pub"], run_dir / "signing_key.pub")
        return code
    finally:
        shutil.rmtree(key_dir, ignore_errors=True)


def _run_stack(
    args: argparse.Namespace,
    run_dir: Path,
    params_file: Path,
    env: dict[str, str],
    keys: dict[str, str],
) -> int:
    interrupted = StopRequests()
    interrupted.install()
    children: list[_Child] = []
    try:
        for name, argv in build_commands(args, run_dir, params_file, keys):
            children.append(_Child(name, argv, env, echo=name == "learner"))
        return _supervise(children, interrupted, run_dir)
    finally:
        for child in children:
            if child.proc.poll() is None:
                child.stop(timeout=WORKER_GRACE_S)
        interrupted.restore()


def _supervise(children: list[_Child], interrupted: StopRequests, run_dir: Path) -> int:
    learner, workers = children[0], children[1:]
    forwarded = False
    while learner.proc.poll() is None:
        if interrupted and not forwarded:
            forwarded = True
            print(
                f"cgrpo train-sim: {interrupted.signals[0]}: stopping all nodes; the learner "
                "writes its final checkpoint and summary",
                flush=True,
            )
            for child in children:
                child.signal(signal.SIGINT)
        for worker in workers:
            code = worker.proc.poll()
            if code is not None and code != 0 and not forwarded:
                print(
                    f"cgrpo train-sim: {worker.name} exited with code {code}; stopping all "
                    f"nodes. Its last output:\n  " + "\n  ".join(worker.tail),
                    file=sys.stderr,
                    flush=True,
                )
                for child in children:
                    child.stop(timeout=LEARNER_STOP_TIMEOUT_S)
                return 1
        time.sleep(0.1)
    code = learner.stop(timeout=1.0)
    deadline = time.monotonic() + WORKER_GRACE_S
    for worker in workers:  # they leave on the learner's `done`; Ctrl-C only the stragglers
        with contextlib.suppress(subprocess.TimeoutExpired):
            worker.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        worker.stop(timeout=WORKER_GRACE_S)
    if code != 0:
        print(
            f"cgrpo train-sim: the learner exited with code {code}; workers stopped. Its last "
            "output:\n  " + "\n  ".join(learner.tail),
            file=sys.stderr,
        )
        return code if code > 0 else 1
    summary_path = run_dir / "summary.json"
    if summary_path.is_file():
        print_summary(run_dir, json.loads(summary_path.read_text()))
    return 130 if interrupted else 0
