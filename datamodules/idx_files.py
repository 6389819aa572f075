"""Reading IDX files (MNIST's format), gzip-compressed or not.

IDX format (big-endian): magic ``0x0000TTDD`` (TT = 0x08 for uint8, DD = number of dims),
then DD uint32 dimension sizes, then the data. Files may be gzip-compressed (detected by
content, not by name).
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import zlib
from pathlib import Path
from typing import Literal

import numpy as np

from .errors import DataError
from .paths import atomic_write, fingerprint_files, resolve_cache_dir

IDX_IMAGES_MAGIC = 0x00000803
IDX_LABELS_MAGIC = 0x00000801
_MAGIC = {"images": IDX_IMAGES_MAGIC, "labels": IDX_LABELS_MAGIC}


def gunzipped_cache_path(path: Path) -> Path:
    """Where the decompressed bytes of gzip file ``path`` are kept, keyed by its location,
    size and modification time (a changed file gets a new entry)."""
    path = path.resolve()
    key = fingerprint_files(Path(path.anchor), [path])
    return resolve_cache_dir("idx") / f"{path.name.removesuffix('.gz')}-{key}"


def _gunzip_cached(path: Path) -> bytes:
    # Decompressing MNIST's training images takes 0.2 s, paid by every process that reads
    # them and, before a sweep's first trial, by its driver; reading the bytes back: 0.02 s.
    try:
        cached: Path | None = gunzipped_cache_path(path)
    except OSError:  # no usable cache folder: decompress every time
        cached = None
    if cached is not None and cached.is_file():
        with contextlib.suppress(OSError):
            return cached.read_bytes()
    with gzip.open(path, "rb") as f:
        data = f.read()
    if cached is not None:
        with contextlib.suppress(OSError):  # an unwritable cache only costs time
            atomic_write(cached, lambda out: out.write(data))
    return data


def _read_bytes(path: Path) -> bytes:
    try:
        with open(path, "rb") as f:
            head = f.read(2)
        if head == b"\x1f\x8b":
            return _gunzip_cached(path)
        return path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except EOFError:
        # gzip's way of saying the stream stops early: typically an interrupted download.
        raise DataError(f"{path}: truncated gzip data (the file ends early)") from None
    except (OSError, zlib.error) as exc:
        raise DataError(f"{path}: cannot read ({exc})") from None


def read_idx(path: str | Path, kind: Literal["images", "labels"] | None = None) -> np.ndarray:
    """Decode a uint8 IDX file (raw or gzip) into an array of the shape its header gives.

    ``kind`` checks the magic number (0x00000803 images, 0x00000801 labels); ``None`` accepts
    either. Any problem raises :class:`DataError` naming the file.
    """
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4:
        raise DataError(f"{path}: truncated: {len(data)} bytes, too short for an IDX header")
    magic = int.from_bytes(data[:4], "big")
    if kind is not None and magic != _MAGIC[kind]:
        raise DataError(
            f"{path}: wrong IDX magic number 0x{magic:08X} (expected 0x{_MAGIC[kind]:08X} "
            f"for {kind})"
        )
    if magic not in _MAGIC.values():
        raise DataError(
            f"{path}: wrong IDX magic number 0x{magic:08X} (expected 0x{IDX_IMAGES_MAGIC:08X} "
            f"for images or 0x{IDX_LABELS_MAGIC:08X} for labels)"
        )
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{path}: truncated: {len(data)} bytes, header needs {header}")
    dims = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = int(np.prod(dims))
    held = len(data) - header
    if held != expected:
        what = (
            f"{dims[0]} images of {'x'.join(map(str, dims[1:]))}"
            if ndim == 3
            else f"{dims[0]} labels"
        )
        kind_name = "pixel" if ndim == 3 else "label"
        problem = "truncated" if held < expected else "unexpected trailing data"
        raise DataError(
            f"{path}: {problem}: header says {what} but file holds {held} bytes of "
            f"{kind_name} data (expected {expected})"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


@functools.lru_cache(maxsize=8)
def _read_idx_cached(path: str, kind: str, size: int, mtime_ns: int) -> np.ndarray:
    # size and mtime are in the key so a rewritten file is read again.
    return read_idx(path, kind)  # type: ignore[arg-type]


def read_idx_pair(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Images ``(N, H, W)`` and labels ``(N,)`` (uint8), checked to match; cached per process."""
    arrays = []
    for path, kind in ((images_path, "images"), (labels_path, "labels")):
        try:
            st = path.stat()
        except FileNotFoundError:
            raise DataError(f"{path}: file not found") from None
        arrays.append(_read_idx_cached(str(path), kind, st.st_size, st.st_mtime_ns))
    images, labels = arrays
    if len(images) != len(labels):
        raise DataError(
            f"images/labels count mismatch: {len(images)} images in {images_path} but "
            f"{len(labels)} labels in {labels_path}"
        )
    return images, labels
