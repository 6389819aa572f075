"""``hpsearch bench``, part 4: GPU (only with CUDA). Epoch times with the data resident on the
GPU, and the throughput of several trials sharing the GPU vs. one at a time."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hpsearch.scripts.bench.figures import Figure, Mode
from hpsearch.scripts.bench.sweep_speed import (
    MNIST_TRAIN_IMAGES,
    bench_space,
    start_ray_for_bench,
    timed_sweep,
)
from hpsearch.scripts.bench.train_speed import bench_training


def bench_gpu(data_dir: str | None, mode: Mode) -> list[Figure]:
    """Part 1's training figures on CUDA, then :func:`bench_gpu_sharing`."""
    return bench_training(data_dir, mode, device="cuda") + bench_gpu_sharing(data_dir, mode)


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
