"""Chaos run: kill a real sweep's driver and trial workers at random moments, resume after
every driver kill, and count what was lost.

    python -m hpsearch.scripts.chaos --kills 20 [--seed 0] [--out results/chaos.json]

Each sweep is ``hpsearch sweep`` on MNIST (a small MLP, trials two at a time). A kill is
SIGKILL, of the driver (then ``--resume``) or of a trial's worker process (Tune retries the
trial from its checkpoint); a third of the kills follow right after a trial finished. Sweeps
are run one after another until the kills are spent. Counted, against what the leaderboard
showed as finished before each kill:

- lost: a finished trial missing from the final leaderboard, or no longer finished;
- re-run: a finished trial whose figures changed afterwards (trained again);
- complete: the final leaderboard has ``num_samples`` rows, every one finished, and the
  Optuna study was told each once (COMPLETE or PRUNED), none left RUNNING.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from hpsearch.datamodules.paths import atomic_write_json
from hpsearch.scripts.experiment_folder import ExperimentFolder
from hpsearch.scripts.leaderboard import FINISHED_STATUSES

SPACE = {
    "experiment": "chaos",
    "data": {"name": "mnist", "val_size": 2000, "batch_size": 200},
    "model": {"family": "mlp", "hidden": [32]},
    "optimizer": {"name": "sgd", "momentum": 0.9},
    "search": {"optimizer.lr": {"type": "float", "low": 0.01, "high": 0.1, "log": True}},
    "objective": {"metric": "val_acc", "mode": "max"},
    "budget": {"num_samples": 8, "max_epochs": 4, "grace_period": 2},
    "resources": {"cpus_per_trial": 1, "max_concurrent": 2},
}
# The figures that change if a finished trial is trained again.
FIGURES = ("status", "val_acc", "best_epoch", "epochs_run", "train_time_s")
SWEEP_TIMEOUT_S = 600


@dataclass
class SweepTally:
    name: str
    driver_kills: int = 0
    worker_kills: int = 0
    runs: int = 0
    lost: list[str] = field(default_factory=list)
    re_run: list[str] = field(default_factory=list)
    rows: int = 0
    finished_rows: int = 0
    optuna_told: int = 0  # COMPLETE or PRUNED (an early-stopped trial)
    optuna_failed: int = 0  # asked but abandoned by a kill before its trial started
    optuna_running: int = 0
    complete: bool = False


def _read_board(exp_dir: Path) -> dict[str, dict[str, str]]:
    import csv

    path = ExperimentFolder(exp_dir).leaderboard
    if not path.is_file():
        return {}
    with path.open(newline="") as src:
        return {row["trial_id"]: row for row in csv.DictReader(src)}


def _finished(board: dict[str, dict[str, str]]) -> dict[str, tuple[str, ...]]:
    return {tid: tuple(row.get(k, "") for k in FIGURES) for tid, row in board.items()
            if row["status"] in FINISHED_STATUSES}


def descendants(pid: int, keep: Callable[[str], bool]) -> list[Any]:
    """The processes below ``pid`` whose command line (Ray sets it to a title such as
    ``ray::ImplicitFunc.train``) ``keep`` accepts."""
    import psutil

    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    found = []
    for proc in children:
        try:
            title = " ".join(proc.cmdline()) or proc.name()
        except psutil.Error:
            continue
        if keep(title):
            found.append(proc)
    return found


def _trial_workers(driver_pid: int) -> list[Any]:
    """The driver's Ray worker processes that are running a trial now."""
    return descendants(driver_pid, lambda title: title.startswith("ray::")
                       and "IDLE" not in title and "ImplicitFunc" in title)


def _kill_tree(driver: subprocess.Popen) -> None:
    """SIGKILL the driver, then what it started (a local Ray does not outlive it long, but
    the next run should not wait for it). The driver is reaped by its Popen: reaped by
    psutil instead, Popen would read its exit status as 0."""
    import psutil

    try:
        children = psutil.Process(driver.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        children = []
    driver.kill()
    driver.wait()
    for child in children:
        try:
            child.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(children, timeout=30)


def _start(space_file: Path, results: Path, name: str, resume: bool) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "hpsearch", "sweep", str(space_file), "--results-dir",
           str(results), "--name", name, "--max-failures", "20"] + (["--resume"] if resume
                                                                    else [])
    with (results / f"{name}.log").open("a") as log:  # every run's output, for a post-mortem
        log.write(f"$ {' '.join(cmd)}\n")
        log.flush()
        return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})


def _wait_for_moment(proc: subprocess.Popen, exp_dir: Path, rng: random.Random) -> bool:
    """Wait for a random moment (or one right after a trial finished); False if the sweep
    ended first."""
    after_finish = rng.random() < 1 / 3
    before = len(_finished(_read_board(exp_dir)))
    deadline = time.monotonic() + (SWEEP_TIMEOUT_S if after_finish else rng.uniform(0.3, 12))
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        if after_finish and len(_finished(_read_board(exp_dir))) > before:
            time.sleep(rng.uniform(0.0, 0.05))
            return proc.poll() is None
        time.sleep(0.02)
    return proc.poll() is None


