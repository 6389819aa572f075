"""``hpsearch bench --only search``: does the search pay?

Five ways to search a space (by default ``search_spaces/bench_hog_mlp.yaml``: the HOG MLP's
space as the committed figures measured it, without start points), each with the same budget
of training epochs (``budget.total_epochs``) and run as a command of its own from a cold start,
once per seed:

- (a) ``tpe+asha``: hpsearch's default, ``hpsearch sweep``;
- (b) ``random+asha``: ``hpsearch sweep`` with ``sampler: random``;
- (c) ``random``: ``hpsearch sweep`` with ``sampler: random`` and ``scheduler: none``;
- (d) ``optuna``: plain Optuna in one process, no Ray (:mod:`scripts.bench.plain_optuna`);
- (e) ``tpe4+asha``: (a) with 4 random start-up trials instead of Optuna's 10.

Every epoch any trial trains is an event (its time and validation accuracy); a run's anytime
curve is the best validation accuracy so far against cumulative epochs and against seconds
since the command started. The target is the median final best of (c); each method's epochs
and seconds to reach it are medians over the seeds (a run that never reaches it counts as
infinite). The targets are judged in the full mode, printed, never asserted.
"""

from __future__ import annotations

import copy
import csv
import io
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from hpsearch.scripts.experiment_folder import ExperimentFolder
from hpsearch.search_spaces.schema import load_yaml_mapping

# The default space: the HOG MLP's epochs are short; frozen apart from the experiment's
# space so the committed figures stay reproducible. ``--search-space`` picks another.
SPACE_FILE = Path(__file__).resolve().parents[2] / "search_spaces" / "bench_hog_mlp.yaml"
TIMEOUT_S = 1800  # one run; a hung command fails the bench instead of hanging it


@dataclass(frozen=True)
class Method:
    name: str
    label: str
    sampler: str | None = None  # None: plain Optuna, not hpsearch sweep
    scheduler: str | None = None
    sampler_options: tuple[tuple[str, Any], ...] = ()


METHODS = (
    Method("tpe+asha", "(a) TPE + ASHA, hpsearch's default", "tpe", "asha"),
    Method("random+asha", "(b) random + ASHA", "random", "asha"),
    Method("random", "(c) random, no early stopping", "random", "none"),
    Method("optuna", "(d) plain Optuna, one process: TPE + successive halving, 2 at a time"),
    # Optuna's TPE draws its first 10 trials at random, most of a 64-epoch budget's trials
    # under ASHA: the same TPE modelling from the 5th trial on.
    Method("tpe4+asha", "(e) TPE with 4 start-up trials + ASHA", "tpe", "asha",
           (("n_startup_trials", 4),)),
)
DEFAULT, BASELINE, PLAIN = "tpe+asha", "random", "optuna"
# The targets: (a) needs at most half the epochs (c) needs, and from a cold start at
# most the seconds (d) needs, to reach the median final best of (c).
MAX_EPOCH_RATIO = 0.5
MAX_WALL_RATIO = 1.0


@dataclass(frozen=True)
class SearchMode:
    name: str
    seeds: tuple[int, ...]
    max_epochs: int  # per trial; ASHA's rungs at 1, 2, 4, ...
    total_epochs: int  # per run, every method
    # Validation images of HOG-MNIST (the rest of its 60,000 are trained on); None: the space's.
    val_size: int | None


QUICK = SearchMode("quick", seeds=(0, 1), max_epochs=2, total_epochs=6, val_size=57_000)
FULL = SearchMode("full", seeds=(0, 1, 2, 3, 4), max_epochs=8, total_epochs=64, val_size=None)


@dataclass(frozen=True)
class Run:
    """One method's run for one seed: ``events`` are (seconds since the command started,
    validation accuracy) of every trained epoch, in order."""

    method: str
    seed: int
    wall_s: float
    events: tuple[tuple[float, float], ...]
    trials: int
    stopped_early: int


