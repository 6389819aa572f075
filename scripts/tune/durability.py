"""Tune's experiment state kept whole: saved as trials change, backed up, put back after a kill."""

from __future__ import annotations

import contextlib
import logging
import shutil
from collections.abc import Iterator
from pathlib import Path

from hpsearch.datamodules.paths import atomic_write
from hpsearch.scripts.experiment_folder import ExperimentFolder
from hpsearch.scripts.tune.cluster import environ_defaults
from hpsearch.scripts.tune.internals import (
    RAY_SYNCER_LOGGER,
    TUNE_CHATTER,
    ChatterFilter,
    SnapshotRaceFilter,
    snapshot_on_trial_changes,
    state_file_complete,
    state_files,
)

# The state is saved whenever a trial is created, finishes or saves a checkpoint
# (internals.snapshot_on_trial_changes): do not warn about frequent saves. Read at fit start.
TUNE_SETTINGS = {
    "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0",
}


def state_backup_dir(ray_dir: Path) -> Path:
    """Where a copy of Tune's experiment state as last saved in full is kept: beside Ray's
    folder, in the experiment folder (one machine)."""
    return ExperimentFolder(ray_dir.parent).state_backup


def back_up_state(ray_dir: Path, backup: Path) -> None:
    """Copy Tune's experiment-state files (``experiment_state-*.json``, the searcher's state,
    ...) from ``ray_dir`` to ``backup``, each file atomically."""
    for path in state_files(ray_dir):
        with contextlib.suppress(FileNotFoundError):  # Tune renames its files as it saves
            data = path.read_bytes()
            atomic_write(backup / path.name, lambda out, data=data: out.write(data))


def repair_state(ray_dir: Path, backup: Path) -> bool:
    """Put the backed-up state back if a state file in ``ray_dir`` cannot be read (a driver
    killed while Tune was copying it there); returns whether it did."""
    if not backup.is_dir() or all(state_file_complete(p) for p in state_files(ray_dir)):
        return False
    for path in state_files(ray_dir):
        path.unlink()
    for path in state_files(backup):
        shutil.copy2(path, ray_dir / path.name)
    return True


@contextlib.contextmanager
def tune_settings(tune_defaults: bool, ray_dir: Path | None = None) -> Iterator[None]:
    """hpsearch's Tune settings (:data:`TUNE_SETTINGS`) and log filters, during a fit;
    ``ray_dir``: Ray's experiment folder where it is on this machine (its state is then
    backed up beside it, see :func:`snapshot_on_trial_changes`)."""
    after_save = None
    if ray_dir is not None:
        def after_save() -> None:
            back_up_state(ray_dir, state_backup_dir(ray_dir))
    filters = [(logging.getLogger(RAY_SYNCER_LOGGER), SnapshotRaceFilter())] + [
        (logging.getLogger(name), ChatterFilter(pattern)) for name, pattern in TUNE_CHATTER.items()]
    for logger, log_filter in filters:
        logger.addFilter(log_filter)
    try:
        if tune_defaults:
            yield
        else:
            with environ_defaults(TUNE_SETTINGS), snapshot_on_trial_changes(after_save):
                yield
    finally:
        for logger, log_filter in filters:
            logger.removeFilter(log_filter)
