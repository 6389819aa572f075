"""``hpsearch bench --only search``: does the search pay?

Six ways to search a space, each with the same budget of training epochs per run
(``budget.total_epochs``), each run a command of its own from a cold start:

- ``random``: ``hpsearch sweep`` with ``sampler: random`` and ``scheduler: none``;
- ``random+asha``: ``hpsearch sweep`` with ``sampler: random`` (ASHA stops trials early);
- ``tpe+asha``: ``hpsearch sweep`` with ``sampler: tpe``, the default before ``rung_tpe``;
- ``rung_tpe+asha``: ``hpsearch sweep`` with ``sampler: rung_tpe``;
- ``smac``: SMAC's multi-fidelity facade, a library method as is (:mod:`.smac_mf`);
- ``optuna``: plain Optuna in one process, no Ray (:mod:`.plain_optuna`).

Every method runs in two settings: ``alone`` (the space's start points removed: the search
alone) and ``start`` (the start points tried first). Seeds, then settings, then methods are
interleaved, so that a slow spell of the machine hits them alike. Every finished run is
appended to ``results/search-runs-SPACE[-quick].jsonl`` at once; a bench started again skips
the runs there (it resumes). The statistics are in :mod:`.search_stats`.
"""

from __future__ import annotations

import copy
import csv
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from hpsearch.scripts.bench.search_stats import (
    ALONE,
    START,
    Run,
    curves,
    plot_curves,
    rows_csv,
    search_target,
    space_figures,
)
from hpsearch.scripts.experiment_folder import ExperimentFolder
from hpsearch.search_spaces.schema import load_yaml_mapping

SPACES_DIR = Path(__file__).resolve().parents[2] / "search_spaces"
# Two spaces the new method was developed on, and a third it was not tuned on (held out).
TUNING_SPACES = ("bench_hog_mlp.yaml", "bench_mnist_mlp.yaml")
HELD_OUT_SPACE = "bench_fashion_mlp.yaml"
SPACE_FILE = SPACES_DIR / TUNING_SPACES[0]  # the quick mode's, and the CI smoke run's
TIMEOUT_S = 1800  # one run; a hung command fails the bench instead of hanging it


@dataclass(frozen=True)
class Method:
    name: str
    label: str
    sampler: str = ""  # for hpsearch sweep
    scheduler: str = ""
    command: str = "hpsearch"  # or the module of a one-process baseline
    fair_rungs: bool = False  # budget.fair_rungs: decaying schedules run in cycles ending at rungs


METHODS = (
    Method("random", "random, no early stopping", "random", "none"),
    Method("random+asha", "random + ASHA", "random", "asha"),
    Method("tpe+asha", "TPE + ASHA, no fair rungs", "tpe", "asha"),
    Method("rung_tpe+asha", "rung_tpe + ASHA", "rung_tpe", "asha"),
    Method("smac", "SMAC multi-fidelity (random forest + Hyperband), one process",
           command="hpsearch.scripts.bench.smac_mf"),
    Method("optuna", "plain Optuna: TPE + successive halving, one process",
           command="hpsearch.scripts.bench.plain_optuna"),
    # The start points' cosine and one-cycle schedules are judged mid-schedule at ASHA's
    # rungs; with fair rungs, at the end of a cycle (added after the first two spaces ran).
    Method("tpe+asha+fair", "TPE + ASHA, fair rungs (the default)", "tpe", "asha", fair_rungs=True),
)
SETTINGS = (ALONE, START)


@dataclass(frozen=True)
class SearchMode:
    name: str
    seeds: tuple[int, ...]
    max_epochs: int  # per trial; ASHA's rungs at 1, 2, 4, ...
    total_epochs: int  # per run, every method
    train_subset: int  # training images (the rest of the training split is unused)
    val_size: int


QUICK = SearchMode("quick", seeds=(0,), max_epochs=2, total_epochs=6, train_subset=2_000,
                   val_size=2_000)
FULL = SearchMode("full", seeds=tuple(range(10)), max_epochs=16, total_epochs=128,
                  train_subset=5_000, val_size=5_000)


def bench_space(mode: SearchMode, method: Method, setting: str, seed: int,
                space_file: Path = SPACE_FILE) -> dict[str, Any]:
    """The space as the method searches it in ``setting``, with the mode's budget."""
    raw = copy.deepcopy(load_yaml_mapping(space_file))
    if setting == ALONE:
        raw.pop("start_points", None)
    raw["experiment"] = f"search-{method.name}-{setting}-{seed}"
    raw["budget"] = {"num_samples": 1000, "max_epochs": mode.max_epochs, "grace_period": 1,
                     "reduction_factor": 2, "total_epochs": mode.total_epochs,
                     "fair_rungs": method.fair_rungs}
    raw["sampler"] = {"name": method.sampler or "tpe"}
    raw["scheduler"] = {"name": method.scheduler or "asha"}
    raw["seed"] = seed
    raw["data"] = {**raw["data"], "train_subset": mode.train_subset, "val_size": mode.val_size}
    return raw


def warm_hog_cache(raw: dict[str, Any], data_dir: str | None) -> None:
    """Compute every HOG variant the space can draw before any timed run, so that no run
    pays for the first computation of one (all read the disk cache alike)."""
    from hpsearch.datamodules import build_datamodule, data_config_from_dict

    search = raw["search"]
    if "data.pixels_per_cell" not in search:
        return  # not a HOG space
    for cells in search["data.pixels_per_cell"]["values"]:
        for orientations in search["data.orientations"]["values"]:
            data = {**raw["data"], "pixels_per_cell": cells, "orientations": orientations}
            build_datamodule(data_config_from_dict(data), data_dir).setup("fit")


