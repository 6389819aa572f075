"""``hpsearch bench``, part 2: sweep efficiency. Short MLP trials, 2 at a time, with hpsearch's
Tune settings vs. Ray Tune's defaults; efficiency = sum of the trials' training time / (wall
time x slots). Also the sweep plumbing the GPU part reuses (:func:`bench_space`,
:func:`timed_sweep`, :func:`start_ray_for_bench`)."""

from __future__ import annotations

import contextlib
import json
import math
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from hpsearch.scripts.bench.figures import Figure, Mode
from hpsearch.scripts.train import train

# The targets (full mode, on our 2-core machine).
MIN_EFFICIENCY = 0.85
MAX_LOST_PER_TRIAL_S = 0.5
# The sweep targets are for trials of 1-2 s of training.
TARGET_TRIAL_S = (1.0, 2.0)

MNIST_TRAIN_IMAGES = 60_000  # split into the bench trials' training and validation images
MIN_VAL_IMAGES = 1_000


def bench_space(trials: int, val_size: int, epochs: int = 2, gpus_per_trial: float = 0.0,
                max_concurrent: int = 2) -> dict[str, Any]:
    """A search space of short, equally long MLP trials (only the learning rate varies)."""
    return {
        "experiment": "bench",
        "data": {"name": "mnist", "batch_size": 128, "val_size": val_size},
        "model": {"family": "mlp", "hidden": [128]},
        "optimizer": {"name": "adam"},
        "search": {"optimizer.lr": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True}},
        "budget": {"num_samples": trials, "max_epochs": epochs, "grace_period": epochs},
        "resources": {"cpus_per_trial": 1, "gpus_per_trial": gpus_per_trial,
                      "max_concurrent": max_concurrent},
    }


@dataclass(frozen=True)
class TrialSize:
    """A bench trial's work: ``epochs`` over ``train_images`` (MNIST's other training images
    are validated every epoch)."""

    train_images: int
    epochs: int

    @property
    def val_size(self) -> int:
        return MNIST_TRAIN_IMAGES - self.train_images


@dataclass(frozen=True)
class EpochModel:
    """Seconds of one epoch of the bench trial with ``n`` training images, the remaining
    images of MNIST's 60,000 validated: ``train_s * n + val_s * (60,000 - n)``."""

    train_s: float  # per training image (forward, backward, step)
    val_s: float  # per validation image

    @classmethod
    def fit(cls, epochs: Mapping[int, float]) -> EpochModel:
        """From the epoch times of two trial sizes (training images -> seconds)."""
        (n1, t1), (n2, t2) = sorted(epochs.items())
        m1, m2 = MNIST_TRAIN_IMAGES - n1, MNIST_TRAIN_IMAGES - n2
        det = n1 * m2 - n2 * m1
        train_s, val_s = (t1 * m2 - t2 * m1) / det, (n1 * t2 - n2 * t1) / det
        # Validating an image never costs more than training on it; noise aside.
        val_s = min(max(val_s, 0.0), train_s)
        return cls(train_s, val_s)

    def epoch_s(self, train_images: int) -> float:
        return self.train_s * train_images + self.val_s * (MNIST_TRAIN_IMAGES - train_images)

    def size_for(self, seconds: float, min_epochs: int) -> TrialSize:
        """The trial that trains for about ``seconds``: ``min_epochs`` epochs or, where even
        all images are too few for that, as many more as it takes."""
        most = MNIST_TRAIN_IMAGES - MIN_VAL_IMAGES
        epochs = max(min_epochs, math.ceil(seconds / self.epoch_s(most)))
        per_epoch = seconds / epochs - self.val_s * MNIST_TRAIN_IMAGES
        images = round(per_epoch / (self.train_s - self.val_s)) if self.train_s > self.val_s \
            else most
        return TrialSize(min(max(images, MIN_VAL_IMAGES), most), epochs)


def measure_epoch_model(data_dir: str | None, epochs: int = 3) -> EpochModel:
    """Time the bench trial's epochs with ``train()`` in this process (as a 1-CPU trial) at
    two sizes, the first epoch of each a warm-up."""
    from hpsearch.search_spaces.schema import parse_space
    from hpsearch.search_spaces.trials import trial_config

    times = {}
    for images in (10_000, 50_000):
        space = parse_space(bench_space(1, MNIST_TRAIN_IMAGES - images, epochs), "bench")
        cfg = trial_config(space, {"optimizer.lr": 3e-3})
        history = train(cfg, data_dir=data_dir, accelerator="cpu").history
        times[images] = float(np.median([row["epoch_time_s"] for row in history[1:]]))
    return EpochModel.fit(times)


@dataclass(frozen=True)
class TrialSpan:
    """One trial on the wall clock: from its first ``train()`` call to its last report."""

    start: float
    end: float
    train_s: float


