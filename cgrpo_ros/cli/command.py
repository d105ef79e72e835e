"""The `cgrpo` command: train (one process), train-sim (the ROS node stack), deploy, export,
eval and bench.

The node-stack commands start the very executables and parameter files that the launch
files start, for machines where `ros2 launch` is not installed (a pip-only install).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cgrpo_ros.cli.args import (
    add_training_args,
    build_config,
    check_positive,
    load_signer,
    print_summary,
)
from cgrpo_ros.core.run_shape import RunShape
from cgrpo_ros.run_logging import default_run_dir


def cmd_train(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from cgrpo_ros.session import all_cores, train_single_process

    shape = RunShape.from_flags(args)
    check_positive("--checkpoint-every", args.checkpoint_every)
    config = build_config(args)
    signer = load_signer(args.signing_key)
    run_dir = args.run_dir or default_run_dir(args.env, args.variant)
    bar = tqdm(total=shape.iterations, unit="it", desc=f"CGRPO-{args.variant} {args.env}")

    def progress(iteration: int, metrics: Any, session: Any) -> None:
        returns = [p.mean_episode_return for p in metrics.policies]
        bar.n = iteration
        bar.set_postfix(
            steps=session.env_steps, ret=" ".join(f"{r:.0f}" for r in returns), refresh=False
        )
        bar.refresh()

    summary = train_single_process(
        env_id=args.env,
        config=config,
        iterations=shape.iterations,
        steps_per_iteration=shape.steps_per_iteration,
        run_dir=run_dir,
        resume=args.resume,
        progress=progress,
        checkpoint_every=args.checkpoint_every,
        signer=signer,
        cluster_threads=all_cores(),
    )
    bar.close()
    print_summary(run_dir, summary)
    return 0


def cmd_keygen(args: argparse.Namespace) -> int:
    """A new Ed25519 key pair: PATH (private, mode 0600) and PATH.pub (public)."""
    from cgrpo_ros.core.signing import SigningKey, generate_key_pair

    args.path.parent.mkdir(parents=True, exist_ok=True)
    private, public = generate_key_pair(args.path)
    kid = SigningKey.load(private).key_id
    print(f"wrote {private} (private, mode 0600: keep it on the signing host) and {public}")
    print(f"key id {kid}; give {public} to the nodes as trusted_keys")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    """Check an .onnx file's detached signature against trusted keys (what the server does)."""
    from cgrpo_ros.core.policy_artifact import OnnxPolicy
    from cgrpo_ros.core.signing import TrustedKeys, check_claims, read_signature_file

    trusted = TrustedKeys.load(args.trusted_keys)
    if not args.model.is_file():
        raise ValueError(f"policy model {args.model} does not exist")
    data = args.model.read_bytes()
    verified = trusted.verify_policy(data, read_signature_file(args.model), str(args.model))
    check_claims(verified, OnnxPolicy(data, source=str(args.model)).metadata.signed_claims(),
                 str(args.model))  # fmt: skip
    claims = {k: verified.claims[k] for k in ("policy_id", "policy_version", "task")}
    print(json.dumps({"model": str(args.model), "key_id": verified.key_id, **claims}))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """Checkpoint -> ONNX artifact (the file deploy.launch.py and policy_server load)."""
    from cgrpo_ros.core.checkpoint import load_checkpoint
    from cgrpo_ros.core.onnx_export import export_policy_onnx
    from cgrpo_ros.core.policy_artifact import OnnxPolicy
    from cgrpo_ros.core.signing import signature_path, write_artifact
    from cgrpo_ros.tasks import TaskSpec

    signer = load_signer(args.signing_key)

    algo, extra = load_checkpoint(args.checkpoint)
    task_id = args.env or extra.get("task")
    if not task_id:
        raise ValueError("the checkpoint names no task; pass --env")
    task = TaskSpec.from_env(task_id)
    if not 0 <= args.policy < algo.config.num_policies:
        raise ValueError(
            f"--policy={args.policy} is outside [0, {algo.config.num_policies - 1}] "
            "(the checkpoint's policies)"
        )
    metadata = task.policy_metadata(
        args.policy, algo.iteration, config_hash=algo.config.config_hash()
    )
    data = export_policy_onnx(algo.policies[args.policy], metadata)
    OnnxPolicy(data, source=str(args.output))  # validate before writing
    args.output.parent.mkdir(parents=True, exist_ok=True)
    write_artifact(args.output, data, signer, metadata.signed_claims())
    signed = f", signed by key {signer.key_id}: {signature_path(args.output)}" if signer else ""
    print(f"wrote {args.output} (policy {args.policy}, version {algo.iteration}{signed})")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    """Mean return of an ONNX policy or a checkpoint's policy, deterministic actions."""
    import numpy as np

    from cgrpo_ros.core.policy_artifact import OnnxPolicy
    from cgrpo_ros.core.rollout import evaluate_with_success
    from cgrpo_ros.tasks import make_env

    check_positive("--episodes", args.episodes, 100_000)
    path = Path(args.model)
    if path.suffix == ".onnx":
        policy = OnnxPolicy.from_file(path)
        act = policy.deterministic_action
        task_id = args.env or policy.metadata.task
    else:
        import torch

        from cgrpo_ros.core.checkpoint import load_checkpoint

        algo, extra = load_checkpoint(path)
        torch_policy = algo.policies[args.policy]
        task_id = args.env or extra["task"]

        def act(obs: Any) -> Any:
            with torch.no_grad():
                return torch_policy(torch.as_tensor(obs)).numpy()

    env = make_env(task_id)
    returns, successes = evaluate_with_success(env, act, args.episodes, seed=args.seed)
    result: dict[str, Any] = {
        "model": str(path),
        "task": task_id,
        "episodes": args.episodes,
        "mean_return": float(np.mean(returns)),
        "std_return": float(np.std(returns)),
    }
    if successes is not None:  # the task reports info["is_success"] (goal and reach tasks)
        result["success_rate"] = float(np.mean(successes))
    print(json.dumps(result))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cgrpo", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train in one process (no ROS)")
    add_training_args(train)
    train.set_defaults(func=cmd_train)

    from cgrpo_ros.cli.train_sim import add_train_sim_parser

    add_train_sim_parser(sub)
    from cgrpo_ros.cli.bench import add_bench_parser
    from cgrpo_ros.cli.deploy import add_deploy_parser

    add_deploy_parser(sub)

    add_bench_parser(sub)

    export = sub.add_parser("export", help="checkpoint -> ONNX policy artifact")
    export.add_argument("checkpoint", type=Path)
    export.add_argument("--policy", type=int, default=0)
    export.add_argument("--env", default=None, help="task id (default: the checkpoint's)")
    export.add_argument("--output", "-o", type=Path, required=True)
    export.add_argument(
        "--signing-key", type=Path, default=None, help="sign: writes OUTPUT.sig (docs/security.md)"
    )
    export.set_defaults(func=cmd_export)

    keygen = sub.add_parser("keygen", help="write an Ed25519 key pair for signing policies")
    keygen.add_argument("path", type=Path, help="private key file; the public key is PATH.pub")
    keygen.set_defaults(func=cmd_keygen)

    verify = sub.add_parser("verify", help="check an .onnx file's signature (OUTPUT.sig)")
    verify.add_argument("model", type=Path)
    verify.add_argument("--trusted-keys", type=Path, nargs="+", required=True)
    verify.set_defaults(func=cmd_verify)

    evaluate = sub.add_parser("eval", help="evaluate an ONNX policy or a checkpoint")
    evaluate.add_argument("model", help="policy .onnx file or checkpoint .ckpt")
    evaluate.add_argument("--env", default=None, help="task id (default: the model's)")
    evaluate.add_argument("--episodes", type=int, default=10)
    evaluate.add_argument("--policy", type=int, default=0, help="policy id in a checkpoint")
    evaluate.add_argument("--seed", type=int, default=10_000)
    evaluate.set_defaults(func=cmd_eval)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result: int = args.func(args)
    except KeyboardInterrupt:
        print("cgrpo: interrupted", file=sys.stderr)
        return 130
    except ValueError as exc:  # config, file and argument errors carry a readable message
        print(f"cgrpo {args.command}: error: {exc}", file=sys.stderr)
        return 2
    return result


if __name__ == "__main__":
    sys.exit(main())
