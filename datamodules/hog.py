"""Histogram-of-oriented-gradients features for MNIST, vectorized over whole batches of images.

``skimage.feature.hog`` works one image at a time (~1 ms per 28x28 image, so over a minute for
MNIST's 70,000 images); :func:`hog_features` computes the same numbers for a whole stack of
images with a handful of numpy passes. It replicates skimage 0.2x exactly where it matters:

* gradients are central differences in the input's float dtype, with the outer rows/columns
  set to zero, then promoted to float64;
* orientation = ``rad2deg(arctan2(g_row, g_col)) % 180``; bin ``i`` holds angles in
  ``[w*i, w*(i+1))`` where ``w = float32(180 / n)`` and the products are rounded to float32,
  because skimage's Cython kernel keeps those bounds in C ``float`` variables; an angle that
  lands at or above the last bound (``% 180`` can round a tiny negative angle up to 180.0)
  is counted in no bin, as in skimage;
* each cell histogram is the sum of magnitudes divided by the cell area; pixels right of or
  below the last whole cell are ignored;
* blocks of ``cells_per_block`` x ``cells_per_block`` cells slide by one cell and are
  L2-Hys normalized (eps 1e-5, clip at 0.2, renormalize), flattened in skimage's order
  ``(block_row, block_col, cell_row, cell_col, orientation)``.

skimage accumulates cell sums in float32 while this module uses float64, so values differ by
float32 rounding (~1e-7), far inside the 1e-5 the tests require.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from numpy.lib.stride_tricks import sliding_window_view

from .base import Splits, TensorDataModule, labels_to_tensor, split_train_val
from .configs import HogMnistConfig, hog_feature_size
from .idx import IDX_SPECS, IdxArrays, load_idx_arrays, locate_idx_files
from .paths import atomic_write, fingerprint_bytes, resolve_cache_dir

_EPS = 1e-5
_L2HYS_CLIP = 0.2


def _bin_upper_bounds(orientations: int) -> np.ndarray:
    # float32 on purpose: skimage's kernel compares the float64 angle against C floats, and
    # angles such as exactly 45.0 are common in digit images, so the bound must match bit-wise.
    width = np.float32(180.0 / orientations)
    return np.array(
        [np.float32(width * np.float32(i + 1)) for i in range(orientations)], dtype=np.float64
    )


def _cell_histograms(
    images: np.ndarray, orientations: int, pixels_per_cell: int, bounds: np.ndarray
) -> np.ndarray:
    """(n, H, W) float images -> (n, cells, cells, orientations) float64 histograms."""
    n, size, _ = images.shape
    p = pixels_per_cell
    n_cells = size // p
    # Gradients in the input dtype first, exactly like skimage, and only then promoted: a
    # float32 difference of two /255 values is not the float64 difference.
    g_row = np.zeros_like(images)
    g_col = np.zeros_like(images)
    g_row[:, 1:-1, :] = images[:, 2:, :] - images[:, :-2, :]
    g_col[:, :, 1:-1] = images[:, :, 2:] - images[:, :, :-2]
    crop = n_cells * p
    g_row = np.ascontiguousarray(g_row[:, :crop, :crop], dtype=np.float64)
    g_col = np.ascontiguousarray(g_col[:, :crop, :crop], dtype=np.float64)

    magnitude = np.hypot(g_col, g_row)
    angle = np.rad2deg(np.arctan2(g_row, g_col)) % 180
    # side="right": an angle equal to a bound belongs to the bin above it.
    bins = np.searchsorted(bounds, angle.ravel(), side="right").reshape(angle.shape)

    # One bincount over (image, cell, bin) replaces skimage's per-cell loops; index
    # ``orientations`` is a trash slot for the angles that fall in no bin.
    cell_r = np.arange(crop) // p
    cell_index = (cell_r[:, None] * n_cells + cell_r[None, :]).astype(np.int64)
    slots = orientations + 1
    flat = (
        np.arange(n, dtype=np.int64)[:, None, None] * (n_cells * n_cells) + cell_index
    ) * slots + bins
    hist = np.bincount(flat.ravel(), weights=magnitude.ravel(), minlength=n * n_cells**2 * slots)
    hist = hist.reshape(n, n_cells, n_cells, slots)[..., :orientations]
    return hist / (p * p)


def _l2_hys(blocks: np.ndarray) -> np.ndarray:
    """L2-Hys over the last three axes (cell_row, cell_col, orientation) of ``blocks``."""
    axes = (-3, -2, -1)
    out = blocks / np.sqrt(np.sum(blocks**2, axis=axes, keepdims=True) + _EPS**2)
    out = np.minimum(out, _L2HYS_CLIP)
    return out / np.sqrt(np.sum(out**2, axis=axes, keepdims=True) + _EPS**2)


def hog_features(
    images: np.ndarray,
    orientations: int,
    pixels_per_cell: int,
    cells_per_block: int = 1,
    chunk_size: int = 1000,
    num_threads: int | None = None,
) -> np.ndarray:
    """HOG vectors of a stack of square grayscale images, equal to skimage's per-image ``hog``.

    ``images`` is ``(N, S, S)``; float images are used in their own dtype (as skimage does),
    anything else is converted to float64 first. Returns ``(N, F)`` float32 with ``F =``
    :func:`hog_feature_size`. Work is done ``chunk_size`` images at a time so peak memory
    stays near ``num_threads * chunk_size * S * S * 60`` bytes; chunks run on
    ``num_threads`` threads (default: CPU count, at most 8) since numpy releases the GIL.
    """
    if images.ndim != 3 or images.shape[1] != images.shape[2]:
        raise ValueError(f"expected (N, S, S) square images, got shape {images.shape}")
    if orientations < 1:
        raise ValueError(f"orientations must be >= 1, got {orientations}")
    size = images.shape[1]
    n_feat = hog_feature_size(size, orientations, pixels_per_cell, cells_per_block)
    if not np.issubdtype(images.dtype, np.floating):
        images = images.astype(np.float64)
    bounds = _bin_upper_bounds(orientations)
    b = cells_per_block
    out = np.empty((len(images), n_feat), dtype=np.float32)

    def run_chunk(start: int) -> None:
        chunk = images[start : start + chunk_size]
        hist = _cell_histograms(chunk, orientations, pixels_per_cell, bounds)
        # (n, br, bc, orient, b, b) -> (n, br, bc, b, b, orient): skimage's flattening order.
        blocks = sliding_window_view(hist, (b, b), axis=(1, 2)).transpose(0, 1, 2, 4, 5, 3)
        out[start : start + len(chunk)] = _l2_hys(blocks).reshape(len(chunk), n_feat)

    starts = range(0, len(images), chunk_size)
    workers = num_threads or min(os.cpu_count() or 1, 8)
    if workers <= 1 or len(starts) <= 1:
        for start in starts:
            run_chunk(start)
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            # list() re-raises the first exception from a worker here.
            list(pool.map(run_chunk, starts))
    return out


# -- the datamodule ---------------------------------------------------------------------------

_HOG_CACHE_VERSION = 1  # bump when the feature computation changes, to orphan old cache files
FEATURE_STD_FLOOR = 1e-6


def hog_cache_path(cfg: HogMnistConfig, fingerprint: str) -> Path:
    """Where the unstandardized features of all 70,000 MNIST images are cached on disk."""
    name = (
        f"hog-v{_HOG_CACHE_VERSION}-o{cfg.orientations}-p{cfg.pixels_per_cell}"
        f"-c{cfg.cells_per_block}-{fingerprint}.npy"
    )
    return resolve_cache_dir("hog_mnist") / name


def cached_mnist_hog(cfg: HogMnistConfig, raw: IdxArrays) -> np.ndarray:
    """HOG features of MNIST train images then test images, ``(70000, F)`` float32.

    Read from the disk cache when present; otherwise computed and written atomically. The
    cache file name holds the HOG parameters and a hash of the decoded pixels, so changed
    source data never reuses stale features.
    """
    images = (raw.train_images, raw.test_images)
    path = hog_cache_path(cfg, fingerprint_bytes(a.data for a in images))
    n = sum(len(a) for a in images)
    if path.is_file():
        try:
            features = np.load(path, allow_pickle=False)
            if features.shape == (n, cfg.input_shape[0]) and features.dtype == np.float32:
                return features
        except (OSError, ValueError):
            pass  # unreadable cache file: recompute and overwrite it
    features = hog_features(
        np.concatenate(images).astype(np.float32) / np.float32(255),
        cfg.orientations,
        cfg.pixels_per_cell,
        cfg.cells_per_block,
    )
    atomic_write(path, lambda f: np.save(f, features, allow_pickle=False))
    return features


class HogMnistDataModule(TensorDataModule):
    """MNIST as standardized HOG features ``(N, F)`` float32; same splits as MNIST images.

    HOG is computed on the float32 [0, 1] images (``uint8 / 255``). Features are standardized
    with the mean and standard deviation of the training split only, so validation and test
    statistics never leak in. A feature (nearly) constant in training is only centred, as
    sklearn's ``StandardScaler`` does: dividing by its tiny std would turn any value it takes
    in validation or test into a huge outlier.
    """

    cfg: HogMnistConfig

    def describe_source(self) -> str:
        files = locate_idx_files(IDX_SPECS["mnist"], self.data_dir, self.download)
        return f"{files['train_images'].parent} (HOG cache: {resolve_cache_dir('hog_mnist')})"

    def _load(self) -> Splits:
        raw = load_idx_arrays(IDX_SPECS["mnist"], self.data_dir, self.download)
        features = cached_mnist_hog(self.cfg, raw)
        n_train = len(raw.train_images)
        train_idx, val_idx = split_train_val(
            n_train,
            self.cfg.val_size,
            self.cfg.split_seed,
            what=f" in {raw.files['train_images']}",
        )
        train = features[train_idx]
        mean = train.mean(axis=0, dtype=np.float64)
        std = train.std(axis=0, dtype=np.float64)
        std[std < FEATURE_STD_FLOOR] = 1.0

        def standardize(a: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(((a - mean) / std).astype(np.float32))

        y = labels_to_tensor(raw.train_labels)
        return Splits(
            standardize(train),
            y[train_idx],
            standardize(features[val_idx]),
            y[val_idx],
            standardize(features[n_train:]),
            labels_to_tensor(raw.test_labels),
        )
