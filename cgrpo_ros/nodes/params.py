"""Parameters of the training-stack nodes: declared once, with descriptors, refused loudly.

Every node keeps a tuple of `ParamSpec`s; `declare_parameters` turns each into one
`declare_parameter` call with a `ParameterDescriptor` (description, integer or float range,
read-only where a live change would corrupt a run) and converts rclpy's exceptions into a
`ParameterError` whose message names the parameter, the value and what is allowed.
`node_main` is every node's `main()`: bad parameters end the process with exit code 2 and
one log line, never a traceback. Its `handle_command_line` runs first:
`-h`/`--help` lists the parameters and exits 0 before anything starts (issue 16: `ros2 run
cgrpo_ros learner --help` used to start a whole training).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import faulthandler
import io
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import rclpy
import rclpy.parameter
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.exceptions import ParameterException
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions

from cgrpo_ros.core.config import RUN_SHAPE_CONFIG_FIELDS, CGRPOConfig, load_config_file
from cgrpo_ros.core.run_shape import SHAPE_FIELDS, RunShape

EXIT_BAD_PARAMETER = 2
CGRPO_PREFIX = "cgrpo."
# Config fields a node parameter of their own sets (the variant and the run's shape);
# `cgrpo.<field>` must not fight with them.
_CONFIG_FIELDS_FROM_FLAGS = ("variant", *RUN_SHAPE_CONFIG_FIELDS)


class ParameterError(ValueError):
    """Why a node refuses to start: a parameter value, or a file or model a parameter names.
    The message names the parameter, the value and what is allowed; node_main logs it as
    "refusing to start: ..." and exits with EXIT_BAD_PARAMETER."""


NodeT = TypeVar("NodeT", bound=Node)


@dataclass(frozen=True)
class ParamSpec:
    """One node parameter: name, default, what it means and what is allowed."""

    name: str
    default: Any
    description: str
    range: tuple[float, float] | None = None  # inclusive; int or float by the default's type
    choices: tuple[str, ...] | None = None
    read_only: bool = True  # most values fix the shape of a run; changing them live is unsafe

    def allowed(self) -> str:
        if isinstance(self.default, rclpy.parameter.Parameter.Type):  # declared without a value
            return f"a {self.default.name.lower().replace('_', ' ')}"
        if self.choices is not None:
            return "one of: " + ", ".join(self.choices)
        if self.range is not None:
            return f"a {type(self.default).__name__} in [{self.range[0]}, {self.range[1]}]"
        return f"a {type(self.default).__name__}"

    def descriptor(self) -> ParameterDescriptor:
        descriptor = ParameterDescriptor(
            description=self.description,
            read_only=self.read_only,
            additional_constraints=self.allowed(),
        )
        if self.range is not None:
            lo, hi = self.range
            if isinstance(self.default, bool) or not isinstance(self.default, int | float):
                raise TypeError(f"{self.name}: a range needs a numeric default")
            if isinstance(self.default, int):
                descriptor.integer_range = [IntegerRange(from_value=int(lo), to_value=int(hi))]
            else:
                descriptor.floating_point_range = [
                    FloatingPointRange(from_value=float(lo), to_value=float(hi))
                ]
        return descriptor


def _describe_default(default: Any) -> str:
    if isinstance(default, rclpy.parameter.Parameter.Type):  # declared with a type, no value
        return f"unset ({default.name.lower()})"
    return repr(default)


def _describe_allowed(spec: ParamSpec) -> str:
    if isinstance(spec.default, rclpy.parameter.Parameter.Type):
        return ""
    return spec.allowed()


def parameter_help(specs: Sequence[ParamSpec]) -> str:
    """One entry per parameter: name, default, what is allowed, read-only, description."""
    lines = []
    for spec in specs:
        facts = [f"default {_describe_default(spec.default)}"]
        allowed = _describe_allowed(spec)
        if allowed:
            facts.append(allowed)
        facts.append("read-only" if spec.read_only else "changeable at runtime")
        lines.append(f"  {spec.name}  ({'; '.join(facts)})")
        if spec.description:
            lines.append(f"      {spec.description}")
    return "\n".join(lines)


def handle_command_line(
    prog: str,
    description: str | None,
    specs: Sequence[ParamSpec],
    args: Sequence[str] | None = None,
    notes: str = "",
) -> None:
    """`-h`/`--help`: print the node's parameters and exit 0; nothing is started.

    Any other argument outside `--ros-args` is refused with exit code 2: `ros2 run cgrpo_ros
    learner iterations:=2` would otherwise be ignored silently and start a default run.
    `args` is the full argv (program name first), as rclpy.init takes it.
    """
    from rclpy.utilities import remove_ros_args

    argv = list(sys.argv if args is None else args)
    own = remove_ros_args(argv)[1:]
    epilog = (
        "parameters (after --ros-args: -p name:=value, or --params-file FILE.yaml):\n"
        + parameter_help(specs)
        + (f"\n{notes}" if notes else "")
    )
    parser = argparse.ArgumentParser(
        prog=prog,
        usage=f"ros2 run cgrpo_ros {prog} [-h] [--ros-args -p name:=value ...]",
        description=description,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _, unknown = parser.parse_known_args(own)  # -h / --help: prints and exits 0 here
    if unknown:
        example = next((a for a in unknown if ":=" in a), f"{specs[0].name}:=...")
        parser.error(
            f"unexpected argument(s) {' '.join(unknown)}; node parameters go after --ros-args, "
            f"e.g. `ros2 run cgrpo_ros {prog} --ros-args -p {example}` (--help lists them)"
        )  # exits 2


def declare_parameters(node: Node, specs: Sequence[ParamSpec]) -> dict[str, Any]:
    """Declare every spec on `node`; returns name -> value. Raises ParameterError."""
    values: dict[str, Any] = {}
    for spec in specs:
        try:
            value = node.declare_parameter(spec.name, spec.default, spec.descriptor()).value
        except ParameterException as err:
            # rclpy's message already holds the value and the range; add the fix.
            raise ParameterError(
                f"parameter '{spec.name}' refused: {err}. Allowed: {spec.allowed()} "
                f"(e.g. -p {spec.name}:={spec.default!r})"
            ) from None
        if spec.choices is not None and value not in spec.choices:
            raise ParameterError(
                f"parameter '{spec.name}' = {value!r} is not allowed; use {spec.allowed()}"
            )
        values[spec.name] = value
    return values


def load_signing_key(name: str, value: Any) -> Any:
    """The SigningKey named by parameter `name` (a private key file), or None when empty."""
    from cgrpo_ros.core.signing import KeyFileError, SigningKey

    if not value:
        return None
    try:
        return SigningKey.load(str(value))
    except KeyFileError as err:
        raise ParameterError(f"parameter '{name}': {err}") from None


def load_trusted_keys(name: str, value: Any) -> Any:
    """The TrustedKeys of a string-array parameter (unset or empty: none, i.e. unsigned)."""
    from cgrpo_ros.core.signing import KeyFileError, TrustedKeys

    try:
        return TrustedKeys.load([str(p) for p in (value or []) if str(p)])
    except KeyFileError as err:
        raise ParameterError(f"parameter '{name}': {err}") from None


def config_parameter_names() -> tuple[str, ...]:
    """`cgrpo.<field>` for every CGRPOConfig field a parameter may override."""
    fields = (f.name for f in dataclasses.fields(CGRPOConfig))
    return tuple(
        CGRPO_PREFIX + name
        for name in fields
        if name != "extra" and name not in _CONFIG_FIELDS_FROM_FLAGS
    )


def shape_parameters(names: Sequence[str]) -> tuple[ParamSpec, ...]:
    """The node parameters of run-shape fields `names`, from their one declaration
    (core/run_shape.py): same names, defaults, ranges and descriptions as the CLI flags."""
    return tuple(
        ParamSpec(f.name, f.default, f.help, (f.low, f.high))
        for f in (SHAPE_FIELDS[name] for name in names)
    )


def config_from_parameters(
    node: Node, *, variant: str, shape: RunShape, config_file: str = ""
) -> CGRPOConfig:
    """The run's CGRPOConfig: variant defaults < config_file < `cgrpo.<field>` < the shape.

    `cgrpo.<field>` parameters are declared without a default (dynamic typing), so only the
    ones a user set override the variant's values.
    """
    overrides: dict[str, Any] = {}
    if config_file:
        try:
            overrides.update(load_config_file(Path(config_file)))
        except ValueError as err:
            raise ParameterError(f"parameter 'config_file' = {config_file!r}: {err}") from None
    descriptor = ParameterDescriptor(
        description="CGRPOConfig override (see cgrpo_ros/core/config.py)", dynamic_typing=True
    )
    for name in config_parameter_names():
        value = node.declare_parameter(name, None, descriptor).value
        if value is not None:
            overrides[name.removeprefix(CGRPO_PREFIX)] = list(value) if _is_array(value) else value
    try:
        return CGRPOConfig.for_run(variant, shape, overrides)  # type: ignore[arg-type]
    except ValueError as err:  # ConfigError names the field and its allowed range
        raise ParameterError(f"CGRPO configuration refused: {err}") from None


def _is_array(value: Any) -> bool:
    return not isinstance(value, str | bytes) and hasattr(value, "__len__")


class StopFlag:
    """Set by SIGINT/SIGTERM (or a service); the node's main loop polls or waits on it."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.reason = ""
        self._signalled = False  # a plain flag: the signal handler's first check takes no lock

    def set(self, reason: str) -> None:
        if not self.event.is_set():
            self.reason = reason
        self.event.set()

    def __bool__(self) -> bool:
        return self.event.is_set()

    def install_signal_handlers(self) -> None:
        # Our own handlers instead of rclpy's: the training loop in the main thread finishes
        # its step, writes its files and exits 0, rather than meeting a KeyboardInterrupt
        # half-way through writing a checkpoint.
        def handler(signum: int, _frame: Any) -> None:
            # A second signal (Ctrl-C reaches a node twice: from the terminal's process group
            # and forwarded by its supervisor) can arrive while the first handler is inside
            # Event.set(), holding the Event's lock; a nested set() would then wait for that
            # lock forever. The flag lets every later signal return without touching it.
            if self._signalled:
                return
            self._signalled = True
            self.set(signal.Signals(signum).name)

        signal.signal(signal.SIGINT, handler)
        signal.signal(signal.SIGTERM, handler)


