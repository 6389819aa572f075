"""Every reach into the internals of Ray, Tune and NumPy, in one place.

Each one here relies on how the pinned version behaves beyond its public API, so importing
this module checks the installed versions and stops, naming the library, if one differs
(``scripts.versions``); nothing here falls back quietly. ``tests/test_internals.py`` checks
each contract on the pinned versions.

- :func:`snapshot_on_trial_changes` wraps ``TuneController.checkpoint`` (crash-safe resume);
- :func:`warm_trial_workers` edits ``ray.tune.execution.class_cache.DEFAULT_ENV_VARS``;
- :func:`ray_system_config` is passed to ``ray.init(_system_config=...)``;
- :class:`SnapshotRaceFilter` filters the log of ``ray.train._internal.syncer``;
- :func:`state_files` / :func:`state_file_complete` know Tune's experiment-state files;
- :class:`ReportSender` calls ``tune.report`` from a side thread and re-raises its stop;
- :func:`enable_token_auth_if_available` calls ``ray._private.authentication``;
- :func:`without_huge_pages` toggles NumPy's ``_set_madvise_hugepage``;
- :class:`FolderSearchGenerator` relies on what ``SearchGenerator.set_state`` restores
  (``_experiment``, ``_total_samples``, ``_finished``);
- :func:`has_saved_state` knows the name of Tune's experiment-state file.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import pickletools
import re
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from ray._private.authentication.authentication_token_setup import (
    maybe_enable_token_auth_if_token_available,
)
from ray.tune.execution import class_cache
from ray.tune.execution.tune_controller import TuneController
from ray.tune.search import SearchGenerator

from hpsearch.scripts.versions import check_pinned_versions

check_pinned_versions()


@contextlib.contextmanager
def without_huge_pages() -> Iterator[None]:
    """Allocate NumPy arrays inside the block in ordinary pages.

    Where the kernel compacts memory on the first touch of a huge-page array (THP
    ``defrag=madvise``), a fresh process pays for NumPy's huge-page advice several times
    over; arrays decoded only to be copied elsewhere (the driver's, to Ray's object store)
    gain nothing from huge pages (results/PERFORMANCE.md)."""
    toggle = np._core.multiarray._set_madvise_hugepage
    previous = toggle(False)
    try:
        yield
    finally:
        toggle(previous)


class ReportSender:
    """Sends a trial's reports to Tune from a background thread, in order, one at a time.

    ``tune.report`` returns only once the driver has processed the report (and its
    checkpoint) and asked the trial for the next one, while the trial's slot sits idle.
    Where the scheduler cannot stop the trial anyway, training goes on meanwhile
    (``wait=False``); where it may, the trial waits for its decision."""

    def __init__(self) -> None:
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def send(self, deliver: Callable[[], None], wait: bool) -> None:
        """Run ``deliver`` (which calls ``tune.report``) after the report before it; with
        ``wait``, return once it has returned."""
        self.wait()
        self._thread = threading.Thread(target=self._run, args=(deliver,), daemon=True,
                                        name="hpsearch-tune-report")
        self._thread.start()
        if wait:
            self.wait()

    def _run(self, deliver: Callable[[], None]) -> None:
        try:
            deliver()
        except BaseException as exc:  # noqa: BLE001 - handed to the training thread by wait()
            self._error = exc

    def wait(self) -> None:
        """Return once the report in flight (if any) is delivered, raising what it raised:
        Tune's signal to stop the trial is a ``SystemExit`` raised in ``tune.report``, which
        then ends the training thread as it would have without this sender."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            error, self._error = self._error, None
            raise error


# What every trial process imports: torch, Lightning, Ray Tune and our code (seconds of
# start-up). Ray's worker processes import it while they start, ahead of any trial, so a
# sweep's first trials do not wait for it (Ray's `preload_python_modules` setting).
TRIAL_WORKER_MODULES = ("hpsearch.scripts.tune.trainable",)


