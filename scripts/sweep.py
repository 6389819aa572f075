"""The sweep engine: a search-space file becomes a Ray Tune experiment with Optuna search,
ASHA early stopping, and a leaderboard CSV rewritten as trials finish."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import logging
import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from ray import tune

from datamodules import TensorDataModule
from datamodules.paths import atomic_write, resolve_data_dir
from scripts.config import TrainConfig
from scripts.distributed import (
    DDP_DRIVER_MEMORY,
    DataHandle,
    check_placement,
    cluster_summary,
    connect,
    current_node_id,
    default_max_concurrent,
    run_ddp_trial,
    searched_data_fields,
    ship_data,
    storage_uri,
    trial_datamodule,
)
from scripts.leaderboard import (
    LEADERBOARD,
    RAY_DIR,
    STATUS_ERRORED,
    STATUS_PENDING,
    STATUS_RUNNING,
    SWEEP_META,
    atomic_write_json,
    error_summary,
    ray_experiment_path,
    read_leaderboard,
    read_meta,
    trial_status,
    write_leaderboard,
    write_pareto_plot,
)
from scripts.schedulers import OBJECTIVE_SO_FAR, decision_epochs, make_scheduler
from scripts.train import EpochHistory, train
from scripts.trial_space import sampled_params, trial_config
from scripts.versions import check_pinned_versions
from search_spaces.schema import SearchSpace, parse_space
from search_spaces.typed import ConfigError

# The sweep relies on how these libraries behave in detail (Tune's controller and state
# files, Optuna's journal and samplers): refuse to run on other versions.
check_pinned_versions()

# ---------------------------------------------------------------------------------------
# Inside a trial (runs in a Ray worker process)
# ---------------------------------------------------------------------------------------


def _device_name() -> str:
    if torch.cuda.is_available():
        idx = torch.cuda.current_device()
        return f"cuda:{idx} ({torch.cuda.get_device_name(idx)})"
    return "cpu"


class ReportSender:
    """Sends a trial's reports to Tune from a background thread, in order, one at a time.

    ``tune.report`` returns only once the driver has processed the report (and its
    checkpoint) and asked the trial for the next one: 40-50 ms per epoch here, in which the
    trial's slot would sit idle. Where the scheduler cannot stop the trial anyway, training
    goes on meanwhile (``wait=False``); where it may, the trial waits for its decision."""

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


def _deliver_report(metrics: dict[str, Any], checkpoint_dir: str | None) -> None:
    try:
        checkpoint = tune.Checkpoint.from_directory(checkpoint_dir) if checkpoint_dir else None
        tune.report(metrics, checkpoint=checkpoint)  # copies the checkpoint into Tune's storage
    finally:
        if checkpoint_dir:
            shutil.rmtree(checkpoint_dir, ignore_errors=True)


class TuneReporter(pl.Callback):
    """Reports every epoch to Tune; saves a checkpoint only when the objective improved,
    so the trial's latest checkpoint is always its best one.

    Reports go through a :class:`ReportSender`: training waits for the driver only at the
    ``decision_epochs`` (where the scheduler may stop the trial) and at the end of ``fit``."""

    def __init__(self, params: Mapping[str, Any], cfg: TrainConfig,
                 decision_epochs: frozenset[int] = frozenset()) -> None:
        self.static = {
            "params": dict(params),
            "config_json": cfg.to_json(),
            "seed": cfg.seed,
            "node": socket.gethostname(),
        }
        self.best_snapshot: dict[str, float] = {}
        self.decision_epochs = decision_epochs
        self.sender = ReportSender()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        history = next(cb for cb in trainer.callbacks if isinstance(cb, EpochHistory))
        row = history.epochs[-1]
        if history.improved:
            self.best_snapshot = {f"best_{k}": v for k, v in row.items() if k.startswith("val_")}
        metrics = {
            **row,
            **self.best_snapshot,
            **self.static,
            "best_value": history.best_value,
            "best_epoch": history.best_epoch,
            "train_time_s": history.train_time_s,
            "param_count": sum(p.numel() for p in pl_module.parameters()),
            "device": _device_name(),
            # Tune's own timestamp is in whole seconds; `hpsearch bench` needs trial timelines.
            "reported_at": time.time(),
        }
        node_id = current_node_id()
        if node_id:
            metrics["node_id"] = node_id
        self._report(trainer, metrics, history.improved)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.sender.wait()  # the last report is delivered before the trial function returns

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                     exception: BaseException) -> None:
        # Deliver the epoch reported before the failure, so the trial's results keep it;
        # the exception being raised is what the trial ends with.
        with contextlib.suppress(BaseException):
            self.sender.wait()

    def state_dict(self) -> dict[str, Any]:
        return {"best_snapshot": self.best_snapshot}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best_snapshot = dict(state_dict["best_snapshot"])

    def _report(self, trainer: pl.Trainer, metrics: dict[str, Any], improved: bool) -> None:
        # Overridden by the data-parallel trial, whose workers report to Ray Train instead.
        checkpoint_dir = None
        if improved:
            # Saved now, in the training thread: the weights of this epoch.
            checkpoint_dir = tempfile.mkdtemp(prefix="hpsearch-checkpoint-")
            trainer.save_checkpoint(os.path.join(checkpoint_dir, "model.ckpt"))
        self.sender.send(functools.partial(_deliver_report, metrics, checkpoint_dir),
                         wait=metrics["epoch"] in self.decision_epochs)


def run_trial(
    config: dict[str, Any],
    space: SearchSpace,
    data_dir: str | None,
    data: DataHandle | None = None,
) -> None:
    """The Tune trainable: build the trial's config from the drawn values and train it.

    ``data``: the dataset shipped through the object store, used when it matches the trial's
    data config (see :func:`scripts.distributed.trial_datamodule`)."""
    cpus = max(1, int(space.resources.cpus_per_trial))
    torch.set_num_threads(cpus)
    params = sampled_params(space, config)
    cfg = trial_config(space, params)  # an infeasible draw raises here: the trial errors
    datamodule, source = trial_datamodule(cfg.data, data_dir, data)
    reporter = TuneReporter(params, cfg, decision_epochs(space))
    reporter.static["data"] = source
    # A trial that Tune restarts (--resume, a lost node) continues from its last checkpoint,
    # its best epoch so far, instead of training from scratch under the same trial.
    checkpoint = tune.get_checkpoint()
    with checkpoint.as_directory() if checkpoint else contextlib.nullcontext() as ckpt_dir:
        train(
            cfg,
            data_dir=data_dir,
            datamodule=datamodule,
            callbacks=[reporter],
            objective=space.objective.metric,
            mode=space.objective.mode,
            ckpt_path=os.path.join(ckpt_dir, "model.ckpt") if ckpt_dir else None,
        )


# ---------------------------------------------------------------------------------------
# Driver side
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SweepOptions:
    results_dir: Path = Path("results")
    name: str | None = None
    data_dir: str | None = None
    address: str | None = None
    resume: bool = False
    num_samples: int | None = None
    max_epochs: int | None = None
    cpus_per_trial: float | None = None
    gpus_per_trial: float | None = None
    max_concurrent: int | None = None
    workers_per_trial: int | None = None
    seed: int | None = None
    # Where Ray keeps the experiment (trial checkpoints, state for --resume): a path every
    # node sees (NFS) or a URI Ray supports (s3://, gs://). None: results_dir/NAME, which
    # suits one machine. The leaderboard is always written under results_dir.
    storage: str | None = None
    # Decode the data once here and hand it to trials through Ray's object store. None: when
    # joining a cluster, and on one machine unless the trials' draws change the data.
    ship_data: bool | None = None
    max_failures: int = 1
    verbose: bool = True
    # Ray Tune's own defaults (a new actor per trial, experiment state saved every ~10 s);
    # only the benchmark's baseline turns this on.
    tune_defaults: bool = False


def apply_overrides(space: SearchSpace, opts: SweepOptions) -> SearchSpace:
    budget = space.budget
    if opts.num_samples is not None:
        budget = dataclasses.replace(budget, num_samples=opts.num_samples)
    if opts.max_epochs is not None:
        budget = dataclasses.replace(
            budget,
            max_epochs=opts.max_epochs,
            grace_period=min(budget.grace_period, opts.max_epochs),
        )
    res = space.resources
    for field in ("cpus_per_trial", "gpus_per_trial", "max_concurrent", "workers_per_trial"):
        value = getattr(opts, field)
        if value is not None:
            res = dataclasses.replace(res, **{field: value})
    seed = space.seed if opts.seed is None else opts.seed
    return dataclasses.replace(space, budget=budget, resources=res, seed=seed)


def code_version() -> str:
    """The git commit that made a result (``+dirty`` when the tree had changes)."""
    root = Path(__file__).resolve().parents[1]
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"], cwd=root, capture_output=True,
            text=True, check=True, timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
            capture_output=True, text=True, timeout=10,
        ).stdout.strip()
        return rev + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        from importlib.metadata import version

        return f"hpsearch-{version('hpsearch')}"


def sweep_meta(space: SearchSpace, raw: Mapping[str, Any], opts: SweepOptions, name: str) -> dict:
    return {
        "experiment": name,
        "space_file": space.source,
        "space": raw,
        "overrides": {
            k: v for k, v in dataclasses.asdict(opts).items()
            if k in ("num_samples", "max_epochs", "cpus_per_trial", "gpus_per_trial",
                     "max_concurrent", "workers_per_trial", "seed") and v is not None
        },
        "objective": dataclasses.asdict(space.objective),
        "objectives": [dataclasses.asdict(o) for o in space.objectives],
        "sampler": dataclasses.asdict(space.sampler),
        "scheduler": dataclasses.asdict(space.scheduler),
        "max_epochs": space.budget.max_epochs,
        "num_samples": space.budget.num_samples,
        "params": list(space.param_names),
        "dataset": space.data.get("name"),
        "family": space.model.get("family"),
        "seed": space.seed,
        "code_version": code_version(),
        "study_name": f"{name}-{uuid.uuid4().hex[:8]}",
        "storage": storage_uri(opts.storage),
        "wall_time_s": 0.0,
    }


class LeaderboardCallback(tune.Callback):
    """Driver-side Tune callback: rewrites the leaderboard when a trial finishes (and every
    few seconds while results arrive), and prints one line per finished trial.

    A finished trial is written at the end of the step that finished it, once Tune's state
    saying so is on disk (:func:`snapshot_on_trial_changes` saves it in that step): what the
    leaderboard shows as finished, a ``--resume`` after a killed driver finds finished too.

    Module-level and holding only plain data, because Tune pickles it with the experiment
    and brings it back on ``--resume``."""

    def __init__(
        self, exp_dir: Path, meta: Mapping[str, Any], space: SearchSpace, verbose: bool = True
    ) -> None:
        self.exp_dir = exp_dir
        self.meta = dict(meta)
        self.space = space
        self.verbose = verbose
        self._last_write = 0.0
        self._finished: dict[str, str] = {}  # trial id -> Tune's status, not yet written

    def _write(self, trials: list[Any], ray_status: Mapping[str, str] | None = None) -> None:
        write_leaderboard(self.exp_dir, trials, self.meta, self.space, ray_status)
        self._last_write = time.monotonic()

    def _say(self, trial: Any, ray_status: str) -> None:
        if not self.verbose:
            return
        result = trial.last_result or {}
        status = trial_status(trial, int(self.meta["max_epochs"]), ray_status)
        metric = self.meta["objective"]["metric"]
        value = result.get("best_value")
        shown = f"best {metric}={value:.4f}" if isinstance(value, float) else "no result"
        line = f"  trial {trial.trial_id} {status}: {shown} after {result.get('epoch', 0)} epoch(s)"
        if status == STATUS_ERRORED:
            line += f" ({error_summary(trial.get_error())})"
        print(line, flush=True)

    def on_trial_result(self, iteration, trials, trial, result, **info):  # noqa: ANN001
        if time.monotonic() - self._last_write > 5.0:
            self._write(trials)

    def on_trial_complete(self, iteration, trials, trial, **info):  # noqa: ANN001
        self._finished[trial.trial_id] = "TERMINATED"

    def on_trial_error(self, iteration, trials, trial, **info):  # noqa: ANN001
        self._finished[trial.trial_id] = "ERROR"

    def on_step_end(self, iteration, trials, **info):  # noqa: ANN001
        if self._finished:
            self._write_finished(trials)

    def _write_finished(self, trials: list[Any]) -> None:
        finished, self._finished = self._finished, {}
        self._write(trials, finished)
        for trial in trials:
            if trial.trial_id in finished:
                self._say(trial, finished[trial.trial_id])

    def on_experiment_end(self, trials, **info):  # noqa: ANN001
        self._write_finished(trials)
        write_pareto_plot(self.exp_dir, self.meta)


OPTUNA_JOURNAL = "optuna.log"

# What every trial process imports: torch, Lightning, Ray Tune and our code, about 7 s on
# 2 cores. Ray's worker processes import it while they start, ahead of any trial, so a
# sweep's first trials do not wait for it (Ray's `preload_python_modules` setting).
TRIAL_WORKER_MODULES = ("scripts.sweep",)


def ray_system_config() -> dict[str, Any]:
    """The Ray settings hpsearch starts a local Ray with (``ray start --system-config``
    takes the same, as JSON, for a cluster)."""
    return {
        "preload_python_modules": list(TRIAL_WORKER_MODULES),
        # Ray kills idle workers beyond its soft limit after 1 s, and Tune's placement groups,
        # reserved before the trials start, make the warm workers look surplus: keep them.
        "idle_worker_killing_time_threshold_ms": 300_000,
    }


def init_ray(address: str | None) -> bool:
    """Join the cluster at ``address`` (``auto``, ``ray://…``; default ``$RAY_ADDRESS``) or
    start a local Ray; returns whether this sweep runs on a cluster it joined."""
    import ray

    address = address or os.environ.get("RAY_ADDRESS")
    if ray.is_initialized():
        return bool(address)
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    if address:
        connect(address)
    else:
        # Set here, the local Ray's worker processes inherit it (see warm_trial_workers).
        os.environ.setdefault("PL_DISABLE_FORK", "1")
        ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False,
                 _system_config=ray_system_config())
    return bool(address)


@contextlib.contextmanager
def warm_trial_workers() -> Iterator[None]:
    """Let Tune's trial actors start in the local Ray's warm, idle worker processes.

    Tune gives every trial actor a runtime env that sets ``PL_DISABLE_FORK=1``, and Ray never
    hands an actor with a runtime env to one of its prestarted workers: each slot's first
    trial would wait for a new process to import everything again (7 s here). The local Ray's
    workers inherit that variable from this process (:func:`init_ray`), so Tune's actors can
    go without the runtime env while the sweep runs."""
    from ray.tune.execution import class_cache

    defaults = getattr(class_cache, "DEFAULT_ENV_VARS", None)
    if os.environ.get("PL_DISABLE_FORK") != "1" or not isinstance(defaults, dict):
        yield  # not a Ray we started, or another Ray version: Tune's behaviour as it is
        return
    saved = dict(defaults)
    defaults.pop("PL_DISABLE_FORK", None)
    try:
        yield
    finally:
        defaults.clear()
        defaults.update(saved)


# :func:`snapshot_on_trial_changes` saves Tune's experiment state whenever a trial is
# created, finishes or saves a checkpoint: do not warn about frequent snapshots every few
# seconds. Tune reads it when a fit starts.
TUNE_SETTINGS = {
    "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0",
}


_FINISHED = frozenset({"TERMINATED", "ERROR"})

# A copy of Tune's experiment state as last saved in full, beside Ray's folder (one machine).
STATE_BACKUP = "ray-state-backup"


def state_backup_dir(ray_dir: Path) -> Path:
    return ray_dir.parent / STATE_BACKUP


def _state_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*") if p.is_file() and p.suffix in (".json", ".pkl"))


def back_up_state(ray_dir: Path, backup: Path) -> None:
    """Copy Tune's experiment-state files (``experiment_state-*.json``, the searcher's state,
    ...) from ``ray_dir`` to ``backup``, each file atomically."""
    for path in _state_files(ray_dir):
        with contextlib.suppress(FileNotFoundError):  # Tune renames its files as it saves
            data = path.read_bytes()
            atomic_write(backup / path.name, lambda out, data=data: out.write(data))


def _complete(path: Path) -> bool:
    """Whether a state file is whole: JSON that parses, or a pickle whose opcodes run to its
    STOP (read without unpickling anything)."""
    import pickletools

    try:
        data = path.read_bytes()
        if path.suffix == ".json":
            json.loads(data)
        else:
            for _ in pickletools.genops(data):
                pass
        return True
    except (OSError, ValueError):  # JSONDecodeError is a ValueError
        return False


def repair_state(ray_dir: Path, backup: Path) -> bool:
    """Put the backed-up state back if a state file in ``ray_dir`` cannot be read (a driver
    killed while Tune was copying it there); returns whether it did."""
    if not backup.is_dir() or all(_complete(p) for p in _state_files(ray_dir)):
        return False
    for path in _state_files(ray_dir):
        path.unlink()
    for path in _state_files(backup):
        shutil.copy2(path, ray_dir / path.name)
    return True


def _trial_state(controller: Any) -> tuple[tuple[str, ...], frozenset[str], tuple[str, ...]]:
    trials = controller.get_trials()
    return (tuple(t.trial_id for t in trials),
            frozenset(t.trial_id for t in trials if t.status in _FINISHED),
            tuple(t.checkpoint.path if t.checkpoint else "" for t in trials))


@contextlib.contextmanager
def snapshot_on_trial_changes(ray_dir: Path | None = None) -> Iterator[None]:
    """Save Tune's experiment state (what ``--resume`` reads) to the experiment folder in
    the very step in which a trial is created, finishes, errors or saves a checkpoint,
    besides Tune's periodic snapshots (every ~10 s).

    A driver killed at any moment then finds on ``--resume`` every finished trial finished
    (instead of running it again, while Optuna's journal already holds its result) and
    every running trial's latest checkpoint but one on disk (the sweep keeps two per trial,
    so the state on disk never names a deleted one). Saving at every step of Tune's loop
    (``TUNE_GLOBAL_CHECKPOINT_S=0``) was less safe and dearer: Tune copies each snapshot to
    the experiment folder in the background, and saved about ten times a second while
    nothing changed, 4-9 ms of the driver's CPU each, CPU taken from the trials on a small
    machine.

    A save forced here waits for its copy; then, with ``ray_dir`` (Ray's experiment folder
    on this machine), the state files are also copied to :func:`state_backup_dir`, file by
    file atomically: Tune's copy is not atomic, and :func:`repair_state` puts the backup back
    when a kill during a copy left a file cut short."""
    from ray.tune.execution.tune_controller import TuneController

    original = getattr(TuneController, "checkpoint", None)
    if original is None or not hasattr(TuneController, "get_trials"):
        # Another Ray version: snapshot at every step instead.
        with environ_defaults({"TUNE_GLOBAL_CHECKPOINT_S": "0"}):
            yield
        return
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
        if ray_dir is not None:
            back_up_state(ray_dir, state_backup_dir(ray_dir))

    TuneController.checkpoint = checkpoint
    try:
        yield
    finally:
        TuneController.checkpoint = original


@contextlib.contextmanager
def environ_defaults(values: Mapping[str, str]) -> Iterator[None]:
    """Set the environment variables of ``values`` that are not set yet, inside the block only
    (a user's own setting wins, and a notebook's later sweeps start from its environment)."""
    added = [name for name in values if name not in os.environ]
    os.environ.update({name: values[name] for name in added})
    try:
        yield
    finally:
        for name in added:
            os.environ.pop(name, None)


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


@contextlib.contextmanager
def tune_settings(tune_defaults: bool, ray_dir: Path | None = None) -> Iterator[None]:
    """hpsearch's Tune settings (:data:`TUNE_SETTINGS`) and log filter, during a fit;
    ``ray_dir``: Ray's experiment folder where it is on this machine (its state is then
    backed up beside it, see :func:`snapshot_on_trial_changes`)."""
    logger = logging.getLogger(RAY_SYNCER_LOGGER)
    race_filter = SnapshotRaceFilter()
    logger.addFilter(race_filter)
    try:
        if tune_defaults:
            yield
        else:
            with environ_defaults(TUNE_SETTINGS), snapshot_on_trial_changes(ray_dir):
                yield
    finally:
        logger.removeFilter(race_filter)


@dataclass
class SweepOutcome:
    exp_dir: Path
    leaderboard: Path
    wall_time_s: float
    interrupted: bool
    best: dict[str, Any] | None


def _trainable(
    space: SearchSpace, data_dir: str | None, data: DataHandle | None, train_storage: str
) -> Any:
    if space.resources.workers_per_trial > 1:
        trainable = tune.with_parameters(
            run_ddp_trial, space=space, data_dir=data_dir, data=data, train_storage=train_storage
        )
        # The trial only drives its Ray Train workers, which hold the CPUs and GPUs.
        return tune.with_resources(trainable, {"cpu": 0, "memory": DDP_DRIVER_MEMORY})
    trainable = tune.with_parameters(run_trial, space=space, data_dir=data_dir, data=data)
    resources = {"cpu": space.resources.cpus_per_trial, "gpu": space.resources.gpus_per_trial}
    return tune.with_resources(trainable, resources)


def _searcher(space: SearchSpace, exp_dir: Path, study_name: str) -> Any:
    from scripts.searcher import OptunaSearcher

    return OptunaSearcher(space, str((exp_dir / OPTUNA_JOURNAL).resolve()), study_name)


def space_from_meta(meta: Mapping[str, Any]) -> SearchSpace:
    """The space a stored sweep ran: its file's contents with the command-line overrides."""
    stored = parse_space(meta["space"], source=meta["space_file"])
    return apply_overrides(stored, dataclasses.replace(SweepOptions(), **meta["overrides"]))


