"""Search-space files: parsing, every validation error, and the define-by-run space."""

from __future__ import annotations

import copy
import json
import os
import pickle
from pathlib import Path

import optuna
import pytest
import yaml

from hpsearch.scripts.experiment_folder import ExperimentFolder
from hpsearch.scripts.tune.cluster import environ_defaults
from hpsearch.scripts.tune.durability import back_up_state, repair_state
from hpsearch.scripts.tune.options import SweepOptions, apply_overrides, space_from_meta, sweep_meta
from hpsearch.search_spaces.errors import ConfigError
from hpsearch.search_spaces.schema import builtin_spaces, load_space, parse_space
from hpsearch.search_spaces.trials import define_by_run, flat_point, sampled_params, trial_config

# Every search-space file we ship: the five experiments and the cluster example.
ALL_SPACE_FILES = [
    *builtin_spaces(),
    Path(__file__).parents[1] / "scripts/cluster/pneumonia_xray128.yaml",
]

BASE = {
    "experiment": "t",
    "data": {"name": "mnist"},
    "model": {"family": "mlp"},
    "optimizer": {"name": "adam"},
    "search": {
        "model.hidden": {
            "type": "list",
            "length": {"type": "int", "low": 1, "high": 3},
            "each": {"type": "int", "low": 8, "high": 64, "log": True},
        },
        "optimizer.name": {"type": "choice", "values": ["adam", "sgd"]},
        "optimizer.lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True},
        "optimizer.momentum": {
            "type": "float",
            "low": 0.5,
            "high": 0.9,
            "when": {"optimizer.name": "sgd"},
        },
    },
    "budget": {"num_samples": 3, "max_epochs": 2},
}


def space_with(**changes):
    raw = copy.deepcopy(BASE)
    for dotted, value in changes.items():
        node = raw
        *parents, last = dotted.split("/")
        for key in parents:
            node = node.setdefault(key, {})
        if value is DELETE:
            del node[last]
        else:
            node[last] = value
    return raw


DELETE = object()


def test_builtin_files_cover_the_required_hyperparameters():
    names = {p.stem for p in builtin_spaces()}
    assert names >= {"mnist_mlp", "mnist_hog_mlp", "mnist_cnn", "fashion_cnn", "pneumonia_cnn"}
    searched = set()
    for path in builtin_spaces():
        space = load_space(path)
        searched |= {p.key for p in space.search}
    assert {
        "hidden",
        "dropout",
        "kernel_size",
        "filters",
        "batch_size",
        "name",
        "lr",
        "activation",
        "pixels_per_cell",
        "orientations",
        "momentum",
    } <= searched


def test_a_valid_space_parses():
    space = parse_space(BASE, "x.yaml")
    assert space.param_names == (
        "model.hidden",
        "optimizer.name",
        "optimizer.lr",
        "optimizer.momentum",
    )
    assert space.objective.metric == "val_acc" and space.budget.num_samples == 3


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"bogus": 1}, r"x.yaml: bogus: unknown key"),
        ({"model/colour": "red"}, r"x.yaml: model.colour: unknown key"),
        ({"model/family": "transformer"}, r"x.yaml: .*unknown model family 'transformer'"),
        ({"data/name": "cifar"}, r"x.yaml: .*unknown dataset 'cifar'"),
        (
            {"search/optimizer.lr": {"type": "float", "low": 1.0, "high": 0.1}},
            r"search.optimizer.lr: low \(1.0\) > high \(0.1\)",
        ),
        (
            {"search/optimizer.name": {"type": "choice", "values": []}},
            r"search.optimizer.name: empty choice list",
        ),
        (
            {"search/optimizer.lr": {"type": "float", "low": "a", "high": 0.1}},
            r"search.optimizer.lr.low: expected a number",
        ),
        (
            {"search/optimizer.lr": {"type": "gaussian", "low": 0, "high": 1}},
            r"search.optimizer.lr.type: must be one of int, float, choice",
        ),
        (
            {"search/model.colour": {"type": "choice", "values": ["red"]}},
            r"search.model.colour: .*colour: unknown key",
        ),
        (
            {"search/model.dropout": {"type": "float", "low": 0.0, "high": 1.5}},
            r"search.model.dropout: .*dropout",
        ),
        (
            {"search/optimizer.name": {"type": "choice", "values": ["adam", "adagrad"]}},
            r"search.optimizer.name: .*adagrad",
        ),
        (
            {"search/model.hidden/each": {"type": "int", "low": 0, "high": 8}},
            r"search.model.hidden: .*hidden\[0\]: must be positive, got 0",
        ),
        (
            {"search/optimizer.momentum/when": {"optimizer.nope": "sgd"}},
            r"when.optimizer.nope: must name a parameter listed before",
        ),
        ({"budget/num_samples": 0}, r"budget.num_samples: must be at least 1"),
        ({"budget/max_epochs": "ten"}, r"budget.max_epochs: expected an integer"),
        ({"resources/gpus_per_trial": -1}, r"resources.gpus_per_trial"),
        ({"experiment": DELETE}, r"x.yaml: experiment: missing"),
        ({"objective": {"metric": "val_acc", "mode": "up"}}, r"objective.mode: must be one of"),
        ({"start_points": [{"model.widths": [3]}]}, r"start_points\[0\].model.widths: not a"),
        ({"start_points": [{"optimizer.name": "adamw"}]},
         r"start_points\[0\].optimizer.name: 'adamw' is not one of \['adam', 'sgd'\]"),
    ],
)
def test_validation_errors_name_file_key_and_problem(changes, message):
    with pytest.raises(ConfigError, match=message):
        parse_space(space_with(**changes), "x.yaml")


