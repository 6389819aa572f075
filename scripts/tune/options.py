"""A sweep's options (the command line's, or a notebook's) and how they change its space."""

from __future__ import annotations

import dataclasses
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpsearch.scripts.provenance import code_version
from hpsearch.scripts.uris import join_uri

if TYPE_CHECKING:  # the command line builds its parser from this module: keep it light
    from hpsearch.scripts.sweep_record import SweepMeta
    from hpsearch.search_spaces.schema import SearchSpace


def _option(default: Any, help: str, overrides: str | None = None, key: str | None = None,
            **cli: Any) -> Any:
    """A :class:`SweepOptions` field and its ``hpsearch sweep`` flag (``--name-with-dashes``);
    ``overrides``: the part of the space it replaces (``budget``, ``resources``, ``seed``),
    ``key``: its name there when it is not the field's."""
    return field(default=default,
                 metadata={"help": help, "overrides": overrides, "key": key, "cli": cli})


@dataclass(frozen=True)
class SweepOptions:
    """Everything ``hpsearch sweep`` takes besides the space file: each field is one flag
    (:func:`sweep_arguments`), and those that override the file are stored in sweep.json."""

    num_samples: int | None = _option(None, "trials to run (default: the file's "
                                      "budget.num_samples)",
                                      "budget", type="positive_int")
    max_epochs: int | None = _option(None, "epochs per trial at most (default: the "
                                     "file's budget.max_epochs)",
                                     "budget", type="positive_int")
    time_budget: float | None = _option(
        None, "stop the sweep after this much time (90s, 3m, 1h30m), its running trials "
        "stopped as by budget.total_epochs and kept, resumable; each run of a resumed sweep "
        "gets it anew (default: the file's budget.time_budget_s, else none)", "budget",
        key="time_budget_s", type="duration")
    cpus_per_trial: float | None = _option(None, "CPUs per trial (default: the file's "
                                           "resources.cpus_per_trial)",
                                           "resources", type="positive_float")
    gpus_per_trial: float | None = _option(None, "GPUs per trial; fractions share a GPU "
                                           "(default: the file's, else 0)",
                                           "resources", type="positive_float")
    max_concurrent: int | None = _option(None, "trials at once at most (default: the "
                                         "file's, else as many as fit)", "resources",
                                         type="positive_int")
    workers_per_trial: int | None = _option(
        None, "train each trial data-parallel on N Ray Train workers, each with "
        "--cpus-per-trial CPUs and --gpus-per-trial GPUs (default 1)", "resources",
        type="positive_int")
    max_failures: int = _option(1, "retries of a trial whose worker process or node died, "
                                "each from its last checkpoint; an error in the trial itself "
                                "is not retried (default 1)", type="non_negative_int")
    seed: int | None = _option(None, "the sweep's seed (default: the file's seed)", "seed",
                               type="int")
    name: str | None = _option(None, "experiment name (default: the file's `experiment`)")
    results_dir: Path = _option(Path("results"), "folder of the experiment folders "
                                "(default: results)", type="path")
    address: str | None = _option(None, "Ray cluster to join: auto, HOST:PORT or "
                                  "ray://host:port (default: $RAY_ADDRESS, else a local Ray)")
    # Where Ray keeps the experiment (trial checkpoints, state for --resume): a path every
    # node sees (NFS) or a URI Ray supports (s3://, gs://); None: under results_dir/NAME.
    storage: str | None = _option(None, "where Ray keeps the experiment: a path shared by "
                                  "every node or a URI such as s3://bucket/prefix (default: "
                                  "under --results-dir; the leaderboard is written there in "
                                  "any case)")
    ship_data: bool | None = _option(None, "decode the data once here and send it to the "
                                     "trials through Ray's object store (default: on, unless "
                                     "the space searches a data field)", type="on_off")
    resume: bool = _option(False, "continue an interrupted sweep (with --num-samples N "
                           "above its own, extend it to N trials)", type="flag")
    wait_for_resources: float | None = _option(
        None, "wait up to S seconds for the cluster to grow (an autoscaler) until a trial "
        "fits on it (default: refuse at once a trial no node can hold)", type="positive_float")
    data_dir: str | None = _option(None, "folder holding the datasets (default: "
                                   "$HPSEARCH_DATA_DIR, else ./data)", type="existing_dir")
    logger: str | None = _option(None, "also send every trial's values and metrics to an "
                                 "experiment tracker: mlflow[=URI] (default URI: "
                                 "$MLFLOW_TRACKING_URI, else results/<experiment>/mlflow.db) "
                                 "or wandb, comma-separated (default: none)")
    warm_start: str | None = _option(
        None, "another experiment's folder (e.g. results/mnist_cnn): its study's best "
        "configs, mapped onto this space's parameters, are tried first and guide sampler "
        "rung_tpe as its prior (default: none)", type="existing_dir")
    quiet: bool = _option(False, "print only the summary at the end (default: a live table "
                          "on a terminal, else one line per trial started or finished)",
                          type="flag")
    verbose: bool = _option(False, "also print Ray Tune's own progress output "
                            "(default: off)", type="flag")
    # Not flags: the benchmark's.
    # Ray Tune's own defaults (a new actor per trial, state saved every ~10 s): the
    # benchmark's baseline.
    tune_defaults: bool = False


