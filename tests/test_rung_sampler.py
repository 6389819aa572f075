"""``sampler: rung_tpe``: the model fitted on the rungs, the start points' prior whose weight
decays and which is forgotten when bad, and its state across ``--resume``. Optuna studies in
memory on a one-parameter objective, driven as the searcher drives them; no Ray."""

from __future__ import annotations

import copy
import pickle
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from hpsearch.scripts.rung_sampler import (
    MODEL,
    PRIOR,
    RANDOM,
    START,
    RungTPESampler,
    startup_points,
)
from hpsearch.scripts.study import open_journal
from hpsearch.scripts.tune.searcher import OptunaSearcher, make_sampler
from hpsearch.search_spaces.rungs import expected_trials, rungs
from hpsearch.search_spaces.schema import parse_space

RUNGS = (1, 2, 4)


def _value(x: float, epoch: int, peak: float) -> float:
    """Accuracy-like: best at ``peak``, growing with the epochs."""
    return 1.0 - (x - peak) ** 2 - 0.1 / epoch


def _run(sampler: RungTPESampler, trials: int, peak: float, start: float | None = None,
         promote_above: float = 0.95) -> optuna.Study:
    """Trials as ASHA runs them: every one reports epoch 1; those above ``promote_above``
    go on to epochs 2 and 4 and complete, the others are pruned after epoch 1."""
    study = optuna.create_study(direction="maximize", sampler=sampler)
    if start is not None:
        study.enqueue_trial({"x": start})
    for _ in range(trials):
        _one_trial(study, peak, promote_above)
    return study


def _one_trial(study: optuna.Study, peak: float, promote_above: float = 0.95) -> float:
    trial = study.ask()
    x = trial.suggest_float("x", 0.0, 1.0)
    trial.report(_value(x, 1, peak), 1)
    if _value(x, 1, peak) < promote_above - 0.1:
        study.tell(trial, state=TrialState.PRUNED)
    else:
        trial.report(_value(x, 2, peak), 2)
        trial.report(_value(x, 4, peak), 4)
        study.tell(trial, _value(x, 4, peak))
    return x


def _proposals(sampler: RungTPESampler, study: optuna.Study, how: str) -> list[float]:
    return [t.params["x"] for t in study.trials if sampler.proposed[t.number][0] == how]