def _tally_study(exp_dir: Path, tally: SweepTally) -> None:
    from optuna.trial import TrialState

    from hpsearch.scripts.study import load_study

    trials = load_study(exp_dir).trials
    told = {TrialState.COMPLETE, TrialState.PRUNED}
    tally.optuna_told = sum(t.state in told for t in trials)
    tally.optuna_failed = sum(t.state == TrialState.FAIL for t in trials)
    tally.optuna_running = sum(t.state == TrialState.RUNNING for t in trials)


def chaos_sweep(space_file: Path, results: Path, name: str, kills_left: int,
                rng: random.Random) -> SweepTally:
    """One sweep killed up to ``kills_left`` times, resumed until it completes."""
    tally = SweepTally(name)
    exp_dir = results / name
    results.mkdir(parents=True, exist_ok=True)
    seen: dict[str, tuple[str, ...]] = {}
    while True:
        # Killed before Ray's folder appeared, the sweep is started anew rather than resumed.
        proc = _start(space_file, results, name, resume=ExperimentFolder(exp_dir).ray_dir.is_dir())
        tally.runs += 1
        while kills_left > 0 and _wait_for_moment(proc, exp_dir, rng):
            seen.update({k: v for k, v in _finished(_read_board(exp_dir)).items()
                         if k not in seen})
            workers = _trial_workers(proc.pid)
            kills_left -= 1
            if workers and rng.random() < 0.5:
                rng.choice(workers).kill()
                tally.worker_kills += 1
                continue
            _kill_tree(proc)
            tally.driver_kills += 1
            break
        if proc.poll() is None:
            proc.wait(timeout=SWEEP_TIMEOUT_S)
        if proc.returncode == 0:
            break
        if tally.runs > 60:
            raise RuntimeError(f"{name}: did not complete after {tally.runs} runs")
    final = _read_board(exp_dir)
    done = _finished(final)
    tally.lost = sorted(tid for tid in seen if tid not in done)
    tally.re_run = sorted(tid for tid, figures in seen.items()
                          if tid in done and done[tid] != figures)
    tally.rows, tally.finished_rows = len(final), len(done)
    _tally_study(exp_dir, tally)
    num_samples = int(SPACE["budget"]["num_samples"])
    tally.complete = (tally.rows == tally.finished_rows == num_samples
                      and tally.optuna_told == num_samples and tally.optuna_running == 0)
    return tally


def run_chaos(kills: int, seed: int, out: Path | None, work_dir: Path | None = None
              ) -> dict[str, Any]:
    rng = random.Random(seed)
    started = time.monotonic()
    tallies: list[SweepTally] = []
    with (contextlib.nullcontext(str(work_dir)) if work_dir
          else tempfile.TemporaryDirectory(prefix="hpsearch-chaos-")) as tmp:
        Path(tmp).mkdir(parents=True, exist_ok=True)
        space_file = Path(tmp, "chaos.yaml")
        space_file.write_text(yaml.safe_dump(SPACE))
        spent = 0
        while spent < kills:
            tally = chaos_sweep(space_file, Path(tmp, "results"), f"chaos-{len(tallies)}",
                                kills - spent, rng)
            tallies.append(tally)
            spent += tally.driver_kills + tally.worker_kills
            print(json.dumps(asdict(tally)), flush=True)
    report = {
        "kills": sum(t.driver_kills + t.worker_kills for t in tallies),
        "driver_kills": sum(t.driver_kills for t in tallies),
        "worker_kills": sum(t.worker_kills for t in tallies),
        "sweeps": len(tallies),
        "resumes": sum(t.runs - 1 for t in tallies),
        "finished_trials_lost": sum(len(t.lost) for t in tallies),
        "finished_trials_re_run": sum(len(t.re_run) for t in tallies),
        "sweeps_complete": sum(t.complete for t in tallies),
        "num_samples_each": SPACE["budget"]["num_samples"],
        "wall_time_s": round(time.monotonic() - started, 1),
        "seed": seed,
        "sweeps_detail": [asdict(t) for t in tallies],
    }
    if out is not None:
        atomic_write_json(out, report)
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20, help="kills in all (default 20)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill moments")
    parser.add_argument("--out", type=Path, help="write the report (JSON) here")
    parser.add_argument("--work-dir", type=Path,
                        help="keep the sweeps and their logs here (default: a temporary dir)")
    args = parser.parse_args()
    report = run_chaos(args.kills, args.seed, args.out, args.work_dir)
    summary = {k: v for k, v in report.items() if k != "sweeps_detail"}
    print(json.dumps(summary, indent=2))
    ok = (report["finished_trials_lost"] == 0 and report["finished_trials_re_run"] == 0
          and report["sweeps_complete"] == report["sweeps"])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
