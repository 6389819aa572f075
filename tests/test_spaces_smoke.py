"""Every shipped search-space file runs as a real sweep: 2 trials, 1 epoch, on real subsets
of its dataset, through the same `run_sweep` as `hpsearch sweep`."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from hpsearch.scripts.experiment_folder import ExperimentFolder
from hpsearch.scripts.tune.driver import SweepOptions, run_sweep
from hpsearch.search_spaces.schema import builtin_spaces, parse_space

pytestmark = pytest.mark.slow


def _tiny(raw: dict) -> dict:
    """The file with a tiny budget on 1-CPU trials; IDX datasets hold out 500 of the
    subset's 2,000 images."""
    raw = {**raw, "budget": {**raw["budget"], "num_samples": 2, "max_epochs": 1,
                             "grace_period": 1}}
    if raw["data"]["name"] in ("mnist", "fashion_mnist", "hog_mnist"):
        raw["data"] = {**raw["data"], "val_size": 500}
    # A cluster-sized space (GPUs, several CPUs a trial) runs here as 1-CPU trials.
    raw["resources"] = {"cpus_per_trial": 1}
    return raw


@pytest.mark.parametrize("path", builtin_spaces(), ids=lambda p: p.stem)
def test_shipped_space_runs_two_trials(
    path: Path, ray_session, real_subsets_dir: Path, tmp_path: Path
):
    raw = _tiny(yaml.safe_load(path.read_text()))
    space = parse_space(raw, str(path))
    outcome = run_sweep(space, raw, SweepOptions(
        results_dir=tmp_path, data_dir=str(real_subsets_dir), quiet=True))
    board = ExperimentFolder(outcome.exp_dir).read_leaderboard()
    metric = space.objective.metric
    assert len(board) == 2 and set(board.status) == {"completed"}, board.to_string()
    assert board[metric].notna().all() and (board["epochs_run"] == 1).all()
    for _, row in board.iterrows():
        config = json.loads(row["config"])
        assert config["data"]["name"] == raw["data"]["name"]
        assert config["model"]["family"] == raw["model"]["family"]
        assert not pd.isna(row["param_count"]) and row["param_count"] > 0