def trial_spans(exp_dir: Path) -> list[TrialSpan]:
    """The finished trials of a sweep, by start, from Tune's ``result.json`` files."""
    spans = []
    for path in exp_dir.rglob("result.json"):
        lines = path.read_text().splitlines()
        if lines:
            last = json.loads(lines[-1])
            end = float(last["reported_at"])
            spans.append(TrialSpan(end - float(last["time_total_s"]), end,
                                   float(last["train_time_s"])))
    return sorted(spans, key=lambda span: span.start)


@dataclass(frozen=True)
class SweepTiming:
    wall_s: float
    spans: tuple[TrialSpan, ...]
    slots: int
    ray_start_s: float = math.nan  # Ray's start before the sweep, not counted in wall_s

    @property
    def train_s(self) -> float:
        return sum(span.train_s for span in self.spans)

    @property
    def efficiency(self) -> float:
        """The share of the slots' time spent training."""
        return self.train_s / (self.wall_s * self.slots)

    @property
    def lost_per_trial_s(self) -> float:
        """Slot time not spent training, per trial (the sweep's start-up included)."""
        return (self.wall_s * self.slots - self.train_s) / len(self.spans)

    @property
    def steady_lost_per_trial_s(self) -> float:
        """Slot time lost per trial that follows another in its slot: the gap since that one's
        last report, plus this trial's time outside its epochs. The sweep's start-up (the
        slots' first trials) is left out; NaN when no slot ran two trials."""
        slot_free: list[float] = []
        lost = []
        for span in self.spans:
            # The slot freed last before this trial started is the one it took.
            free = [i for i, t in enumerate(slot_free) if t <= span.start]
            if free:
                i = max(free, key=lambda j: slot_free[j])
                lost.append(span.start - slot_free[i] + span.end - span.start - span.train_s)
                slot_free[i] = span.end
            else:
                slot_free.append(span.end)
        return float(np.mean(lost)) if lost else float("nan")


def timed_sweep(raw: dict[str, Any], results_dir: Path, name: str, data_dir: str | None,
                tune_defaults: bool = False) -> SweepTiming:
    from hpsearch.scripts.tune.cluster import environ_defaults
    from hpsearch.scripts.tune.driver import SweepOptions, run_sweep
    from hpsearch.search_spaces.schema import parse_space

    space = parse_space(raw, "bench")
    opts = SweepOptions(results_dir=results_dir, name=name, data_dir=data_dir, quiet=True,
                        tune_defaults=tune_defaults)
    # Only a warning threshold: Tune's defaults with num_to_keep=1 warn every few seconds.
    with environ_defaults({"TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0"}):
        started = time.perf_counter()
        outcome = run_sweep(space, raw, opts)
        wall = time.perf_counter() - started
    return SweepTiming(wall, tuple(trial_spans(outcome.exp_dir)),
                       int(raw["resources"]["max_concurrent"]))


def idle_ray_workers() -> dict[int, float]:
    """Ray's idle worker processes on this machine (``ray::IDLE``): pid -> CPU seconds used."""
    import psutil

    return {
        proc.pid: sum(proc.info["cpu_times"][:2])
        for proc in psutil.process_iter(["cmdline", "cpu_times"])
        if (proc.info["cmdline"] or [""])[0].startswith("ray::IDLE") and proc.info["cpu_times"]
    }


def wait_for_idle_workers(count: int, timeout_s: float = 120.0) -> float:
    """Wait until ``count`` of Ray's idle worker processes have stopped using CPU (done
    starting, preloaded modules imported); returns the seconds waited."""
    started = time.perf_counter()
    last: dict[int, float] = {}
    while time.perf_counter() - started < timeout_s:
        cpu = idle_ray_workers()
        settled = [pid for pid, t in cpu.items() if pid in last and t - last[pid] < 0.02]
        if len(settled) >= count:
            break
        last = cpu
        time.sleep(0.5)
    return time.perf_counter() - started


def start_ray_for_bench(tune_defaults: bool, slots: int) -> float:
    """Start a local Ray (as ``hpsearch sweep`` does, or with Ray's defaults for the baseline)
    and let its worker processes finish starting, so the timed sweep runs on a started Ray;
    returns how long that took. The driver's own imports (Optuna, Tune's searcher) happen
    here too: they are the command's start-up, like Ray's."""
    import optuna  # noqa: F401
    import ray
    from ray.tune.search.optuna import OptunaSearch  # noqa: F401

    from hpsearch.scripts.tune.cluster import init_ray

    started = time.perf_counter()
    if tune_defaults:
        ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False)
    else:
        init_ray(None)
    warm_driver()
    wait_for_idle_workers(slots)
    return time.perf_counter() - started


def warm_driver() -> None:
    """Pay here the one-time costs of a driver process that the first timed sweep would
    otherwise pay alone (the baseline runs second, in the same process): Ray's first put
    sets up its serialization context, importing pydantic (30 ms); Tune's first fit imports
    tensorboardX for its default logger, and Ray Train and W&B modules to tag its usage."""
    import importlib

    import ray

    ray.put(None)
    for module in ("tensorboardX", "ray.air.integrations.wandb", "ray.train.trainer"):
        with contextlib.suppress(ImportError):
            importlib.import_module(module)


