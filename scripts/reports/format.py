"""Formatting for the terminal and the reports: metrics on one line, and tables."""

from __future__ import annotations

import io
import math
from collections.abc import Iterable, Mapping, Sequence
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


def render_table(headers: Sequence[str], rows: Iterable[Sequence[Any]], title: str | None = None,
                 right: Iterable[int] = (), rule_before_last: bool = False,
                 width: int | None = None) -> str:
    """A plain-text table drawn by rich: ``right`` are the right-aligned column indexes;
    ``rule_before_last`` sets the last row (a total) off. Wide enough for every row on one
    line (at least ``width``, e.g. the terminal's), so a table piped to a file stays whole."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    rows = [[_cell(v) for v in row] for row in rows]
    right = set(right)
    table = Table(title=title, box=box.SIMPLE_HEAD, title_justify="left")
    for i, header in enumerate(headers):
        table.add_column(header, no_wrap=True, justify="right" if i in right else "left")
    for n, cells in enumerate(rows):
        table.add_row(*cells, end_section=rule_before_last and n == len(rows) - 2)
    natural = sum(max(len(t) for t in [h, *(r[i] for r in rows)]) + 4
                  for i, h in enumerate(headers))
    console = Console(width=max(natural, width or 0), record=True, file=io.StringIO(),
                      color_system=None)
    console.print(table)
    return "\n".join(line.rstrip() for line in console.export_text().splitlines()).strip("\n")


def _cell(value: Any) -> str:
    """A table cell: empty for missing values, four significant digits for floats."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def format_parameter_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """The table of :func:`lightning_modules.summary.parameter_table` rows; the last row, the
    total, set apart."""
    headers = ("layer", "type", "weights", "biases", "total")
    cells = [(r["layer"], r["type"], *(f"{r[k]:,}" for k in headers[2:])) for r in rows]
    return render_table(headers, cells, right=(2, 3, 4), rule_before_last=True)


def short_headers(cols: list[str]) -> list[str]:
    """"model.kernel_size" -> "kernel_size", so that a leaderboard row fits on one line;
    a name that says nothing alone ("optimizer.name") or that two sections share stays
    whole."""
    short = [c.rsplit(".", 1)[-1] for c in cols]
    return [c if s in _VAGUE or short.count(s) > 1 else s for c, s in zip(cols, short,
                                                                          strict=True)]


_VAGUE = {"name", "type", "size"}


def params_text(params: Mapping[str, Any]) -> str:
    """``lr=0.001, hidden=[512, 256]``: a trial's drawn values in one line (unset ones left
    out)."""
    names = [k for k, v in params.items() if not _unset(v)]
    return ", ".join(f"{short}={_short(params[name])}"
                     for name, short in zip(names, short_headers(names), strict=True))


def _unset(value: Any) -> bool:
    return value is None or value == "" or (isinstance(value, float) and math.isnan(value))


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)
