"""The sweep's trial scheduler (early stopping), built from the space's ``scheduler:``; the
epochs at which it may stop a trial are :mod:`hpsearch.search_spaces.rungs`'."""

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
