"""The search benchmark's statistics on hand-made runs, its spaces, and the plain-Optuna
baseline run for real on a small MNIST subset."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from hpsearch.scripts.bench.run import Figure
from hpsearch.scripts.bench.search import (
    FULL,
    METHODS,
    QUICK,
    SPACE_FILE,
    Run,
    bench_space,
    best_at_times,
    best_by_epoch,
    curves,
    median,
    search_figures,
    search_target,
    to_target,
)
from hpsearch.search_spaces.schema import parse_space


def _run(method: str, seed: int, accs: list[float], step_s: float = 1.0) -> Run:
    events = tuple((step_s * (i + 1), a) for i, a in enumerate(accs))
    return Run(method, seed, wall_s=step_s * (len(accs) + 1), events=events, trials=3,
               stopped_early=1)


def test_anytime_curves_hold_the_best_so_far():
    run = _run("random", 0, [0.5, 0.8, 0.7, 0.9])
    assert list(best_by_epoch(run, 6)) == [0.5, 0.8, 0.8, 0.9, 0.9, 0.9]
    got = best_at_times(run, [0.5, 1.0, 2.5, 10.0])
    assert math.isnan(got[0]) and list(got[1:]) == [0.5, 0.8, 0.9]
    assert to_target(run, 0.8) == (2.0, 2.0)
    assert to_target(run, 0.95) == (math.inf, math.inf)


def test_median_counts_runs_that_never_reach_the_target():
    assert median([3.0, math.inf, 5.0]) == 5.0
    assert median([math.inf, math.inf, 3.0]) == math.inf
    assert median([2.0, 4.0]) == 3.0


def test_figures_judge_epochs_against_random_and_seconds_against_plain_optuna():
    runs = []
    for seed in range(3):
        runs += [
            _run("random", seed, [0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.9, 0.9], step_s=1.0),
            _run("tpe+asha", seed, [0.6, 0.85, 0.9, 0.9, 0.91, 0.92, 0.92, 0.92], step_s=1.0),
            _run("random+asha", seed, [0.6, 0.7, 0.8, 0.9, 0.9, 0.9, 0.9, 0.9], step_s=1.0),
            _run("optuna", seed, [0.6, 0.7, 0.8, 0.9, 0.9, 0.9, 0.9, 0.9], step_s=0.5),
        ]
    assert search_target(runs) == 0.9
    mode = FULL
    figures = {f.item: f for f in search_figures(runs, mode, Figure)}
    epochs = figures["tpe+asha: epochs to reach 0.9000 (median of 3)"]
    assert (epochs.ours, epochs.baseline, epochs.met) == (3.0, 6.0, True)  # 3 <= 0.5 * 6
    seconds = figures["tpe+asha: seconds to reach it, cold command (median of 3)"]
    assert (seconds.ours, seconds.baseline, seconds.met) == (3.0, 2.0, False)  # 3 s > 2 s
    assert figures["random+asha: epochs to reach 0.9000 (median of 3)"].met is None


def test_curves_give_quartiles_over_seeds_per_method_and_axis():
    runs = [_run("random", s, [0.5 + 0.1 * s, 0.9]) for s in range(3)]
    rows = curves(runs, total=2, seconds=[0.0, 1.0, 3.0])
    first = [r for r in rows if r["axis"] == "epochs" and r["x"] == 1][0]
    assert (first["best_q25"], first["best_median"], first["best_q75"]) == pytest.approx(
        (np.percentile([0.5, 0.6, 0.7], 25), 0.6, np.percentile([0.5, 0.6, 0.7], 75)))
    before = [r for r in rows if r["axis"] == "seconds" and r["x"] == 0.0][0]
    assert math.isnan(before["best_median"])  # nothing trained yet
    assert {r["method"] for r in rows} == {"random"}


@pytest.mark.parametrize("space_file", [SPACE_FILE, SPACE_FILE.with_name("mnist_mlp.yaml")],
                         ids=lambda p: p.stem)
@pytest.mark.parametrize("mode", [QUICK, FULL], ids=["quick", "full"])
def test_each_method_searches_a_valid_space_with_the_same_epoch_budget(mode, space_file):
    for method in METHODS:
        raw = bench_space(mode, method, seed=3, space_file=space_file)
        space = parse_space(raw, "bench.yaml")
        assert space.budget.total_epochs == mode.total_epochs and space.seed == 3
        assert not space.start_points
        if method.sampler:
            assert (space.sampler.name, space.scheduler.name) == (method.sampler,
                                                                  method.scheduler)


@pytest.mark.slow
def test_plain_optuna_baseline_spends_exactly_its_epoch_budget(mnist_subset_dir: Path,
                                                                tmp_path: Path):
    raw = {
        "experiment": "plain",
        "data": {"name": "mnist", "val_size": 500, "batch_size": 100},
        "model": {"family": "mlp", "hidden": [16]},
        "optimizer": {"name": "adam"},
        "search": {"optimizer.lr": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True}},
        "budget": {"num_samples": 50, "max_epochs": 2, "grace_period": 1, "total_epochs": 5},
        "seed": 0,
    }
    space_file = tmp_path / "plain.yaml"
    space_file.write_text(yaml.safe_dump(raw, sort_keys=False))
    events = tmp_path / "events.jsonl"
    proc = subprocess.run(
        [sys.executable, "-m", "hpsearch.scripts.bench.plain_optuna", str(space_file),
         "--events", str(events), "--data-dir", str(mnist_subset_dir)],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in events.read_text().splitlines()]
    # Two trials at a time: the budget is hit while the other trial may finish one more.
    assert 5 <= len(rows) <= 6 and all(0 < r["val_acc"] <= 1 for r in rows)
    assert all(1 <= r["epoch"] <= 2 for r in rows)
    assert "trials" in proc.stdout
