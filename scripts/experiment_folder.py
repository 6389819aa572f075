"""The experiment folder as a unit: its name, the lock a sweep holds on it, and the free
space it needs."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

from hpsearch.search_spaces.errors import ConfigError

LOCK_FILE = ".hpsearch.lock"
# Room for the checkpoints of the trials running, Tune's state saves and the leaderboard:
# a sweep stops cleanly below it, instead of leaving files cut short by a full disk.
MIN_FREE_BYTES = 64 * 2**20

_PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def check_name(name: str, where: str) -> str:
    """``name`` if it is a plain folder name (letters, digits, ``.``, ``_``, ``-``; no
    separators, no ``..``), so that the experiment folder stays inside the results dir."""
    if not _PLAIN_NAME.fullmatch(name) or ".." in name:
        raise ConfigError(
            f"{where} {name!r}: must be a plain folder name (letters, digits, '.', '_', '-'; "
            "no '/' or '..')")
    return name


def _holder(path: Path) -> str:
    with contextlib.suppress(OSError):
        text = path.read_text().strip()
        if text:
            return text
    return "another process"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _stale(text: str) -> bool:
    """Whether a lock file written by :func:`experiment_lock` names a process of this host
    that is gone (only consulted where the file system has no locks, as some NFS mounts)."""
    fields = dict(part.split("=", 1) for part in text.split() if "=" in part)
    if fields.get("host") != socket.gethostname() or not fields.get("pid", "").isdigit():
        return False
    return not _pid_alive(int(fields["pid"]))


@contextlib.contextmanager
def experiment_lock(exp_dir: Path) -> Iterator[None]:
    """Hold the experiment folder for the block: a second sweep (or rebuild) of it is
    refused with one line naming the holder. The lock is the OS's (``flock``, which Linux
    maps to NFS locks on NFS), so it dies with its process; the file says who holds it."""
    exp_dir.mkdir(parents=True, exist_ok=True)
    path = exp_dir / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        _acquire(fd, exp_dir, path)
    except BaseException:
        os.close(fd)
        raise
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"host={socket.gethostname()} pid={os.getpid()}\n".encode(), 0)
        yield
    finally:
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        os.close(fd)


def lock_holder(exp_dir: Path) -> str | None:
    """Who holds the experiment folder (``host=... pid=...``) while a sweep runs in it, or
    None when no process does."""
    path = exp_dir / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno == errno.ENOLCK:  # no locks here: trust the file unless its process is gone
            holder = _holder(path)
            return None if holder == "another process" or _stale(holder) else holder
        return _holder(path)
    finally:
        os.close(fd)
    return None


def processes_using(exp_dir: Path) -> list[int]:
    """Pids of this host's processes with a file open inside ``exp_dir`` (the lock file
    aside): what may still write there, whoever holds the folder."""
    import psutil

    root, lock, pids = Path(exp_dir).resolve(), str(Path(exp_dir).resolve() / LOCK_FILE), []
    for proc in psutil.process_iter():
        try:
            paths = [f.path for f in proc.open_files()]
        except (psutil.Error, OSError):
            continue
        if any(p != lock and Path(p).is_relative_to(root) for p in paths):
            pids.append(proc.pid)
    return pids


def _acquire(fd: int, exp_dir: Path, path: Path) -> None:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
            raise ConfigError(
                f"{exp_dir}: in use by another sweep ({_holder(path)}); wait for it to end "
                "or choose another --name") from None
        if exc.errno != errno.ENOLCK:
            raise
        # No locks on this file system: trust the file, unless its process is gone.
        holder = _holder(path)
        if holder != "another process" and not _stale(holder):
            raise ConfigError(
                f"{exp_dir}: in use by another sweep ({holder}); if that process is gone, "
                f"delete {path}") from None


def disk_space_problem(folder: Path, min_free: int = MIN_FREE_BYTES) -> str | None:
    """What is wrong with the free space on ``folder``'s disk (``folder`` need not exist
    yet), or None when a sweep has its reserve there."""
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    free = shutil.disk_usage(existing).free
    if free >= min_free:
        return None
    return (f"{folder}: only {free / 2**20:.1f} MiB free on its disk, under the "
            f"{min_free / 2**20:.0f} MiB a sweep keeps in reserve")
