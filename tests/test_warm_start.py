"""``hpsearch sweep SPACE --warm-start FOLDER``: another experiment's best configs mapped onto
this space as start points, the record in sweep.json, the one-line errors, and a real sweep
that tries them first and keeps them across --resume."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import yaml

from hpsearch.scripts.experiment_folder import ExperimentFolder
from hpsearch.scripts.study import load_study, open_journal
from hpsearch.scripts.sweep_record import SweepMeta
from hpsearch.scripts.warm_start import map_point, warm_start_points
from hpsearch.search_spaces.errors import ConfigError
from hpsearch.search_spaces.schema import Objective, load_space, parse_space

REPO = Path(__file__).resolve().parents[1]
EXTERNAL = REPO / "tests" / "external"


def _space(search: dict, **extra) -> object:
    return parse_space({"experiment": "this", "data": {"name": "mnist"},
                        "model": {"family": "mlp"}, "search": search, **extra}, "this.yaml")


def _past_experiment(folder: Path, trials: list[tuple[dict, float]]) -> Path:
    """An experiment folder as hpsearch sweep leaves it: sweep.json and the Optuna journal,
    its study holding ``trials`` (flat Optuna parameters, value) as finished trials."""
    folder.mkdir(parents=True)
    storage = open_journal(str(ExperimentFolder(folder).optuna_journal))
    study = optuna.create_study(study_name="past-1", storage=storage, direction="maximize")
    for params, value in trials:
        dists = {k: (optuna.distributions.FloatDistribution(1e-5, 1.0, log=True)
                     if isinstance(v, float) else optuna.distributions.IntDistribution(1, 4096)
                     if isinstance(v, int) else optuna.distributions.CategoricalDistribution(
                         [v, "other"])) for k, v in params.items()}
        study.add_trial(optuna.trial.create_trial(params=params, distributions=dists,
                                                  value=value))
    ExperimentFolder(folder).write_meta(SweepMeta(
        experiment="past", objective=Objective(), max_epochs=4, num_samples=len(trials),
        study_name="past-1"))
    return folder


MLP_SEARCH = {
    "model.hidden": {"type": "list", "length": {"type": "int", "low": 1, "high": 2},
                     "each": {"type": "int", "low": 64, "high": 512}},
    "optimizer.name": {"type": "choice", "values": ["adam", "sgd"]},
    "optimizer.lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
    "optimizer.momentum": {"type": "float", "low": 0.5, "high": 0.99,
                           "when": {"optimizer.name": "sgd"}},
    "model.dropout": {"type": "float", "low": 0.0, "high": 0.5},
}


def test_a_trial_maps_onto_the_shared_parameters_clipped_into_this_space():
    space = _space(MLP_SEARCH)
    theirs = {"model.hidden.length": 3, "model.hidden.0": 1024, "model.hidden.1": 300,
              "model.hidden.2": 100, "optimizer.name": "rmsprop", "optimizer.lr": 0.05,
              "optimizer.momentum": 0.9, "model.kernel_size": 5}
    # 3 layers -> 2 (this space's most), 1024 -> 512; rmsprop is not one of this space's
    # optimizers, so it and the momentum that depends on sgd are left to the search; the
    # lr is clipped to 1e-2; kernel_size and dropout are not shared.
    assert map_point(space, theirs) == {"model.hidden": [512, 300], "optimizer.lr": 0.01}
    stepped = _space({"model.hidden": {"type": "list", "length": 1, "each": {
        "type": "int", "low": 64, "high": 512, "step": 64}}})
    assert map_point(stepped, {"model.hidden.length": 1, "model.hidden.0": 300}) == {
        "model.hidden": [320]}  # on the space's grid of 64, 128, ...
    sgd = map_point(space, {**theirs, "optimizer.name": "sgd"})
    assert sgd["optimizer.name"] == "sgd" and sgd["optimizer.momentum"] == 0.9


def test_the_best_trials_become_start_points_and_the_record_says_where_from(tmp_path):
    past = _past_experiment(tmp_path / "past", [
        ({"optimizer.lr": 3e-3, "model.dropout": 0.1, "model.kernel_size": 3}, 0.91),
        ({"optimizer.lr": 1e-3, "model.dropout": 0.2, "model.kernel_size": 5}, 0.95),
        ({"optimizer.lr": 5e-4, "model.dropout": 0.3, "model.kernel_size": 3}, 0.80),
        ({"optimizer.lr": 2e-4, "model.dropout": 0.4, "model.kernel_size": 3}, 0.85),
    ])
    space = _space(MLP_SEARCH)
    points, record = warm_start_points(space, past)
    assert points == ({"optimizer.lr": 1e-3, "model.dropout": 0.2},
                      {"optimizer.lr": 3e-3, "model.dropout": 0.1},
                      {"optimizer.lr": 2e-4, "model.dropout": 0.4})  # the best 3, in order
    assert record == {"from": str(past), "study": "past-1", "trials": [1, 0, 3],
                      "shared": ["optimizer.lr", "model.dropout"],
                      "start_points": list(points)}
    # Valid start points of this space, as the file's own are.
    parse_space({"experiment": "this", "data": {"name": "mnist"}, "model": {"family": "mlp"},
                 "search": MLP_SEARCH, "start_points": list(points)}, "this.yaml")


def test_a_committed_experiment_warm_starts_another_space():
    # The example: the MNIST CNN's study for the Fashion-MNIST CNN's space.
    space = load_space(REPO / "search_spaces" / "fashion_cnn.yaml")
    points, record = warm_start_points(space, REPO / "results" / "mnist_cnn")
    best = load_study(REPO / "results" / "mnist_cnn").best_trial
    assert record["trials"][0] == best.number and len(points) == 3
    assert points[0]["optimizer.lr"] == pytest.approx(best.params["optimizer.lr"])
    assert "model.filters" in record["shared"]


@pytest.mark.parametrize("make, message", [
    (lambda tmp: tmp, r"not an experiment folder \(no sweep.json\)"),
    (lambda tmp: _without_journal(tmp), r"no Optuna study \(optuna.log\)"),
    (lambda tmp: _past_experiment(tmp / "past", []), "its study has no finished trial"),
    (lambda tmp: _past_experiment(tmp / "past", [({"data.orientations": 8}, 0.9)]),
     r"its parameters \(data.orientations\) share none with this.yaml's"),
])
def test_bad_folders_are_refused_in_one_line(tmp_path: Path, make, message: str):
    folder = make(tmp_path)
    with pytest.raises(ConfigError, match=message) as caught:
        warm_start_points(_space(MLP_SEARCH), folder)
    assert "\n" not in str(caught.value) and str(folder) in str(caught.value)


def _without_journal(tmp: Path) -> Path:
    past = _past_experiment(tmp / "past", [({"optimizer.lr": 1e-3}, 0.9)])
    ExperimentFolder(past).optuna_journal.unlink()
    return past


def test_a_record_without_warm_start_is_written_back_as_it_was():
    raw = json.loads((REPO / "results" / "mnist_cnn" / "sweep.json").read_text())
    assert "warm_start" not in raw
    assert SweepMeta.model_validate(raw).to_json() == raw


# ----------------------------------------------------------------------------- the command


def _hpsearch(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hpsearch", *args], cwd=cwd,
                          env={**os.environ, "PYTHONPATH": str(EXTERNAL)},
                          capture_output=True, text=True, timeout=600)


def test_the_command_refuses_a_folder_without_a_study_in_one_line(tmp_path: Path):
    proc = _hpsearch("sweep", str(EXTERNAL / "digits.yaml"), "--warm-start", str(tmp_path),
                     "--results-dir", str(tmp_path / "results"), cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "not an experiment folder" in lines[0], proc.stderr
    assert not (tmp_path / "results").exists()  # nothing written


@pytest.mark.slow
def test_a_warm_started_sweep_tries_the_past_best_first_and_keeps_them_on_resume(
        tmp_path: Path):
    past = _past_experiment(tmp_path / "past", [
        ({"model.hidden_dim": 100, "model.lr": 0.02, "model.width": 3}, 0.97),
        ({"model.hidden_dim": 20, "model.lr": 0.002, "model.width": 3}, 0.90),
    ])
    raw = yaml.safe_load((EXTERNAL / "digits.yaml").read_text())
    raw["sampler"] = {"name": "rung_tpe"}
    space_file = tmp_path / "digits.yaml"
    space_file.write_text(yaml.safe_dump(raw, sort_keys=False))
    common = ("--results-dir", str(tmp_path / "results"), "--name", "warm", "--quiet")
    proc = _hpsearch("sweep", str(space_file), "--warm-start", str(past), "--num-samples", "3",
                     *common, cwd=EXTERNAL)
    assert proc.returncode == 0, proc.stderr[-2000:]
    exp = tmp_path / "results" / "warm"
    meta = json.loads((exp / "sweep.json").read_text())
    assert meta["warm_start"]["from"] == str(past) and meta["warm_start"]["trials"] == [0, 1]
    assert meta["warm_start"]["shared"] == ["model.hidden_dim", "model.lr"]
    trials = sorted(load_study(exp).trials, key=lambda t: t.number)
    assert [t.user_attrs["proposed_by"] for t in trials[:2]] == ["start point"] * 2
    assert [(t.params["model.hidden_dim"], t.params["model.lr"]) for t in trials[:2]] == [
        (100, 0.02), (20, 0.002)]
    assert all("data.batch_size" in t.params for t in trials)  # not shared: drawn
    assert trials[2].user_attrs["proposed_by"] in ("prior", "random", "model")

    refused = _hpsearch("sweep", str(space_file), "--warm-start", str(tmp_path), "--resume",
                        *common, cwd=EXTERNAL)
    assert refused.returncode == 2 and "a resumed sweep keeps its start points" in \
        refused.stderr, refused.stderr
    shutil.rmtree(past)  # the resumed sweep needs only its own record
    proc = _hpsearch("sweep", str(space_file), "--resume", "--num-samples", "4", *common,
                     cwd=EXTERNAL)
    assert proc.returncode == 0, proc.stderr[-2000:]
    resumed = json.loads((exp / "sweep.json").read_text())
    assert resumed["warm_start"] == meta["warm_start"]
    assert len(load_study(exp).trials) == 4
