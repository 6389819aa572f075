"""Leaderboard CSVs: one row per trial, best first, written atomically.

Rows are built from Ray Tune ``Trial`` objects (duck-typed: no Ray here, so reports read
these files without it), live or read back from Ray's folder (``scripts.tune.callback``);
both go through :func:`trial_row`.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpsearch.datamodules.paths import atomic_write_text
from hpsearch.scripts.compute import hours
from hpsearch.scripts.experiment_folder import ExperimentFolder
from hpsearch.scripts.pareto import pareto_ranks
from hpsearch.scripts.sweep_record import SweepMeta
from hpsearch.search_spaces.errors import ConfigError
from hpsearch.search_spaces.schema import Objective, SearchSpace
from hpsearch.search_spaces.trials import sampled_params, trial_config

if TYPE_CHECKING:
    import pandas as pd

STATUS_COMPLETED = "completed"
STATUS_EARLY_STOPPED = "early-stopped"
STATUS_ERRORED = "errored"
STATUS_RUNNING = "running"
STATUS_PENDING = "pending"
# Running when the sweep was stopped (Ctrl-C): ``--resume`` continues it.
STATUS_INTERRUPTED = "interrupted"
FINISHED_STATUSES = (STATUS_COMPLETED, STATUS_EARLY_STOPPED, STATUS_ERRORED)

# What a trial reports when it fails in a way a retry would repeat (a NaN loss, an
# architecture that does not fit its data): the error, instead of raising it to Tune.
FAILED_KEY = "failed"


def error_summary(text: str | None) -> str:
    """The last meaningful line of a Ray error trace: the exception and its message."""
    if not text:
        return ""
    lines = [ln.strip() for ln in str(text).strip().splitlines() if ln.strip()]
    for line in reversed(lines):
        if ":" in line and not line.startswith(("File ", "^", "~")):
            return line[:500]
    return lines[-1][:500] if lines else ""


def finished_status(errored: bool, epochs: int, max_epochs: int) -> str:
    """A finished trial's status: errored, or completed if it ran all its epochs, else
    early-stopped (what the sweep's searcher tells Optuna goes by this too)."""
    if errored:
        return STATUS_ERRORED
    return STATUS_COMPLETED if epochs >= max_epochs else STATUS_EARLY_STOPPED


def trial_status(trial: Any, max_epochs: int, ray_status: str | None = None) -> str:
    status = ray_status or getattr(trial, "status", "")
    result = trial.last_result or {}
    epochs = int(result.get("epoch", 0) or 0)
    if status in ("ERROR", "TERMINATED"):
        return finished_status(status == "ERROR" or bool(result.get(FAILED_KEY)), epochs,
                               max_epochs)
    if status == "RUNNING":
        return STATUS_RUNNING
    return STATUS_PENDING


def param_value(value: Any) -> Any:
    return json.dumps(value) if isinstance(value, (list, tuple)) else value


def _unreported_config(trial: Any, space: SearchSpace | None) -> tuple[dict[str, Any], str]:
    """Params and config JSON of a trial that failed before its first report, from what the
    searcher drew (``trial.config``), so an errored row still says what was tried."""
    if space is None:
        return {}, ""
    params = sampled_params(space, dict(trial.config or {}))
    try:
        return params, trial_config(space, params).to_json()
    except ConfigError:  # the draw itself was infeasible: its params say enough
        return params, ""


def trial_row(
    trial: Any,
    meta: SweepMeta,
    space: SearchSpace | None = None,
    ray_status: str | None = None,
) -> dict[str, Any]:
    """One leaderboard row from a Tune ``Trial`` (live or restored from disk).

    ``ray_status`` overrides the trial's own status: Tune calls the completion callbacks
    before it marks the trial terminated."""
    result = dict(trial.last_result or {})
    metric = meta.objective.metric
    status = trial_status(trial, meta.max_epochs, ray_status)
    row: dict[str, Any] = {"rank": None}
    if len(meta.objectives) > 1:
        row["pareto_rank"] = None  # filled by rank_rows
    row |= {"trial_id": trial.trial_id, "status": status}
    params = result.get("params") or {}
    config_json = result.get("config_json", "")
    if not params:
        params, config_json = _unreported_config(trial, space)
    for name in meta.params:
        row[name] = param_value(params.get(name))
    row[metric] = result.get("best_value", math.nan)
    row["best_epoch"] = result.get("best_epoch")
    row["epochs_run"] = result.get("epoch", 0)
    for key, value in sorted(result.items()):
        if key.startswith("best_val_") and key != f"best_{metric}":
            row[key.removeprefix("best_")] = value
    row["param_count"] = result.get("param_count")
    row["train_time_s"] = result.get("train_time_s")
    row["train_cpu_h"] = hours(result.get("train_cpu_s"))
    row["train_gpu_h"] = hours(result.get("train_gpu_s"))
    row["node"] = result.get("node")
    row["node_id"] = result.get("node_id")
    row["device"] = result.get("device")
    row["seed"] = result.get("seed", meta.seed)
    error = ""
    if status == STATUS_ERRORED:
        error = result.get(FAILED_KEY) or error_summary(
            trial.get_error() if hasattr(trial, "get_error") else "")
    row["error"] = error
    checkpoint = getattr(trial, "checkpoint", None)
    # A data-parallel trial's checkpoints belong to its Ray Train run, which reports the path.
    row["checkpoint"] = checkpoint.path if checkpoint is not None else result.get(
        "checkpoint_path", "")
    row["config"] = config_json
    row["code_version"] = meta.code_version
    return row


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _set_pareto_ranks(rows: list[dict[str, Any]], objs: Sequence[Objective]) -> None:
    """``pareto_rank`` of the trials that ran all their epochs with a value for every
    objective (0 = on the front); the others get none."""
    metrics = [o.metric for o in objs]
    scored = [row for row in rows if row.get("status") == STATUS_COMPLETED
              and all(math.isfinite(_number(row.get(m))) for m in metrics)]
    points = [[_number(row[m]) for m in metrics] for row in scored]
    for row, rank in zip(scored, pareto_ranks(points, [o.mode for o in objs]), strict=True):
        row["pareto_rank"] = rank


def rank_rows(rows: Iterable[dict[str, Any]], objs: Sequence[Objective]) -> list[dict[str, Any]]:
    """Sort best first and number the ranks from 1: by the first objective (rows without a
    value last, ties in their order); with several objectives, by Pareto rank first.
    ``objs``: the sweep's objectives (:attr:`SweepMeta.objectives`), each a column."""
    rows = list(rows)
    metric, mode = objs[0].metric, objs[0].mode
    if len(objs) > 1:
        _set_pareto_ranks(rows, objs)

    def key(row: dict[str, Any]) -> tuple[float, bool, float]:
        value = _number(row.get(metric))
        pareto = row.get("pareto_rank")
        return (math.inf if pareto is None else pareto), math.isnan(value), (
            -value if mode == "max" else value)

    ranked = sorted(rows, key=key)
    for rank, row in enumerate(ranked, start=1):
        row["rank"] = rank
    return ranked


def _cell(value: Any) -> Any:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else value


def leaderboard_csv(rows: list[dict[str, Any]]) -> str:
    """The CSV of ranked ``rows``: a column per key, in the order keys first appear; missing
    values empty. The csv module rather than pandas: it runs in the middle of a trial
    hand-over, where pandas took the driver about twice as long."""
    columns = list(dict.fromkeys(key for row in rows for key in row))
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows({key: _cell(row.get(key)) for key in columns} for row in rows)
    return out.getvalue()


def leaderboard_rows(
    trials: Iterable[Any],
    meta: SweepMeta,
    space: SearchSpace | None = None,
    ray_status: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """The leaderboard's rows of ``trials``, ranked best first."""
    ray_status = ray_status or {}
    return rank_rows(
        (trial_row(t, meta, space, ray_status.get(t.trial_id)) for t in trials), meta.objectives
    )


def write_leaderboard(
    exp_dir: Path,
    trials: Iterable[Any],
    meta: SweepMeta,
    space: SearchSpace | None = None,
    ray_status: Mapping[str, str] | None = None,
) -> Path:
    """Rewrite the experiment's leaderboard from ``trials``; ``ray_status`` maps trial ids to
    the status Tune is about to give them."""
    rows = leaderboard_rows(trials, meta, space, ray_status)
    for row in rows:
        row["checkpoint"] = relative_to_folder(row["checkpoint"], exp_dir)
    path = ExperimentFolder(exp_dir).leaderboard
    atomic_write_text(path, leaderboard_csv(rows))
    return path


def relative_to_folder(path: str, exp_dir: Path) -> str:
    """``path`` relative to the experiment folder when it is inside it (the folder can then
    move); paths elsewhere (``--storage``) as they are."""
    if path and Path(path).is_absolute() and Path(path).is_relative_to(exp_dir):
        return Path(path).relative_to(exp_dir).as_posix()
    return path


def mark_interrupted(exp_dir: Path, trial_ids: Iterable[str]) -> None:
    """Label these trials, running when the sweep was stopped, ``interrupted`` on the
    leaderboard (Tune stops them as if they had ended early)."""
    path = ExperimentFolder(exp_dir).leaderboard
    stopped = set(trial_ids)
    with path.open(newline="") as src:
        rows = list(csv.DictReader(src))
    for row in rows:
        if row["trial_id"] in stopped:
            row["status"] = STATUS_INTERRUPTED
    atomic_write_text(path, leaderboard_csv(rows))


def summary_columns(frame: pd.DataFrame, meta: SweepMeta) -> list[str]:
    metrics = [o.metric for o in meta.objectives]
    cols = ["rank", "pareto_rank", "trial_id", "status", *meta.params, *metrics,
            "best_epoch", "epochs_run", "param_count", "train_time_s", "train_cpu_h"]
    cols = list(dict.fromkeys(cols))  # param_count or train_time_s may be an objective
    return [c for c in cols if c in frame.columns]
