"""What ends a sweep before its trials run out: a time budget, a budget of epochs."""

from __future__ import annotations

import time
from typing import Any, ClassVar

from hpsearch.search_spaces.schema import Budget
from ray import tune


class TotalEpochs(tune.Stopper):
    """Ends the sweep once its trials have trained ``limit`` epochs in all (each trial
    counted up to the latest epoch it reported)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.epochs: dict[str, int] = {}

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        self.epochs[trial_id] = max(self.epochs.get(trial_id, 0), int(result.get("epoch", 0)))
        return False

    def stop_all(self) -> bool:
        return sum(self.epochs.values()) >= self.limit


class RunTimeBudget(tune.Stopper):
    """Ends the sweep ``budget_s`` seconds after this run of it started (``None``: never).

    Each run of a resumed sweep gets the budget given to it: Tune pickles its stopper with
    its state and restores it on ``--resume``, so this stopper pickles as a reference to the
    run's own (the one made last in this process) instead of carrying the old deadline."""

    current: ClassVar[RunTimeBudget | None] = None

    def __init__(self, budget_s: float | None) -> None:
        self.budget_s = budget_s
        self.deadline = None if budget_s is None else time.monotonic() + budget_s
        RunTimeBudget.current = self

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        return False

    def stop_all(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline

    def __reduce__(self) -> tuple[Any, tuple]:
        return _current_time_budget, ()


def _current_time_budget() -> RunTimeBudget:
    return RunTimeBudget.current or RunTimeBudget(None)


def budget_stopper(budget: Budget) -> tune.Stopper:
    """The sweep's stopper: this run's time budget, and the sweep's budget of epochs."""
    time_budget = RunTimeBudget(budget.time_budget_s)
    if budget.total_epochs is None:
        return time_budget
    return tune.stopper.CombinedStopper(time_budget, TotalEpochs(budget.total_epochs))