# A supervisor (`cgrpo deploy`, `cgrpo train-sim`) sends this to a node that did not stop within
# its grace period, before SIGKILL: the node's stderr then shows where every thread was stuck.
STACK_DUMP_SIGNAL = signal.SIGUSR1


def enable_stack_dump_signal() -> None:
    """On STACK_DUMP_SIGNAL, write every thread's Python stack to stderr and carry on.

    faulthandler's handler is C code: it dumps the stacks even when the main thread is stuck
    inside a C call that holds the GIL (rclpy, rmw, Fast DDS), where no Python handler runs.
    """
    with contextlib.suppress(AttributeError, ValueError, RuntimeError, io.UnsupportedOperation):
        faulthandler.register(STACK_DUMP_SIGNAL, all_threads=True)  # no stderr fd: no dump


def node_main(
    name: str,
    description: str | None,
    specs: Sequence[ParamSpec],
    args: list[str] | None,
    *,
    make_node: Callable[[StopFlag], NodeT],
    work: Callable[[NodeT], None] | None = None,
    make_executor: Callable[[Node], Any] | None = None,
    help_notes: str = "",
) -> None:
    """The `main()` of every node: help, rclpy, signals, exit codes.

    `-h`/`--help` lists `specs` and exits 0 (handle_command_line). A start the node refuses
    (ParameterError: a bad parameter, or a file or model it names) is one log line
    "refusing to start: ..." and exit code 2, no traceback; Ctrl-C and SIGTERM end it with
    exit code 0.

    With `work` (learner, rollout_worker), the node is spun in a background thread and
    `work(node)` runs in the main thread (collection, updates: never inside a callback).
    Without it (policy_server, sim_bridge), the node only serves callbacks on the executor
    `make_executor(node)` picks (default: a SingleThreadedExecutor; rclpy's
    MultiThreadedExecutor busy-waits a whole core, docs/benchmarks.md).

    The signals only stop the loop (StopFlag), so the node is destroyed while its context is
    still up, and the context is shut down after. With rclpy's own handlers the context went
    down first, and destroying the node's publishers then crashed the process with SIGSEGV
    about one shutdown in six (rmw_fastrtps, policy_server).
    """
    handle_command_line(name, description, specs, args, help_notes)
    stop = StopFlag()
    stop.install_signal_handlers()
    enable_stack_dump_signal()
    exit_code = 0
    try:
        with rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO):
            try:
                if work is None:
                    _serve(make_node(stop), stop, make_executor)
                else:
                    _work(make_node(stop), work)
            except ParameterError as err:
                rclpy.logging.get_logger(name).error(f"refusing to start: {err}")
                exit_code = EXIT_BAD_PARAMETER
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    if exit_code:
        sys.exit(exit_code)


