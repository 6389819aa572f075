"""Real Ray Tune sweeps on a real MNIST subset: ASHA, an errored trial, the leaderboard,
interrupt-and-resume, and the CLI's error handling."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import stat
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from optuna.trial import TrialState
from s3_server import free_port
from sweep_process import cli_in_process

from hpsearch.datamodules.paths import current_umask
from hpsearch.lightning_modules.classifier import ClassifierModule
from hpsearch.scripts.cli import main as cli_main
from hpsearch.scripts.experiment_folder import LEADERBOARD
from hpsearch.scripts.reports.compare import ACCURACY_PLOT, accuracy_panel, compare
from hpsearch.scripts.reports.retrain import REPRODUCE_TOLERANCE, RetrainOptions, retrain
from hpsearch.scripts.study import load_study
from hpsearch.scripts.tune.callback import rebuild_leaderboard
from hpsearch.scripts.tune.driver import SweepOptions, run_sweep
from hpsearch.search_spaces.errors import ConfigError
from hpsearch.search_spaces.schema import parse_space

pytestmark = pytest.mark.slow

SMALL_MLP = {
    "experiment": "tiny_mlp",
    "data": {"name": "mnist", "val_size": 500, "batch_size": 100},
    "model": {"family": "mlp", "hidden": [32]},
    "optimizer": {"name": "sgd", "momentum": 0.9},
    "search": {
        "model.hidden": {"type": "list", "length": 1,
                         "each": {"type": "choice", "values": [16, 32, 64]}},
        "optimizer.lr": {"type": "float", "low": 1e-6, "high": 1e7, "log": True},
    },
    # Tried first, in this order: a good run, a hopeless learning rate (ASHA stops it), a
    # diverging one (NaN loss: recorded as errored), and another good run.
    "start_points": [
        {"model.hidden": [64], "optimizer.lr": 0.05},
        {"model.hidden": [16], "optimizer.lr": 1e-6},
        {"model.hidden": [32], "optimizer.lr": 1e7},
        {"model.hidden": [32], "optimizer.lr": 0.03},
    ],
    "objective": {"metric": "val_acc", "mode": "max"},
    # One ASHA rung at epoch 2: run one after another, the hopeless trial falls below the
    # median there while the second good one is above it, so which trial stops is certain.
    "budget": {"num_samples": 4, "max_epochs": 3, "grace_period": 2, "reduction_factor": 2},
    "resources": {"cpus_per_trial": 1, "max_concurrent": 1},
}


@pytest.fixture(scope="module")
def tiny_sweep(ray_session, mnist_subset_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    results = tmp_path_factory.mktemp("results")
    space = parse_space(SMALL_MLP, "tiny.yaml")
    # Every trial also goes to MLflow, in a local store (test_mlflow_receives_...).
    tracking = f"sqlite:///{results / 'mlflow.db'}"
    return run_sweep(
        space, SMALL_MLP,
        SweepOptions(results_dir=results, data_dir=str(mnist_subset_dir), quiet=True,
                     logger=f"mlflow={tracking}"),
    )


def test_mlflow_receives_every_trial_s_values_and_metrics(tiny_sweep):
    import mlflow

    board = pd.read_csv(tiny_sweep.leaderboard, dtype={"trial_id": str})
    client = mlflow.MlflowClient(f"sqlite:///{tiny_sweep.exp_dir.parent / 'mlflow.db'}")
    (experiment,) = [e for e in client.search_experiments() if e.name == "tiny_mlp"]
    runs = client.search_runs([experiment.experiment_id])
    by_trial = {r.data.tags["trial_name"].rsplit("_", 1)[-1]: r for r in runs}
    assert sorted(by_trial) == sorted(board.trial_id), [r.data.tags for r in runs]
    for row in board.to_dict("records"):
        run = by_trial[row["trial_id"]]
        assert float(run.data.params["optimizer.lr"]) == pytest.approx(row["optimizer.lr"])
        history = client.get_metric_history(run.info.run_id, "val_acc")
        assert len(history) == row["epochs_run"]  # one value per epoch reported
        assert run.data.tags["hpsearch.code_version"] == row["code_version"]


def test_sweep_records_completed_early_stopped_and_errored_trials(
    tiny_sweep, monkeypatch: pytest.MonkeyPatch
):
    outcome = tiny_sweep
    board = pd.read_csv(outcome.leaderboard, dtype={"trial_id": str})
    assert len(board) == 4
    for col in ("rank", "trial_id", "status", "model.hidden", "optimizer.lr", "val_acc",
                "best_epoch", "epochs_run", "param_count", "train_time_s", "error",
                "checkpoint", "config", "seed", "code_version", "node", "device"):
        assert col in board.columns, col
    statuses = board.set_index("optimizer.lr")["status"].to_dict()
    assert statuses[0.05] == "completed" and statuses[0.03] == "completed"
    assert statuses[1e-6] == "early-stopped"
    assert statuses[1e7] == "errored"
    errored = board[board.status == "errored"].iloc[0]
    assert "diverged" in errored["error"] and pd.isna(errored["rank"]) is False
    # A diverging loss would diverge again: the trial ran once, not retried (max_failures 1).
    trial_dir = outcome.exp_dir / "ray" / f"trial-{errored['trial_id']}"
    assert len((trial_dir / "result.json").read_text().splitlines()) == 1
    assert not (trial_dir / "error.txt").exists()
    assert errored["rank"] == 4  # no metric: ranked last
    best = board.iloc[0]
    assert best["status"] == "completed" and best["val_acc"] > 0.8
    assert list(board["rank"]) == [1, 2, 3, 4]
    assert board["val_acc"].iloc[0] >= board["val_acc"].iloc[1]
    assert not Path(best["checkpoint"]).is_absolute()  # the folder can move
    assert Path(outcome.exp_dir, best["checkpoint"], "model.ckpt").is_file()
    config = json.loads(best["config"])
    assert config["data"]["name"] == "mnist" and config["model"]["hidden"] == json.loads(
        best["model.hidden"])
    assert best["param_count"] == 784 * 64 + 64 + 64 * 10 + 10
    assert (outcome.exp_dir / "optuna.log").is_file()
    # Compute: each trial's measured CPU time training, summed in sweep.json beside what the
    # sweep held (its wall time on the cluster's CPUs); no GPU ran.
    trained = board[board.epochs_run > 0]
    assert (trained["train_cpu_h"] > 0).all() and (board["train_gpu_h"].fillna(0) == 0).all()
    compute = json.loads((outcome.exp_dir / "sweep.json").read_text())["compute"]
    assert compute["train_cpu_h"] == pytest.approx(board["train_cpu_h"].sum())
    assert compute["sweep_cpu_h"] >= outcome.wall_time_s / 3600
    assert compute["sweep_gpu_h"] == 0 and compute["train_gpu_h"] == 0
    # Tune's settings for the sweep were scoped to its fit, not left in the process.
    assert "TUNE_GLOBAL_CHECKPOINT_S" not in os.environ

    # The CSV rebuilt from Ray's experiment folder holds the same trials and results.
    written = board.copy()
    (outcome.exp_dir / LEADERBOARD).unlink()
    rebuilt = pd.read_csv(rebuild_leaderboard(outcome.exp_dir))
    key = ["trial_id", "status", "val_acc", "best_epoch", "epochs_run"]
    pd.testing.assert_frame_equal(rebuilt[key], written[key])
    # The README's form, a path relative to where the user is (Ray wants absolute ones).
    monkeypatch.chdir(outcome.exp_dir.parent)
    assert cli_main(["leaderboard", outcome.exp_dir.name, "--rebuild"]) == 0
    rebuilt = pd.read_csv(outcome.exp_dir / LEADERBOARD)
    pd.testing.assert_frame_equal(rebuilt[key], written[key])


def _epoch_results(exp_dir: Path) -> dict[str, list[dict]]:
    """Each trial's per-epoch results as Ray recorded them (its result.json)."""
    out = {}
    for path in (exp_dir / "ray").rglob("result.json"):
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        if rows:
            out[rows[0]["trial_id"]] = rows
    return out