def prepare_experiment(
    space: SearchSpace, raw: Mapping[str, Any], opts: SweepOptions
) -> tuple[SearchSpace, Path, dict]:
    """Resolve the experiment folder and its metadata; on resume, reload what was stored."""
    name = opts.name or space.experiment
    exp_dir = (opts.results_dir / name).resolve()
    meta_path = exp_dir / SWEEP_META
    if opts.resume:
        meta = read_meta(exp_dir) if meta_path.is_file() else None
        # With --storage, Ray's experiment folder is there rather than under exp_dir.
        if meta is None or not (meta.get("storage") or (exp_dir / RAY_DIR).is_dir()):
            raise ConfigError(f"{exp_dir}: nothing to resume (no earlier sweep of this name)")
        return space_from_meta(meta), exp_dir, meta
    if (exp_dir / RAY_DIR).exists() or (exp_dir / LEADERBOARD).exists():
        raise ConfigError(
            f"{exp_dir} already holds a sweep: add --resume to continue it, "
            "or --name NEW for a new one"
        )
    exp_dir.mkdir(parents=True, exist_ok=True)
    meta = sweep_meta(space, raw, opts, name)
    atomic_write_json(meta_path, meta)
    return space, exp_dir, meta


def load_data(space: SearchSpace, data_dir: str) -> TensorDataModule:
    """Load the space's dataset once in the driver, so a missing or corrupt file is one clear
    error before any experiment folder or trial exists; shipped to the trials from here."""
    from datamodules import build_datamodule, data_config_from_dict
    from datamodules.base import without_huge_pages

    dm = build_datamodule(data_config_from_dict(space.fixed("data"), "data"), data_dir)
    with without_huge_pages():  # decoded to be copied to the object store
        dm.setup("fit")
    return dm


