"""What ends a sweep before its trials run out: a time budget, a budget of epochs, an
objective that the model never logs."""

from __future__ import annotations

import time
from typing import Any, ClassVar

from ray import tune

from hpsearch.scripts.leaderboard import FAILED_KEY
from hpsearch.scripts.train import MetricNotLoggedError
from hpsearch.search_spaces.errors import ConfigError
from hpsearch.search_spaces.schema import Budget


class ObjectiveNotLogged(ConfigError):
    """The model logs no objective: every trial would fail the same way."""


class ObjectiveNeverLogged(tune.Stopper):
    """Ends the sweep at the first trial whose model did not log the objective in its first
    epoch (the user's own module may log other names); ``problem`` then says what it logged."""

    def __init__(self) -> None:
        self.problem: str | None = None

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        # The trial's failure report names the error's type first (trainable.failure_report).
        error, prefix = str(result.get(FAILED_KEY) or ""), f"{MetricNotLoggedError.__name__}: "
        if error.startswith(prefix):
            self.problem = error.removeprefix(prefix)
        return False

    def stop_all(self) -> bool:
        return self.problem is not None


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


def sweep_stopper(budget: Budget, never_logged: ObjectiveNeverLogged) -> tune.Stopper:
    """The sweep's stopper: this run's time budget, the sweep's budget of epochs, and
    ``never_logged``."""
    stoppers: list[tune.Stopper] = [RunTimeBudget(budget.time_budget_s), never_logged]
    if budget.total_epochs is not None:
        stoppers.append(TotalEpochs(budget.total_epochs))
    return tune.stopper.CombinedStopper(*stoppers)
