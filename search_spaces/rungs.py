"""The epochs at which a space's scheduler compares trials (its rungs), and about how many
trials its budget affords. Plain functions of the space, so that a trial's config (the
schedule's cycles, ``budget.fair_rungs``) and the sampler can both use them without Ray."""

from __future__ import annotations

from hpsearch.search_spaces.schema import SearchSpace


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


def cycle_ends(space: SearchSpace) -> tuple[int, ...]:
    """The epochs at which a trial's decaying schedule ends a cycle: the rungs of ASHA or
    HyperBand before the last epoch, with ``budget.fair_rungs``; none otherwise."""
    if not space.budget.fair_rungs or space.scheduler.name not in ("asha", "hyperband"):
        return ()
    return tuple(r for r in sorted(decision_epochs(space)) if r < space.budget.max_epochs)
