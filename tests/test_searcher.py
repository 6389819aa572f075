"""The sweep's search method: Optuna samplers and Tune schedulers from the space file, the
combinations refused, the searcher's told states and values, its save and restore, Pareto
ranks and the pinned versions. No Ray cluster: the searcher is driven as Tune drives it."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from hpsearch.scripts.leaderboard import rank_rows
from hpsearch.scripts.pareto import pareto_ranks
from hpsearch.scripts.study import open_journal
from hpsearch.scripts.tune.schedulers import make_scheduler
from hpsearch.scripts.tune.searcher import OptunaSearcher, make_sampler, objective_values
from hpsearch.search_spaces.errors import ConfigError
from hpsearch.search_spaces.rungs import decision_epochs
from hpsearch.search_spaces.schema import Objective, parse_space
from hpsearch.search_spaces.trials import sampled_params, trial_config

REPO = Path(__file__).resolve().parents[1]

BASE = {
    "experiment": "t",
    "data": {"name": "mnist"},
    "model": {"family": "mlp"},
    "optimizer": {"name": "adam"},
    "search": {
        "model.dropout": {"type": "float", "low": 0.0, "high": 0.5},
        "optimizer.lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True},
    },
    "budget": {"num_samples": 4, "max_epochs": 4, "grace_period": 1},
}


def _space(**changes):
    raw = copy.deepcopy(BASE)
    raw.update(changes)
    return parse_space(raw, "t.yaml")


# -- the space file's sampler, scheduler and objectives -------------------------------------


def test_defaults_are_tpe_and_asha_with_one_objective():
    space = _space()
    assert space.sampler.name == "tpe" and space.scheduler.name == "asha"
    assert [o.metric for o in space.objectives] == ["val_acc"] and not space.multi_objective
    assert isinstance(make_sampler(space), optuna.samplers.TPESampler)


@pytest.mark.parametrize("spec, cls", [
    ({"name": "tpe", "n_startup_trials": 3, "multivariate": True}, "TPESampler"),
    ("random", "RandomSampler"),
    ({"name": "gp", "n_startup_trials": 4}, "GPSampler"),
    ({"name": "cmaes", "popsize": 6}, "CmaEsSampler"),
    ({"name": "qmc", "qmc_type": "halton", "scramble": True}, "QMCSampler"),
    ({"name": "nsga2", "population_size": 8}, "NSGAIISampler"),
    ({"name": "rung_tpe", "prior_weight": 0.3}, "RungTPESampler"),
])
def test_each_sampler_is_built_with_its_options(spec, cls):
    space = _space(sampler=spec)
    sampler = make_sampler(space)
    assert type(sampler).__name__ == cls


def test_sampler_options_reach_optuna_and_the_seed_defaults_to_the_space_seed():
    space = _space(sampler={"name": "tpe", "n_startup_trials": 3}, seed=7)
    assert space.sampler.n_startup_trials == 3 and space.sampler.seed is None
    draws = []
    for _ in range(2):
        study = optuna.create_study(sampler=make_sampler(space))
        draws.append([study.ask().suggest_float("x", 0, 1) for _ in range(3)])
    assert draws[0] == draws[1]  # seeded by the space's seed: the same draws


@pytest.mark.parametrize("spec, cls, epochs", [
    ("asha", "AsyncHyperBandScheduler", {1, 2, 4}),
    ({"name": "hyperband", "brackets": 2}, "AsyncHyperBandScheduler", {1, 2, 4}),
    ({"name": "median", "min_samples_required": 2}, "MedianStoppingRule", {1, 2, 3, 4}),
    ("none", "FIFOScheduler", set()),
])
def test_each_scheduler_and_the_epochs_where_it_may_stop_a_trial(spec, cls, epochs):
    space = _space(scheduler=spec)
    scheduler = make_scheduler(space)
    assert type(scheduler).__name__ == cls
    assert decision_epochs(space) == epochs


def test_hyperband_brackets_rungs_are_among_the_decision_epochs():
    space = _space(scheduler={"name": "hyperband", "brackets": 3},
                   budget={"num_samples": 4, "max_epochs": 27, "grace_period": 1,
                           "reduction_factor": 3})
    scheduler = make_scheduler(space)
    rungs = {math.ceil(m) for b in scheduler._brackets for m, _ in b._rungs}  # Ray's own
    assert len(scheduler._brackets) == 3 and rungs == decision_epochs(space)


def test_a_list_of_objectives_makes_a_multi_objective_study_without_early_stopping():
    space = _space(objective=[{"metric": "val_acc", "mode": "max"},
                              {"metric": "param_count", "mode": "min"}])
    assert space.multi_objective and space.objective.metric == "val_acc"
    assert space.scheduler.name == "none"  # the default when there are several


@pytest.mark.parametrize("changes, message", [
    ({"sampler": "annealing"}, r"sampler.name: unknown sampler 'annealing' \(known: tpe, random"),
    ({"sampler": {"name": "random", "n_startup_trials": 3}},
     r"sampler.n_startup_trials: unknown key"),
    ({"scheduler": {"name": "asha", "brackets": 2}}, r"scheduler.brackets: unknown key"),
    ({"scheduler": {"name": "hyperband", "brackets": 0}}, r"brackets: must be at least 1"),
    ({"objective": [{"metric": "val_acc"}, {"metric": "param_count", "mode": "min"}],
      "sampler": "cmaes"}, r"cmaes optimizes one objective, this study has 2"),
    ({"objective": [{"metric": "val_acc"}, {"metric": "param_count", "mode": "min"}],
      "scheduler": "asha"}, r"asha stops trials by one objective.*scheduler: none"),
    ({"search": {"optimizer.name": {"type": "choice", "values": ["adam", "sgd"]}},
      "sampler": "cmaes"}, r"cmaes cannot model search.optimizer.name \(a choice\)"),
    ({"search": {"model.hidden": {"type": "list", "length": {"type": "int", "low": 1,
                                                              "high": 2},
                                  "each": {"type": "int", "low": 8, "high": 16}}},
      "sampler": "qmc"}, r"qmc cannot model search.model.hidden \(a list of drawn length\)"),
    ({"objective": [{"metric": "param_count", "mode": "min"}, {"metric": "val_acc"}]},
     r"param_count is known once per trial"),
    ({"objective": [{"metric": "val_acc"}, {"metric": "val_acc", "mode": "min"}]},
     r"listed twice"),
    ({"objective": [{"metric": "val_acc"}, {"metric": "epoch_time", "mode": "min"}]},
     r"objective\[1\].metric: a later objective must be"),
    ({"objective": []}, r"objective: empty list"),
])
def test_combinations_that_cannot_work_are_refused_in_one_line(changes, message):
    with pytest.raises(ConfigError, match=message) as info:
        _space(**changes)
    assert str(info.value).startswith("t.yaml: ") and "\n" not in str(info.value)


# -- the searcher, driven as Tune drives it ---------------------------------------------


def _result(epoch: int, best: float, **extra) -> dict:
    return {"epoch": epoch, "best_value": best, "param_count": 1234, "best_epoch": epoch,
            **extra}


def _searcher(tmp_path: Path, space=None) -> OptunaSearcher:
    space = space or _space(start_points=[{"model.dropout": 0.1, "optimizer.lr": 0.01}])
    return OptunaSearcher(space, str(tmp_path / "optuna.log"), "study-1")


def _study(tmp_path: Path) -> optuna.Study:
    return optuna.load_study(study_name="study-1", storage=open_journal(str(tmp_path /
                                                                            "optuna.log")))


def test_searcher_tells_optuna_what_happened_to_each_trial(tmp_path: Path):
    searcher = _searcher(tmp_path)
    space = searcher.space
    first = searcher.suggest("ray-a")
    assert sampled_params(space, first) == {"model.dropout": 0.1, "optimizer.lr": 0.01}
    for trial_id in ("ray-b", "ray-c"):
        searcher.suggest(trial_id)
    # a: all 4 epochs, best at epoch 3; Tune gives the last result to on_trial_complete.
    for epoch, best in ((1, 0.5), (2, 0.7), (3, 0.8)):
        searcher.on_trial_result("ray-a", _result(epoch, best))
    searcher.on_trial_complete("ray-a", _result(4, 0.8))
    # b: stopped by the scheduler after 2 epochs; c: errored after 1.
    searcher.on_trial_result("ray-b", _result(1, 0.3))
    searcher.on_trial_complete("ray-b", _result(2, 0.4))
    searcher.on_trial_result("ray-c", _result(1, 0.2))
    searcher.on_trial_complete("ray-c", None, error=True)  # as Tune tells an error

    trials = {t.user_attrs["ray_trial_id"]: t for t in _study(tmp_path).trials}
    a, b, c = trials["ray-a"], trials["ray-b"], trials["ray-c"]
    assert (a.state, a.value, a.intermediate_values) == (
        TrialState.COMPLETE, 0.8, {1: 0.5, 2: 0.7, 3: 0.8, 4: 0.8})
    assert a.user_attrs == {"ray_trial_id": "ray-a", "status": "completed", "epochs_run": 4,
                            "param_count": 1234, "best_epoch": 4}
    assert (b.state, b.value, b.intermediate_values) == (TrialState.PRUNED, 0.4,
                                                         {1: 0.3, 2: 0.4})
    assert b.user_attrs["status"] == "early-stopped" and b.user_attrs["epochs_run"] == 2
    assert (c.state, c.value) == (TrialState.FAIL, None)
    assert c.user_attrs["status"] == "errored" and c.user_attrs["epochs_run"] == 1
    assert c.intermediate_values == {1: 0.2}


def test_searcher_resumes_from_its_saved_state(tmp_path: Path):
    import pickle

    searcher = _searcher(tmp_path)
    pickled = pickle.dumps(searcher)  # as Tune saves it with the experiment, at the start
    searcher.suggest("ray-a")
    searcher.on_trial_result("ray-a", _result(1, 0.5))
    searcher.suggest("ray-b")
    searcher.on_trial_complete("ray-b", _result(4, 0.9))
    searcher.save(str(tmp_path / "state.pkl"))
    # A driver killed after asking Optuna for one more trial, before its state was saved.
    searcher.suggest("ray-lost")

    # What --resume does: the searcher pickled with the experiment, then its saved state.
    restored = pickle.loads(pickled)
    restored.restore(str(tmp_path / "state.pkl"))
    restored.on_trial_result("ray-a", _result(1, 0.55))  # epoch 1 again, after a restart
    restored.on_trial_result("ray-a", _result(2, 0.6))
    restored.on_trial_complete("ray-a", _result(4, 0.7))
    restored.on_trial_complete("ray-b", _result(4, 0.1))  # already told: ignored

    trials = {t.user_attrs["ray_trial_id"]: t for t in _study(tmp_path).trials}
    assert trials["ray-a"].intermediate_values == {1: 0.5, 2: 0.6, 4: 0.7}
    assert (trials["ray-a"].state, trials["ray-a"].value) == (TrialState.COMPLETE, 0.7)
    assert trials["ray-b"].value == 0.9
    assert trials["ray-lost"].state == TrialState.FAIL  # not left RUNNING for ever
    assert not [t for t in _study(tmp_path).trials if t.state == TrialState.RUNNING]



def test_objective_values_are_the_leaderboard_columns():
    space = _space(objective=[{"metric": "val_acc"}, {"metric": "param_count", "mode": "min"},
                              {"metric": "val_loss", "mode": "min"}])
    result = {"best_value": 0.9, "val_acc": 0.85, "param_count": 100, "best_val_loss": 0.3,
              "val_loss": 0.4}
    assert objective_values(space, result) == [0.9, 100.0, 0.3]


def test_multi_objective_searcher_tells_every_value(tmp_path: Path):
    space = _space(objective=[{"metric": "val_acc"}, {"metric": "param_count", "mode": "min"}])
    searcher = _searcher(tmp_path, space)
    searcher.suggest("ray-a")
    searcher.on_trial_result("ray-a", _result(1, 0.5))  # no intermediate values: skipped
    searcher.on_trial_complete("ray-a", _result(4, 0.8))
    study = _study(tmp_path)
    assert len(study.directions) == 2
    (trial,) = study.trials
    assert trial.state == TrialState.COMPLETE and trial.values == [0.8, 1234.0]
    assert trial.intermediate_values == {}


# -- Pareto ranks -------------------------------------------------------------------------


def test_pareto_ranks_peel_fronts_off_in_turn():
    # (accuracy max, parameters min)
    points = [(0.99, 1000), (0.98, 100), (0.97, 500), (0.95, 50), (0.96, 2000), (0.99, 1000)]
    assert pareto_ranks(points, ["max", "min"]) == [0, 0, 1, 0, 2, 0]


def test_leaderboard_ranks_by_pareto_rank_then_the_first_objective():
    objs = [Objective(metric="val_acc", mode="max"), Objective(metric="param_count", mode="min")]
    rows = [
        {"trial_id": "big", "status": "completed", "val_acc": 0.99, "param_count": 1000},
        {"trial_id": "dominated", "status": "completed", "val_acc": 0.97, "param_count": 500},
        {"trial_id": "small", "status": "completed", "val_acc": 0.98, "param_count": 100},
        {"trial_id": "broken", "status": "errored", "val_acc": math.nan, "param_count": 10},
    ]
    ranked = rank_rows(rows, objs)
    assert [r["trial_id"] for r in ranked] == ["big", "small", "dominated", "broken"]
    assert [r.get("pareto_rank") for r in ranked] == [0, 0, 1, None]
    assert [r["rank"] for r in ranked] == [1, 2, 3, 4]


@pytest.mark.parametrize("scheduler, fair, ends", [
    ("asha", True, [1, 2]), ("asha", False, None), ("median", True, None), ("none", True, None),
])
def test_fair_rungs_end_a_decaying_schedule_s_cycles_at_the_rungs(scheduler, fair, ends):
    space = _space(scheduler=scheduler, budget={"num_samples": 4, "max_epochs": 4,
                                                "grace_period": 1, "fair_rungs": fair},
                   search={"optimizer.schedule": {"type": "choice",
                                                  "values": ["none", "cosine", "onecycle"]}})
    for schedule in ("cosine", "onecycle"):
        cfg = trial_config(space, {"optimizer.schedule": schedule})
        assert list(cfg.optim.cycle_ends) == (ends or [])
    assert trial_config(space, {"optimizer.schedule": "none"}).optim.cycle_ends == ()


def test_a_fair_rungs_trial_config_round_trips_for_retrain():
    space = _space(budget={"num_samples": 4, "max_epochs": 8, "grace_period": 2,
                           "fair_rungs": True},
                   optimizer={"name": "adam", "schedule": "onecycle"})
    cfg = trial_config(space, {})
    assert cfg.optim.cycle_ends == (2, 4)
    from hpsearch.search_spaces.train_config import TrainConfig

    again = TrainConfig.from_dict(json.loads(cfg.to_json()))
    assert again == cfg and again.optim.cycle_ends == (2, 4)


def test_fair_rungs_are_the_default_but_not_for_a_sweep_recorded_before(tmp_path: Path):
    from hpsearch.scripts.experiment_folder import ExperimentFolder
    from hpsearch.scripts.tune.options import SweepOptions, space_from_meta, sweep_meta

    budget = {"num_samples": 4, "max_epochs": 8, "grace_period": 2}
    raw = {**copy.deepcopy(BASE), "budget": budget,
           "optimizer": {"name": "adam", "schedule": "cosine"}}
    space = parse_space(raw, "t.yaml")
    assert space.budget.fair_rungs and trial_config(space, {}).optim.cycle_ends == (2, 4)
    folder = ExperimentFolder(tmp_path)
    meta = sweep_meta(space, raw, SweepOptions(), "new")
    assert meta.space["budget"]["fair_rungs"] is True  # stored as resolved
    folder.write_meta(meta)
    assert space_from_meta(folder.read_meta()).budget.fair_rungs
    # A sweep.json written before fair rungs were the default has no such key: it ran without.
    old = meta.model_copy(update={"space": {**meta.space, "budget": budget}})
    folder.write_meta(old)
    resumed = space_from_meta(folder.read_meta())
    assert not resumed.budget.fair_rungs and trial_config(resumed, {}).optim.cycle_ends == ()
