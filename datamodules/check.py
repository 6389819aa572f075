"""``hpsearch data check``: try to load every dataset and summarize what was found.

Typical CLI use::

    from hpsearch.datamodules.check import check_all

    lines, n_failed = check_all(args.data_dir)  # None: $HPSEARCH_DATA_DIR or ./data
    print("\\n".join(lines))
    return 1 if n_failed else 0
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from .base import SPLITS
from .errors import DataError, one_line
from .paths import resolve_data_dir
from .registry import DATASETS, build_datamodule, default_config


@dataclass
class DatasetCheck:
    """Outcome of loading one dataset with its default config."""

    name: str
    ok: bool
    source: str = ""
    error: str = ""
    input_shape: tuple[int, ...] = ()
    class_names: tuple[str, ...] = ()
    sizes: dict[str, int] = field(default_factory=dict)
    counts: dict[str, list[int]] = field(default_factory=dict)
    extra: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0


def check_dataset(name: str, data_dir: str | Path | None = None) -> DatasetCheck:
    """Load dataset ``name`` (default config, no download).

    DataError (including a config that does not fit the files found) and OSError (say, a cache
    folder that cannot be written) are reported in the result, so one broken dataset does not
    stop the check of the others.
    """
    start = time.perf_counter()
    cfg = default_config(name)
    dm = build_datamodule(cfg, data_dir=data_dir)
    result = DatasetCheck(name, ok=False, input_shape=cfg.input_shape, class_names=cfg.class_names)
    try:
        result.source = dm.describe_source()
        dm.setup()
    except DataError as exc:
        result.error = str(exc)
    except OSError as exc:
        result.error = _os_error_line(exc)
    else:
        result.ok = True
        result.sizes = dm.split_sizes()
        result.counts = {split: dm.class_counts(split) for split in SPLITS}
        result.extra = dm.check_details()
    result.seconds = time.perf_counter() - start
    return result


def _os_error_line(exc: OSError) -> str:
    # "PATH: Permission denied" reads better than "[Errno 13] Permission denied: 'PATH'".
    if exc.filename is not None and exc.strerror:
        return f"{exc.filename}: {exc.strerror}"
    return one_line(exc)


def check_datasets(
    data_dir: str | Path | None = None, names: Iterable[str] | None = None
) -> list[DatasetCheck]:
    """:func:`check_dataset` for ``names`` (default: every registered dataset)."""
    return [check_dataset(name, data_dir) for name in (names or DATASETS)]


def format_checks(checks: list[DatasetCheck], data_dir: str | Path | None = None) -> list[str]:
    """Plain-text report lines: per dataset a status line, then sizes and class counts."""
    lines = [f"data dir: {resolve_data_dir(data_dir)}"]
    for c in checks:
        if not c.ok:
            lines.append(f"FAIL {c.name}: {c.error}")
            continue
        lines.append(f"ok   {c.name}: {c.source}  ({c.seconds:.1f} s)")
        facts = [f"input {c.input_shape}", f"{len(c.class_names)} classes"]
        facts += [f"{k} {v}" for k, v in c.extra.items()]
        lines.append("     " + ", ".join(facts))
        biggest = max(max(counts) for counts in c.counts.values())
        width = max(*(len(n) for n in c.class_names), len(str(biggest)))
        # One row format for the header too, so class names sit right above their counts.
        row = "     {:<5} {:>7} {}"
        lines.append(row.format("", "", " ".join(f"{n[:width]:>{width}}" for n in c.class_names)))
        for split in SPLITS:
            counts = " ".join(f"{n:>{width}}" for n in c.counts[split])
            lines.append(row.format(split, c.sizes[split], counts))
    n_failed = sum(not c.ok for c in checks)
    lines.append(f"{len(checks) - n_failed} of {len(checks)} datasets load")
    return lines


def check_all(
    data_dir: str | Path | None = None, names: Iterable[str] | None = None
) -> tuple[list[str], int]:
    """Check every dataset; returns ``(report_lines, n_failed)``.

    ``data_dir`` as for the datamodules (None: ``$HPSEARCH_DATA_DIR`` or ``./data``);
    ``names`` restricts the datasets (default: all of ``DATASETS``). Never downloads; HOG
    features are computed and cached under ``$HPSEARCH_CACHE_DIR`` if not cached yet. The
    lines are plain text (print them joined by newlines); exit non-zero when n_failed > 0.
    """
    checks = check_datasets(data_dir, names)
    return format_checks(checks, data_dir), sum(not c.ok for c in checks)
