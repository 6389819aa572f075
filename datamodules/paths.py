"""Where data and caches live, and the atomic-write and fingerprint helpers the loaders share."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, BinaryIO

DATA_DIR_ENV = "HPSEARCH_DATA_DIR"
CACHE_DIR_ENV = "HPSEARCH_CACHE_DIR"
DEFAULT_DATA_DIR = Path("data")
DEFAULT_CACHE_DIR = Path("~/.cache/hpsearch")


def resolve_data_dir(data_dir: str | Path | None = None) -> Path:
    """Absolute data root: explicit ``data_dir`` > ``$HPSEARCH_DATA_DIR`` > ``./data``.

    The result is absolute so it can key caches and so Ray workers, whose working directory
    differs from the driver's, see the same folder.
    """
    if data_dir is None or str(data_dir) == "":
        data_dir = os.environ.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR
    return Path(data_dir).expanduser().resolve()


def resolve_cache_dir(sub: str = "") -> Path:
    """Derived-data cache folder (``$HPSEARCH_CACHE_DIR`` or ``~/.cache/hpsearch``), created."""
    root = Path(os.environ.get(CACHE_DIR_ENV) or DEFAULT_CACHE_DIR).expanduser().resolve()
    path = root / sub if sub else root
    path.mkdir(parents=True, exist_ok=True)
    return path


def current_umask() -> int:
    """The process's umask (read by setting it, so set straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def make_temp_dir(parent: Path, prefix: str) -> Path:
    """``tempfile.mkdtemp`` with the mode a plain ``mkdir`` would give (umask, not 0700):
    for folders that are renamed into place as results."""
    path = Path(tempfile.mkdtemp(dir=parent, prefix=prefix))
    path.chmod(0o777 & ~current_umask())
    return path


def atomic_write(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Write ``path`` through a temporary file in the same folder and ``os.replace`` it.

    The one atomic write of hpsearch (caches, leaderboards, metadata, reports): parallel
    writers each write their own temporary file and the rename is atomic, so readers only
    ever see a missing, the old or the new complete file.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~current_umask())  # mkstemp's 0600 would hide it from the team
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())  # on disk before the rename: a crash leaves old or new
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` so readers see the old file or the new one, never half of one."""
    atomic_write(path, lambda out: out.write(text.encode()))


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, default=str) + "\n")


def fingerprint_bytes(chunks: Iterable[bytes | memoryview]) -> str:
    """Short content hash; sha1 runs at ~1.5 GB/s, so fingerprinting MNIST costs ~0.04 s."""
    h = hashlib.sha1()
    for chunk in chunks:
        h.update(chunk)
    return h.hexdigest()[:16]


def fingerprint_files(root: Path, files: Iterable[Path]) -> str:
    """Hash of relative names, sizes and mtimes: cheap for thousands of large JPEGs."""
    parts = []
    for f in sorted(files):
        st = f.stat()
        parts.append(f"{f.relative_to(root).as_posix()}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
    return fingerprint_bytes(parts)
