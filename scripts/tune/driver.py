"""The sweep: a search space becomes a Ray Tune experiment with Optuna search and early stopping."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import shutil
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ray import tune
from ray.tune.error import TuneError
from ray.tune.search import ConcurrencyLimiter

from hpsearch.datamodules.paths import resolve_data_dir
from hpsearch.scripts.compute import sweep_compute
from hpsearch.scripts.experiment_folder import (
    RAY_DIR,
    ExperimentFolder,
    check_name,
    disk_space_problem,
    experiment_lock,
)
from hpsearch.scripts.leaderboard import (
    FINISHED_STATUSES,
    STATUS_PENDING,
    STATUS_RUNNING,
    error_summary,
    mark_interrupted,
)
from hpsearch.scripts.sweep_record import SweepMeta
from hpsearch.scripts.tune.callback import LeaderboardCallback, TellStoppedTrials
from hpsearch.scripts.tune.cluster import (
    check_placement,
    check_resources,
    cluster_summary,
    default_max_concurrent,
    environ_defaults,
    init_ray,
)
from hpsearch.scripts.tune.data import (
    DataHandle,
    load_data,
    prepare_on_every_node,
    searched_data_fields,
    ship_data,
)
from hpsearch.scripts.tune.ddp import DDP_DRIVER_MEMORY, run_ddp_trial
from hpsearch.scripts.tune.disk_guard import DiskGuard
from hpsearch.scripts.tune.driver_watch import DriverIdentity
from hpsearch.scripts.tune.durability import repair_state, state_backup_dir, tune_settings
from hpsearch.scripts.tune.internals import (
    FolderSearchGenerator,
    has_saved_state,
    warm_trial_workers,
)
from hpsearch.scripts.tune.options import (
    OVERRIDE_KEYS,
    OVERRIDES,
    PER_RUN,
    SweepOptions,
    apply_overrides,
    space_from_meta,
    storage_uri,
    sweep_meta,
)
from hpsearch.scripts.tune.schedulers import OBJECTIVE_SO_FAR, make_scheduler
from hpsearch.scripts.tune.stoppers import ObjectiveNeverLogged, ObjectiveNotLogged, sweep_stopper
from hpsearch.scripts.tune.trackers import TrackerSpec, parse_trackers, tracker_callbacks
from hpsearch.scripts.tune.trainable import run_trial
from hpsearch.scripts.tune.view import LINES, LIVE, SweepView
from hpsearch.scripts.uris import join_uri
from hpsearch.scripts.warm_start import warm_start_points
from hpsearch.search_spaces.errors import ConfigError
from hpsearch.search_spaces.schema import SearchSpace


@dataclass
class SweepOutcome:
    exp_dir: Path
    leaderboard: Path
    wall_time_s: float
    interrupted: bool
    best: dict[str, Any] | None
    stopped_because: str | None = None  # why the sweep stopped itself (a full disk)


def _trainable(
    space: SearchSpace, data_dir: str | None, data: DataHandle | None, train_storage: str
) -> Any:
    driver = DriverIdentity.current()  # the trials end with this process
    if space.resources.workers_per_trial > 1:
        trainable = tune.with_parameters(
            run_ddp_trial, space=space, data_dir=data_dir, data=data,
            train_storage=train_storage, driver=driver)
        # The trial only drives its Ray Train workers, which hold the CPUs and GPUs.
        return tune.with_resources(trainable, {"cpu": 0, "memory": DDP_DRIVER_MEMORY})
    trainable = tune.with_parameters(run_trial, space=space, data_dir=data_dir, data=data,
                                     driver=driver)
    resources = {"cpu": space.resources.cpus_per_trial, "gpu": space.resources.gpus_per_trial}
    return tune.with_resources(trainable, resources)


def _search_alg(space: SearchSpace, exp_dir: Path, meta: SweepMeta,
                max_concurrent: int | None, resume: bool,
                experiment: tune.Experiment) -> FolderSearchGenerator:
    """The searcher, built afresh on every run (new or resumed) from the folder where it is
    now; Tune restores only its saved state into it."""
    import optuna

    from hpsearch.scripts.tune.searcher import OptunaSearcher

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # not "A new study created ..."
    searcher = OptunaSearcher(space, str(ExperimentFolder(exp_dir).optuna_journal),
                              meta.study_name, resume)
    if max_concurrent:
        searcher = ConcurrencyLimiter(searcher, max_concurrent=max_concurrent)
    return FolderSearchGenerator(searcher, experiment)


def experiment_dir(space: SearchSpace, opts: SweepOptions) -> Path:
    """``results_dir/NAME``, resolved from where it is now (nothing inside the folder keeps
    this path: a moved or copied folder resumes in place)."""
    name = (check_name(opts.name, "--name") if opts.name
            else check_name(space.experiment, f"{space.source}: experiment"))
    return (opts.results_dir / name).resolve()


def stored_sweep(exp_dir: Path, opts: SweepOptions) -> SweepMeta:
    """The record of the sweep ``--resume`` continues, with the options given now applied
    (a raised ``--num-samples`` extends it) or refused in one line."""
    folder = ExperimentFolder(exp_dir)
    meta = folder.read_meta() if folder.meta_file.is_file() else None
    # With --storage, Ray's experiment folder is there rather than under exp_dir.
    if meta is None or not (meta.storage or folder.ray_dir.is_dir()):
        raise ConfigError(f"{exp_dir}: nothing to resume (no earlier sweep of this name)")
    ran = space_from_meta(meta)
    stored = {**meta.overrides}
    for name, part in OVERRIDES.items():
        given, was = getattr(opts, name), _option_value(ran, name, part)
        if given is None or given == was:
            continue
        if (name == "num_samples" and given > was) or name in PER_RUN:
            stored[name] = given
            continue
        raise ConfigError(
            f"--{name.replace('_', '-')} {given}: a resumed sweep keeps what it ran with "
            f"({name} {was}); only --num-samples can be raised (or start a new sweep with "
            "--name NEW)")
    if opts.storage is not None and storage_uri(opts.storage) != meta.storage:
        raise ConfigError(f"--storage {opts.storage}: the sweep keeps its storage "
                          f"({meta.storage or 'under the results folder'})")
    was = (meta.warm_start or {}).get("from")
    if opts.warm_start is not None and opts.warm_start != was:
        raise ConfigError(f"--warm-start {opts.warm_start}: a resumed sweep keeps its start "
                          f"points ({'from ' + was if was else 'no warm start'})")
    meta = meta.model_copy(update={"overrides": stored})
    return meta.model_copy(update={"num_samples": space_from_meta(meta).budget.num_samples})


def _option_value(space: SearchSpace, name: str, part: str) -> Any:
    """The value the space has for the option ``name`` that overrides its ``part``."""
    return space.seed if part == "seed" else getattr(getattr(space, part), OVERRIDE_KEYS[name])


def prepare_experiment(
    space: SearchSpace, raw: Mapping[str, Any], opts: SweepOptions, exp_dir: Path,
    warm_start: dict[str, Any] | None = None,
) -> SweepMeta:
    """Check the folder holds no other sweep and write the new sweep's record
    (``warm_start``: where its warm-start points came from)."""
    folder = ExperimentFolder(exp_dir)
    if folder.ray_dir.exists() or folder.leaderboard.exists():
        raise ConfigError(
            f"{exp_dir} already holds a sweep: add --resume to continue it, "
            "or --name NEW for a new one"
        )
    meta = sweep_meta(space, raw, opts, exp_dir.name, warm_start)
    folder.write_meta(meta)
    return meta


def run_sweep(space: SearchSpace, raw: Mapping[str, Any], opts: SweepOptions) -> SweepOutcome:
    """Run (or resume) the sweep described by ``space`` and return where its results are."""
    if opts.max_failures < 0:
        raise ConfigError(f"max_failures {opts.max_failures}: must be 0 or more (a trial "
                          "retried for ever never ends the sweep)")
    trackers = parse_trackers(opts.logger)
    exp_dir = experiment_dir(space, opts)
    meta = stored_sweep(exp_dir, opts) if opts.resume else None
    space = space_from_meta(meta) if meta is not None else apply_overrides(space, opts)
    warm = None
    if opts.warm_start and meta is None:
        points, warm = warm_start_points(space, opts.warm_start)
        space = dataclasses.replace(space, start_points=space.start_points + points)
    check_placement(space)
    if not opts.resume:
        check_storage(storage_uri(opts.storage))
    # Absolute, since trials run in other working directories.
    data_dir = str(resolve_data_dir(opts.data_dir))
    datamodule = load_data(space, data_dir)
    problem = disk_space_problem(exp_dir)
    if problem:
        raise ConfigError(f"{problem}: free some space there (or choose another --results-dir)")
    new_folder = not exp_dir.exists()
    try:
        return _locked_run(space, raw, opts, exp_dir, meta, data_dir, datamodule, trackers,
                           warm)
    except BaseException as exc:
        if new_folder and not opts.resume:
            _remove_unstarted(exp_dir, whole=isinstance(exc, ObjectiveNotLogged))
        raise


def _locked_run(space: SearchSpace, raw: Mapping[str, Any], opts: SweepOptions, exp_dir: Path,
                meta: SweepMeta | None, data_dir: str, datamodule: Any,
                trackers: list[TrackerSpec], warm: dict[str, Any] | None) -> SweepOutcome:
    with contextlib.ExitStack() as held:
        # A folder in use is refused before Ray starts; a new one is made only once the
        # cluster is known to hold its trials.
        locked = exp_dir.is_dir()
        if locked:
            held.enter_context(experiment_lock(exp_dir))
        joined = init_ray(opts.address)
        check_resources(space, opts.wait_for_resources)
        if not locked:
            held.enter_context(experiment_lock(exp_dir))
        if meta is None:
            meta = prepare_experiment(space, raw, opts, exp_dir, warm)
        else:
            ExperimentFolder(exp_dir).write_meta(meta)
        return _run(space, exp_dir, meta, opts, datamodule, data_dir, joined, trackers)


def check_storage(storage: str | None) -> None:
    """Refuse a ``--storage`` URI that names no file system Ray can write, before Ray starts
    or any file is written."""
    if not storage or "://" not in storage:
        return
    import pyarrow
    import pyarrow.fs

    try:
        pyarrow.fs.FileSystem.from_uri(storage)
    except (pyarrow.ArrowException, ValueError, OSError) as exc:
        raise ConfigError(f"--storage {storage}: {str(exc).splitlines()[0]}") from None


def _remove_unstarted(exp_dir: Path, whole: bool = False) -> None:
    """Remove the folder a new sweep made if it failed before any trial reported (or, with
    ``whole``, when no trial can ever report): nothing in it is worth keeping, and a folder
    left behind would refuse the corrected command."""
    if exp_dir.is_dir() and (whole or not ExperimentFolder(exp_dir).leaderboard.exists()):
        shutil.rmtree(exp_dir, ignore_errors=True)


def _start_again(exp_dir: Path, ray_path: str) -> None:
    """Clear what a sweep killed before Tune's first save left (no trial had finished)."""
    print(f"{ray_path} holds no saved Tune state (the sweep was stopped before its first "
          "save): starting the sweep again in the same folder", flush=True)
    folder = ExperimentFolder(exp_dir)
    for path in (folder.ray_dir, folder.state_backup):
        shutil.rmtree(path, ignore_errors=True)
    folder.leaderboard.unlink(missing_ok=True)


