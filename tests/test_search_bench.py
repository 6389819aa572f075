"""The search benchmark's statistics on hand-made runs, its spaces and resumable store, and the
one-process baselines (plain Optuna, SMAC) run for real on a small MNIST subset."""

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
    HELD_OUT_SPACE,
    METHODS,
    QUICK,
    SPACES_DIR,
    TUNING_SPACES,
    RunStore,
    bench_space,
)
from hpsearch.scripts.bench.search_stats import (
    ALONE,
    START,
    Run,
    best_by_epoch,
    bootstrap_ci,
    curves,
    median,
    paired_ratios,
    search_target,
    space_figures,
    to_target,
)
from hpsearch.search_spaces.schema import parse_space
from hpsearch.search_spaces.trials import sampled_params, trial_config

BENCH_SPACES = [SPACES_DIR / name for name in (*TUNING_SPACES, HELD_OUT_SPACE)]


def _run(method: str, seed: int, accs: list[float], setting: str = ALONE,
         step_s: float = 1.0) -> Run:
    events = tuple((step_s * (i + 1), a) for i, a in enumerate(accs))
    return Run("space", method, setting, seed, wall_s=step_s * (len(accs) + 1),
               events=events, trials=3, stopped_early=1)


def test_anytime_curves_hold_the_best_so_far():
    run = _run("random", 0, [0.5, 0.8, 0.7, 0.9])
    assert list(best_by_epoch(run, 6)) == [0.5, 0.8, 0.8, 0.9, 0.9, 0.9]
    assert run.final_best == 0.9
    assert to_target(run, 0.8) == (2.0, 2.0)
    assert to_target(run, 0.95) == (math.inf, math.inf)


def test_median_counts_runs_that_never_reach_the_target():
    assert median([3.0, math.inf, 5.0]) == 5.0
    assert median([math.inf, math.inf, 3.0]) == math.inf
    assert median([2.0, 4.0]) == 3.0


def test_bootstrap_interval_brackets_the_median_and_is_seeded():
    values = [0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2, 1.3, 1.4]
    lo, hi = bootstrap_ci(values)
    assert lo <= median(values) <= hi and lo >= 0.5 and hi <= 1.4
    assert bootstrap_ci(values) == (lo, hi)
    assert all(math.isnan(x) for x in bootstrap_ci([1.0]))


def test_paired_ratios_count_a_run_that_never_reached_as_twice_the_budget():
    assert paired_ratios([10.0, math.inf, 5.0], [20.0, 64.0, math.inf], never=128.0) == [
        0.5, 2.0, 5.0 / 128.0]


def _judged_runs(new_epochs_to_09: int, seeds: int = 10) -> list[Run]:
    """random reaches 0.9 at epoch 8; random+asha at 6; the new method at ``new_...``."""
    def climb(at: int) -> list[float]:
        return [0.9 if i >= at else 0.5 + 0.4 * i / at for i in range(1, 13)]

    runs = []
    for seed in range(seeds):
        for setting in (ALONE, START):
            runs += [_run("random", seed, climb(8), setting),
                     _run("random+asha", seed, climb(6), setting),
                     _run("rung_tpe+asha", seed, climb(new_epochs_to_09), setting)]
    return runs


def test_figures_judge_the_new_method_against_random_and_random_asha():
    runs = _judged_runs(2)
    assert search_target(runs) == pytest.approx(0.9)
    figures = {f.item: f for f in space_figures(runs, ["random", "random+asha",
                                                       "rung_tpe+asha"], 12, Figure, True)}
    alone = figures["space alone: rung_tpe+asha: epochs to 0.9000 (median of 10)"]
    # 2 epochs: within a third of random's 8 and 0.33x random+asha's 6, every seed.
    assert (alone.ours, alone.baseline, alone.met) == (2.0, 6.0, True)
    assert "paired ratio 0.33 [0.33, 0.33]" in alone.note
    assert figures["space start: rung_tpe+asha: epochs to 0.9000 (median of 10)"].met is True
    assert figures["space alone: random: epochs to 0.9000 (median of 10)"].met is None
    final = figures["space alone: rung_tpe+asha: final best val_acc in 12 epochs (median of 10)"]
    assert final.met is True  # the same final best as random+asha's
    slow = {f.item: f for f in space_figures(_judged_runs(4), ["rung_tpe+asha"], 12, Figure,
                                             True)}
    # 4 epochs: 0.67x random+asha's but more than a third of random's 8.
    assert slow["space alone: rung_tpe+asha: epochs to 0.9000 (median of 10)"].met is False