def test_optuna_study_records_what_the_sweep_did(tiny_sweep):
    """The Optuna study holds each Ray trial with the leaderboard's status (PRUNED for the
    early-stopped one), its value, and every epoch as an intermediate value."""
    exp_dir = tiny_sweep.exp_dir
    board = pd.read_csv(exp_dir / LEADERBOARD, dtype={"trial_id": str})
    study = load_study(exp_dir)
    trials = {t.user_attrs["ray_trial_id"]: t for t in study.trials}
    assert set(trials) == set(board.trial_id) and len(study.trials) == len(board)
    states = {"completed": TrialState.COMPLETE, "early-stopped": TrialState.PRUNED,
              "errored": TrialState.FAIL}
    epochs = _epoch_results(exp_dir)
    for _, row in board.iterrows():
        trial = trials[row.trial_id]
        assert trial.state == states[row.status], row.trial_id
        assert trial.user_attrs["status"] == row.status
        assert trial.user_attrs["epochs_run"] == row.epochs_run
        if row.status == "errored":
            assert trial.value is None and not trial.intermediate_values
            continue
        assert trial.value == row.val_acc  # the best epoch's, as the leaderboard says
        assert trial.user_attrs["param_count"] == row.param_count
        # Step k holds the objective after k epochs: the best val_acc of epochs 1..k.
        per_epoch = [r["val_acc"] for r in epochs[row.trial_id]]
        assert trial.intermediate_values == {
            k: max(per_epoch[:k]) for k in range(1, row.epochs_run + 1)}
    assert sum(t.state == TrialState.PRUNED for t in study.trials) == 1

    # `hpsearch dashboard` serves the same: optuna-dashboard's REST API, as its page asks it.
    with _dashboard(exp_dir) as get:
        (summary,) = get("/api/studies")["study_summaries"]
        shown = get(f"/api/studies/{summary['study_id']}")
    dashboard_states = {"completed": "Complete", "early-stopped": "Pruned", "errored": "Fail"}
    by_id = {next(a["value"] for a in t["user_attrs"] if a["key"] == "ray_trial_id"): t
             for t in shown["trials"]}
    for _, row in board.iterrows():
        trial = by_id[row.trial_id]
        assert trial["state"] == dashboard_states[row.status]
        if row.status != "errored":
            assert trial["values"] == [row.val_acc]
            assert [v["step"] for v in trial["intermediate_values"]] == list(
                range(1, row.epochs_run + 1))


