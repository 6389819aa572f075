"""The sweep's table (live view and ``hpsearch status``) from leaderboard rows, and who holds
an experiment folder."""

from __future__ import annotations

import io
import os
import socket
import time
from pathlib import Path

import pandas as pd
from rich.console import Console

from hpsearch.scripts.experiment_folder import ExperimentFolder, experiment_lock, lock_holder
from hpsearch.scripts.reports.status import (
    TimeLeft,
    best_line,
    folder_state,
    headline,
    render,
    sweep_state,
    time_left,
)
from hpsearch.scripts.sweep_record import SweepMeta

META = SweepMeta(experiment="exp", objective={"metric": "val_acc", "mode": "max"}, num_samples=6,
                 max_epochs=4, params=["optimizer.lr", "optimizer.name", "optimizer.momentum"])


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
    # 9 epochs in 120 s on 2 slots: 26.7 s a trial epoch. At most 13 epochs to go (c's
    # last one, then d and the 2 unstarted to max_epochs 4); at least 1 each, to ASHA's
    # next rung (1, 2; grace_period 1, reduction factor 2 by default).
    assert state.left is not None
    assert round(state.left.high_s, 1) == round((13 / 2 + 4 / 2) * 240 / 9, 1)
    assert round(state.left.low_s, 1) == round(2 * 240 / 9, 1)
    assert headline(state) == ("4/6 trials: 2 running, 1 completed, 1 early-stopped; "
                               "2:00 elapsed, 0:53-3:47 left")
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
    folder = ExperimentFolder(exp)
    folder.write_meta(META.model_copy(update={"wall_time_s": 100.0}).started(
        time.time() - started_ago_s))
    _board().to_csv(folder.leaderboard, index=False)
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


def _running(epochs: list[int], statuses: list[str]) -> pd.DataFrame:
    return pd.DataFrame({"trial_id": [str(i) for i in range(len(epochs))],
                         "status": statuses, "epochs_run": epochs})


def test_a_long_trial_just_started_is_counted_whole():
    """The case that read 'about 0:50 left' with 81 s to go: 19 trials finished quickly,
    the last one, of up to 15 epochs, just started."""
    meta = META.model_copy(update={"num_samples": 20, "max_epochs": 15, "space": {
        "budget": {"grace_period": 3, "reduction_factor": 2}}})
    board = _running([3] * 19 + [0], ["early-stopped"] * 19 + ["running"])
    left = time_left(board, meta, elapsed_s=57.0)  # 57 epochs in 57 s, on one slot now
    assert left == TimeLeft(3.0, 15.0)
    assert left.text() == "0:03-0:15 left"


def test_without_early_stopping_the_estimate_is_a_point():
    meta = META.model_copy(update={"scheduler": {"name": "none"}})
    left = time_left(_running([4, 2], ["completed", "running"]), meta, elapsed_s=60.0)
    # 6 epochs in 60 s on one slot; 2 left for the running trial, 4 x 4 for the others.
    assert left == TimeLeft(180.0, 180.0)
    assert left.text() == "about 3:00 left"


def test_a_time_budget_bounds_the_estimate():
    meta = META.model_copy(update={"wall_time_s": 100.0, "overrides": {"time_budget": 150.0}})
    left = time_left(_running([4, 2], ["completed", "running"]), meta, elapsed_s=160.0)
    # This run has had 60 s of its 150: at most 90 s, whatever the trials would take.
    assert left is not None and left.high_s == 90.0 and left.capped
    assert left.text() == "at most 1:30 left (time budget)"


def test_total_epochs_bounds_the_epochs_left():
    meta = META.model_copy(update={"scheduler": {"name": "none"},
                                   "space": {"budget": {"total_epochs": 8}}})
    left = time_left(_running([4, 2], ["completed", "running"]), meta, elapsed_s=60.0)
    assert left == TimeLeft(20.0, 20.0)  # 2 epochs of the 8 remain, at 10 s each


def test_a_folder_with_a_file_open_says_a_process_still_uses_it(tmp_path: Path):
    from hpsearch.scripts.experiment_folder import processes_using
    from hpsearch.scripts.reports.status import folder_status

    exp = _folder(tmp_path, started_ago_s=5.0)
    assert processes_using(exp) == []
    with (exp / "ray.bin").open("wb"):
        assert processes_using(exp) == [os.getpid()]
        console = Console(file=io.StringIO(), width=200)
        console.print(folder_status(exp))
        assert f"not running, but 1 process(es) still have files open in it (pid {os.getpid()})" \
            in console.file.getvalue()
