"""``hpsearch bench``, part 1: training speed. The epoch time of hpsearch's training path
(``train()``, what a trial runs) vs. a minimal hand-written PyTorch loop with the same model,
data, batch size and optimizer, the two interleaved epoch by epoch."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch

from hpsearch.datamodules import Splits, build_datamodule
from hpsearch.datamodules.batches import model_inputs
from hpsearch.lightning_modules.optim import build_optimizer
from hpsearch.lightning_modules.registry import build_backbone
from hpsearch.scripts.bench.figures import Figure, Mode
from hpsearch.scripts.train import plain_cuda_check, train
from hpsearch.search_spaces.train_config import (
    TrainConfig,
    preset_sections,
    train_config_from_sections,
)

TRAIN_MODELS = ("mlp_784_300_10", "hog_mlp_392_128_10", "cnn_7465")

# The target (full mode, on our 2-core machine).
MAX_TRAIN_RATIO = 1.15


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