def _serve(node: Node, stop: StopFlag, make_executor: Callable[[Node], Any] | None) -> None:
    from rclpy.executors import SingleThreadedExecutor

    executor = SingleThreadedExecutor() if make_executor is None else make_executor(node)
    executor.add_node(node)
    try:
        spin_until_shutdown(executor, node, stopping=lambda: bool(stop))
    finally:
        executor.shutdown()
        node.destroy_node()


def _work(node: NodeT, work: Callable[[NodeT], None]) -> None:
    spinner = BackgroundSpinner(node)
    try:
        work(node)
    finally:
        spinner.stop()
        node.destroy_node()


def spin_until_shutdown(
    executor: Any, node: Node, stopping: Callable[[], bool] = lambda: False
) -> None:
    """executor.spin(), except that an error taking one message is logged, never fatal.

    The one seen in practice: Ctrl-C shuts the context down while a message is being taken,
    and rclpy raises RuntimeError from the take; that is the end of the run, not a crash.
    """
    from rclpy.executors import ShutdownException

    while node.context.ok() and not stopping():
        try:
            executor.spin_once(timeout_sec=0.1)
        except ShutdownException:
            break
        except RuntimeError as err:
            if not node.context.ok():
                break
            node.get_logger().error(f"executor: {err}", throttle_duration_sec=2.0)


