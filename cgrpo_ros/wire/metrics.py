"""Metrics and status lines: JSON in std_msgs/String, non-finite floats as null."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from cgrpo_ros.wire.frame import (
    MAX_METRICS_CHARS,
    WireFormatError,
    parse_json,
)


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [_jsonable(item) for item in value]
    if isinstance(value, float | np.floating):
        # A diverged loss is worth reporting, not worth crashing the learner: NaN/Inf -> null.
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer | np.bool_):
        return value.item()
    return value  # json.dumps raises TypeError naming anything else


def encode_metrics(metrics: Mapping[str, Any]) -> str:
    """JSON for `std_msgs/String` on /cgrpo/metrics; non-finite floats become null."""
    return json.dumps(_jsonable(metrics), separators=(",", ":"), allow_nan=False)


def decode_metrics(text: str) -> dict[str, Any]:
    """Parse a metrics message; NaN/Infinity tokens, duplicate keys and non-objects are refused."""
    if len(text) > MAX_METRICS_CHARS:
        raise WireFormatError(
            f"metrics message is {len(text)} chars; allowed: <= {MAX_METRICS_CHARS}"
        )
    value = parse_json(text, "metrics message")
    if not isinstance(value, dict):
        raise WireFormatError(f"metrics message is a JSON {type(value).__name__}; allowed: object")
    return value