def test_malformed_and_missing_files(tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("experiment: x\ndata: [unclosed\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: not valid YAML at line"):
        load_space(bad)
    with pytest.raises(ConfigError, match=r"nope.yaml: search-space file not found"):
        load_space(tmp_path / "nope.yaml")


def test_define_by_run_draws_lists_and_conditionals_and_pickles():
    space = parse_space(BASE, "x.yaml")
    pickle.loads(pickle.dumps(space))  # the searcher pickles it for --resume
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen_sgd = seen_adam = False
    for _ in range(20):
        trial = study.ask()
        define_by_run(trial, space)
        params = sampled_params(space, trial.params)
        n = trial.params["model.hidden.length"]
        assert len(params["model.hidden"]) == n and 1 <= n <= 3
        cfg = trial_config(space, params)
        assert list(cfg.model.hidden) == params["model.hidden"]
        if params["optimizer.name"] == "sgd":
            seen_sgd = True
            assert 0.5 <= cfg.optim.momentum <= 0.9
        else:
            seen_adam = True
            assert "optimizer.momentum" not in trial.params
        study.tell(trial, 0.5)
    assert seen_sgd and seen_adam


def test_start_points_flatten_to_optuna_names():
    raw = space_with(start_points=[{"model.hidden": [300, 100], "optimizer.lr": 0.001}])
    space = parse_space(raw, "x.yaml")
    flat = flat_point(space, space.start_points[0])
    assert flat == {
        "model.hidden.length": 2,
        "model.hidden.0": 300,
        "model.hidden.1": 100,
        "optimizer.lr": 0.001,
    }


@pytest.mark.parametrize("path", ALL_SPACE_FILES, ids=lambda p: p.stem)
def test_every_shipped_file_builds_trial_configs(path: Path):
    """Smoke test of each shipped file: random draws give typed configs (or, for
    architectures too deep for the image, the clear 'does not fit' error)."""
    space = load_space(path)
    assert yaml.safe_load(path.read_text())["experiment"] == path.stem
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    built = 0
    for _ in range(10):
        trial = study.ask()
        define_by_run(trial, space)
        try:
            trial_config(space, sampled_params(space, trial.params))
            built += 1
        except ConfigError as exc:
            assert "pool" in str(exc) or "at least" in str(exc)
        study.tell(trial, 0.0)
    assert built >= 5


@pytest.mark.parametrize("path", ALL_SPACE_FILES, ids=lambda p: p.stem)
def test_stored_sweep_metadata_gives_back_the_same_space(path: Path, tmp_path: Path):
    # --resume rebuilds the space from sweep.json: key order (conditions refer to earlier
    # parameters) and the command-line overrides must survive the round trip.
    raw = yaml.safe_load(path.read_text())
    opts = SweepOptions(num_samples=3, max_epochs=2)
    space = apply_overrides(parse_space(raw, str(path)), opts)
    ExperimentFolder(tmp_path).write_meta(sweep_meta(space, raw, opts, "x"))
    restored = space_from_meta(ExperimentFolder(tmp_path).read_meta())
    assert restored == space


def test_tune_settings_hold_inside_the_block_only_and_yield_to_the_user_s(
    monkeypatch: pytest.MonkeyPatch,
):
    monkeypatch.delenv("HPSEARCH_TEST_A", raising=False)
    monkeypatch.setenv("HPSEARCH_TEST_B", "user")
    with environ_defaults({"HPSEARCH_TEST_A": "0", "HPSEARCH_TEST_B": "0"}):
        assert os.environ["HPSEARCH_TEST_A"] == "0"
        assert os.environ["HPSEARCH_TEST_B"] == "user"
    assert "HPSEARCH_TEST_A" not in os.environ and os.environ["HPSEARCH_TEST_B"] == "user"






def test_a_state_file_cut_short_is_replaced_by_the_last_complete_save(tmp_path: Path):
    ray_dir, backup = tmp_path / "ray", tmp_path / "ray-state-backup"
    ray_dir.mkdir()
    searcher = pickle.dumps({"trials": list(range(50))})
    (ray_dir / "experiment_state-1.json").write_text('{"trials": [1, 2]}')
    (ray_dir / "searcher-state-1.pkl").write_bytes(searcher)
    back_up_state(ray_dir, backup)
    assert not repair_state(ray_dir, backup)  # nothing damaged: left as it is

    (ray_dir / "experiment_state-1.json").write_text('{"trials": [1, 2, 3]}')
    (ray_dir / "searcher-state-1.pkl").write_bytes(searcher[: len(searcher) // 2])
    assert repair_state(ray_dir, backup)
    assert (ray_dir / "searcher-state-1.pkl").read_bytes() == searcher
    # The whole save is put back, so the files agree with each other.
    assert json.loads((ray_dir / "experiment_state-1.json").read_text()) == {"trials": [1, 2]}
    assert not repair_state(tmp_path / "elsewhere", tmp_path / "no-backup")