def test_the_model_learns_from_trials_stopped_at_the_first_rung():
    # No trial ever completes (all stopped at epoch 1): TPE on finished trials would have
    # nothing to fit, the rung model fits the first rung's values.
    sampler = RungTPESampler(RUNGS, min_points=5, seed=0)
    study = _run(sampler, 40, peak=0.8, promote_above=2.0)
    assert not study.get_trials(states=(TrialState.COMPLETE,))
    modelled, drawn = _proposals(sampler, study, MODEL), _proposals(sampler, study, RANDOM)
    assert len(drawn) == 5 and len(modelled) == 35  # random until 5 values, then the model
    def median_distance(xs):
        return sorted(abs(x - 0.8) for x in xs)[len(xs) // 2]

    assert median_distance(modelled[-20:]) < 0.5 * median_distance(drawn)


def test_trials_are_ranked_by_the_rung_they_reached_then_by_their_value_there():
    sampler = RungTPESampler(RUNGS, seed=1)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    cases = {  # name: (values by epoch, state)
        "pruned high at 1": ({1: 0.9}, TrialState.PRUNED),
        "pruned low at 2": ({1: 0.5, 2: 0.55}, TrialState.PRUNED),
        "pruned high at 2": ({1: 0.6, 2: 0.8}, TrialState.PRUNED),
        "running past 2": ({1: 0.4, 2: 0.5, 3: 0.6}, TrialState.RUNNING),
        "complete": ({1: 0.3, 2: 0.4, 4: 0.45}, TrialState.COMPLETE),
        "not at a rung yet": ({}, TrialState.RUNNING),
    }
    for name, (values, state) in cases.items():
        trial = study.ask()
        trial.suggest_float("x", 0.0, 1.0)
        trial.set_user_attr("name", name)
        for step, value in values.items():
            trial.report(value, step)
        if state != TrialState.RUNNING:
            study.tell(trial, list(values.values())[-1] if state == TrialState.COMPLETE
                       else None, state=state)
    ranked = [t.user_attrs["name"] for t, _ in sorted(sampler.scores(study),
                                                       key=lambda pair: -pair[1])]
    assert ranked == ["complete", "running past 2", "pruned high at 2", "pruned low at 2",
                      "pruned high at 1"]


def test_the_start_points_weight_decays_as_values_come_in():
    sampler = RungTPESampler(RUNGS, centers=[{"x": 0.7}], min_points=3, prior_weight=0.5,
                             prior_halflife=10, seed=0)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.enqueue_trial({"x": 0.7})
    weights = [sampler.prior_probability(study)]
    for _ in range(30):
        _one_trial(study, peak=0.7)
        weights.append(sampler.prior_probability(study))
    assert weights[0] == 0.5  # nothing observed yet: the full weight
    assert all(b <= a for a, b in zip(weights, weights[1:], strict=False))
    assert weights[-1] == pytest.approx(0.5 * 10 / (10 + 30))  # a good prior stays
    assert sampler.proposed[0] == (START, None)
    around = _proposals(sampler, study, PRIOR)
    assert around and max(abs(x - 0.7) for x in around) < 0.5


def test_a_bad_prior_is_forgotten():
    # The start point sits at 0.05; the best configs are near 0.9.
    sampler = RungTPESampler(RUNGS, centers=[{"x": 0.05}], min_points=3, prior_weight=0.5,
                             prior_halflife=1000, seed=3)
    study = _run(sampler, 30, peak=0.9, start=0.05)
    assert sum(how == PRIOR for how, _ in sampler.proposed.values()) >= 2
    assert sampler.prior_quality(study) == 0.0 and sampler.prior_probability(study) == 0.0
    for _ in range(10):
        _one_trial(study, peak=0.9)
    later = [sampler.proposed[t.number][0] for t in study.trials[-10:]]
    assert later == [MODEL] * 10


def test_no_start_points_no_prior():
    sampler = RungTPESampler(RUNGS, min_points=3, seed=0)
    study = _run(sampler, 10, peak=0.5)
    assert sampler.prior_probability(study) == 0.0
    assert {how for how, _ in sampler.proposed.values()} == {RANDOM, MODEL}


def test_the_state_survives_a_pickle_round_trip():
    sampler = RungTPESampler(RUNGS, centers=[{"x": 0.3}], min_points=3, seed=5)
    study = _run(sampler, 12, peak=0.6, start=0.3)
    twin = pickle.loads(pickle.dumps(sampler))
    copy_study = optuna.create_study(direction="maximize", sampler=twin)
    copy_study.add_trials(study.trials)
    ahead = [_one_trial(study, 0.6) for _ in range(6)]
    assert [_one_trial(copy_study, 0.6) for _ in range(6)] == ahead
    assert twin.proposed == sampler.proposed


def test_the_budget_sizes_the_random_start_up():
    space = parse_space({
        "experiment": "t", "data": {"name": "mnist"}, "model": {"family": "mlp"},
        "search": {"optimizer.lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True},
                   "model.dropout": {"type": "float", "low": 0.0, "high": 0.5}},
        "sampler": "rung_tpe",
        "budget": {"num_samples": 1000, "max_epochs": 8, "grace_period": 1,
                   "reduction_factor": 2, "total_epochs": 128}}, "t.yaml")
    assert rungs(space) == (1, 2, 4, 8)
    # 1 + 1/2 + 2/4 + 4/8 = 2.5 epochs a trial under ASHA: about 51 trials.
    assert expected_trials(space) == 51
    assert make_sampler(space).min_points == 3  # 2 parameters + 1
    assert startup_points(51, dims=10) == 5  # a tenth of the trials, under 10 + 1
    assert startup_points(200, dims=8) == 9 and startup_points(12, dims=20) == 3
    few = parse_space({
        "experiment": "t", "data": {"name": "mnist"}, "model": {"family": "mlp"},
        "search": {"model.dropout": {"type": "float", "low": 0.0, "high": 0.5}},
        "sampler": "rung_tpe", "budget": {"num_samples": 10, "max_epochs": 8}}, "t.yaml")
    assert make_sampler(few).min_points == 3  # never fewer than 3


# -- inside the sweep's searcher --------------------------------------------------------------


def _searcher_space():
    return parse_space({
        "experiment": "t", "data": {"name": "mnist"}, "model": {"family": "mlp"},
        "optimizer": {"name": "adam"},
        "search": {"model.dropout": {"type": "float", "low": 0.0, "high": 0.5},
                   "optimizer.lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True}},
        "start_points": [{"model.dropout": 0.1, "optimizer.lr": 0.01}],
        "sampler": {"name": "rung_tpe", "min_points": 2},
        "budget": {"num_samples": 20, "max_epochs": 4, "grace_period": 1}}, "t.yaml")


def _result(epoch: int, best: float) -> dict:
    return {"epoch": epoch, "best_value": best, "param_count": 10, "best_epoch": epoch}


def _drive(searcher: OptunaSearcher, ids: list[str]) -> None:
    for i, trial_id in enumerate(ids):
        searcher.suggest(trial_id)
        searcher.on_trial_result(trial_id, _result(1, 0.5 + 0.01 * i))
        searcher.on_trial_complete(trial_id, _result(2, 0.6 + 0.01 * i))  # pruned at 2


def test_the_searcher_still_records_pruned_trials_their_values_and_the_proposer(tmp_path):
    searcher = OptunaSearcher(_searcher_space(), str(tmp_path / "optuna.log"), "study-1")
    _drive(searcher, ["a", "b", "c", "d"])
    study = optuna.load_study(study_name="study-1",
                              storage=open_journal(str(tmp_path / "optuna.log")))
    assert [t.state for t in study.trials] == [TrialState.PRUNED] * 4
    assert study.trials[3].intermediate_values == {1: 0.53, 2: 0.63}
    assert [t.user_attrs["proposed_by"] for t in study.trials][:1] == [START]
    assert {t.user_attrs["proposed_by"] for t in study.trials} <= {START, PRIOR, MODEL, RANDOM}


def test_the_searchers_sampler_continues_after_resume(tmp_path: Path):
    space = _searcher_space()
    runs = []
    for name in ("straight", "resumed"):
        folder = tmp_path / name
        folder.mkdir()
        searcher = OptunaSearcher(space, str(folder / "optuna.log"), "study-1")
        pickled = pickle.dumps(searcher)
        _drive(searcher, ["a", "b", "c", "d", "e"])
        if name == "resumed":
            searcher.save(str(folder / "state.pkl"))
            searcher = pickle.loads(pickled)
            searcher.restore(str(folder / "state.pkl"))
        for trial_id in ("f", "g", "h"):
            runs.append((name, copy.deepcopy(searcher.suggest(trial_id))))
            searcher.on_trial_complete(trial_id, _result(4, 0.7))
    assert [p for n, p in runs if n == "straight"] == [p for n, p in runs if n == "resumed"]
