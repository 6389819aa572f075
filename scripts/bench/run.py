"""``hpsearch bench``: speed figures, each beside a baseline measured in the same run.

1. training speed: epoch time of hpsearch's training path (``train()``, what a trial runs)
   vs. a minimal hand-written PyTorch loop with the same model, data, batch size and
   optimizer;
2. sweep efficiency: short MLP trials, 2 at a time, with hpsearch's Tune settings vs. Ray
   Tune's defaults; efficiency = sum of the trials' training time / (wall time x slots);
3. HOG: the vectorized extraction vs. a per-image ``skimage.feature.hog`` loop;
4. GPU (only with CUDA): epoch times with the data resident on the GPU, and the throughput
   of several trials sharing the GPU vs. one at a time.

Figures are printed and written to a CSV with the issue's target beside each; nothing is
asserted, so a slow or busy machine never fails a build.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from hpsearch.datamodules import Splits, build_datamodule, data_config_from_dict
from hpsearch.datamodules.batches import model_inputs
from hpsearch.lightning_modules.backbones import build_backbone
from hpsearch.lightning_modules.optim import build_optimizer
from hpsearch.lightning_modules.presets import PRESETS
from hpsearch.scripts.bench.search import SPACE_FILE as SEARCH_SPACE_FILE
from hpsearch.scripts.bench.search import bench_search, rows_csv
from hpsearch.scripts.leaderboard import atomic_write_text
from hpsearch.scripts.train import plain_cuda_check, train
from hpsearch.search_spaces.train_config import (
    TrainConfig,
    preset_sections,
    train_config_from_sections,
)

TRAIN_MODELS = ("mlp_784_300_10", "hog_mlp_392_128_10", "cnn_7465")
PARTS = ("train", "sweep", "hog", "gpu", "search")

# The targets (full mode, on our 2-core machine).
MAX_TRAIN_RATIO = 1.15
MIN_EFFICIENCY = 0.85
MAX_LOST_PER_TRIAL_S = 0.5
MIN_HOG_SPEEDUP = 30.0
MAX_HOG_DIFF = 1e-5
# The sweep targets are for trials of 1-2 s of training.
TARGET_TRIAL_S = (1.0, 2.0)


@dataclass(frozen=True)
class Mode:
    """How much work each part does."""

    name: str
    train_images: int | None  # None: the whole training split (50,000)
    val_images: int | None  # None: the whole validation split (10,000)
    epochs: int  # per run; the first is a warm-up and not timed
    repeats: int  # runs of train(), each with the reference loop interleaved (see below)
    sweep_trials: int
    # One bench sweep per value: seconds of training per trial that the sweep is sized to on
    # the machine at hand (see EpochModel), so that the figures are for the trial lengths the
    # targets are for whatever the machine's speed.
    sweep_trial_s: tuple[float, ...]
    sweep_epochs: int  # per trial, at least (more where a trial on all images is too short)
    hog_images: int
    hog_sample: int  # images the per-image skimage loop is timed on


QUICK = Mode("quick", train_images=4096, val_images=2048, epochs=3, repeats=1,
             sweep_trials=4, sweep_trial_s=(0.5,), sweep_epochs=2, hog_images=10_000,
             hog_sample=300)
FULL = Mode("full", train_images=None, val_images=None, epochs=5, repeats=2,
            sweep_trials=8, sweep_trial_s=(1.2, 1.5, 1.9), sweep_epochs=2,
            hog_images=70_000, hog_sample=5_000)


@dataclass(frozen=True)
class Figure:
    part: str
    item: str
    ours: float
    baseline: float
    unit: str
    baseline_name: str
    target: str = ""
    met: bool | None = None
    note: str = ""

    @property
    def ratio(self) -> float:
        return self.ours / self.baseline if self.baseline else float("nan")


# ------------------------------------------------------------------------- 1. training speed


def preset_config(name: str, epochs: int) -> TrainConfig:
    """The training config of lab preset ``name``: its data, model, optimizer and batch size."""
    return train_config_from_sections(preset_sections(name), max_epochs=epochs, seed=0)


def _clocks() -> np.ndarray:
    # Wall time, and this process's CPU time: on a shared machine the CPU time of a
    # one-thread loop is the steadier measure of its own cost.
    return np.array([time.perf_counter(), time.process_time()])


class HandWrittenLoop:
    """The reference: a plain PyTorch loop over in-memory tensors, validating every epoch as a
    trial does, with the same model, data, batch size and optimizer as ``cfg``."""

    def __init__(self, cfg: TrainConfig, dm: Any, device: str) -> None:
        torch.manual_seed(cfg.seed)
        self.dev = torch.device(device)
        shape, classes = tuple(cfg.data.input_shape), cfg.data.num_classes
        self.model = build_backbone(cfg.model, shape, classes).to(self.dev)
        self.opt = build_optimizer(self.model.parameters(), cfg.optim)
        self.loss_fn = torch.nn.CrossEntropyLoss()
        self.batch_size = cfg.data.batch_size
        self.x, self.y = model_inputs(dm.train_x).to(self.dev), dm.train_y.to(self.dev)
        self.vx, self.vy = model_inputs(dm.val_x).to(self.dev), dm.val_y.to(self.dev)

    def epoch(self) -> np.ndarray:
        """Train and validate for one epoch; returns its (wall, CPU) seconds."""
        model, x, y, vx, vy, bs = self.model, self.x, self.y, self.vx, self.vy, self.batch_size
        # Without Lightning's NVML-based CUDA check, like any program that does not import
        # Lightning (see scripts.train.plain_cuda_check).
        with plain_cuda_check():
            start = _clocks()
            model.train()
            perm = torch.randperm(len(x), device=self.dev)
            for i in range(0, len(x), bs):
                idx = perm[i : i + bs]
                self.opt.zero_grad(set_to_none=True)
                self.loss_fn(model(x[idx]), y[idx]).backward()
                self.opt.step()
            model.eval()
            with torch.no_grad():
                correct = sum((model(vx[i : i + 1024]).argmax(1) == vy[i : i + 1024]).sum()
                              for i in range(0, len(vx), 1024))
            float(correct)  # waits for the GPU too
            return _clocks() - start


class InterleavedClock(pl.Callback):
    """Times hpsearch's epochs from one epoch's start to the next's (validation and all hooks
    included), and runs one epoch of ``reference`` after each of them, so that both loops are
    timed under the same load of a shared machine; its time is taken out of ours."""

    def __init__(self, reference: HandWrittenLoop) -> None:
        self.reference = reference
        self.marks: list[np.ndarray] = []
        self.ref_times: list[np.ndarray] = []

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.marks.append(_clocks())

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.ref_times.append(self.reference.epoch())

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.marks.append(_clocks())

    @property
    def times(self) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """(wall, CPU) seconds of each epoch: hpsearch's and the reference's."""
        ours = np.diff(self.marks, axis=0) - np.array(self.ref_times)
        return list(ours), self.ref_times


def training_figure(name: str, dm: Any, device: str, ours: np.ndarray,
                    ref: np.ndarray) -> Figure:
    """The figure of one model from its (wall, CPU) epoch times, ours and the reference's,
    paired epoch by epoch."""
    # Medians: a shared machine slows single epochs of either loop now and then, and the
    # median of the epochs is steadier than the best one (which a lucky epoch decides).
    (wall, cpu), (ref_wall, ref_cpu) = np.median(ours, axis=0), np.median(ref, axis=0)
    paired = ours[:, 0] / ref[:, 0]
    return Figure(
        "train" if device == "cpu" else "gpu",
        f"{name} epoch ({len(dm.train_x):,} train + {len(dm.val_x):,} val images)",
        wall, ref_wall, "s", f"hand-written loop, {device}",
        target=f"ratio <= {MAX_TRAIN_RATIO}", met=wall / ref_wall <= MAX_TRAIN_RATIO,
        note=f"median of {len(ours)} interleaved epochs (epoch by epoch ratios "
             f"{paired.min():.3g} to {paired.max():.3g}; best epochs {ours[:, 0].min():.3g} / "
             f"{ref[:, 0].min():.3g} s); CPU time {cpu:.3g} / {ref_cpu:.3g} s "
             f"= {cpu / ref_cpu:.3g}",
    )


def bench_training(data_dir: str | None, mode: Mode, device: str = "cpu") -> list[Figure]:
    figures = []
    for name in TRAIN_MODELS:
        cfg = preset_config(name, mode.epochs)
        full = build_datamodule(cfg.data, data_dir)
        full.setup("fit")
        # Subsets are views of the cached tensors; train() leaves an already set-up
        # datamodule as it is.
        n, m = mode.train_images, mode.val_images
        subset = Splits(full.train_x[:n], full.train_y[:n], full.val_x[:m], full.val_y[:m],
                        full.test_x, full.test_y)
        dm = type(full).from_splits(cfg.data, subset, data_dir=data_dir, seed=cfg.seed)
        ours: list[np.ndarray] = []
        ref: list[np.ndarray] = []
        for _ in range(mode.repeats):
            clock = InterleavedClock(HandWrittenLoop(cfg, dm, device))
            train(cfg, datamodule=dm, accelerator="gpu" if device == "cuda" else "cpu",
                  callbacks=[clock])
            ours_times, ref_times = clock.times
            ours += ours_times[1:]  # the first epoch of each is a warm-up
            ref += ref_times[1:]
        figures.append(training_figure(name, dm, device, np.array(ours), np.array(ref)))
    return figures


# ----------------------------------------------------------------------- 2. sweep efficiency


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
    from hpsearch.scripts.tune.cluster import init_ray
    from ray.tune.search.optuna import OptunaSearch  # noqa: F401

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


# -------------------------------------------------------------------------------------- 3. HOG


def bench_hog(data_dir: str | None, mode: Mode) -> list[Figure]:
    from hpsearch.datamodules.hog import hog_features
    from hpsearch.datamodules.idx import load_idx_images
    from skimage.feature import hog

    # The preset's HOG parameters, on float32 images in [0, 1] as the datamodule computes them.
    cfg = data_config_from_dict({"name": "hog_mnist", **PRESETS["hog_mlp_392_128_10"].data})
    params = (cfg.orientations, cfg.pixels_per_cell, cfg.cells_per_block)
    images = load_idx_images("mnist", data_dir)[: mode.hog_images].astype(np.float32) / 255
    runs = []
    for _ in range(3):
        start = time.perf_counter()
        ours = hog_features(images, *params)
        runs.append(time.perf_counter() - start)
    o, p, c = params
    sample = images[: mode.hog_sample]
    start = time.perf_counter()
    ref = np.stack([hog(img, orientations=o, pixels_per_cell=(p, p), cells_per_block=(c, c),
                        block_norm="L2-Hys", feature_vector=True) for img in sample])
    loop = (time.perf_counter() - start) * len(images) / len(sample)
    diff = float(np.abs(ours[: len(sample)] - ref).max())
    speedup = loop / min(runs)
    threads = min(os.cpu_count() or 1, 8)
    return [Figure(
        "hog", f"HOG of {len(images):,} MNIST images", min(runs), loop, "s",
        f"skimage loop, {len(sample):,} timed and scaled",
        target=f">= {MIN_HOG_SPEEDUP:g}x faster, diff <= {MAX_HOG_DIFF:g}",
        met=speedup >= MIN_HOG_SPEEDUP and diff <= MAX_HOG_DIFF,
        note=f"{speedup:.0f}x faster; max abs diff {diff:.1e}; best of 3 on {threads} threads",
    )]


# -------------------------------------------------------------------------------------- 4. GPU


def bench_gpu_sharing(data_dir: str | None, mode: Mode, sharing: int = 4) -> list[Figure]:
    """Training throughput of ``sharing`` trials on one GPU at once vs. one at a time."""
    import ray

    trials = 2 * sharing
    n_train = 50_000
    val_size = MNIST_TRAIN_IMAGES - n_train
    rates = []
    with tempfile.TemporaryDirectory() as tmp:
        for concurrent in (sharing, 1):
            # A Ray of its own for each: a sweep's trial processes end with it, so a second
            # sweep on the same Ray would wait for new ones to start and import everything.
            start_ray_for_bench(tune_defaults=False, slots=concurrent)
            try:
                raw = bench_space(trials, val_size, mode.sweep_epochs,
                                  gpus_per_trial=1 / concurrent, max_concurrent=concurrent)
                timing = timed_sweep(raw, Path(tmp), f"gpu-x{concurrent}", data_dir)
            finally:
                ray.shutdown()
            epochs = len(timing.spans) * raw["budget"]["max_epochs"]
            rates.append(epochs * n_train / timing.wall_s)
    return [Figure("gpu", f"{trials} MLP trials, {sharing} sharing the GPU", rates[0], rates[1],
                   "images/s", "one trial at a time", note="whole-sweep wall time")]


# ----------------------------------------------------------------------------------- output


def format_table(figures: Iterable[Figure]) -> str:
    from hpsearch.scripts.reports.format import render_table

    rows = [(f.part, f.item, f"{f.ours:.4g} {f.unit}".strip(),
             f"{f.baseline:.4g} {f.unit}".strip(), f"{f.ratio:.3g}", f.baseline_name, f.target,
             "" if f.met is None else ("yes" if f.met else "NO"), f.note) for f in figures]
    headers = ("part", "what", "hpsearch", "baseline", "ratio", "baseline is", "target", "met",
               "note")
    return render_table(headers, rows)


def format_csv(figures: Iterable[Figure], context: dict[str, Any]) -> str:
    """One row per figure, with its ratio and the run's ``context`` (mode, machine)."""
    return rows_csv([{**asdict(f), "ratio": f.ratio, **context} for f in figures])


