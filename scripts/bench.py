"""``hpsearch bench``: speed figures, each beside a baseline measured in the same run.

1. training speed: hpsearch's training path (``train()``, what a trial runs) vs. a minimal
   hand-written PyTorch loop, same model, data, batch size and optimizer;
2. sweep efficiency: 8 short MLP trials, 2 at a time, hpsearch's settings vs. Ray Tune's
   defaults; efficiency = sum of training time / (wall time x slots);
3. HOG: vectorized extraction vs. a per-image ``skimage.feature.hog`` loop;
4. GPU (only with CUDA): epoch time with the data resident on the GPU.

Figures are printed and written to a CSV; nothing is asserted.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from datamodules import build_datamodule
from lightning_modules.configs import build_backbone
from lightning_modules.optim import build_optimizer
from lightning_modules.presets import PRESETS
from scripts.config import TrainConfig, train_config_from_sections
from scripts.leaderboard import atomic_write_text
from scripts.train import train
from search_spaces.typed import to_dict

TRAIN_MODELS = ("mlp_784_300_10", "hog_mlp_392_128_10", "cnn_7465")


@dataclass
class Figure:
    part: str
    item: str
    ours: float
    baseline: float
    unit: str
    baseline_name: str
    note: str = ""

    @property
    def ratio(self) -> float:
        return self.ours / self.baseline if self.baseline else float("nan")


def _preset_config(name: str, train_size: int | None, epochs: int) -> TrainConfig:
    preset = PRESETS[name]
    data = {"name": preset.dataset, "batch_size": preset.batch_size, **preset.data}
    if train_size is not None:
        data["val_size"] = 60_000 - train_size
    sections = {"data": data, "model": to_dict(preset.model), "optimizer": to_dict(preset.optim)}
    return train_config_from_sections(sections, max_epochs=epochs, seed=0)


def hand_written_epoch_times(cfg: TrainConfig, dm: Any, epochs: int, device: str) -> list[float]:
    """The reference: a plain PyTorch loop over in-memory tensors, validating each epoch like
    a trial does."""
    torch.manual_seed(cfg.seed)
    dev = torch.device(device)
    model = build_backbone(cfg.model, tuple(cfg.data.input_shape), cfg.data.num_classes).to(dev)
    opt = build_optimizer(model.parameters(), cfg.optim)
    loss_fn = torch.nn.CrossEntropyLoss()
    x, y = dm.train_x.to(dev), dm.train_y.to(dev)
    vx, vy = dm.val_x.to(dev), dm.val_y.to(dev)
    bs = cfg.data.batch_size
    times = []
    for _ in range(epochs):
        start = time.perf_counter()
        model.train()
        perm = torch.randperm(len(x), device=dev)
        for i in range(0, len(x), bs):
            idx = perm[i:i + bs]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            correct = sum((model(vx[i:i + 1024]).argmax(1) == vy[i:i + 1024]).sum()
                          for i in range(0, len(vx), 1024))
        float(correct)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return times


def bench_training(data_dir: str | None, quick: bool, device: str = "cpu") -> list[Figure]:
    epochs = 2 if quick else 3
    figures = []
    for name in TRAIN_MODELS:
        train_size = 5_000 if quick else None
        cfg = _preset_config(name, train_size, epochs)
        dm = build_datamodule(cfg.data, data_dir)
        dm.setup("fit")
        result = train(cfg, datamodule=dm, accelerator="gpu" if device == "cuda" else "cpu")
        ours = float(np.median([r["epoch_time_s"] for r in result.history[1:]]))
        ref = float(np.median(hand_written_epoch_times(cfg, dm, epochs, device)[1:]))
        n = len(dm.train_x)
        figures.append(Figure("train" if device == "cpu" else "gpu", f"{name} epoch ({n} images)",
                              ours, ref, "s", "hand-written loop"))
    return figures


BENCH_SPACE = {
    "experiment": "bench",
    "data": {"name": "mnist", "batch_size": 128},
    "model": {"family": "mlp"},
    "optimizer": {"name": "adam"},
    "search": {
        "model.hidden": {"type": "list", "length": 1,
                         "each": {"type": "int", "low": 64, "high": 512, "log": True}},
        "optimizer.lr": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True},
    },
    "budget": {"num_samples": 8, "max_epochs": 2, "grace_period": 2},
    "resources": {"cpus_per_trial": 1, "max_concurrent": 2},
}


def _sweep_figures(label: str, outcome: Any, trials: int, slots: int) -> tuple[float, float, float]:
    import pandas as pd

    board = pd.read_csv(outcome.leaderboard)
    total_train = float(board["train_time_s"].sum())
    wall = outcome.wall_time_s
    efficiency = total_train / (wall * slots)
    lost = (wall * slots - total_train) / trials
    return wall, efficiency, lost


def bench_sweep(data_dir: str | None, quick: bool) -> list[Figure]:
    import ray

    from scripts.sweep import SweepOptions, init_ray, run_sweep
    from search_spaces.schema import parse_space

    raw = dict(BENCH_SPACE)
    # Trials of about 1-2 s of training, as in the issue that set the targets.
    raw["data"] = {**raw["data"], "val_size": 60_000 - (4_000 if quick else 10_000)}
    space = parse_space(raw, "bench")
    trials, slots = 8, 2
    init_ray(None)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, defaults in (("hpsearch", False), ("ray-defaults", True)):
            opts = SweepOptions(results_dir=Path(tmp), name=label, data_dir=data_dir,
                                verbose=False, tune_defaults=defaults)
            results[label] = _sweep_figures(label, run_sweep(space, raw, opts), trials, slots)
    ray.shutdown()
    ours, base = results["hpsearch"], results["ray-defaults"]
    return [
        Figure("sweep", "wall time, 8 trials x 2 slots", ours[0], base[0], "s", "Ray Tune defaults"),
        Figure("sweep", "efficiency (train / wall x slots)", ours[1], base[1], "fraction",
               "Ray Tune defaults"),
        Figure("sweep", "lost slot time per trial", ours[2], base[2], "s", "Ray Tune defaults"),
    ]


def bench_hog(data_dir: str | None, quick: bool) -> list[Figure]:
    from skimage.feature import hog

    from datamodules.hog import hog_features
    from datamodules.idx import load_idx_images

    images = load_idx_images("mnist", data_dir).astype(np.float64) / 255.0
    if quick:
        images = images[:10_000]
    start = time.perf_counter()
    ours = hog_features(images, orientations=8, pixels_per_cell=4, cells_per_block=1)
    vectorized = time.perf_counter() - start
    sample = 300 if quick else 2_000
    start = time.perf_counter()
    ref = np.stack([
        hog(img, orientations=8, pixels_per_cell=(4, 4), cells_per_block=(1, 1),
            block_norm="L2-Hys", feature_vector=True)
        for img in images[:sample]
    ])
    loop = (time.perf_counter() - start) * len(images) / sample
    diff = float(np.abs(ours[:sample] - ref).max())
    return [Figure("hog", f"HOG of {len(images)} images", vectorized, loop, "s",
                   f"skimage loop ({sample} timed, scaled)", f"max abs diff {diff:.1e}")]


def format_table(figures: Iterable[Figure]) -> str:
    rows = [("part", "what", "hpsearch", "baseline", "ratio", "baseline is", "note")]
    for f in figures:
        rows.append((f.part, f.item, f"{f.ours:.4g} {f.unit}", f"{f.baseline:.4g} {f.unit}",
                     f"{f.ratio:.3f}", f.baseline_name, f.note))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def run_bench(quick: bool, out: Path, data_dir: str | None, parts: list[str] | None) -> None:
    import pandas as pd

    parts = parts or ["train", "sweep", "hog", "gpu"]
    torch.set_num_threads(1)  # what a 1-CPU trial gets
    figures: list[Figure] = []
    mode = "quick" if quick else "full"
    print(f"hpsearch bench ({mode} mode, {os.cpu_count()} CPUs, torch threads 1)", flush=True)
    if "hog" in parts:
        figures += bench_hog(data_dir, quick)
    if "train" in parts:
        figures += bench_training(data_dir, quick)
    if "sweep" in parts:
        figures += bench_sweep(data_dir, quick)
    if "gpu" in parts and torch.cuda.is_available():
        torch.set_num_threads(os.cpu_count() or 1)
        figures += bench_training(data_dir, quick, device="cuda")
    print(format_table(figures))
    frame = pd.DataFrame([{**dataclasses.asdict(f), "ratio": f.ratio, "mode": mode}
                          for f in figures])
    atomic_write_text(out, frame.to_csv(index=False))
    print(f"Written to {out}")
