"""Where the package's shipped files are (config/, launch/): one lookup for every caller.

A source checkout (or a symlink install) has them beside the `cgrpo_ros` package; an ament
install in `share/cgrpo_ros/` of its prefix; a pip install in `<sys.prefix>/share/cgrpo_ros/`
(setup.py's data_files). The first that holds the file wins, in that order.
"""

from __future__ import annotations

import sys
from pathlib import Path

PACKAGE = "cgrpo_ros"
PACKAGE_ROOT = Path(__file__).resolve().parents[1]
"""The directory that holds the `cgrpo_ros` and `sim_bridge` packages (PYTHONPATH for nodes)."""


class ShareFileNotFoundError(FileNotFoundError, ValueError):
    """A shipped file is missing. A ValueError too: the CLI reports it as a usage error."""


def share_directories() -> list[Path]:
    """The places a shipped file may be, in the order they are tried."""
    directories = [PACKAGE_ROOT]
    try:
        from ament_index_python.packages import get_package_share_directory

        directories.append(Path(get_package_share_directory(PACKAGE)))
    # PackageNotFoundError is a KeyError; an unset AMENT_PREFIX_PATH raises OSError.
    except (ImportError, KeyError, OSError, ValueError):
        pass  # no ament index: a pip install or a checkout
    directories.append(Path(sys.prefix) / "share" / PACKAGE)
    return directories


def find_share_file(relative: str | Path, hint: str = "") -> Path:
    """The shipped file `relative` (e.g. `config/train_sim.yaml`); ShareFileNotFoundError names
    every place tried and, with `hint`, how to pass the file explicitly."""
    candidates = [directory / relative for directory in share_directories()]
    for path in candidates:
        if path.is_file():
            return path
    tried = ", ".join(str(c) for c in candidates)
    raise ShareFileNotFoundError(
        f"{relative} not found (tried {tried})" + (f"; {hint}" if hint else "")
    )
