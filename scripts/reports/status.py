"""A sweep at a glance: trials by status, the running ones' epochs, the best so far, the time
left. Drawn from leaderboard rows, so the live view of ``hpsearch sweep`` and
``hpsearch status`` (from the files of a sweep running elsewhere) show the same table."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from rich.console import Group
from rich.table import Table
from rich.text import Text

from hpsearch.scripts.experiment_folder import ExperimentFolder, lock_holder, processes_using
from hpsearch.scripts.leaderboard import (
    FINISHED_STATUSES,
    STATUS_INTERRUPTED,
    STATUS_RUNNING,
)
from hpsearch.scripts.reports.format import params_text
from hpsearch.scripts.sweep_record import SweepMeta


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
    left: TimeLeft | None  # None until a trial has trained an epoch


@dataclass(frozen=True)
class TimeLeft:
    """What remains of the sweep: between ``low_s`` and ``high_s`` seconds. ``capped``: the
    time budget, not the trials, sets ``high_s``."""

    low_s: float
    high_s: float
    capped: bool = False

    def text(self) -> str:
        if self.capped:
            return f"at most {_clock(self.high_s)} left (time budget)"
        if self.high_s - self.low_s <= max(5.0, 0.15 * self.high_s):
            return f"about {_clock(self.high_s)} left"
        if self.low_s < 1.0:
            return f"at most {_clock(self.high_s)} left"
        return f"{_clock(self.low_s)}-{_clock(self.high_s)} left"


def _value(x: Any) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


def sweep_state(board: pd.DataFrame, meta: SweepMeta, elapsed_s: float) -> SweepState:
    """The state the table shows, from leaderboard rows (best first) and ``sweep.json``."""
    metric = meta.objective.metric
    counts = {str(k): int(v) for k, v in board["status"].value_counts().items()} if len(
        board) else {}
    running = [(str(r.trial_id), int(r.epochs_run), _value(getattr(r, metric, None)))
               for r in board.itertuples() if r.status == STATUS_RUNNING]
    scored = board[board[metric].notna()] if metric in board.columns else board.iloc[:0]
    best = scored.iloc[0].to_dict() if len(scored) else None
    return SweepState(counts, running, best, meta.num_samples, meta.max_epochs, metric,
                      list(meta.params), elapsed_s, time_left(board, meta, elapsed_s))


def _budget(meta: SweepMeta) -> dict[str, Any]:
    """The sweep's budget: its file's, with the command line's overrides."""
    budget = dict(meta.space.get("budget") or {})
    if "time_budget" in meta.overrides:
        budget["time_budget_s"] = meta.overrides["time_budget"]
    return budget


def _rungs(meta: SweepMeta, max_epochs: int) -> list[int]:
    """The epochs at which the scheduler may stop a trial ([] where it never does, or at
    any epoch)."""
    scheduler = meta.scheduler.get("name", "asha")
    if scheduler == "none":
        return []
    budget = _budget(meta)
    grace = min(int(budget.get("grace_period", 1)), max_epochs)
    if scheduler != "asha":
        return list(range(grace, max_epochs + 1))
    factor, rungs = int(budget.get("reduction_factor", 2)), [grace]
    while rungs[-1] * factor < max_epochs:
        rungs.append(rungs[-1] * factor)
    return rungs


def time_left(board: pd.DataFrame, meta: SweepMeta, elapsed_s: float) -> TimeLeft | None:
    """The time the sweep has left, from the epochs its running and unstarted trials can
    still train (at most ``max_epochs`` each; at least up to the scheduler's next rung) at
    the pace its trials have trained so far. None before any epoch was trained."""
    epochs_run = board["epochs_run"].fillna(0).astype(int) if "epochs_run" in board else []
    done = int(sum(epochs_run))
    if done == 0 or elapsed_s <= 0:
        return None
    max_epochs, num_samples = meta.max_epochs, meta.num_samples
    rungs = _rungs(meta, max_epochs)
    running = [int(e) for e, s in zip(epochs_run, board["status"], strict=True)
               if s == STATUS_RUNNING]
    unstarted = max(0, num_samples - len(board))
    # Most: every trial runs to max_epochs. Least: each stops at its next rung.
    high = [max_epochs - e for e in running] + [max_epochs] * unstarted
    low = [next((r for r in rungs if r > e), max_epochs) - e if e not in rungs else 0
           for e in running] + [rungs[0] if rungs else max_epochs] * unstarted
    budget = _budget(meta)
    if budget.get("total_epochs"):
        cap = max(0, int(budget["total_epochs"]) - done)
        low, high = [min(sum(low), cap)], [min(sum(high), cap)]
    slots = max(1, len(running))
    epoch_s = elapsed_s * slots / done  # one epoch of one trial, at the pace so far
    high_s = (sum(high) / slots + max(high, default=0) * (1 - 1 / slots)) * epoch_s
    low_s = max(sum(low) / slots, max(low, default=0)) * epoch_s
    limit = budget.get("time_budget_s")
    if limit:  # a limit of each run: earlier runs of a resumed sweep do not count
        run_elapsed_s = elapsed_s - meta.wall_time_s
        remaining = max(0.0, float(limit) - run_elapsed_s)
        if remaining < high_s:
            return TimeLeft(min(low_s, remaining), remaining, capped=True)
    return TimeLeft(low_s, high_s)


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def headline(state: SweepState) -> str:
    """One line: trials by status, elapsed time and the estimate of what remains."""
    order = ["running", "completed", "early-stopped", "errored", "interrupted", "pending"]
    parts = [f"{state.counts[s]} {s}" for s in order if state.counts.get(s)]
    finished = sum(state.counts.get(s, 0) for s in FINISHED_STATUSES)
    left = state.left
    eta = "" if left is None or finished >= state.num_samples else f", {left.text()}"
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

    def __init__(self, meta: SweepMeta, started: float, board: pd.DataFrame,
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
    folder = ExperimentFolder(exp_dir)
    board = (folder.read_leaderboard() if folder.leaderboard.is_file()
             else pd.DataFrame({"status": []}))
    meta = folder.read_meta()
    holder = lock_holder(exp_dir)
    elapsed = meta.wall_time_s
    if holder is not None:
        elapsed += max(0.0, time.time() - (meta.run_started_at or time.time()))
    else:  # rows still "running" were stopped with their sweep (a kill leaves them so)
        board["status"] = board["status"].replace(STATUS_RUNNING, STATUS_INTERRUPTED)
    return sweep_state(board, meta, elapsed), holder


def folder_status(exp_dir: Path) -> Group:
    """What ``hpsearch status`` shows: the table, and whether a sweep is running it."""
    state, holder = folder_state(exp_dir)
    running = f"running ({holder})" if holder else "not running"
    if holder is None:
        users = processes_using(exp_dir)
        if users:
            running += (f", but {len(users)} process(es) still have files open in it (pid "
                        f"{', '.join(map(str, users))}): wait before copying or resuming it")
    return Group(Text(f"{exp_dir}: {running}"), render(state))