def run_bench(quick: bool, out: Path, data_dir: str | None,
              parts: Sequence[str] | None = None,
              search_space: Path | None = None) -> list[Figure]:
    """Run the chosen ``parts`` (default: all), print the table and write it to ``out``."""
    mode = QUICK if quick else FULL
    parts = list(parts or PARTS)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    context = {"mode": mode.name, "cpus": os.cpu_count(), "load_1m": round(load, 2),
               "torch_threads": 1}
    print(f"hpsearch bench, {mode.name} mode: {os.cpu_count()} CPUs, 1-minute load average "
          f"{load:.2f} at the start, torch threads 1 (as a 1-CPU trial)", flush=True)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    figures: list[Figure] = []
    steps = [
        ("hog", lambda: bench_hog(data_dir, mode)),
        ("train", lambda: bench_training(data_dir, mode)),
        ("sweep", lambda: bench_sweep(data_dir, mode)),
        ("gpu", lambda: bench_training(data_dir, mode, device="cuda")
         + bench_gpu_sharing(data_dir, mode)),
        ("search", lambda: bench_search(data_dir, quick, out, Figure,
                                        search_space or SEARCH_SPACE_FILE)),
    ]
    try:
        for part, run in steps:
            if part not in parts:
                continue
            if part == "gpu" and not torch.cuda.is_available():
                print("gpu: skipped (no CUDA device)", flush=True)
                continue
            started = time.perf_counter()
            figures += run()
            print(f"{part}: done in {time.perf_counter() - started:.0f} s", flush=True)
    finally:
        torch.set_num_threads(threads)
    if quick:
        # Too little work per figure for the targets, which are for the full mode.
        figures = [replace(f, met=None) for f in figures]
    print(format_table(figures))
    atomic_write_text(out, format_csv(figures, context))
    print(f"Written to {out}")
    return figures