def bench_space(mode: SearchMode, method: Method, seed: int,
                space_file: Path = SPACE_FILE) -> dict[str, Any]:
    """The space as the method searches it, with the mode's epoch budget."""
    raw = load_yaml_mapping(space_file)
    raw = copy.deepcopy(raw)
    raw.pop("start_points", None)  # random search would not be random with them
    raw["experiment"] = f"search-{method.name}-{seed}"
    raw["budget"] = {"num_samples": 1000, "max_epochs": mode.max_epochs, "grace_period": 1,
                     "reduction_factor": 2, "total_epochs": mode.total_epochs}
    raw["sampler"] = {"name": method.sampler or "tpe", **dict(method.sampler_options)}
    raw["scheduler"] = {"name": method.scheduler or "asha"}
    raw["seed"] = seed
    if mode.val_size is not None:
        raw["data"] = {**raw["data"], "val_size": mode.val_size}
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


def _command(method: Method, space_file: Path, work: Path, data_dir: str | None) -> list[str]:
    data = ["--data-dir", data_dir] if data_dir else []
    if method.sampler is None:
        return [sys.executable, "-m", "hpsearch.scripts.bench.plain_optuna", str(space_file),
                "--seed",
                str(load_yaml_mapping(space_file)["seed"]), "--events",
                str(work / "events.jsonl"), *data]
    return [sys.executable, "-m", "hpsearch", "sweep", str(space_file), "--results-dir",
            str(work), "--name", "sweep", *data]


def sweep_events(exp_dir: Path) -> list[dict[str, Any]]:
    """Every epoch reported by the sweep's trials (Ray's ``result.json`` files)."""
    events = []
    for path in ExperimentFolder(exp_dir).ray_dir.glob("*/result.json"):
        events += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return events


def run_method(mode: SearchMode, method: Method, seed: int, data_dir: str | None,
               space: Path = SPACE_FILE) -> Run:
    """Run one method for one seed as a separate command and collect its events."""
    with tempfile.TemporaryDirectory(prefix="hpsearch-search-bench-") as tmp:
        work = Path(tmp)
        space_file = work / "space.yaml"
        raw = bench_space(mode, method, seed, space)
        space_file.write_text(yaml.safe_dump(raw, sort_keys=False))
        started = time.time()
        proc = subprocess.run(_command(method, space_file, work, data_dir),
                              capture_output=True, text=True, timeout=TIMEOUT_S)
        wall = time.time() - started
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            raise RuntimeError(f"search bench: {method.name} seed {seed} failed: "
                               + " | ".join(tail))
        if method.sampler is None:
            lines = (work / "events.jsonl").read_text().splitlines()
            events = [json.loads(line) for line in lines if line.strip()]
            trials = len({e["trial"] for e in events})
            stopped = trials - sum(1 for e in events if e["epoch"] == mode.max_epochs)
        else:
            events = sweep_events(work / "sweep")
            statuses = [row["status"] for row in csv.DictReader(
                ExperimentFolder(work / "sweep").leaderboard.open())]
            trials, stopped = len(statuses), statuses.count("early-stopped")
    events.sort(key=lambda e: e["reported_at"])
    timeline = tuple((e["reported_at"] - started, float(e["val_acc"])) for e in events
                     if e.get("val_acc") is not None)
    return Run(method.name, seed, wall, timeline[: mode.total_epochs], trials, stopped)


# ----------------------------------------------------------------------------- statistics


def best_by_epoch(run: Run, total: int) -> np.ndarray:
    """The best validation accuracy after 1, 2, ..., ``total`` trained epochs (the last
    value held where a run trained fewer)."""
    best = np.maximum.accumulate([acc for _, acc in run.events]) if run.events else np.zeros(1)
    return np.array([best[min(k, len(best) - 1)] for k in range(total)])


def best_at_times(run: Run, times: Sequence[float]) -> np.ndarray:
    """The best validation accuracy found by each of ``times`` (NaN before the first)."""
    out = []
    for t in times:
        found = [acc for at, acc in run.events if at <= t]
        out.append(max(found) if found else math.nan)
    return np.array(out)


