"""The search report's plots keep the band where the search decided in view."""

from __future__ import annotations

import optuna
from optuna.trial import TrialState, create_trial

from hpsearch.scripts.reports.search_report import focus_range, plotted_values


def _trial(curve: list[float], pruned: bool = False) -> optuna.trial.FrozenTrial:
    distributions = {"x": optuna.distributions.FloatDistribution(0, 1)}
    return create_trial(
        state=TrialState.PRUNED if pruned else TrialState.COMPLETE,
        value=None if pruned else curve[-1], params={"x": 0.5}, distributions=distributions,
        intermediate_values=dict(enumerate(curve, start=1)))


GOOD = [_trial([0.95, 0.97, 0.985]), _trial([0.96, 0.975, 0.988]),
        _trial([0.955, 0.972, 0.982]), _trial([0.94, 0.96], pruned=True),
        _trial([0.93, 0.95], pruned=True)]


def test_two_diverged_trials_do_not_flatten_the_band_of_the_rest():
    bad = [_trial([0.10, 0.11], pruned=True), _trial([0.25, 0.30], pruned=True)]
    focus = focus_range(plotted_values(GOOD + bad, "intermediate_values"))
    assert focus is not None
    # Every value of the trials that learned is in range, rung decisions included ...
    assert focus.low <= 0.93 and focus.high >= 0.988
    # ... and the range is that band, not 0.1-1.0.
    assert focus.low > 0.9 and focus.high < 1.0
    assert focus.left_out == 2 and focus.worst == 0.10
    assert "2 trial(s) had values far outside it (as far as 0.1)" in focus.note("val_acc")


def test_a_minimised_objective_loses_its_outliers_above():
    trials = [_trial([0.3, 0.1]), _trial([0.25, 0.12]), _trial([0.4, 0.2]),
              _trial([0.35, 0.15]), _trial([5.0, 4.0], pruned=True)]
    focus = focus_range(plotted_values(trials, "intermediate_values"))
    assert focus is not None and focus.high < 1.0 and focus.low < 0.1
    assert focus.left_out == 1 and focus.worst == 5.0


def test_without_outliers_optuna_s_range_stands():
    assert focus_range(plotted_values(GOOD, "intermediate_values")) is None
    assert focus_range([[0.9], [0.1]]) is None  # too few values to judge


def test_the_history_is_judged_on_the_completed_trials_it_draws():
    trials = [*GOOD, _trial([0.1], pruned=True)]
    assert plotted_values(trials, "optimization_history") == [[0.985], [0.988], [0.982]]


def test_a_mild_straggler_is_not_worth_a_clipped_axis():
    curves = [[0.983], [0.984], [0.9835], [0.9838], [0.9832], [0.9836], [0.984], [0.979]]
    assert focus_range(curves) is None
