"""`cgrpo deploy`: the deploy.launch.py stack on a machine without `ros2 launch`.

Starts the same executables with the same parameter file (config/deploy.yaml) and the same
overrides as launch/deploy.launch.py, each as its own process; forwards Ctrl-C; when one
process dies, stops the others and says which one died and with what exit code.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

STOP_TIMEOUT_S = 10.0
STACK_DUMP_WAIT_S = 2.0  # for the stack dump of a process that did not stop, before SIGKILL
# Same value as cgrpo_ros.nodes.params.STACK_DUMP_SIGNAL (not imported: that imports rclpy).
STACK_DUMP_SIGNAL = signal.SIGUSR1
POLL_S = 0.2


def default_params_file() -> Path:
    """config/deploy.yaml of the source tree, else of an ament install's share directory."""
    source = Path(__file__).resolve().parents[2] / "config" / "deploy.yaml"
    if source.is_file():
        return source
    try:
        from ament_index_python.packages import get_package_share_directory

        return Path(get_package_share_directory("cgrpo_ros")) / "config" / "deploy.yaml"
    except (ImportError, KeyError, OSError, ValueError):
        return source  # refused in cmd_deploy with this path


def add_deploy_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "deploy", help="run policy_server (and sim_bridge with --use-sim), like deploy.launch.py"
    )
    parser.add_argument("model", type=Path, help="ONNX policy file (cgrpo export)")
    parser.add_argument("--robot-config", type=Path, default=None, help="robot YAML")
    parser.add_argument("--controller-name", default=None, help="/<name>/commands")
    parser.add_argument("--control-rate-hz", type=float, default=None)
    parser.add_argument("--params-file", type=Path, default=None, help="default: deploy.yaml")
    parser.add_argument("--use-sim", action="store_true", help="also start sim_bridge")
    parser.add_argument(
        "--trusted-keys",
        type=Path,
        nargs="+",
        default=None,
        help="serve only models whose MODEL.sig is signed by one of these public keys",
    )
    parser.add_argument(
        "-p", dest="extra", action="append", default=[], help="extra policy_server name:=value"
    )
    parser.set_defaults(func=cmd_deploy)
    return parser


def build_commands(args: argparse.Namespace) -> dict[str, list[str]]:
    """argv per process: the launch file's parameters, as --ros-args."""
    params_file = args.params_file or default_params_file()
    if not Path(params_file).is_file():
        raise ValueError(f"parameter file {params_file} not found (--params-file)")
    if not Path(args.model).is_file():
        raise ValueError(f"policy model {args.model} not found")

    # Node-scoped `-p node:name:=value`: a plain `-p` is a `/**` rule, which loses to the
    # parameter file's own `policy_server:` section (rcl prefers the node's name).
    def server_param(item: str) -> list[str]:
        return ["-p", f"policy_server:{item}"]

    def sim_param(item: str) -> list[str]:
        return ["-p", f"sim_bridge:{item}"]

    server = ["--params-file", str(params_file)]
    server += server_param(f"model_path:={Path(args.model).resolve()}")
    sim = sim_param("mode:=realtime")
    if args.robot_config is not None:
        server += server_param(f"robot_config:={Path(args.robot_config).resolve()}")
        sim += sim_param(f"robot_config:={Path(args.robot_config).resolve()}")
    if args.controller_name is not None:
        server += server_param(f"controller_name:={args.controller_name}")
    if args.control_rate_hz is not None:
        server += server_param(f"control_rate_hz:={float(args.control_rate_hz)!r}")
    trusted = getattr(args, "trusted_keys", None)  # absent from Namespaces built by hand
    if trusted:
        keys = json.dumps([str(Path(k).resolve()) for k in trusted])
        server += server_param(f"trusted_keys:={keys}")
    for item in args.extra:
        server += server_param(item)
    python = [sys.executable, "-m"]
    commands = {"policy_server": [*python, "cgrpo_ros.nodes.policy_server", "--ros-args", *server]}
    if args.use_sim:
        commands = {"sim_bridge": [*python, "sim_bridge.node", "--ros-args", *sim], **commands}
    return commands


