"""A sweep's options (the command line's, or a notebook's) and how they change its space."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scripts.provenance import code_version
from search_spaces.schema import SearchSpace, parse_space


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


def storage_uri(storage: str | None) -> str | None:
    """``--storage`` as Ray needs it: URIs as given, local paths made absolute."""
    if not storage:
        return None
    if "://" in storage:
        return storage.rstrip("/")
    return str(Path(storage).expanduser().resolve())


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


def space_from_meta(meta: Mapping[str, Any]) -> SearchSpace:
    """The space a stored sweep ran: its file's contents with the command-line overrides."""
    stored = parse_space(meta["space"], source=meta["space_file"])
    return apply_overrides(stored, dataclasses.replace(SweepOptions(), **meta["overrides"]))
