"""A sweep at a glance: trials by status, the running ones' epochs, the best so far, the time
left. Drawn from leaderboard rows, so the live view of ``hpsearch sweep`` and
``hpsearch status`` (from the files of a sweep running elsewhere) show the same table."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from rich.console import Group
from rich.table import Table
from rich.text import Text

from scripts.experiment_folder import lock_holder
from scripts.leaderboard import (
    FINISHED_STATUSES,
    LEADERBOARD,
    STATUS_INTERRUPTED,
    STATUS_RUNNING,
    objectives,
    read_leaderboard,
    read_meta,
)
from scripts.reports.format import params_text


@dataclass(frozen=True)
class SweepState:
    counts: dict[str, int]  # status -> trials
    running: list[tuple[str, int, float | None]]  # trial id, epochs reported, objective so far
    best: dict[str, Any] | None  # the best row so far
    num_samples: int
    max_epochs: int
    metric: str
    params: list[str]
    elapsed_s: float
    eta_s: float | None  # None until a trial has finished


def _value(x: Any) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


def sweep_state(board: pd.DataFrame, meta: Mapping[str, Any], elapsed_s: float) -> SweepState:
    """The state the table shows, from leaderboard rows (best first) and ``sweep.json``."""
    metric = objectives(meta)[0]["metric"]
    counts = {str(k): int(v) for k, v in board["status"].value_counts().items()} if len(
        board) else {}
    running = [(str(r.trial_id), int(r.epochs_run), _value(getattr(r, metric, None)))
               for r in board.itertuples() if r.status == STATUS_RUNNING]
    scored = board[board[metric].notna()] if metric in board.columns else board.iloc[:0]
    best = scored.iloc[0].to_dict() if len(scored) else None
    finished = sum(counts.get(s, 0) for s in FINISHED_STATUSES)
    num_samples = int(meta["num_samples"])
    left = max(0, num_samples - finished)
    eta = elapsed_s / finished * left if finished and left else None
    return SweepState(counts, running, best, num_samples, int(meta["max_epochs"]), metric,
                      list(meta.get("params", [])), elapsed_s, eta)


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def headline(state: SweepState) -> str:
    """One line: trials by status, elapsed time and the estimate of what remains."""
    order = ["running", "completed", "early-stopped", "errored", "interrupted", "pending"]
    parts = [f"{state.counts[s]} {s}" for s in order if state.counts.get(s)]
    eta = f", about {_clock(state.eta_s)} left" if state.eta_s is not None else ""
    return (f"{sum(state.counts.values())}/{state.num_samples} trials: "
            f"{', '.join(parts) or 'none started'}; {_clock(state.elapsed_s)} elapsed{eta}")


def best_line(state: SweepState) -> str:
    if state.best is None:
        return f"best {state.metric}: none reported yet"
    params = params_text({p: state.best.get(p) for p in state.params})
    return (f"best {state.metric} {state.best[state.metric]:.4f}: trial "
            f"{state.best['trial_id']} ({state.best['status']}){', ' + params if params else ''}")


def render(state: SweepState) -> Group:
    """The table: the headline, the best trial, then one row per running trial."""
    table = Table(show_edge=False, pad_edge=False, box=None)
    for column in ("running trial", "epoch", state.metric):
        table.add_column(column, justify="left" if column == "running trial" else "right")
    for trial_id, epochs, value in state.running:
        table.add_row(trial_id, f"{epochs}/{state.max_epochs}",
                      "-" if value is None else f"{value:.4f}")
    parts: list[Any] = [Text(headline(state), style="bold"), Text(best_line(state))]
    if state.running:
        parts.append(table)
    return Group(*parts)


class LiveStatus:
    """A renderable for ``rich.live.Live``: the table of the latest leaderboard rows, its
    clock ticking between rewrites."""

    def __init__(self, meta: Mapping[str, Any], started: float, board: pd.DataFrame,
                 clock: Any) -> None:
        self.meta = meta
        self.started = started  # on ``clock``, minus the time of earlier runs of the sweep
        self.board = board
        self.clock = clock

    def update(self, board: pd.DataFrame) -> None:
        self.board = board

    def __rich__(self) -> Group:
        return render(sweep_state(self.board, self.meta, self.clock() - self.started))


def folder_state(exp_dir: Path) -> tuple[SweepState, str | None]:
    """The state of the sweep in ``exp_dir`` from the files it writes, and who runs it
    (``host=... pid=...``; None when no sweep holds the folder now)."""
    board = (read_leaderboard(exp_dir) if (exp_dir / LEADERBOARD).is_file()
             else pd.DataFrame({"status": []}))
    meta = read_meta(exp_dir)
    holder = lock_holder(exp_dir)
    elapsed = float(meta.get("wall_time_s", 0.0))
    if holder is not None:
        elapsed += max(0.0, time.time() - float(meta.get("run_started_at", time.time())))
    else:  # rows still "running" were stopped with their sweep (a kill leaves them so)
        board["status"] = board["status"].replace(STATUS_RUNNING, STATUS_INTERRUPTED)
    return sweep_state(board, meta, elapsed), holder


def folder_status(exp_dir: Path) -> Group:
    """What ``hpsearch status`` shows: the table, and whether a sweep is running it."""
    state, holder = folder_state(exp_dir)
    running = f"running ({holder})" if holder else "not running"
    return Group(Text(f"{exp_dir}: {running}"), render(state))