def _command(method: Method, space_file: Path, work: Path, seed: int,
             data_dir: str | None) -> list[str]:
    data = ["--data-dir", data_dir] if data_dir else []
    if method.command != "hpsearch":
        return [sys.executable, "-m", method.command, str(space_file), "--seed", str(seed),
                "--events", str(work / "events.jsonl"), *data]
    return [sys.executable, "-m", "hpsearch", "sweep", str(space_file), "--results-dir",
            str(work), "--name", "sweep", *data]


def sweep_events(exp_dir: Path) -> list[dict[str, Any]]:
    """Every epoch reported by the sweep's trials (Ray's ``result.json`` files)."""
    events = []
    for path in ExperimentFolder(exp_dir).ray_dir.glob("*/result.json"):
        events += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return events


def run_method(mode: SearchMode, method: Method, setting: str, seed: int,
               data_dir: str | None, space: Path = SPACE_FILE) -> Run:
    """Run one method for one seed and setting as a separate command; collect its events."""
    with tempfile.TemporaryDirectory(prefix="hpsearch-search-bench-") as tmp:
        work = Path(tmp)
        space_file = work / "space.yaml"
        space_file.write_text(yaml.safe_dump(bench_space(mode, method, setting, seed, space),
                                             sort_keys=False))
        started = time.time()
        proc = subprocess.run(_command(method, space_file, work, seed, data_dir),
                              capture_output=True, text=True, timeout=TIMEOUT_S)
        wall = time.time() - started
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            raise RuntimeError(f"search bench: {method.name} ({setting}) seed {seed} failed: "
                               + " | ".join(tail))
        if method.command != "hpsearch":
            lines = (work / "events.jsonl").read_text().splitlines()
            events = [json.loads(line) for line in lines if line.strip()]
            trials = len({e["trial"] for e in events})
            stopped = trials - len({e["trial"] for e in events if e["epoch"] == mode.max_epochs})
        else:
            events = sweep_events(work / "sweep")
            statuses = [row["status"] for row in csv.DictReader(
                ExperimentFolder(work / "sweep").leaderboard.open())]
            trials, stopped = len(statuses), statuses.count("early-stopped")
    events.sort(key=lambda e: e["reported_at"])
    timeline = tuple((round(e["reported_at"] - started, 3), float(e["val_acc"]))
                     for e in events if e.get("val_acc") is not None)
    return Run(space.stem, method.name, setting, seed, round(wall, 2),
               timeline[: mode.total_epochs], trials, stopped)


class RunStore:
    """The finished runs of one space and mode, one JSON line each, appended as each ends
    (a line cut short by a crash is ignored), so that the bench resumes where it stopped."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.runs: list[Run] = []
        if not path.exists():
            return
        lines = path.read_text().splitlines()
        for line in lines:
            try:
                raw = json.loads(line)
            except json.JSONDecodeError:
                continue
            self.runs.append(Run(**{**raw, "events": tuple(map(tuple, raw["events"]))}))
        if len(self.runs) < len(lines):  # drop the cut line, or the next run would join it
            from hpsearch.datamodules.paths import atomic_write_text

            atomic_write_text(path, "".join(json.dumps(asdict(r)) + "\n" for r in self.runs))

    def has(self, method: str, setting: str, seed: int) -> bool:
        return any((r.method, r.setting, r.seed) == (method, setting, seed) for r in self.runs)

    def add(self, run: Run) -> None:
        with self.path.open("a") as out:
            out.write(json.dumps(asdict(run)) + "\n")
            out.flush()
            os.fsync(out.fileno())
        self.runs.append(run)


def bench_search(data_dir: str | None, quick: bool, out: Path, figure: Any,
                 spaces: Sequence[Path] | None = None) -> list[Any]:
    """Run every method in both settings for every seed of the mode on each space (skipping
    the runs already stored); write the curves (CSV, PNG) beside ``out``; return figures."""
    from hpsearch.datamodules.paths import atomic_write_text

    mode = QUICK if quick else FULL
    spaces = list(spaces or ([SPACE_FILE] if quick else
                             [SPACES_DIR / s for s in (*TUNING_SPACES, HELD_OUT_SPACE)]))
    suffix = "-quick" if quick else ""
    figures = []
    for space in spaces:
        path = out.parent / f"search-runs-{space.stem}{suffix}.jsonl"
        if quick:
            path.unlink(missing_ok=True)  # a smoke run: measured afresh each time
        store = RunStore(path)
        warm_hog_cache(bench_space(mode, METHODS[0], ALONE, 0, space), data_dir)
        for seed in mode.seeds:
            for setting in SETTINGS:
                for method in METHODS:
                    if store.has(method.name, setting, seed):
                        continue
                    run = run_method(mode, method, setting, seed, data_dir, space)
                    store.add(run)
                    print(f"  search {space.stem} {method.name} ({setting}) seed {seed}: best "
                          f"val_acc {run.final_best:.4f} in {len(run.events)} epochs, "
                          f"{run.trials} trials, command {run.wall_s:.1f} s", flush=True)
        runs = [r for r in store.runs if r.seed in mode.seeds]
        names = [m.name for m in METHODS]
        figures += space_figures(runs, names, mode.total_epochs, figure,
                                 judged=not quick)
        stem = out.parent / f"search-curves-{space.stem}{suffix}"
        rows = curves(runs, names, mode.total_epochs)
        atomic_write_text(stem.with_suffix(".csv"), rows_csv(rows))
        targets = {setting: search_target(runs, setting) for setting in SETTINGS}
        if not any(math.isnan(t) for t in targets.values()):
            plot_curves(rows, targets, stem.with_suffix(".png"),
                        {m.name: m.label for m in METHODS})
        print(f"Anytime curves: {stem}.csv, {stem}.png", flush=True)
    return figures