def ray_system_config() -> dict[str, Any]:
    """The Ray settings hpsearch starts a local Ray with (``ray start --system-config``
    takes the same, as JSON, for a cluster)."""
    return {
        "preload_python_modules": list(TRIAL_WORKER_MODULES),
        # Ray kills idle workers beyond its soft limit after 1 s, and Tune's placement groups,
        # reserved before the trials start, make the warm workers look surplus: keep them.
        "idle_worker_killing_time_threshold_ms": 300_000,
    }


@contextlib.contextmanager
def warm_trial_workers() -> Iterator[None]:
    """Let Tune's trial actors start in the local Ray's warm, idle worker processes.

    Tune gives every trial actor a runtime env that sets ``PL_DISABLE_FORK=1``, and Ray never
    hands an actor with a runtime env to one of its prestarted workers: each slot's first
    trial would wait for a new process to import everything again. The local Ray's
    workers inherit that variable from this process (:func:`init_ray`), so Tune's actors can
    go without the runtime env while the sweep runs."""
    defaults = class_cache.DEFAULT_ENV_VARS
    if os.environ.get("PL_DISABLE_FORK") != "1":
        yield  # not a Ray we started: Tune's behaviour as it is
        return
    saved = dict(defaults)
    defaults.pop("PL_DISABLE_FORK", None)
    try:
        yield
    finally:
        defaults.clear()
        defaults.update(saved)


_FINISHED = frozenset({"TERMINATED", "ERROR"})


def _trial_state(controller: Any) -> tuple[tuple[str, ...], frozenset[str], tuple[str, ...]]:
    trials = controller.get_trials()
    return (tuple(t.trial_id for t in trials),
            frozenset(t.trial_id for t in trials if t.status in _FINISHED),
            tuple(t.checkpoint.path if t.checkpoint else "" for t in trials))


@contextlib.contextmanager
def snapshot_on_trial_changes(after_save: Callable[[], None] | None = None) -> Iterator[None]:
    """Save Tune's experiment state (what ``--resume`` reads) in the very step in which a
    trial is created, finishes, errors or saves a checkpoint, besides Tune's periodic saves.

    A driver killed at any moment then finds every finished trial finished on ``--resume``
    and every running trial's checkpoint but its latest on disk. Saving at every step of
    Tune's loop (``TUNE_GLOBAL_CHECKPOINT_S=0``) was dearer and less safe (see
    results/PERFORMANCE.md). A save forced here waits for Tune's copy, then calls
    ``after_save`` (the sweep backs the state up there)."""
    original = TuneController.checkpoint
    saved: tuple[Any, ...] | None = None

    @functools.wraps(original)
    def checkpoint(self: Any, force: bool = False, wait: bool = False) -> None:
        nonlocal saved
        state = _trial_state(self)
        if state == saved:
            original(self, force=force, wait=wait)
            return
        saved = state
        original(self, force=True, wait=True)
        if after_save is not None:
            after_save()

    TuneController.checkpoint = checkpoint
    try:
        yield
    finally:
        TuneController.checkpoint = original


# Tune snapshots its state into a staging folder (each file written under a temporary name,
# then renamed) while a background thread copies the previous snapshot to the experiment
# folder; when the copy lists a temporary file that the rename then removes, Ray logs the
# failed copy with a traceback at the next snapshot. That copy is repeated in full by the
# next one, so nothing is lost: such a message is noise for the user.
_SNAPSHOT_RACE = re.compile(
    r"Last sync command failed.*FileNotFoundError.*Failed to open local file "
    r"'[^']*/[^/']*tmp-[^/']*'", re.DOTALL)


RAY_SYNCER_LOGGER = "ray.train._internal.syncer"


