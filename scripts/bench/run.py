"""``hpsearch bench``: speed figures, each beside a baseline measured in the same run.

1. training speed (:mod:`.train_speed`): epoch time of hpsearch's training path (``train()``,
   what a trial runs) vs. a minimal hand-written PyTorch loop with the same model, data, batch
   size and optimizer;
2. sweep efficiency (:mod:`.sweep_speed`): short MLP trials, 2 at a time, with hpsearch's Tune
   settings vs. Ray Tune's defaults; efficiency = sum of the trials' training time / (wall
   time x slots);
3. HOG (:mod:`.hog_speed`): the vectorized extraction vs. a per-image ``skimage.feature.hog``
   loop;
4. GPU (:mod:`.gpu`, only with CUDA): epoch times with the data resident on the GPU, and the
   throughput of several trials sharing the GPU vs. one at a time;
5. search (:mod:`.search`): does the search pay?

Figures are printed and written to a CSV with the issue's target beside each; nothing is
asserted, so a slow or busy machine never fails a build. This module is the entry point,
:func:`run_bench`; the shared types and output are in :mod:`.figures`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import torch

from hpsearch.datamodules.paths import atomic_write_text
from hpsearch.scripts.bench.figures import FULL, QUICK, Figure, format_csv, format_table
from hpsearch.scripts.bench.gpu import bench_gpu
from hpsearch.scripts.bench.hog_speed import bench_hog
from hpsearch.scripts.bench.search import bench_search
from hpsearch.scripts.bench.sweep_speed import (
    MIN_VAL_IMAGES,
    MNIST_TRAIN_IMAGES,
    EpochModel,
    SweepTiming,
    TrialSize,
    TrialSpan,
    bench_sweep,
    idle_ray_workers,
    sweep_figures,
    trial_spans,
    wait_for_idle_workers,
)
from hpsearch.scripts.bench.train_speed import bench_training, training_figure

# The parts' names and figures, importable from here as before the split (the tests do).
__all__ = [
    "FULL", "MIN_VAL_IMAGES", "MNIST_TRAIN_IMAGES", "PARTS", "QUICK", "EpochModel", "Figure",
    "SweepTiming", "TrialSize", "TrialSpan", "format_csv", "format_table",
    "idle_ray_workers", "run_bench", "sweep_figures", "training_figure", "trial_spans",
    "wait_for_idle_workers",
]

PARTS = ("train", "sweep", "hog", "gpu", "search")


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
        ("gpu", lambda: bench_gpu(data_dir, mode)),
        ("search", lambda: bench_search(data_dir, quick, out, Figure,
                                        [search_space] if search_space else None)),
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