@contextlib.contextmanager
def _dashboard(exp_dir: Path) -> Iterator[Callable[[str], dict]]:
    """``hpsearch dashboard`` on 127.0.0.1 as a subprocess; yields a JSON GET on it."""
    port = free_port()
    proc = subprocess.Popen(_cli("dashboard", str(exp_dir), "--port", str(port)),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def get(path: str) -> dict:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as answer:
            return json.loads(answer.read())

    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                get("/api/studies")
                break
            except OSError:
                assert proc.poll() is None, proc.communicate()[0]
                assert time.monotonic() < deadline, "the dashboard never answered"
                time.sleep(0.2)
        yield get
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _search_report(exp_dir: Path) -> set[str]:
    """``hpsearch report`` on ``exp_dir``: the names of the PNGs its search.md shows (each
    checked to be a PNG)."""
    assert cli_main(["report", str(exp_dir)]) == 0
    text = (exp_dir / "search.md").read_text()
    shown = re.findall(r"\]\(search/(\w+)\.png\)", text)
    for name in shown:
        assert (exp_dir / "search" / f"{name}.png").read_bytes()[:4] == b"\x89PNG", name
    return set(shown)


def test_report_draws_the_search_from_the_study(tiny_sweep):
    assert _search_report(tiny_sweep.exp_dir) == {
        "optimization_history", "parallel_coordinate", "param_importances",
        "intermediate_values"}


def test_export_writes_a_config_that_train_accepts(
    tiny_sweep, mnist_subset_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
):
    board = pd.read_csv(tiny_sweep.leaderboard, dtype={"trial_id": str})
    assert cli_main(["export", str(tiny_sweep.exp_dir), "--rank", "2"]) == 0
    exported = capsys.readouterr().out
    assert exported.startswith(f"# {tiny_sweep.exp_dir.name}: trial {board.trial_id[1]} (rank 2")
    cfg = yaml.safe_load(exported)
    trial = json.loads(board.config[1])
    assert cfg == {**trial, "max_epochs": int(board.best_epoch[1])}
    (tmp_path / "best.yaml").write_text(exported)
    assert cli_main(["train", "--config", str(tmp_path / "best.yaml"), "--data-dir",
                     str(mnist_subset_dir), "--accelerator", "cpu"]) == 0
    trained = capsys.readouterr().out
    assert "Best val_acc" in trained and "Test: " in trained, trained


def test_retrain_and_compare_write_consistent_reports(tiny_sweep, mnist_subset_dir: Path):
    exp_dir = tiny_sweep.exp_dir
    report = retrain(exp_dir, RetrainOptions(data_dir=str(mnist_subset_dir), accelerator="cpu"))
    best = report.parent
    for name in ("metrics.json", "confusion_matrix.csv", "confusion_matrix.png",
                 "learning_curves.png", "parameters.csv", "model.ckpt", "report.md"):
        assert (best / name).is_file(), name
    mask = current_umask()  # modes a teammate's umask allows, not mkstemp's 0600 / 0700
    assert stat.S_IMODE(best.stat().st_mode) == 0o777 & ~mask
    for name in ("metrics.json", "report.md", "../leaderboard.csv", "../sweep.json"):
        assert stat.S_IMODE((best / name).stat().st_mode) == 0o666 & ~mask, name
    metrics = json.loads((best / "metrics.json").read_text())
    cm = pd.read_csv(best / "confusion_matrix.csv", index_col=0).to_numpy()
    assert cm.sum() == 500  # the subset's test images
    assert metrics["test"]["accuracy"] == pytest.approx(np.trace(cm) / cm.sum())
    assert set(metrics["test"]["per_class"]) == {str(d) for d in range(10)}
    # Same seed, same epochs: the sweep trial's validation metric is reproduced.
    assert metrics["epochs"] == metrics["sweep_best_epoch"]
    assert abs(metrics["retrain_value"] - metrics["sweep_value"]) <= REPRODUCE_TOLERANCE
    text = report.read_text()
    assert "confusion_matrix.png" in text and "predicted as" in text and "total" in text
    module = ClassifierModule.load_from_checkpoint(best / "model.ckpt")
    assert module(torch.zeros(2, 1, 28, 28)).shape == (2, 10)

    table = compare(exp_dir.parent)
    row = pd.read_csv(exp_dir.parent / "comparison.csv").iloc[0]
    assert row["test_acc"] == pytest.approx(metrics["test"]["accuracy"])
    assert row["lab_test_acc"] == 0.985 and row["trials"] == 4 and row["errored"] == 1
    assert "tiny_mlp" in table and (exp_dir.parent / "comparison.md").is_file()
    assert (exp_dir.parent / ACCURACY_PLOT).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    panel = accuracy_panel(exp_dir, row)  # what the plot draws: every trial that reported, the best
    assert len(panel.trial_params) == 3 and panel.test_acc == pytest.approx(row["test_acc"])
    assert panel.lab_acc == 0.985 and panel.best_params == row["param_count"]

    board = pd.read_csv(exp_dir / LEADERBOARD)
    errored_rank = int(board[board.status == "errored"]["rank"].iloc[0])
    with pytest.raises(ConfigError, match="errored"):
        retrain(exp_dir, RetrainOptions(rank=errored_rank))
    with pytest.raises(ConfigError, match="only 4 trials"):
        retrain(exp_dir, RetrainOptions(rank=9))
    with pytest.raises(ConfigError, match="no trial 'nope'"):
        retrain(exp_dir, RetrainOptions(trial_id="nope"))
    with pytest.raises(ConfigError, match="not an hpsearch experiment"):
        retrain(exp_dir / "best", RetrainOptions())


def test_multi_objective_sweep_ranks_the_pareto_front_and_draws_it(
    ray_session, mnist_subset_dir: Path, tmp_path: Path
):
    raw = json.loads(json.dumps(SMALL_MLP))
    raw["experiment"] = "pareto"
    raw["search"] = {"model.hidden": {"type": "list", "length": 1,
                                      "each": {"type": "choice", "values": [8, 32, 128]}}}
    raw["start_points"] = [{"model.hidden": [w]} for w in (8, 32, 128)]
    raw["optimizer"] = {"name": "sgd", "momentum": 0.9, "lr": 0.05}
    raw["objective"] = [{"metric": "val_acc", "mode": "max"},
                        {"metric": "param_count", "mode": "min"}]
    raw["budget"] = {"num_samples": 3, "max_epochs": 2}
    outcome = run_sweep(parse_space(raw, "pareto.yaml"), raw, SweepOptions(
        results_dir=tmp_path, data_dir=str(mnist_subset_dir), quiet=True))
    board = pd.read_csv(outcome.leaderboard, dtype={"trial_id": str})
    assert list(board.columns[:2]) == ["rank", "pareto_rank"]
    assert set(board.status) == {"completed"} and len(board) == 3
    # The smallest model is on the front whatever its accuracy, and so is the most accurate.
    front = board[board.pareto_rank == 0]
    assert board.param_count.min() in set(front.param_count)
    assert board.val_acc.max() in set(front.val_acc)
    assert (board.pareto_rank.diff().dropna() >= 0).all()  # ranked by front first
    png = outcome.exp_dir / "pareto_front.png"
    assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    study = load_study(outcome.exp_dir)
    assert len(study.directions) == 2
    assert _search_report(outcome.exp_dir) >= {"optimization_history", "pareto_front"}
    told = {t.user_attrs["ray_trial_id"]: t.values for t in study.trials}
    assert told == {row.trial_id: [row.val_acc, row.param_count] for row in board.itertuples()}
    shown = subprocess.run(_cli("leaderboard", str(outcome.exp_dir)), capture_output=True,
                           text=True, timeout=120)
    assert shown.returncode == 0 and "Pareto front" in shown.stdout, shown.stdout


def _lr_sweep(experiment: str, budget: dict) -> dict:
    """SMALL_MLP without its start points, searching a learning rate that learns."""
    raw = json.loads(json.dumps(SMALL_MLP))
    raw["experiment"] = experiment
    raw.pop("start_points")
    raw["search"]["optimizer.lr"] = {"type": "float", "low": 0.01, "high": 0.1, "log": True}
    raw["budget"] = budget
    return raw


def test_total_epochs_ends_the_sweep_once_its_trials_trained_that_many(
    ray_session, mnist_subset_dir: Path, tmp_path: Path
):
    raw = _lr_sweep("epoch_budget", {"num_samples": 20, "max_epochs": 2, "grace_period": 2,
                                     "total_epochs": 5})
    outcome = run_sweep(parse_space(raw, "budget.yaml"), raw, SweepOptions(
        results_dir=tmp_path, data_dir=str(mnist_subset_dir), quiet=True))
    board = pd.read_csv(outcome.leaderboard)
    # One trial at a time: 2 + 2 + 1 epochs, the third trial stopped when the budget ran out.
    assert board.epochs_run.sum() == 5 and len(board) == 3, board
    assert sorted(board.status) == ["completed", "completed", "early-stopped"]
    assert not outcome.interrupted  # a spent budget is not an interruption


def test_a_time_budget_stops_the_sweep_keeping_its_trials_and_a_resume_goes_on(
    ray_session, mnist_subset_dir: Path, tmp_path: Path
):
    # Trials far longer than the budget: the one running when time is up is stopped.
    raw = _lr_sweep("time_budget", {"num_samples": 20, "max_epochs": 5000,
                                    "grace_period": 5000})
    opts = SweepOptions(results_dir=tmp_path, data_dir=str(mnist_subset_dir), quiet=True,
                        time_budget=15.0)
    outcome = run_sweep(parse_space(raw, "budget.yaml"), raw, opts)
    assert not outcome.interrupted and outcome.wall_time_s < 120
    first = pd.read_csv(outcome.leaderboard, dtype={"trial_id": str})
    assert (first.epochs_run < 5000).all() and set(first.status) <= {"early-stopped"}, first
    # Every trial that trained an epoch keeps its row and value (on a loaded machine the
    # budget may end while a trial is still starting: it has no value).
    assert first[first.epochs_run >= 1].val_acc.notna().all(), first
    asked = load_study(outcome.exp_dir).trials
    assert asked and all(t.state == TrialState.PRUNED for t in asked)  # told, not RUNNING

    again = run_sweep(parse_space(raw, "budget.yaml"), raw,
                      dataclasses.replace(opts, resume=True))
    resumed = load_study(again.exp_dir).trials
    assert len(resumed) > len(asked)  # the resumed run drew new trials ...
    assert all(t.state == TrialState.PRUNED for t in resumed)  # ... and told them
    board = pd.read_csv(again.leaderboard, dtype={"trial_id": str}).set_index("trial_id")
    kept = board.loc[first.trial_id]
    assert list(kept.val_acc.fillna(-1)) == list(first.val_acc.fillna(-1))


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "hpsearch", *args]


