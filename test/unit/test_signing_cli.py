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
