"""The `cgrpo` command and what it starts: the parser and the small subcommands
(`command.py`), the flags they share (`args.py`), `train-sim` (`train_sim.py`), `deploy`
(`deploy.py`), `bench` (`bench.py`, `bench_report.py`) and the process supervisor both node-stack
commands use (`supervisor.py`)."""

from cgrpo_ros.cli.command import main

__all__ = ["main"]