def test_a_driver_killed_right_after_a_trial_finished_resumes_losing_and_repeating_nothing(
    mnist_subset_dir: Path, tmp_path: Path
):
    """SIGKILL as soon as the leaderboard shows a second finished trial (Ctrl-C is
    test_fault_injection's): no trial lost, none run twice, none left RUNNING in Optuna."""
    # Long enough that the sweep is still running when it is killed: after the second
    # trial finishes, four more of 6 epochs each are left (at 3 epochs and 5 trials, a fast
    # machine finished them all in the half second the interruption took).
    samples = 6
    raw = _lr_sweep("resumable", {"num_samples": samples, "max_epochs": 6, "grace_period": 6})
    space_file = tmp_path / "resumable.yaml"
    space_file.write_text(yaml.safe_dump(raw))
    results = tmp_path / "results"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    common = ["--results-dir", str(results), "--data-dir", str(mnist_subset_dir)]
    proc = subprocess.Popen(_cli("sweep", str(space_file), *common), env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    board_path = results / "resumable" / LEADERBOARD
    deadline = time.monotonic() + 240
    finished_before: pd.DataFrame | None = None
    while time.monotonic() < deadline:
        if board_path.is_file():
            board = pd.read_csv(board_path, dtype={"trial_id": str})
            done = board[board.status == "completed"]
            if len(done) >= 2:
                finished_before = done
                break
        assert proc.poll() is None, proc.stdout.read()
        time.sleep(0.1)
    assert finished_before is not None, "sweep did not finish two trials in time"
    proc.kill()  # a crashed driver: SIGKILL, nothing runs after it
    out, _ = proc.communicate(timeout=120)
    interrupted = pd.read_csv(board_path, dtype={"trial_id": str})
    assert len(interrupted) < samples or (interrupted.status != "completed").any(), out

    resumed = subprocess.run(_cli("sweep", str(space_file), "--resume", *common), env=env,
                             capture_output=True, text=True, timeout=400)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    # Not a terminal: one plain line per event, and where the sweep stands after each end.
    lines = resumed.stdout.splitlines()
    assert any(re.fullmatch(r"  trial \w+ started: hidden=\[\d+\], lr=0\.\d+", ln)
               for ln in lines), resumed.stdout
    assert f"  {samples}/{samples} trials: {samples} completed; " in resumed.stdout
    assert any(ln.startswith("  best val_acc 0.") for ln in lines), resumed.stdout
    final = pd.read_csv(board_path, dtype={"trial_id": str})
    assert len(final) == samples and final.trial_id.is_unique
    # A trial that was running (or had just reported its last epoch) when the sweep was
    # stopped continues from its checkpoint: it ends completed, not cut short.
    assert set(final.status) == {"completed"}, final[["trial_id", "status", "epochs_run"]]
    # Trials finished before the interruption kept their results and were not re-run.
    kept = final.set_index("trial_id").loc[finished_before.trial_id]
    assert list(kept["val_acc"]) == list(finished_before["val_acc"])
    assert list(kept["train_time_s"]) == list(finished_before["train_time_s"])
    # The searcher's state came back too: the study holds each trial once, told as the
    # leaderboard says, and nothing left running.
    study = load_study(results / "resumable")
    told = [t for t in study.trials if t.state != TrialState.FAIL]
    assert sorted(t.user_attrs["ray_trial_id"] for t in told) == sorted(final.trial_id)
    assert {t.state for t in told} == {TrialState.COMPLETE}
    values = {t.user_attrs["ray_trial_id"]: t.value for t in told}
    assert values == dict(zip(final.trial_id, final.val_acc, strict=True))


def test_on_a_terminal_the_sweep_redraws_a_live_table_in_place(mnist_subset_dir: Path,
                                                                tmp_path: Path):
    import pty

    raw = {**SMALL_MLP, "experiment": "on_a_tty", "start_points": SMALL_MLP["start_points"][:1],
           "budget": {"num_samples": 1, "max_epochs": 2, "grace_period": 2}}
    space_file = tmp_path / "tty.yaml"
    space_file.write_text(yaml.safe_dump(raw))
    leader, follower = pty.openpty()
    proc = subprocess.Popen(_cli("sweep", str(space_file), "--results-dir", str(tmp_path),
                                 "--data-dir", str(mnist_subset_dir)),
                            stdout=follower, stderr=follower, env={**os.environ, "COLUMNS": "150"})
    os.close(follower)
    chunks = []
    with contextlib.suppress(OSError):  # EIO once the sweep has closed the terminal
        while chunk := os.read(leader, 65536):
            chunks.append(chunk)
    os.close(leader)
    assert proc.wait(timeout=300) == 0
    out = b"".join(chunks).decode(errors="replace")
    assert "\x1b[2K" in out, out  # rich erases and redraws the table's lines in place
    assert "1/1 trials: 1 completed; " in out, out
    assert re.search(r"best val_acc 0\.\d{4}: trial \w+ \(completed\), hidden=\[64\], "
                     r"lr=0\.05", out), out


def test_cli_reports_bad_input_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**SMALL_MLP, "start_points": [], "search": {
        "model.dropout": {"type": "float", "low": 0.0, "high": 1.5}}}))
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(SMALL_MLP))
    for args, expected in [
        (("sweep", str(bad), "--results-dir", str(tmp_path / "r")), "dropout"),
        (("sweep", str(tmp_path / "missing.yaml")), "search-space file not found"),
        (("sweep", str(good), "--data-dir", str(tmp_path / "nowhere"),
          "--results-dir", str(tmp_path / "r")), "nowhere"),
        (("leaderboard", str(tmp_path)), "no leaderboard.csv"),
    ]:
        code, err = cli_in_process(args, capsys)  # `main` as the console script calls it
        assert code == 2, (args, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and expected in lines[0], (args, err)
        assert "Traceback" not in err
    assert not (tmp_path / "r").exists(), "nothing may be written for a rejected file"


# Runs in its own process: the test session's Ray is a plain one, and this needs the Ray that
# `hpsearch sweep` starts (its worker processes preload the trial code).
WARM_WORKERS_SCRIPT = """
import json, sys
from pathlib import Path
from hpsearch.scripts.bench.run import idle_ray_workers, wait_for_idle_workers
from hpsearch.scripts.tune.cluster import init_ray
from hpsearch.scripts.tune.driver import SweepOptions, run_sweep
from hpsearch.search_spaces.schema import parse_space

raw = json.loads(sys.argv[1])
init_ray(None)
wait_for_idle_workers(2)
warm = list(idle_ray_workers())
outcome = run_sweep(parse_space(raw, "warm.yaml"), raw, SweepOptions(
    results_dir=Path(sys.argv[2]), data_dir=sys.argv[3], quiet=True))
results = [json.loads(line) for path in (outcome.exp_dir / "ray").rglob("result.json")
           for line in path.read_text().splitlines()]
print(json.dumps({"warm": sorted(warm), "trials": [[r["pid"], r["data"]] for r in results]}))
"""


def test_local_sweep_runs_its_trials_in_ray_s_warm_workers(mnist_subset_dir: Path,
                                                          tmp_path: Path):
    """The workers a local Ray starts ahead of time (with the trial code imported) run the
    trials: none waits for a new process, and the data comes through the object store."""
    raw = _lr_sweep("tiny_mlp", {"num_samples": 4, "max_epochs": 1, "grace_period": 1})
    raw["resources"]["max_concurrent"] = 2
    proc = subprocess.run(
        [sys.executable, "-c", WARM_WORKERS_SCRIPT, json.dumps(raw), str(tmp_path),
         str(mnist_subset_dir)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    pids = {pid for pid, _ in report["trials"]}
    assert len(report["trials"]) == 4 and pids and pids <= set(report["warm"]), report
    assert {data for _, data in report["trials"]} == {"object-store"}


def test_retrain_with_seeds_summarises_the_test_metrics_over_them(tiny_sweep,
                                                                   mnist_subset_dir: Path):
    exp_dir = tiny_sweep.exp_dir
    common = {"data_dir": str(mnist_subset_dir), "accelerator": "cpu"}
    single = json.loads(
        (retrain(exp_dir, RetrainOptions(**common)).parent / "metrics.json").read_text())
    s = int(pd.read_csv(exp_dir / LEADERBOARD)["seed"].iloc[0])
    assert single["seeds"] == [s] and len(single["per_seed"]) == 1
    assert single["summary"]["accuracy"]["std"] is None

    report = retrain(exp_dir, RetrainOptions(seeds=3, **common))
    metrics = json.loads((report.parent / "metrics.json").read_text())
    assert metrics["seeds"] == [s, s + 1, s + 2]
    assert [e["seed"] for e in metrics["per_seed"]] == [s, s + 1, s + 2]
    # The first seed is the sweep trial's own: the same run as a single-seed re-train, and
    # the folder's model and figures are its.
    assert metrics["per_seed"][0]["test"]["accuracy"] == single["test"]["accuracy"]
    assert metrics["test"]["accuracy"] == single["test"]["accuracy"]
    assert metrics["config"]["seed"] == s
    assert abs(metrics["retrain_value"] - metrics["sweep_value"]) <= REPRODUCE_TOLERANCE
    accs = np.array([e["test"]["accuracy"] for e in metrics["per_seed"]])
    assert len(set(accs)) > 1, "different seeds gave identical runs"
    assert all(e["train_cpu_s"] > 0 for e in metrics["per_seed"])
    assert metrics["compute"]["train_cpu_h"] == pytest.approx(
        sum(e["train_cpu_s"] for e in metrics["per_seed"]) / 3600)
    acc = metrics["summary"]["accuracy"]
    assert acc["n"] == 3
    assert acc["mean"] == pytest.approx(accs.mean())
    assert acc["std"] == pytest.approx(accs.std(ddof=1))
    assert acc["ci95_low"] < acc["mean"] < acc["ci95_high"]
    assert set(metrics["summary"]) == {"accuracy", "macro_f1", "loss"}
    text = report.read_text()
    assert "## Test set over 3 seeds" in text and "| seed | accuracy | F1 | loss |" in text
    for e in metrics["per_seed"]:
        assert f"| {e['seed']} | {e['test']['accuracy']:.4f} |" in text
    assert f"| mean ± std | {acc['mean']:.4f} ± {acc['std']:.4f} |" in text

    compare(exp_dir.parent)
    row = pd.read_csv(exp_dir.parent / "comparison.csv").iloc[0]
    assert row["test_acc"] == pytest.approx(accs.mean())
    assert row["test_acc_std"] == pytest.approx(accs.std(ddof=1))
    assert row["seeds"] == 3
    sweep_h = json.loads((exp_dir / "sweep.json").read_text())["compute"]["sweep_cpu_h"]
    assert row["total_cpu_h"] == pytest.approx(sweep_h + metrics["compute"]["train_cpu_h"])
    assert f"{accs.mean():.4f} ± {accs.std(ddof=1):.4f}" in (
        exp_dir.parent / "comparison.md").read_text()
