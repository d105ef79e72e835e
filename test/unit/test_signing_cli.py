"""`cgrpo keygen`, `cgrpo train/export --signing-key` and `cgrpo verify` (issue 18), in-process."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cgrpo_ros.cli import main as cgrpo_main


def test_keygen_train_export_verify(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key = tmp_path / "keys" / "learner.key"
    assert cgrpo_main(["keygen", str(key)]) == 0
    assert os.stat(key).st_mode & 0o777 == 0o600 and key.with_name("learner.key.pub").is_file()
    before = key.read_bytes()
    assert cgrpo_main(["keygen", str(key)]) == 2  # never overwritten
    assert "exists; refusing to overwrite" in capsys.readouterr().err
    assert key.read_bytes() == before
    public = str(key) + ".pub"

    run_dir = tmp_path / "run"
    argv = ["train", "--env", "Pendulum-v1", "--variant", "simple", "--policies", "2",
            "--groups", "2", "--iterations", "1", "--steps-per-iteration", "200",
            "--run-dir", str(run_dir), "--signing-key", str(key)]  # fmt: skip
    assert cgrpo_main(argv) == 0
    for name in ("best.onnx", "policy_0.onnx", "policy_1.onnx"):
        assert cgrpo_main(["verify", str(run_dir / name), "--trusted-keys", public]) == 0, name
    exported = tmp_path / "exported.onnx"
    ckpt = run_dir / "checkpoints" / "latest.ckpt"
    assert cgrpo_main(["export", str(ckpt), "-o", str(exported), "--signing-key", str(key)]) == 0
    assert "signed by key" in capsys.readouterr().out
    assert cgrpo_main(["verify", str(exported), "--trusted-keys", public]) == 0

    # One flipped byte: refused, naming the file and why (exit 2, no traceback).
    data = bytearray(exported.read_bytes())
    data[len(data) // 2] ^= 1
    exported.write_bytes(bytes(data))
    capsys.readouterr()
    assert cgrpo_main(["verify", str(exported), "--trusted-keys", public]) == 2
    err = capsys.readouterr().err
    assert "exported.onnx" in err and "tampered or corrupted" in err, err
    # Re-exported without a key: the stale signature goes, so it reads as unsigned.
    assert cgrpo_main(["export", str(ckpt), "-o", str(exported)]) == 0
    assert cgrpo_main(["verify", str(exported), "--trusted-keys", public]) == 2
    assert "is unsigned" in capsys.readouterr().err

    # A private key others can read is refused before anything is written.
    key.chmod(0o640)
    assert cgrpo_main(["export", str(ckpt), "-o", str(tmp_path / "x.onnx"),
                       "--signing-key", str(key)]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert f"signing key file {key} has mode 0640" in err and "chmod 600" in err, err
    assert not (tmp_path / "x.onnx").exists()


def test_train_sim_key_parameters(tmp_path: Path) -> None:
    """`cgrpo train-sim`: ephemeral keys by default, the learner's own with --signing-key,
    none with --unsigned; every key parameter it sets is declared by its node."""
    import argparse

    from cgrpo_ros.cli.train_sim import build_commands, make_run_keys
    from cgrpo_ros.nodes import learner, rollout_worker

    base = dict(env="HalfCheetah-v5", variant="full", policies=2, groups=2, iterations=2,
                steps_per_iteration=64, seed=1, resume=False, checkpoint_every=5, config=None,
                workers=2)  # fmt: skip
    args = argparse.Namespace(**base, signing_key=None, unsigned=False)
    (tmp_path / "eph").mkdir()
    keys = make_run_keys(args, tmp_path / "eph")
    assert os.stat(keys["learner_key"]).st_mode & 0o777 == 0o600
    commands = dict(build_commands(args, tmp_path / "run", tmp_path / "p.yaml", keys))
    declared = {"learner": set(learner.DECLARED_PARAMETERS),
                "rollout_worker": set(rollout_worker.DECLARED_PARAMETERS)}  # fmt: skip
    for name, argv in commands.items():
        params = dict(argv[i + 1].removeprefix(f"{name}:").split(":=", 1)
                      for i, a in enumerate(argv) if a == "-p")  # fmt: skip
        assert set(params) <= declared["learner" if name == "learner" else "rollout_worker"]
        if name == "learner":
            assert params["signing_key"] == f'"{keys["learner_key"]}"'
            assert params["trusted_worker_keys"] == f'["{keys["worker_pub"]}"]'
        else:
            assert params["trusted_keys"] == f'["{keys["learner_pub"]}"]'
            assert params["signing_key"] == f'"{keys["worker_key"]}"'
    # --signing-key: that key signs (its public half is what workers trust).
    own = tmp_path / "own.key"
    assert cgrpo_main(["keygen", str(own)]) == 0
    (tmp_path / "own_run").mkdir()
    args = argparse.Namespace(**base, signing_key=own, unsigned=False)
    keys = make_run_keys(args, tmp_path / "own_run")
    assert keys["learner_key"] == str(own.resolve())
    assert Path(keys["learner_pub"]).read_bytes() == Path(f"{own}.pub").read_bytes()
    args = argparse.Namespace(**base, signing_key=None, unsigned=True)
    assert make_run_keys(args, tmp_path) == {}
    commands = dict(build_commands(args, tmp_path / "run", tmp_path / "p.yaml", {}))
    set_names = [argv[i + 1] for argv in commands.values() for i, a in enumerate(argv) if a == "-p"]
    assert not any("_key" in name.split(":=")[0] for name in set_names), set_names


def test_cgrpo_deploy_passes_trusted_keys_to_the_server(tmp_path: Path) -> None:
    from cgrpo_ros.cli.command import build_parser
    from cgrpo_ros.cli.deploy import build_commands

    model = tmp_path / "m.onnx"
    model.write_bytes(b"x")
    args = build_parser().parse_args(
        ["deploy", str(model), "--trusted-keys", str(tmp_path / "a.pub"), str(tmp_path / "b.pub")]
    )
    argv = build_commands(args)["policy_server"]
    keys = [str(tmp_path / "a.pub"), str(tmp_path / "b.pub")]
    assert f'policy_server:trusted_keys:=["{keys[0]}", "{keys[1]}"]' in argv, argv
    args = build_parser().parse_args(["deploy", str(model)])
    assert not any("trusted_keys" in a for a in build_commands(args)["policy_server"])