def run_sweep(space: SearchSpace, raw: Mapping[str, Any], opts: SweepOptions) -> SweepOutcome:
    """Run (or resume) the sweep described by ``space`` and return where its results are."""
    space = apply_overrides(space, opts)
    check_placement(space)
    # Absolute, since trials run in other working directories.
    data_dir = str(resolve_data_dir(opts.data_dir))
    datamodule = load_data(space, data_dir)
    space, exp_dir, meta = prepare_experiment(space, raw, opts)
    joined = init_ray(opts.address)
    ship = opts.ship_data
    if ship is None:
        # A cluster's nodes may have no data directory: ship the decoded data to them. On one
        # machine shipping spares each trial process its own decode (and copy) of the data,
        # unless the trials' drawn values change the tensors anyway.
        ship = joined or not searched_data_fields(space)
    data = ship_data(datamodule) if ship else None
    ray_path = ray_experiment_path(exp_dir, meta)
    storage_path = ray_path.rsplit("/", 1)[0]
    trainable = _trainable(space, data_dir, data, f"{storage_path}/train")
    summary = cluster_summary()
    max_concurrent = space.resources.max_concurrent or default_max_concurrent(space, summary)
    if opts.verbose:
        _say_placement(space, summary, data, storage_path, max_concurrent)
    started = time.monotonic()
    callback = LeaderboardCallback(exp_dir, meta, space, opts.verbose)
    # Ray's experiment folder when it is on this machine (not with --storage s3://...).
    local_ray_dir = None if meta.get("storage") else Path(ray_path)
    if opts.resume:
        if local_ray_dir is not None and repair_state(local_ray_dir,
                                                      state_backup_dir(local_ray_dir)):
            print(f"Tune's saved state in {local_ray_dir} was cut short (the sweep was "
                  "killed while saving it): resuming from its last complete save", flush=True)
        tuner = tune.Tuner.restore(
            ray_path, trainable=trainable,
            resume_unfinished=True, resume_errored=False, restart_errored=False,
        )
    else:
        tuner = tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(
                search_alg=_searcher(space, exp_dir, meta["study_name"]),
                scheduler=make_scheduler(space),
                metric=OBJECTIVE_SO_FAR,
                mode=space.objective.mode,
                num_samples=space.budget.num_samples,
                max_concurrent_trials=max_concurrent,
                time_budget_s=space.budget.time_budget_s,
                reuse_actors=not opts.tune_defaults,
            ),
            run_config=tune.RunConfig(
                name=RAY_DIR,
                storage_path=storage_path,
                callbacks=[callback],
                stop=TotalEpochs(space.budget.total_epochs) if space.budget.total_epochs else None,
                verbose=0,
                failure_config=tune.FailureConfig(max_failures=opts.max_failures),
                # Two: Tune deletes the older checkpoint as soon as a new one is registered,
                # before the experiment state naming the new one is saved; with one, a
                # driver killed in between would leave the trial naming a deleted one.
                checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
            ),
        )
    interrupted = False
    warm = contextlib.nullcontext() if joined or opts.tune_defaults else warm_trial_workers()
    try:
        with warm, tune_settings(opts.tune_defaults, local_ray_dir):
            tuner.fit()
    except KeyboardInterrupt:
        interrupted = True
    elapsed = time.monotonic() - started
    meta = read_meta(exp_dir)
    meta["wall_time_s"] = float(meta.get("wall_time_s", 0.0)) + elapsed
    atomic_write_json(exp_dir / SWEEP_META, meta)
    board = exp_dir / LEADERBOARD
    best = _best_row(board)
    # Tune catches Ctrl-C itself and returns normally: a sweep that ended short of its
    # trials (with no time budget to explain it) or with unfinished ones was stopped.
    interrupted = interrupted or _ended_short(exp_dir, space)
    return SweepOutcome(exp_dir, board, elapsed, interrupted, best)