def test_curves_give_quartiles_over_seeds_per_space_setting_and_method():
    runs = [_run("random", s, [0.5 + 0.1 * s, 0.9]) for s in range(3)]
    rows = curves(runs, ["random", "tpe+asha"], total=2)
    first = [r for r in rows if r["epochs"] == 1][0]
    assert (first["best_q25"], first["best_median"], first["best_q75"]) == pytest.approx(
        (np.percentile([0.5, 0.6, 0.7], 25), 0.6, np.percentile([0.5, 0.6, 0.7], 75)))
    assert {(r["space"], r["setting"], r["method"]) for r in rows} == {
        ("space", ALONE, "random")}


def test_the_run_store_resumes_and_ignores_a_line_cut_short(tmp_path: Path):
    path = tmp_path / "runs.jsonl"
    store = RunStore(path)
    store.add(_run("random", 0, [0.5, 0.6]))
    store.add(_run("optuna", 1, [0.7], setting=START))
    with path.open("a") as out:
        out.write('{"space": "space", "method": "smac", "sett')  # killed mid-write
    again = RunStore(path)
    assert again.runs == store.runs and len(again.runs) == 2
    assert again.has("optuna", START, 1) and not again.has("optuna", ALONE, 1)
    again.add(_run("smac", 1, [0.8]))
    assert len(RunStore(path).runs) == 3


@pytest.mark.parametrize("space_file", BENCH_SPACES, ids=lambda p: p.stem)
@pytest.mark.parametrize("mode", [QUICK, FULL], ids=["quick", "full"])
def test_each_method_searches_a_valid_space_with_the_same_epoch_budget(mode, space_file):
    for method in METHODS:
        for setting in (ALONE, START):
            raw = bench_space(mode, method, setting, seed=3, space_file=space_file)
            space = parse_space(raw, "bench.yaml")
            assert space.budget.total_epochs == mode.total_epochs and space.seed == 3
            assert bool(space.start_points) == (setting == START)
            assert space.data["train_subset"] == mode.train_subset
            assert space.budget.fair_rungs == method.fair_rungs
            if method.sampler:
                assert (space.sampler.name, space.scheduler.name) == (method.sampler,
                                                                      method.scheduler)


@pytest.mark.parametrize("space_file", BENCH_SPACES, ids=lambda p: p.stem)
def test_smac_sees_the_same_space_and_its_configs_become_trial_configs(space_file):
    from hpsearch.scripts.bench.smac_mf import config_space, start_configs

    space = parse_space(bench_space(FULL, METHODS[4], START, 0, space_file), "bench.yaml")
    cs = config_space(space, seed=0)
    starts = start_configs(space, cs)
    assert len(starts) == len(space.start_points)
    for config in [*starts, *cs.sample_configuration(20)]:
        drawn = {k: getattr(v, "item", lambda v=v: v)() for k, v in config.items()}
        cfg = trial_config(space, sampled_params(space, drawn))
        hidden = cfg.model.hidden
        assert 1 <= len(hidden) <= 3 and all(isinstance(w, int) for w in hidden)
        assert (cfg.optim.name == "sgd") == ("optimizer.momentum" in drawn)


@pytest.mark.slow
@pytest.mark.parametrize("module", ["plain_optuna", "smac_mf"])
def test_one_process_baselines_spend_exactly_their_epoch_budget(mnist_subset_dir: Path,
                                                                 tmp_path: Path, module: str):
    raw = {
        "experiment": "plain",
        "data": {"name": "mnist", "val_size": 500, "batch_size": 100},
        "model": {"family": "mlp", "hidden": [16]},
        "optimizer": {"name": "adam"},
        "search": {"optimizer.lr": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True}},
        "start_points": [{"optimizer.lr": 5e-3}],
        "budget": {"num_samples": 50, "max_epochs": 2, "grace_period": 1, "total_epochs": 5},
        "seed": 0,
    }
    space_file = tmp_path / "plain.yaml"
    space_file.write_text(yaml.safe_dump(raw, sort_keys=False))
    events = tmp_path / "events.jsonl"
    proc = subprocess.run(
        [sys.executable, "-m", f"hpsearch.scripts.bench.{module}", str(space_file),
         "--events", str(events), "--data-dir", str(mnist_subset_dir)],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in events.read_text().splitlines()]
    # Two trials at a time: the budget is hit while the other trial may finish one more.
    assert 5 <= len(rows) <= 6 and all(0 < r["val_acc"] <= 1 for r in rows)
    assert all(1 <= r["epoch"] <= 2 for r in rows)
    assert "trials" in proc.stdout