def _run(space: SearchSpace, exp_dir: Path, meta: SweepMeta, opts: SweepOptions, datamodule: Any,
         data_dir: str, joined: bool, trackers: list[TrackerSpec]) -> SweepOutcome:
    ship = opts.ship_data
    if ship is None:
        # A cluster's nodes may have no data directory: ship the decoded data to them. On one
        # machine shipping spares each trial process its own decode (and copy) of the data,
        # unless the trials' drawn values change the tensors anyway.
        ship = joined or not searched_data_fields(space)
    data = ship_data(datamodule) if ship and datamodule is not None else None
    if datamodule is None:  # the user's own datamodule
        prepare_on_every_node(space)
    folder = ExperimentFolder(exp_dir)
    ray_path = folder.ray_experiment_path(meta)
    storage_path = folder.ray_storage_path(meta)
    # Ray's experiment folder when it is on this machine (not with --storage s3://...).
    local_ray_dir = None if meta.storage else Path(ray_path)
    resume = opts.resume
    if resume and local_ray_dir is not None and repair_state(
            local_ray_dir, state_backup_dir(local_ray_dir)):
        print(f"Tune's saved state in {local_ray_dir} was cut short (the sweep was "
              "killed while saving it): resuming from its last complete save", flush=True)
    if resume and not has_saved_state(ray_path):
        if local_ray_dir is not None:
            _start_again(exp_dir, ray_path)
        resume = False
    if resume:
        _say_resumed(exp_dir, space.budget.num_samples)
    summary = cluster_summary()
    max_concurrent = space.resources.max_concurrent or default_max_concurrent(space, summary)
    if not opts.quiet:
        _say_placement(space, summary, data, storage_path, max_concurrent)
    callback = LeaderboardCallback(exp_dir, meta, space, say=not opts.quiet)
    disk_guard = DiskGuard(exp_dir)
    view = SweepView(meta, space, _view_mode(opts), meta.wall_time_s)
    folder.write_meta(meta.started(time.time()))  # for `hpsearch status` from another shell
    started = time.monotonic()
    interrupted = False
    warm = contextlib.nullcontext() if joined or opts.tune_defaults else warm_trial_workers()
    never_logged = ObjectiveNeverLogged()
    try:
        # Tune's legacy output at verbose=0 prints nothing: our lines are the sweep's
        # output (RAY_AIR_NEW_OUTPUT=1 in the environment brings Tune's back).
        with warm, tune_settings(opts.tune_defaults, local_ray_dir), environ_defaults(
                {} if opts.verbose else {"RAY_AIR_NEW_OUTPUT": "0"}):
            experiment = tune.Experiment(
                name=RAY_DIR,
                run=_trainable(space, data_dir, data, join_uri(storage_path, "train")),
                storage_path=storage_path,
                num_samples=space.budget.num_samples,
                stop=sweep_stopper(space.budget, never_logged),
                max_failures=opts.max_failures,
                # Two: Tune deletes the older checkpoint as soon as a new one is registered,
                # before the experiment state naming the new one is saved; with one, a
                # driver killed in between would leave the trial naming a deleted one.
                checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
                trial_dirname_creator=trial_dirname,
            )
            search_alg = _search_alg(space, exp_dir, meta, max_concurrent, resume, experiment)
            view.start()
            tune.run(
                experiment,
                search_alg=search_alg,
                scheduler=make_scheduler(space),
                metric=OBJECTIVE_SO_FAR,
                mode=space.objective.mode,
                reuse_actors=not opts.tune_defaults,
                callbacks=[callback, disk_guard, TellStoppedTrials(search_alg), *tracker_callbacks(
                    trackers, exp_dir, meta.experiment, meta.code_version)]
                + ([view] if view.mode else []),
                verbose=1 if opts.verbose else 0,
                raise_on_failed_trial=False,
                resume_config=tune.ResumeConfig() if resume else None,
            )
    except KeyboardInterrupt:
        interrupted = True
    except TuneError as exc:
        raise SweepError(f"Ray Tune stopped the sweep: {error_summary(str(exc))}") from None
    finally:
        view.close()
    if never_logged.problem:
        raise ObjectiveNotLogged(f"{space.source}: objective.metric: {never_logged.problem}")
    elapsed = time.monotonic() - started
    meta = folder.read_meta()
    board = folder.leaderboard
    gpus_held = summary["gpus"] if space.resources.gpus_per_trial > 0 else 0.0
    compute = sweep_compute(meta.compute, elapsed, summary["cpus"], gpus_held,
                            folder.read_leaderboard() if board.is_file() else None)
    folder.write_meta(meta.after_run(elapsed, compute))
    # Tune catches Ctrl-C itself and returns normally: a sweep that ended short of its
    # trials (with no time budget to explain it) or with unfinished ones was stopped.
    interrupted = interrupted or disk_guard.problem is not None or _ended_short(exp_dir, space)
    if interrupted and board.is_file():
        mark_interrupted(exp_dir, callback.unfinished_ids)
    return SweepOutcome(exp_dir, board, elapsed, interrupted, _best_row(board),
                        disk_guard.problem)


