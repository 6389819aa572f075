"""``hpsearch bench``, part 3: HOG. The vectorized extraction vs. a per-image
``skimage.feature.hog`` loop, timed on a sample and scaled."""

from __future__ import annotations

import os
import time

import numpy as np

from hpsearch.datamodules import data_config_from_dict
from hpsearch.lightning_modules.presets import PRESETS
from hpsearch.scripts.bench.figures import Figure, Mode

# The targets (full mode, on our 2-core machine).
MIN_HOG_SPEEDUP = 30.0
MAX_HOG_DIFF = 1e-5


def bench_hog(data_dir: str | None, mode: Mode) -> list[Figure]:
    from skimage.feature import hog

    from hpsearch.datamodules.hog import hog_features
    from hpsearch.datamodules.idx import load_idx_images

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
