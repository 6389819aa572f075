"""The sweep's table (live view and ``hpsearch status``) from leaderboard rows, and who holds
an experiment folder."""

from __future__ import annotations

import io
import json
import os
import socket
import time
from pathlib import Path

import pandas as pd
from rich.console import Console

from scripts.experiment_folder import experiment_lock, lock_holder
from scripts.leaderboard import LEADERBOARD, SWEEP_META
from scripts.reports.status import best_line, folder_state, headline, render, sweep_state

META = {"objective": {"metric": "val_acc", "mode": "max"}, "num_samples": 6, "max_epochs": 4,
        "params": ["optimizer.lr", "optimizer.name", "optimizer.momentum"]}


def _board() -> pd.DataFrame:
    return pd.DataFrame({
        "trial_id": ["b", "a", "c", "d"],
        "status": ["completed", "early-stopped", "running", "running"],
        "val_acc": [0.97, 0.91, 0.95, float("nan")],
        "epochs_run": [4, 2, 3, 0],
        "optimizer.lr": [0.00123456, 0.1, 0.01, 0.02],
        "optimizer.name": ["adam", "sgd", "adam", "sgd"],
        "optimizer.momentum": [float("nan"), 0.9, float("nan"), 0.9],
    })


def test_the_state_counts_trials_by_status_and_estimates_the_time_left():
    state = sweep_state(_board(), META, elapsed_s=120.0)
    assert state.counts == {"completed": 1, "early-stopped": 1, "running": 2}
    assert state.running == [("c", 3, 0.95), ("d", 0, None)]
    assert state.best["trial_id"] == "b"
    # Two finished in 120 s, four to go.
    assert state.eta_s == 240.0
    assert headline(state) == ("4/6 trials: 2 running, 1 completed, 1 early-stopped; "
                               "2:00 elapsed, about 4:00 left")
    # The best trial's drawn values, short names where unambiguous, unset ones left out.
    assert best_line(state) == ("best val_acc 0.9700: trial b (completed), lr=0.00123, "
                                "optimizer.name=adam")


def test_the_table_shows_each_running_trial_s_epoch_and_objective_so_far():
    console = Console(file=io.StringIO(), width=100)
    console.print(render(sweep_state(_board(), META, elapsed_s=5.0)))
    text = console.file.getvalue()
    rows = [line.split() for line in text.splitlines()[-2:]]
    assert rows == [["c", "3/4", "0.9500"], ["d", "0/4", "-"]], text


def test_before_any_trial_the_state_says_so():
    state = sweep_state(pd.DataFrame({"status": []}), META, elapsed_s=3.0)
    assert headline(state) == "0/6 trials: none started; 0:03 elapsed"
    assert best_line(state) == "best val_acc: none reported yet"


def _folder(tmp_path: Path, started_ago_s: float) -> Path:
    exp = tmp_path / "exp"
    exp.mkdir()
    meta = {**META, "wall_time_s": 100.0, "run_started_at": time.time() - started_ago_s}
    (exp / SWEEP_META).write_text(json.dumps(meta))
    _board().to_csv(exp / LEADERBOARD, index=False)
    return exp


def test_a_folder_held_by_a_sweep_is_running_and_its_clock_counts_this_run(tmp_path: Path):
    exp = _folder(tmp_path, started_ago_s=50.0)
    with experiment_lock(exp):
        assert lock_holder(exp) == f"host={socket.gethostname()} pid={os.getpid()}"
        state, holder = folder_state(exp)
    assert holder is not None and state.counts["running"] == 2
    assert 150.0 <= state.elapsed_s < 160.0  # earlier runs' 100 s plus this one's 50 s


def test_a_folder_no_sweep_holds_shows_its_unfinished_trials_as_interrupted(tmp_path: Path):
    exp = _folder(tmp_path, started_ago_s=50.0)
    with experiment_lock(exp):
        pass
    assert lock_holder(exp) is None
    state, holder = folder_state(exp)
    assert holder is None and state.running == []
    assert state.counts["interrupted"] == 2 and state.elapsed_s == 100.0