class BackgroundSpinner:
    """Spins a node in a daemon thread so the main thread may block (rclpy#1313).

    Callbacks then only copy data under a lock; anything slow (collection, the CGRPO update,
    waiting for a reply) runs in the main thread and never inside a callback.
    """

    def __init__(self, node: Node) -> None:
        from rclpy.executors import SingleThreadedExecutor

        self.node = node
        self.stopping = threading.Event()
        self.executor = SingleThreadedExecutor(context=node.context)
        self.executor.add_node(node)
        self.thread = threading.Thread(target=self._spin, name=f"spin-{node.get_name()}")
        self.thread.daemon = True
        self.thread.start()

    def _spin(self) -> None:
        with contextlib.suppress(ExternalShutdownException, KeyboardInterrupt):
            spin_until_shutdown(self.executor, self.node, self.stopping.is_set)

    def stop(self) -> None:
        self.stopping.set()
        self.executor.shutdown(timeout_sec=2.0)
        self.thread.join(timeout=5.0)


def latched_qos(depth: int) -> Any:
    """Reliable + transient local: a late or restarted subscriber gets the last `depth`."""
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

    return QoSProfile(
        depth=depth,
        reliability=ReliabilityPolicy.RELIABLE,
        durability=DurabilityPolicy.TRANSIENT_LOCAL,
    )