def to_target(run: Run, target: float) -> tuple[float, float]:
    """Epochs and seconds the run needed to reach ``target`` (infinite if it never did)."""
    best = -math.inf
    for epochs, (at, acc) in enumerate(run.events, start=1):
        best = max(best, acc)
        if best >= target:
            return float(epochs), at
    return math.inf, math.inf


def median(values: Sequence[float]) -> float:
    """The median, infinite values included (more than half infinite: infinite)."""
    ordered = sorted(values)
    n = len(ordered)
    if n == 0:
        return math.nan
    mid = ordered[(n - 1) // 2], ordered[n // 2]
    return mid[0] if mid[0] == mid[1] else (mid[0] + mid[1]) / 2


def quartiles(rows: np.ndarray) -> np.ndarray:
    """25th, 50th and 75th percentiles over seeds (rows), per column, ignoring NaN."""
    with np.errstate(all="ignore"):
        if np.isnan(rows).all(axis=0).any():
            out = np.full((3, rows.shape[1]), math.nan)
            has = ~np.isnan(rows).all(axis=0)
            out[:, has] = np.nanpercentile(rows[:, has], [25, 50, 75], axis=0)
            return out
        return np.nanpercentile(rows, [25, 50, 75], axis=0)


def curves(runs: Sequence[Run], total: int, seconds: Sequence[float]) -> list[dict[str, Any]]:
    """The anytime curves' rows: per method and axis, each point's quartiles over seeds."""
    rows = []
    for method in METHODS:
        mine = [r for r in runs if r.method == method.name]
        if not mine:
            continue
        for axis, xs, values in (
            ("epochs", list(range(1, total + 1)), np.array([best_by_epoch(r, total)
                                                             for r in mine])),
            ("seconds", list(seconds), np.array([best_at_times(r, seconds) for r in mine])),
        ):
            q = quartiles(values)
            rows += [{"method": method.name, "axis": axis, "x": round(float(x), 3),
                      "best_q25": q[0, i], "best_median": q[1, i], "best_q75": q[2, i],
                      "seeds": len(mine)} for i, x in enumerate(xs)]
    return rows


# -------------------------------------------------------------------------------- figures


def final_bests(runs: Sequence[Run]) -> dict[str, list[float]]:
    """Each method's best validation accuracy at the end of its budget, per seed."""
    return {m.name: [max((a for _, a in r.events), default=math.nan)
                     for r in runs if r.method == m.name] for m in METHODS}


def search_target(runs: Sequence[Run]) -> float:
    """The accuracy to reach: the median final best of random search without stopping."""
    return median(final_bests(runs)[BASELINE])


def search_figures(runs: Sequence[Run], mode: SearchMode, figure: Any) -> list[Any]:
    """The bench's figures for the search part (``figure`` makes one: the class
    ``scripts.bench.figures.Figure``)."""
    finals = final_bests(runs)
    target = search_target(runs)
    reach = {m.name: [to_target(r, target) for r in runs if r.method == m.name]
             for m in METHODS}
    epochs = {k: median([e for e, _ in v]) for k, v in reach.items()}
    seconds = {k: median([s for _, s in v]) for k, v in reach.items()}
    n = len({r.seed for r in runs})
    judged = mode.name == "full"
    figures = []
    for m in METHODS:
        mine = [r for r in runs if r.method == m.name]
        if not mine:
            continue
        per_seed = ", ".join(_short(e) for e, _ in reach[m.name])
        trials = median([r.trials for r in mine])
        stopped = median([r.stopped_early for r in mine])
        figures.append(figure(
            "search", f"{m.name}: best val_acc in {mode.total_epochs} epochs (median of {n})",
            median(finals[m.name]), median(finals[BASELINE]), "", "(c) random",
            note=f"{_quartile_text(finals[m.name])}; {trials:g} trials, {stopped:g} stopped "
                 "early (medians)"))
        epoch_target = f"<= {MAX_EPOCH_RATIO:g}x (c)" if m.name == DEFAULT else ""
        figures.append(figure(
            "search", f"{m.name}: epochs to reach {target:.4f} (median of {n})",
            epochs[m.name], epochs[BASELINE], "epochs", "(c) random", target=epoch_target,
            met=(epochs[m.name] <= MAX_EPOCH_RATIO * epochs[BASELINE]) if epoch_target and judged
            else None, note=f"per seed: {per_seed}"))
        wall_target = f"<= {MAX_WALL_RATIO:g}x (d)" if m.name == DEFAULT else ""
        figures.append(figure(
            "search", f"{m.name}: seconds to reach it, cold command (median of {n})",
            seconds[m.name], seconds[PLAIN], "s", "(d) plain Optuna", target=wall_target,
            met=(seconds[m.name] <= MAX_WALL_RATIO * seconds[PLAIN]) if wall_target and judged
            else None, note=f"per seed: {', '.join(_short(s) for _, s in reach[m.name])}; "
                            f"command {median([r.wall_s for r in mine]):.1f} s"))
    return figures


def _short(value: float) -> str:
    return "never" if math.isinf(value) else f"{value:.4g}"


def _quartile_text(values: Sequence[float]) -> str:
    q = np.nanpercentile(values, [25, 75]) if values else [math.nan, math.nan]
    return f"quartiles {q[0]:.4f}-{q[1]:.4f}"


# --------------------------------------------------------------------------------- output


def rows_csv(rows: Sequence[dict[str, Any]]) -> str:
    """A CSV with a column per key of the first row."""
    out = io.StringIO()
    if rows:
        writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return out.getvalue()


def plot_curves(rows: Sequence[dict[str, Any]], target: float, path: Path,
                experiment: str) -> None:
    """Anytime curves: median best val_acc (the band: quartiles) against epochs and seconds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    for ax, axis, label in ((axes[0], "epochs", "cumulative training epochs"),
                            (axes[1], "seconds", "seconds since the command started")):
        for method in METHODS:
            mine = [r for r in rows if r["method"] == method.name and r["axis"] == axis]
            if not mine:
                continue
            xs = [r["x"] for r in mine]
            line, = ax.plot(xs, [r["best_median"] for r in mine], label=method.label)
            ax.fill_between(xs, [r["best_q25"] for r in mine], [r["best_q75"] for r in mine],
                            color=line.get_color(), alpha=0.15)
        ax.axhline(target, color="k", linestyle=":", linewidth=1,
                   label=f"target {target:.4f}: median final best of (c)")
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("best validation accuracy so far")
    finite = [r["best_q25"] for r in rows if np.isfinite(r["best_q25"])]
    if finite:
        axes[0].set_ylim(max(min(finite), target - 0.03), None)
    axes[1].legend(loc="lower right", fontsize=8)
    fig.suptitle(f"Search efficiency on {experiment} (median and quartiles over seeds)")
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)


def bench_search(data_dir: str | None, quick: bool, out: Path, figure: Any,
                 space: Path = SPACE_FILE) -> list[Any]:
    """Run every method for every seed of the mode; write the anytime curves (CSV, PNG)
    beside ``out`` and return the figures."""
    from hpsearch.datamodules.paths import atomic_write_text

    mode = QUICK if quick else FULL
    warm_hog_cache(bench_space(mode, METHODS[0], 0, space), data_dir)
    runs = []
    for seed in mode.seeds:  # methods interleaved, so that a slow spell hits them alike
        for method in METHODS:
            run = run_method(mode, method, seed, data_dir, space)
            best = max((a for _, a in run.events), default=math.nan)
            print(f"  search {method.name} seed {seed}: best val_acc {best:.4f} in "
                  f"{len(run.events)} epochs, {run.trials} trials, command {run.wall_s:.1f} s",
                  flush=True)
            runs.append(run)
    longest = max(r.wall_s for r in runs)
    seconds = np.linspace(0.0, longest, 61)
    rows = curves(runs, mode.total_epochs, seconds)
    figures = search_figures(runs, mode, figure)
    target = search_target(runs)
    stem = out.parent / f"search-curves-{space.stem}{'-quick' if quick else ''}"
    atomic_write_text(stem.with_suffix(".csv"), rows_csv(rows))
    plot_curves(rows, target, stem.with_suffix(".png"), space.stem)
    print(f"Anytime curves: {stem}.csv, {stem}.png", flush=True)
    return figures
