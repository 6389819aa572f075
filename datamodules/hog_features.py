"""Histogram-of-oriented-gradients features for MNIST, vectorized over whole batches of images.

``skimage.feature.hog`` works one image at a time (~0.6 ms per 28x28 image, so ~45 s for
MNIST's 70,000 images); :func:`hog_features` computes the same numbers for a whole stack of
images with a few dozen numpy passes per chunk of images. It replicates skimage (checked
against 0.26) exactly where it matters:

* gradients are central differences in skimage's float dtype for the input (float32 for
  float16/float32, float64 otherwise), with the outer rows/columns set to zero;
* skimage's orientation is ``rad2deg(arctan2(g_row, g_col)) % 180`` in float64; bin ``i``
  holds angles in ``[w*i, w*(i+1))`` with ``w = 180. / n``, all in float64 as in skimage's
  Cython kernel; an angle at or above the last bound (``% 180`` can round a tiny negative
  angle up to 180.0) is counted in no bin;
* each cell histogram is the sum of magnitudes divided by the cell area; pixels right of or
  below the last whole cell are ignored;
* blocks of ``cells_per_block`` x ``cells_per_block`` cells slide by one cell and are
  L2-Hys normalized (eps 1e-5, clip at 0.2, renormalize), flattened in skimage's order
  ``(block_row, block_col, cell_row, cell_col, orientation)``.

Binning without arctan2 (which alone costs more than everything else here): the gradient is
folded into the upper half plane, ``(x, y)`` with ``y >= 0``, and ``q = x / (|x| + y)`` is a
cheap quantity that falls monotonically from 1 (0 deg) to -1 (180 deg). ``floor(-L * q)``
picks one of ``2L + 1`` buckets, and a lookup table built once per call maps each bucket to
its bin, or to "unsure" when the bucket's angle range, widened by a bound on the float
rounding of ``q``, touches a bin bound. Unsure pixels (a few percent: gradients exactly at
45 or 135 deg, horizontal ones whose fold is ambiguous, and the rare ones within ~0.01 deg of
a bound) are binned with skimage's own float64 formula, so every pixel lands where skimage
puts it. Exactly vertical gradients need no fallback: ``q`` is zero exactly when ``x`` is,
and ``floor(-0.0)`` is 0, the first bucket at or above 90 deg.

Magnitudes and the normalization are float32 for float32 input (skimage: float64 magnitudes
summed in a C float), so values differ by float32 rounding (~1e-7), far inside the 1e-5 the
tests require. Squared float32 gradients overflow above ~1e19, so such input needs float64;
gradients below ~1e-19 count as zero and below ~1e-34 may be binned differently, both far
too small to move any output.

Chunks of images run on a few threads with their own scratch arrays (numpy releases the
GIL). All 70,000 MNIST images at 4 px / 8 orientations take under a second of CPU time.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def hog_grid(image_size: int, pixels_per_cell: int, cells_per_block: int) -> tuple[int, int]:
    """``(cells_per_side, blocks_per_side)`` for a square image; raises if no block fits."""
    n_cells = image_size // pixels_per_cell
    n_blocks = n_cells - cells_per_block + 1
    if pixels_per_cell < 1 or cells_per_block < 1 or n_blocks < 1:
        raise ValueError(
            f"HOG with pixels_per_cell={pixels_per_cell}, cells_per_block={cells_per_block} "
            f"does not fit a {image_size}x{image_size} image"
        )
    return n_cells, n_blocks


def hog_feature_size(
    image_size: int, orientations: int, pixels_per_cell: int, cells_per_block: int = 1
) -> int:
    """Length of the HOG vector of a square ``image_size`` image (skimage's block layout)."""
    _, n_blocks = hog_grid(image_size, pixels_per_cell, cells_per_block)
    return n_blocks * n_blocks * cells_per_block * cells_per_block * orientations


_EPS = 1e-5
_L2HYS_CLIP = 0.2
# Buckets per unit of q: 2**12 keeps the table in L1 and the unsure share from near-bound
# buckets around 0.1 %. A power of two so that -L * q is exact.
_L = 4096
# Bound on |computed q - true q|: two roundings of relative 2**-24 each, with margin.
_Q_ERR = 1e-6
# Slack for skimage's own float64 angle (arctan2, rad2deg, % 180 each round by ~1e-14 deg).
_ANGLE_SLACK_DEG = 1e-9
_UNSURE = 255  # table entry for buckets that need skimage's formula; bins are 0..254
# Images per chunk: 128..512 measured alike; 1024 is slower (the scratch leaves the L2 cache).
_DEFAULT_CHUNK = 256


def _bin_upper_bounds(orientations: int) -> np.ndarray:
    # Exactly skimage's kernel arithmetic: ``(180. / n) * (i + 1)`` in C doubles. For n = 7
    # the float32 rounding of these bounds would move gradients at 154.2857 deg to the next
    # bin, so neither the width nor the products may be rounded.
    return (180.0 / orientations) * np.arange(1, orientations + 1, dtype=np.float64)


def _bucket_table(bounds: np.ndarray) -> np.ndarray:
    """Bin of each bucket ``floor(-L*q) + L``: ``len(bounds)`` for none, :data:`_UNSURE` for
    the buckets that may hold pixels of two bins."""
    j = np.arange(-_L, _L + 1, dtype=np.float64)
    # Bucket j holds computed q in (-(j+1)/L, -j/L]; the true q may differ by _Q_ERR.
    q_high = np.minimum(-j / _L + _Q_ERR, 1.0)
    q_low = np.maximum(-(j + 1) / _L - _Q_ERR, -1.0)
    # theta(q) = atan2(1 - |q|, q) inverts q = x / (|x| + y) for the unit direction (x, y).
    low = np.rad2deg(np.arctan2(1 - np.abs(q_high), q_high)) - _ANGLE_SLACK_DEG
    high = np.rad2deg(np.arctan2(1 - np.abs(q_low), q_low)) + _ANGLE_SLACK_DEG
    # The sign of q is exact, so bucket 0 (q <= 0) starts at exactly 90 deg, and skimage's
    # angle for x <= 0 is >= 90.0 too (rounding is monotone): vertical gradients stay sure.
    low[_L] = 90.0
    bin_low = np.searchsorted(bounds, low, side="right")
    bin_high = np.searchsorted(bounds, high, side="right")
    return np.where(bin_low == bin_high, bin_low, _UNSURE).astype(np.uint8)


@dataclass(frozen=True)
class _Plan:
    """What every chunk shares: the bucket table and each pixel's histogram slot.

    Histograms are laid out bin-major, ``(bin, image, cell)`` with a stride of ``chunk *
    cells`` per bin, so the normalization works along long contiguous rows.
    """

    orientations: int
    pixels_per_cell: int
    cells_per_block: int
    n_cells: int
    chunk: int
    bounds: np.ndarray
    table: np.ndarray
    # (chunk * S * S,) intp: slot of each pixel's (image, cell) in bin 0; pixels outside
    # every cell point past all real bins.
    slot_base: np.ndarray

    @property
    def bin_stride(self) -> int:
        return self.chunk * self.n_cells**2


def _make_plan(
    size: int, orientations: int, pixels_per_cell: int, cells_per_block: int, chunk: int
) -> _Plan:
    n_cells, _ = hog_grid(size, pixels_per_cell, cells_per_block)
    cells = n_cells**2
    bounds = _bin_upper_bounds(orientations)
    cell = np.arange(size) // pixels_per_cell
    cell_of_pixel = cell[:, None] * n_cells + cell[None, :]
    images = np.arange(chunk, dtype=np.intp)[:, None, None]
    slot_base = images * cells + cell_of_pixel
    outside = (cell[:, None] >= n_cells) | (cell[None, :] >= n_cells)
    slot_base[:, outside] = (orientations + 1) * chunk * cells
    return _Plan(
        orientations,
        pixels_per_cell,
        cells_per_block,
        n_cells,
        chunk,
        bounds,
        _bucket_table(bounds),
        slot_base.reshape(-1),
    )


class _Buffers:
    """One thread's scratch arrays, reused across its chunks so no chunk pays for allocation."""

    def __init__(self, plan: _Plan, size: int, dtype: np.dtype) -> None:
        m = plan.chunk * size * size
        # Every element is written for each chunk (borders zeroed there), so no initial zeros.
        self.g_row = np.empty((plan.chunk, size, size), dtype)
        self.g_col = np.empty((plan.chunk, size, size), dtype)
        self.a = np.empty(m, dtype)
        self.b = np.empty(m, dtype)
        self.bucket32 = np.empty(m, np.int32)
        self.bins = np.empty(m, np.uint8)
        self.slots = np.empty(m, np.intp)
        self.magnitude = np.empty(m, np.float64)
        self.hist = np.empty((plan.orientations, plan.bin_stride), np.float32)


def _cell_histograms(images: np.ndarray, plan: _Plan, buf: _Buffers) -> np.ndarray:
    """(n, S, S) images -> (orientations, n * cells) float32 cell histograms (a view of buf)."""
    n, size, _ = images.shape
    m = n * size * size
    flat = images.reshape(-1)
    g_row, g_col = buf.g_row[:n], buf.g_col[:n]
    a, b, slots = buf.a[:m], buf.b[:m], buf.slots[:m]
    # Differences over the flattened chunk in one pass each; the values that straddle two
    # rows or two images are overwritten by the zero borders right after.
    np.subtract(flat[2:], flat[:-2], out=g_col.reshape(-1)[1 : m - 1])
    g_col[:, :, 0] = g_col[:, :, -1] = 0
    np.subtract(flat[2 * size :], flat[: -2 * size], out=g_row.reshape(-1)[size : m - size])
    g_row[:, 0, :] = g_row[:, -1, :] = 0
    gr, gc = g_row.reshape(-1), g_col.reshape(-1)

    # -L * q = x / (-(|x| + y) / L), folding (g_col, g_row) to x = g_col * sign(g_row).
    np.abs(gc, out=a)
    np.abs(gr, out=b)
    a += b
    # copysign(a, g_row) with integer ops, several times faster than np.copysign; a >= +0.
    bits = np.dtype(f"i{a.itemsize}")
    np.bitwise_and(gr.view(bits), np.iinfo(bits).min, out=b.view(bits))
    np.bitwise_or(a.view(bits), b.view(bits), out=a.view(bits))
    a *= a.dtype.type(-1.0 / _L)
    with np.errstate(invalid="ignore", divide="ignore"):  # 0/0 where the gradient is zero
        np.divide(gc, a, out=a)
        np.floor(a, out=a)
        a += _L
        # Through int32, which numpy converts to far faster than to int64. NaN (zero
        # gradient) casts to some integer that "clip" turns into a valid bucket; its
        # magnitude is zero, so its bin does not matter.
        np.copyto(buf.bucket32[:m], a, casting="unsafe")
    np.copyto(slots, buf.bucket32[:m])
    # uint8 bins, not slots, out of the table: a quarter of the memory traffic to test them.
    bins = plan.table.take(slots, mode="clip", out=buf.bins[:m])

    unsure = np.flatnonzero(bins == _UNSURE)
    # Most unsure pixels have g_row == 0: horizontal gradients that the fold sends to 180 deg
    # when g_col < 0, where skimage's angle is 0 (bin 0). Only the rest need arctan2.
    bins[unsure] = 0
    hard = unsure[gr[unsure] != 0]
    angle = np.rad2deg(np.arctan2(gr[hard].astype(np.float64), gc[hard].astype(np.float64)))
    bins[hard] = np.searchsorted(plan.bounds, angle % 180, side="right")
    np.multiply(bins, np.intp(plan.bin_stride), out=slots)
    slots += plan.slot_base[:m]

    np.multiply(gc, gc, out=a)
    np.multiply(gr, gr, out=b)
    a += b
    np.sqrt(a, out=a)
    np.copyto(buf.magnitude[:m], a)
    k, stride = plan.orientations, plan.bin_stride
    counts = np.bincount(slots, weights=buf.magnitude[:m], minlength=(k + 1) * stride)
    hist = buf.hist[:, : n * plan.n_cells**2]
    area = plan.pixels_per_cell**2
    np.multiply(counts[: k * stride].reshape(k, stride)[:, : hist.shape[1]], 1.0 / area, out=hist)
    return hist


def _l2_hys(columns: np.ndarray) -> None:
    """L2-Hys of every column of an (F, R) float32 array with contiguous rows, in place."""
    # Column layout: every numpy pass below runs along rows of length R, not F (~8).
    eps2 = columns.dtype.type(_EPS**2)
    for clip in (True, False):
        norm = np.add.reduce(columns * columns, axis=0)
        norm += eps2
        np.sqrt(norm, out=norm)
        columns /= norm
        if clip:
            np.minimum(columns, columns.dtype.type(_L2HYS_CLIP), out=columns)


def _hog_chunk(images: np.ndarray, plan: _Plan, buf: _Buffers, out: np.ndarray) -> None:
    """HOG of ``images`` into ``out`` (n, F)."""
    n = len(images)
    k, nc, b = plan.orientations, plan.n_cells, plan.cells_per_block
    hist = _cell_histograms(images, plan, buf)
    if b == 1:
        columns = hist  # every cell is its own block: normalize the histograms in place
    else:
        cells = hist.T.reshape(n, nc, nc, k)
        # (n, br, bc, orient, b, b) -> (n, br, bc, b, b, orient): skimage's flattening order.
        blocks = sliding_window_view(cells, (b, b), axis=(1, 2)).transpose(0, 1, 2, 4, 5, 3)
        columns = np.ascontiguousarray(blocks.reshape(-1, b * b * k).T)
    _l2_hys(columns)
    out.reshape(-1, len(columns))[...] = columns.T


def _skimage_float_dtype(dtype: np.dtype) -> np.dtype:
    # skimage's _supported_float_type: half and single stay single, everything else double.
    return np.dtype(np.float32 if dtype in (np.float16, np.float32) else np.float64)


def hog_features(
    images: np.ndarray,
    orientations: int,
    pixels_per_cell: int,
    cells_per_block: int = 1,
    chunk_size: int = _DEFAULT_CHUNK,
    num_threads: int | None = None,
) -> np.ndarray:
    """HOG vectors of a stack of square grayscale images, equal to skimage's per-image ``hog``.

    ``images`` is ``(N, S, S)``, converted to the float dtype skimage would use (float32 for
    float16/float32 input, float64 otherwise). Returns ``(N, F)`` float32 with ``F =``
    :func:`hog_feature_size`. Work is done ``chunk_size`` images at a time in reused scratch
    arrays (about ``chunk_size * S * S * 40`` bytes per thread, plus the output); chunks run
    on ``num_threads`` threads (default: CPU count, at most 8) since numpy releases the GIL.
    """
    if images.ndim != 3 or images.shape[1] != images.shape[2]:
        raise ValueError(f"expected (N, S, S) square images, got shape {images.shape}")
    if not 1 <= orientations < _UNSURE:
        raise ValueError(f"orientations must be in 1..{_UNSURE - 1}, got {orientations}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    n, size, _ = images.shape
    dtype = _skimage_float_dtype(images.dtype)
    images = np.ascontiguousarray(images, dtype=dtype)
    chunk = min(chunk_size, max(n, 1))
    plan = _make_plan(size, orientations, pixels_per_cell, cells_per_block, chunk)
    n_feat = hog_feature_size(size, orientations, pixels_per_cell, cells_per_block)
    out = np.empty((n, n_feat), dtype=np.float32)

    starts = iter(range(0, n, chunk))
    lock = threading.Lock()

    def work() -> None:
        buf = _Buffers(plan, size, dtype)
        while True:
            with lock:  # chunks are handed out one by one, so a slowed thread does less
                start = next(starts, None)
            if start is None:
                return
            _hog_chunk(images[start : start + chunk], plan, buf, out[start : start + chunk])

    workers = max(1, min(num_threads or min(os.cpu_count() or 1, 8), -(-n // chunk)))
    if workers == 1:
        work()
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            # list() re-raises the first exception from a worker here.
            list(pool.map(lambda _: work(), range(workers)))
    return out