def sweep_flags() -> list[tuple[str, dataclasses.Field]]:
    """``(--flag, field)`` for each :class:`SweepOptions` field the command line sets."""
    return [(f"--{f.name.replace('_', '-')}", f) for f in dataclasses.fields(SweepOptions)
            if "cli" in f.metadata]


def resume_command(space_file: str, opts: SweepOptions) -> str:
    """The ``hpsearch sweep ... --resume`` command that continues this sweep: the space file
    and every flag given, as given."""
    import shlex

    words = ["hpsearch", "sweep", space_file]
    for flag, f in sweep_flags():
        value = getattr(opts, f.name)
        if value == f.default or f.name == "resume":
            continue
        kind = f.metadata["cli"].get("type")
        if kind == "flag":
            words.append(flag)
        elif kind == "on_off":
            words.append(flag if value else f"--no-{flag[2:]}")
        elif kind == "duration":
            words += [flag, f"{value:g}s"]
        else:
            words += [flag, str(value)]
    return shlex.join([*words, "--resume"])


# Option name -> the part of the space it overrides, and its name there.
OVERRIDES = {f.name: f.metadata["overrides"] for f in dataclasses.fields(SweepOptions)
             if f.metadata.get("overrides")}
OVERRIDE_KEYS = {f.name: f.metadata.get("key") or f.name for f in dataclasses.fields(SweepOptions)
                 if f.metadata.get("overrides")}
# Limits of one run, not of what the sweep is: a resumed sweep may be given new ones.
PER_RUN = frozenset({"time_budget"})


def apply_overrides(space: SearchSpace, opts: SweepOptions) -> SearchSpace:
    """``space`` with the options that override its file (:data:`OVERRIDES`) applied."""
    given = {name: getattr(opts, name) for name in OVERRIDES if getattr(opts, name) is not None}
    budget = {OVERRIDE_KEYS[k]: v for k, v in given.items() if OVERRIDES[k] == "budget"}
    if "max_epochs" in budget:
        budget["grace_period"] = min(space.budget.grace_period, budget["max_epochs"])
    resources = {k: v for k, v in given.items() if OVERRIDES[k] == "resources"}
    from hpsearch.search_spaces.errors import replaced  # pydantic: not at CLI start-up

    return dataclasses.replace(
        space,
        budget=replaced(space.budget, "budget", **budget),
        resources=replaced(space.resources, "resources", **resources),
        seed=given.get("seed", space.seed),
    )


def storage_uri(storage: str | None) -> str | None:
    """``--storage`` as Ray needs it: URIs as given (a query such as
    ``?endpoint_override=HOST:PORT&scheme=http`` kept), local paths made absolute."""
    if not storage:
        return None
    if "://" in storage:
        return join_uri(storage)
    return str(Path(storage).expanduser().resolve())


def sweep_meta(space: SearchSpace, raw: Mapping[str, Any], opts: SweepOptions,
               name: str, warm_start: dict[str, Any] | None = None) -> SweepMeta:
    """The record of a new sweep of ``space`` (its file's mapping ``raw``) named ``name``;
    ``warm_start``: where its warm-start points came from, and what they are."""
    from hpsearch.scripts.sweep_record import SweepMeta  # pydantic: not at CLI start-up

    return SweepMeta(
        experiment=name,
        space_file=space.source,
        # fair_rungs stored as resolved: a record without it is from before it became the default
        space={**raw, "budget": {**(raw.get("budget") or {}),
                                 "fair_rungs": space.budget.fair_rungs}},
        overrides={k: getattr(opts, k) for k in OVERRIDES if getattr(opts, k) is not None},
        objective=space.objective,
        objectives=space.objectives,
        sampler=space.sampler.model_dump(mode="json"),
        scheduler=space.scheduler.model_dump(mode="json"),
        max_epochs=space.budget.max_epochs,
        num_samples=space.budget.num_samples,
        params=space.param_names,
        dataset=space.data.get("name"),
        family=space.model.get("family"),
        seed=space.seed,
        code_version=code_version(),
        study_name=f"{name}-{uuid.uuid4().hex[:8]}",
        storage=storage_uri(opts.storage),
        warm_start=warm_start,
    )


def space_from_meta(meta: SweepMeta) -> SearchSpace:
    """The space a stored sweep ran: its file's contents with the command-line overrides."""
    from hpsearch.search_spaces.schema import parse_space  # pydantic and torch: not at CLI start-up

    budget = meta.space.get("budget") or {}
    raw = {**meta.space, "budget": {"fair_rungs": False, **budget}}  # see sweep_meta
    stored = parse_space(raw, source=meta.space_file)
    if meta.warm_start:
        points = tuple(meta.warm_start["start_points"])
        stored = dataclasses.replace(stored, start_points=stored.start_points + points)
    return apply_overrides(stored, dataclasses.replace(SweepOptions(), **meta.overrides))


_DURATION = re.compile(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s?)?")


def parse_duration(text: str) -> float:
    """Seconds from ``90``, ``90s``, ``3m``, ``1h30m`` or ``2.5m``; ``ValueError`` otherwise."""
    match = _DURATION.fullmatch(text.strip().lower())
    if not text.strip() or match is None or not any(match.groups()):
        raise ValueError(f"{text!r}: not a duration (e.g. 90s, 3m, 1h30m)")
    hours, minutes, seconds = (float(g) if g else 0.0 for g in match.groups())
    value = hours * 3600 + minutes * 60 + seconds
    if value <= 0:
        raise ValueError(f"{text!r}: must be longer than 0 s")
    return value
