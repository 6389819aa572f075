"""The experiment folder as a unit: its files (:class:`ExperimentFolder`), its name, the lock
a sweep holds on it, and the free space it needs."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import shutil
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import ValidationError

from hpsearch.datamodules.paths import atomic_write_json
from hpsearch.scripts.sweep_record import SweepMeta
from hpsearch.scripts.uris import join_uri
from hpsearch.search_spaces.errors import ConfigError, config_error

if TYPE_CHECKING:
    import pandas as pd

# What an experiment folder (results/NAME) holds.
LEADERBOARD = "leaderboard.csv"
SWEEP_META = "sweep.json"
RAY_DIR = "ray"  # Ray's experiment, unless the sweep has --storage
# A copy of Tune's experiment state as last saved in full, beside Ray's folder (one machine).
STATE_BACKUP = "ray-state-backup"
OPTUNA_JOURNAL = "optuna.log"
BEST_DIR = "best"  # hpsearch retrain's report
PARETO_PLOT = "pareto_front.png"  # a multi-objective sweep's, see scripts.reports.pareto_front
LOCK_FILE = ".hpsearch.lock"
# Room for the checkpoints of the trials running, Tune's state saves and the leaderboard:
# a sweep stops cleanly below it, instead of leaving files cut short by a full disk.
MIN_FREE_BYTES = 64 * 2**20

# Read back as text: a trial id such as "1e088275" would otherwise become the float 1e88275.
TEXT_COLUMNS = {"trial_id": str, "node_id": str, "node": str, "error": str, "checkpoint": str}


@dataclass(frozen=True)
class ExperimentFolder:
    """An experiment folder and the files a sweep, its reports and its re-train keep there."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @property
    def leaderboard(self) -> Path:
        return self.root / LEADERBOARD

    @property
    def meta_file(self) -> Path:
        return self.root / SWEEP_META

    @property
    def ray_dir(self) -> Path:
        return self.root / RAY_DIR

    @property
    def state_backup(self) -> Path:
        return self.root / STATE_BACKUP

    @property
    def optuna_journal(self) -> Path:
        return self.root / OPTUNA_JOURNAL

    @property
    def best_dir(self) -> Path:
        return self.root / BEST_DIR

    @property
    def pareto_plot(self) -> Path:
        return self.root / PARETO_PLOT

    @property
    def lock_file(self) -> Path:
        return self.root / LOCK_FILE

    def read_meta(self) -> SweepMeta:
        """The sweep's record; a missing, unreadable or malformed one is a one-line error."""
        path = self.meta_file
        if not path.is_file():
            raise ConfigError(f"{self.root}: not an hpsearch experiment folder (no {SWEEP_META})")
        try:
            raw = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: not valid JSON ({exc})") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: not an hpsearch sweep record (a JSON object)")
        try:
            return SweepMeta.model_validate(raw)
        except ValidationError as exc:
            raise ConfigError(
                f"{path}: not an hpsearch sweep record ({config_error(exc, data=raw)})") from None

    def write_meta(self, meta: SweepMeta) -> None:
        """Write the sweep's record whole (readers see the old one or the new one)."""
        atomic_write_json(self.meta_file, meta.to_json())

    def read_leaderboard(self) -> pd.DataFrame:
        import pandas as pd

        if not self.root.is_dir():
            raise ConfigError(f"{self.root}: no such results folder")
        if not self.leaderboard.is_file():
            raise ConfigError(f"{self.root}: no {LEADERBOARD} (run a sweep, or --rebuild it)")
        try:
            return pd.read_csv(self.leaderboard, dtype=TEXT_COLUMNS)
        except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
            raise ConfigError(f"{self.leaderboard}: unreadable leaderboard ({exc})") from None

    def ray_storage_path(self, meta: SweepMeta | None = None) -> str:
        """The folder Ray's experiment is kept in: this one, or ``STORAGE/NAME`` for a sweep
        run with ``--storage`` (a shared path or a URI such as ``s3://…``, whose query, if
        any, stays at the end)."""
        if meta is not None and meta.storage:
            return join_uri(meta.storage, meta.experiment)
        return str(self.root.resolve())  # absolute: Ray reads a relative path as a URI

    def ray_experiment_path(self, meta: SweepMeta | None = None) -> str:
        """Where Ray keeps the experiment: :meth:`ray_storage_path` plus ``ray``."""
        return join_uri(self.ray_storage_path(meta), RAY_DIR)


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
    path = ExperimentFolder(exp_dir).lock_file
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
    path = ExperimentFolder(exp_dir).lock_file
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

    root, pids = Path(exp_dir).resolve(), []
    lock = str(ExperimentFolder(root).lock_file)
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
