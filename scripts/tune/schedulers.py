"""The sweep's trial scheduler (early stopping), built from the space's ``scheduler:``, and
the epochs at which it may stop a trial."""

from __future__ import annotations

from typing import Any

from hpsearch.search_spaces.schema import SearchSpace

# What the scheduler and the searcher go by: the trial's objective as the sweep defines it,
# the best epoch's value so far (reported by the trial at every epoch).
OBJECTIVE_SO_FAR = "best_value"
TIME_ATTR = "epoch"


def make_scheduler(space: SearchSpace) -> Any:
    """Ray Tune's scheduler for ``space.scheduler``, stopping trials by the ``epoch`` they
    report and by the best value of the first objective so far."""
    from ray.tune.schedulers import AsyncHyperBandScheduler, FIFOScheduler, MedianStoppingRule

    spec, budget = space.scheduler, space.budget
    if spec.name in ("asha", "hyperband"):
        return AsyncHyperBandScheduler(
            time_attr=TIME_ATTR,
            max_t=budget.max_epochs,
            grace_period=budget.grace_period,
            reduction_factor=budget.reduction_factor,
            brackets=spec.brackets if spec.name == "hyperband" else 1,
        )
    if spec.name == "median":
        return MedianStoppingRule(
            time_attr=TIME_ATTR,
            grace_period=budget.grace_period,
            min_samples_required=spec.min_samples_required,
        )
    return FIFOScheduler()


def decision_epochs(space: SearchSpace) -> frozenset[int]:
    """The epochs at which the sweep's scheduler may stop a trial; at any other epoch it
    lets the trial continue, whatever the trial reports.

    ASHA's rungs are ``grace_period * reduction_factor**k`` up to ``max_epochs``; HyperBand's
    other brackets start higher on the same ladder, so their rungs are among these. The
    median rule may stop a trial at any epoch from its grace period on."""
    budget, name = space.budget, space.scheduler.name
    if name == "none":
        return frozenset()
    if name == "median":
        return frozenset(range(budget.grace_period, budget.max_epochs + 1))
    epochs, epoch = set(), budget.grace_period
    while epoch <= budget.max_epochs:
        epochs.add(epoch)
        epoch *= budget.reduction_factor
    return frozenset(epochs)


def rungs(space: SearchSpace) -> tuple[int, ...]:
    """The epochs at which trials are compared: the scheduler's, and the full run's last."""
    return tuple(sorted(decision_epochs(space) | {space.budget.max_epochs}))


def expected_trials(space: SearchSpace) -> int:
    """About how many trials the budget affords: ``num_samples``, or fewer where
    ``total_epochs`` runs out first (under ASHA a share ``1/reduction_factor`` of the trials
    at a rung goes on to the next)."""
    budget = space.budget
    if budget.total_epochs is None:
        return budget.num_samples
    epochs, previous, share = 0.0, 0, 1.0
    for rung in (rungs(space) if space.scheduler.name in ("asha", "hyperband")
                 else (budget.max_epochs,)):
        epochs += share * (rung - previous)
        previous, share = rung, share / budget.reduction_factor
    return max(1, min(budget.num_samples, int(budget.total_epochs / epochs)))