class SnapshotRaceFilter(logging.Filter):
    """Drops Ray's report of a snapshot copy that raced with the next snapshot (see above)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not _SNAPSHOT_RACE.search(record.getMessage())


# Tune's own words on a stop, which hpsearch says itself (with a resume command that works:
# Tune's is "tune.run(..., resume=True)"), and the trials that never reported on an early one.
TUNE_CHATTER = {
    "ray.tune.tune": re.compile(r"Stop signal received|Experiment has been interrupted"),
    "ray.tune.analysis.experiment_analysis": re.compile(r"Failed to fetch metrics for"),
}


class ChatterFilter(logging.Filter):
    """Drops the log records of :data:`TUNE_CHATTER` that match its logger's pattern."""

    def __init__(self, pattern: re.Pattern[str]) -> None:
        super().__init__()
        self.pattern = pattern

    def filter(self, record: logging.LogRecord) -> bool:
        return not self.pattern.match(record.getMessage())


def state_files(folder: Path) -> list[Path]:
    """Tune's experiment-state files in ``folder`` (``experiment_state-*.json``, the
    searcher's and the trial runner's state)."""
    return sorted(p for p in folder.glob("*") if p.is_file() and p.suffix in (".json", ".pkl"))


def state_file_complete(path: Path) -> bool:
    """Whether a state file is whole: JSON that parses, or a pickle whose opcodes run to its
    STOP (read without unpickling anything). Told apart by content: Tune writes its searcher
    state as a pickle named ``search_gen_state-*.json``."""
    try:
        data = path.read_bytes()
        if data[:1] in (b"{", b"["):
            json.loads(data)
        else:
            for _ in pickletools.genops(data):
                pass
        return True
    except (OSError, ValueError):  # JSONDecodeError is a ValueError
        return False


def enable_token_auth_if_available() -> bool:
    """Send this machine's Ray auth token (``$RAY_AUTH_TOKEN``, ``$RAY_AUTH_TOKEN_PATH`` or
    ``~/.ray/auth_token``) when connecting, unless ``$RAY_AUTH_MODE`` says otherwise.

    A head started with ``ray start --head`` on a machine that holds a token requires it,
    but ``ray.init(address=HOST:PORT)`` only sends it for ``auto``. A cluster without auth
    ignores the token, so sending it whenever one exists is safe.
    """
    with quiet_token_notice():
        return maybe_enable_token_auth_if_token_available(warn_if_disabled=False)


@contextlib.contextmanager
def quiet_token_notice() -> Iterator[None]:
    """Without Ray's "Token authentication is enabled for this Ray cluster" notice (its
    default for a local Ray, and what a token found on this machine means)."""
    announcer = logging.getLogger(maybe_enable_token_auth_if_token_available.__module__)
    level = announcer.level
    announcer.setLevel(logging.ERROR)
    try:
        yield
    finally:
        announcer.setLevel(level)


class FolderSearchGenerator(SearchGenerator):
    """Tune's ``SearchGenerator`` for ``experiment``, which keeps that experiment (Ray's
    folder where it is now) and its number of trials, when raised, on ``--resume``.

    Tune saves the generator with the ``Experiment`` it started with, absolute storage path
    included, and ``set_state`` puts that back: the trials a moved or copied folder's resume
    creates would then write into the original folder, and ``--num-samples`` could not grow.
    A sweep stopped by its time or epoch budget was marked finished by Tune; its resume
    draws the trials still to go (the searcher says again if it has none left)."""

    def __init__(self, searcher: Any, experiment: Any) -> None:
        super().__init__(searcher)
        self._current = experiment

    def set_state(self, state: dict[str, Any]) -> None:
        super().set_state(state)
        self._experiment = self._current
        self._total_samples = max(int(self._current.spec["num_samples"]), self._total_samples)
        self._finished = False


def has_saved_state(ray_path: str) -> bool:
    """Whether Ray's experiment folder (a local path or a URI) holds a saved experiment
    state, which a resume needs (a driver killed before Tune's first save left none)."""
    import pyarrow.fs

    fs, path = pyarrow.fs.FileSystem.from_uri(ray_path if "://" in ray_path
                                              else str(Path(ray_path).resolve()))
    try:
        infos = fs.get_file_info(pyarrow.fs.FileSelector(path, allow_not_found=True))
    except OSError:
        return False
    return any(Path(i.path).name.startswith("experiment_state-") and i.size
               for i in infos if i.type == pyarrow.fs.FileType.File)