def _ended_short(exp_dir: Path, space: SearchSpace) -> bool:
    if not (exp_dir / LEADERBOARD).is_file():
        return False
    statuses = read_leaderboard(exp_dir)["status"]
    if set(statuses) & {STATUS_RUNNING, STATUS_PENDING}:
        return True
    budget = space.budget
    limited = budget.time_budget_s is not None or budget.total_epochs is not None
    return not limited and len(statuses) < budget.num_samples


class TotalEpochs(tune.Stopper):
    """Ends the sweep once its trials have trained ``limit`` epochs in all (each trial
    counted up to the latest epoch it reported)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.epochs: dict[str, int] = {}

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        self.epochs[trial_id] = max(self.epochs.get(trial_id, 0), int(result.get("epoch", 0)))
        return False

    def stop_all(self) -> bool:
        return sum(self.epochs.values()) >= self.limit


def _say_placement(
    space: SearchSpace,
    c: Mapping[str, Any],
    data: DataHandle | None,
    storage_path: str,
    max_concurrent: int | None,
) -> None:
    """Where the sweep runs (cluster size, placement, data, storage), printed at its start."""
    res = space.resources
    per_trial = f"{res.cpus_per_trial:g} CPU" + (
        f" + {res.gpus_per_trial:g} GPU" if res.gpus_per_trial else "")
    if res.workers_per_trial > 1:
        per_trial = f"{res.workers_per_trial} workers x ({per_trial})"
    print(f"Ray: {c['nodes']} node(s), {c['cpus']:g} CPUs, {c['gpus']:g} GPUs; "
          f"per trial {per_trial}; at most {max_concurrent or 'as many as fit'} at once",
          flush=True)
    if data is not None:
        print(f"Data: {data.nbytes / 1e6:.1f} MB decoded here, shipped to the trials through "
              "Ray's object store", flush=True)
        searched = searched_data_fields(space)
        if searched:
            print(f"  ({', '.join(searched)} searched: trials drawing other values read their "
                  "files from the data directory, which every node then needs)", flush=True)
    print(f"Ray storage: {storage_path}", flush=True)


def _best_row(board: Path) -> dict[str, Any] | None:
    if not board.is_file():
        return None
    frame = read_leaderboard(board.parent)
    return None if frame.empty else json.loads(frame.iloc[0].to_json())