def _view_mode(opts: SweepOptions) -> str | None:
    """The live table on a terminal, plain lines elsewhere (or with Tune's own output),
    nothing with --quiet."""
    if opts.quiet:
        return None
    return LINES if opts.verbose or not sys.stdout.isatty() else LIVE


def trial_dirname(trial: Any) -> str:
    """A trial's folder in Ray's experiment: its id (the leaderboard's), not its config."""
    return f"trial-{trial.trial_id}"


class SweepError(RuntimeError):
    """The sweep could not go on (Ray Tune gave up): one line, with Tune's reason."""


def _say_resumed(exp_dir: Path, num_samples: int) -> None:
    finished, folder = 0, ExperimentFolder(exp_dir)
    if folder.leaderboard.is_file():
        statuses = folder.read_leaderboard()["status"]
        finished = int(statuses.isin(FINISHED_STATUSES).sum())
    print(f"resumed: {finished} finished, {max(0, num_samples - finished)} to go", flush=True)


def _ended_short(exp_dir: Path, space: SearchSpace) -> bool:
    folder = ExperimentFolder(exp_dir)
    if not folder.leaderboard.is_file():
        return False
    statuses = folder.read_leaderboard()["status"]
    if set(statuses) & {STATUS_RUNNING, STATUS_PENDING}:
        return True
    budget = space.budget
    limited = budget.time_budget_s is not None or budget.total_epochs is not None
    return not limited and len(statuses) < budget.num_samples


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
    if "target" in space.data:
        print(f"Data: {space.data['target']}, prepared once per node; each trial sets it up",
              flush=True)
    elif data is not None:
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
    frame = ExperimentFolder(board.parent).read_leaderboard()
    return None if frame.empty else json.loads(frame.iloc[0].to_json())