def stop_all(procs: dict[str, subprocess.Popen[bytes]]) -> None:
    """SIGINT (what Ctrl-C sends) to every process still running, then SIGKILL if needed.

    Before the SIGKILL, a process that did not stop within STOP_TIMEOUT_S gets SIGUSR1: the
    nodes answer it with every thread's stack on stderr (params.enable_stack_dump_signal),
    so the log says where the shutdown was stuck.
    """
    for proc in procs.values():
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    for proc in procs.values():
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
    stuck = {name: proc for name, proc in procs.items() if proc.poll() is None}
    for name, proc in stuck.items():
        print(
            f"cgrpo deploy: {name} (pid {proc.pid}) did not stop within {STOP_TIMEOUT_S:.0f} s "
            "of SIGINT; its threads' stacks (SIGUSR1) follow, then it is killed",
            file=sys.stderr,
            flush=True,
        )
        proc.send_signal(STACK_DUMP_SIGNAL)
    deadline = time.monotonic() + STACK_DUMP_WAIT_S
    for name, proc in stuck.items():
        try:  # a process past its Python finalization has no handler: SIGUSR1 ends it
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            print(f"cgrpo deploy: killing {name}", file=sys.stderr, flush=True)
            proc.kill()
            proc.wait()


# Set by SIGINT/SIGTERM; the supervision loop checks it every POLL_S. A plain list entry, not
# an exception: a KeyboardInterrupt raised inside Popen.poll() between its lock's acquire and
# release would leave the lock held, and every later wait() on that process would then wait
# for a lock nobody releases.
_stop_requested: list[str] = []


def _interrupt(signum: int, frame: object) -> None:
    if not _stop_requested:  # SIGTERM (systemd, docker stop) stops the nodes like Ctrl-C
        _stop_requested.append(signal.Signals(signum).name)


def _install_stop_handlers() -> None:
    # SIGINT explicitly too: a process started with SIGINT ignored (a shell's background job,
    # nohup) inherits SIG_IGN, so `kill -INT` would do nothing without a handler of our own.
    _stop_requested.clear()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _interrupt)


def cmd_deploy(args: argparse.Namespace) -> int:
    commands = build_commands(args)
    _install_stop_handlers()
    procs: dict[str, subprocess.Popen[bytes]] = {}
    for name, argv in commands.items():
        if _stop_requested:
            break
        procs[name] = subprocess.Popen(argv)
        print(f"cgrpo deploy: started {name} (pid {procs[name].pid})", file=sys.stderr)
    while not _stop_requested:
        for name, proc in procs.items():
            code = proc.poll()
            if code is not None:
                others = [n for n in procs if n != name]
                print(
                    f"cgrpo deploy: {name} exited with code {code}; stopping {others}",
                    file=sys.stderr,
                )
                stop_all(procs)
                return code if code > 0 else 1
        time.sleep(POLL_S)
    # The terminal sent SIGINT to the whole group; forward it anyway (e.g. `kill -INT`).
    print("cgrpo deploy: interrupted; stopping all nodes", file=sys.stderr)
    stop_all(procs)
    codes = {name: proc.returncode for name, proc in procs.items()}
    return 0 if all(c == 0 for c in codes.values()) else 130


def main(argv: Sequence[str] | None = None) -> int:
    """Standalone entry (`python -m cgrpo_ros.deploy.cli_deploy MODEL ...`)."""
    parser = argparse.ArgumentParser(prog="cgrpo")
    add_deploy_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["deploy", *(argv if argv is not None else sys.argv[1:])])
    try:
        return cmd_deploy(args)
    except ValueError as exc:
        print(f"cgrpo deploy: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
