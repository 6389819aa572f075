"""Formatting of metrics for the terminal and the reports."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


def format_metrics(metrics: Mapping[str, Any], keys: Iterable[str] | None = None) -> str:
    """``name=value`` pairs, four decimals for floats, in ``keys`` order when given."""
    names = [k for k in keys if k in metrics] if keys is not None else sorted(metrics)
    parts = []
    for name in names:
        value = metrics[name]
        if isinstance(value, float):
            parts.append(f"{name}={value:.4f}")
        elif isinstance(value, (int, str)):
            parts.append(f"{name}={value}")
    return "  ".join(parts)
