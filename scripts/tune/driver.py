"""The sweep: a search space becomes a Ray Tune experiment with Optuna search and early stopping."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ray import tune

from datamodules.paths import resolve_data_dir
from scripts.leaderboard import (
    LEADERBOARD,
    RAY_DIR,
    STATUS_PENDING,
    STATUS_RUNNING,
    SWEEP_META,
    atomic_write_json,
    ray_experiment_path,
    read_leaderboard,
    read_meta,
)
from scripts.tune.callback import LeaderboardCallback
from scripts.tune.cluster import (
    check_placement,
    cluster_summary,
    default_max_concurrent,
    init_ray,
)
from scripts.tune.data import DataHandle, load_data, searched_data_fields, ship_data
from scripts.tune.ddp import DDP_DRIVER_MEMORY, run_ddp_trial
from scripts.tune.durability import repair_state, state_backup_dir, tune_settings
from scripts.tune.internals import warm_trial_workers
from scripts.tune.options import SweepOptions, apply_overrides, space_from_meta, sweep_meta
from scripts.tune.schedulers import OBJECTIVE_SO_FAR, make_scheduler
from scripts.tune.trainable import run_trial
from search_spaces.errors import ConfigError
from search_spaces.schema import SearchSpace


@dataclass
class SweepOutcome:
    exp_dir: Path
    leaderboard: Path
    wall_time_s: float
    interrupted: bool
    best: dict[str, Any] | None


OPTUNA_JOURNAL = "optuna.log"


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
    from scripts.tune.searcher import OptunaSearcher

    return OptunaSearcher(space, str((exp_dir / OPTUNA_JOURNAL).resolve()), study_name)


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
