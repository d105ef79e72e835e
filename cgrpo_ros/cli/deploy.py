"""`cgrpo deploy`: the deploy.launch.py stack on a machine without `ros2 launch`.

Starts the same executables with the same parameter file (config/deploy.yaml) and the same
overrides as launch/deploy.launch.py, each as its own process; forwards Ctrl-C; when one
process dies, stops the others and says which one died and with what exit code.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cgrpo_ros.cli.supervisor import StopRequests, stop_processes

STOP_TIMEOUT_S = 10.0
POLL_S = 0.2


def default_params_file() -> Path:
    """config/deploy.yaml of the source tree or an install (share.py); if none has it, the
    source tree's path, which cmd_deploy then refuses with its name."""
    from cgrpo_ros.share import PACKAGE_ROOT, ShareFileNotFoundError, find_share_file

    try:
        return find_share_file("config/deploy.yaml")
    except ShareFileNotFoundError:
        return PACKAGE_ROOT / "config" / "deploy.yaml"


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
    """Stop every node (supervisor.stop_processes: SIGINT, stacks, SIGKILL)."""
    stop_processes(procs, STOP_TIMEOUT_S, "cgrpo deploy")


def cmd_deploy(args: argparse.Namespace) -> int:
    commands = build_commands(args)
    stop_requested = StopRequests()
    stop_requested.install()
    procs: dict[str, subprocess.Popen[bytes]] = {}
    for name, argv in commands.items():
        if stop_requested:
            break
        procs[name] = subprocess.Popen(argv)
        print(f"cgrpo deploy: started {name} (pid {procs[name].pid})", file=sys.stderr)
    while not stop_requested:
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
    """Standalone entry (`python -m cgrpo_ros.cli.deploy MODEL ...`)."""
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