# How much longer a bench trial trains inside a sweep than alone in this process, before the
# first sweep has measured it: two trials, the driver and Ray's own processes then share the
# machine's 2 cores (1.07-1.25 measured here).
SWEEP_SLOWDOWN_GUESS = 1.2


def bench_sweep(data_dir: str | None, mode: Mode) -> list[Figure]:
    """One sweep per trial length of ``mode``, each sized on this machine: an epoch model
    timed alone first, scaled by how much longer the last sweep's trials took than it
    predicted (two trials and the driver share the machine)."""
    model = measure_epoch_model(data_dir)
    slowdown = SWEEP_SLOWDOWN_GUESS
    figures = []
    for seconds in mode.sweep_trial_s:
        size = model.size_for(seconds / slowdown, mode.sweep_epochs)
        ours, base = compare_sweeps(data_dir, mode, size)
        figures += sweep_figures(mode, size, ours, base)
        if ours.spans:
            predicted = size.epochs * model.epoch_s(size.train_images)
            slowdown = ours.train_s / len(ours.spans) / predicted
    return figures


def compare_sweeps(data_dir: str | None, mode: Mode,
                   size: TrialSize) -> tuple[SweepTiming, SweepTiming]:
    """The same bench sweep with hpsearch's settings, then with Tune's defaults, each on a
    local Ray of its own; returns both timings."""
    import ray

    raw = bench_space(mode.sweep_trials, size.val_size, size.epochs)
    slots = int(raw["resources"]["max_concurrent"])
    timings = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, defaults in (("hpsearch", False), ("tune-defaults", True)):
            ray_start = start_ray_for_bench(defaults, slots)
            try:
                timing = timed_sweep(raw, Path(tmp), name, data_dir, tune_defaults=defaults)
            finally:
                ray.shutdown()
            timings.append(replace(timing, ray_start_s=ray_start))
    return timings[0], timings[1]


def in_target_range(timing: SweepTiming) -> bool:
    """Whether the sweep's trials are as long as the targets are for (1-2 s of training)."""
    low, high = TARGET_TRIAL_S
    return bool(timing.spans) and low <= timing.train_s / len(timing.spans) <= high


def sweep_figures(mode: Mode, size: TrialSize, ours: SweepTiming,
                  base: SweepTiming) -> list[Figure]:
    """The figures of one bench sweep. Its targets are judged only where its trials trained
    for 1-2 s; shorter or longer trials (a quick run, a machine far off our sizing) are
    figures without a verdict."""
    slots = ours.slots
    per_trial = ours.train_s / max(len(ours.spans), 1)
    what = f"{mode.sweep_trials} trials of {per_trial:.2f} s x {slots} slots"
    judged = in_target_range(ours)
    low, high = TARGET_TRIAL_S
    outside = "" if judged else f"; trials outside the {low:g}-{high:g} s the target is for"
    note = (f"{len(ours.spans)}/{len(base.spans)} trials finished, {size.epochs} epochs on "
            f"{size.train_images:,} images each; run_sweep() on a started Ray (its start-up "
            f"until its workers were idle, not counted: {ours.ray_start_s:.1f} s / "
            f"{base.ray_start_s:.1f} s)")
    baseline = "Ray Tune defaults"

    def verdict(met: bool) -> bool | None:
        return met if judged else None

    return [
        Figure("sweep", f"wall time, {what}", ours.wall_s, base.wall_s, "s", baseline, note=note),
        Figure("sweep", f"sum of training time, {what}", ours.train_s, base.train_s, "s",
               baseline),
        Figure("sweep", f"efficiency = training / (wall x slots), {what}", ours.efficiency,
               base.efficiency, "", baseline, target=f">= {MIN_EFFICIENCY}",
               met=verdict(ours.efficiency >= MIN_EFFICIENCY), note=outside.lstrip("; ")),
        Figure("sweep", f"lost slot time per trial, {what}", ours.lost_per_trial_s,
               base.lost_per_trial_s, "s", baseline, target=f"<= {MAX_LOST_PER_TRIAL_S} s",
               met=verdict(ours.lost_per_trial_s <= MAX_LOST_PER_TRIAL_S),
               note="the sweep's start-up included" + outside),
        Figure("sweep", f"lost slot time per trial after a slot's first, {what}",
               ours.steady_lost_per_trial_s, base.steady_lost_per_trial_s, "s", baseline,
               target=f"<= {MAX_LOST_PER_TRIAL_S} s",
               met=verdict(ours.steady_lost_per_trial_s <= MAX_LOST_PER_TRIAL_S),
               note="between trials and inside them, outside epochs" + outside),
    ]
