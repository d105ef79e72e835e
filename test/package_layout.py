"""What setup.py installs, read from its source (no build needed): shared by the static tests
of the launch files and by the test that runs every executable's `--help`."""

from __future__ import annotations

import ast
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def console_scripts() -> dict[str, str]:
    """name -> "module:function" of every console script in setup.py's entry_points."""
    tree = ast.parse((REPO_ROOT / "setup.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values, strict=True):
                if isinstance(key, ast.Constant) and key.value == "console_scripts":
                    entries = ast.literal_eval(value)
                    pairs = (entry.split("=", 1) for entry in entries)
                    return {name.strip(): target.strip() for name, target in pairs}
    raise AssertionError("setup.py has no console_scripts")


def data_files() -> dict[str, list[str]]:
    """Install folder (e.g. share/cgrpo_ros/config) -> the glob patterns / files put there.

    Reads the literal (folder, [files or glob("...")]) pairs of setup.py's data_files.
    """
    tree = ast.parse((REPO_ROOT / "setup.py").read_text())
    package = "cgrpo_ros"
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == "data_files":
            assert isinstance(node.value, ast.List)
            result: dict[str, list[str]] = {}
            for pair in node.value.elts:
                assert isinstance(pair, ast.Tuple)
                folder = _string(pair.elts[0], package)
                result[folder] = _sources(pair.elts[1], package)
            return result
    raise AssertionError("setup.py has no data_files")


def _string(node: ast.expr, package: str) -> str:
    """A literal string, `package_name`, or a `+` of those."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.Name) and node.id == "package_name":
        return package
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return _string(node.left, package) + _string(node.right, package)
    raise AssertionError(f"setup.py data_files: cannot read {ast.unparse(node)}")


def _sources(node: ast.expr, package: str) -> list[str]:
    if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "glob":
        return [_string(node.args[0], package)]
    assert isinstance(node, ast.List), ast.unparse(node)
    return [_string(element, package) for element in node.elts]


def installed_share_files() -> dict[str, Path]:
    """share-relative path (e.g. config/deploy.yaml) -> source file, for every data file."""
    files: dict[str, Path] = {}
    prefix = "share/cgrpo_ros"
    for folder, patterns in data_files().items():
        if not folder.startswith(prefix):
            continue
        relative = folder.removeprefix(prefix).lstrip("/")
        for pattern in patterns:
            for source in sorted(REPO_ROOT.glob(pattern)):
                files[str(Path(relative) / source.name)] = source
    return files
