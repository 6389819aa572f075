"""Search-space files (``search_spaces/*.yaml``) parsed into typed, frozen configs.

A file holds the fixed settings of one experiment (``data``, ``model``, ``optimizer``),
the searched hyperparameters (``search``: a dotted config path mapped to a distribution),
the objective, the budget and the resources per trial. Everything is checked when the
file is loaded, so a bad file stops the sweep before Ray starts.

The settings are frozen pydantic models (strict, unknown keys refused); :class:`SearchSpace`
and :class:`Param` stay frozen dataclasses holding them, so ``dataclasses.replace`` works on
the space (use :func:`search_spaces.errors.replaced` for the pydantic parts).

The distributions and :class:`Param` are in :mod:`search_spaces.distributions`, the samplers
and schedulers in :mod:`search_spaces.methods`; this module holds the space itself, its
objective, budget and resources, and reads and checks the file.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import Field, TypeAdapter, model_validator

from hpsearch.search_spaces.distributions import (
    ChoiceDist,
    Frozen,
    ListDist,
    Param,
    parse_dist,
    parse_when,
)
from hpsearch.search_spaces.errors import ConfigError, validated
from hpsearch.search_spaces.methods import (
    NUMERIC_SAMPLERS,
    SAMPLER_SPEC,
    SCHEDULER_SPEC,
    SINGLE_OBJECTIVE_SAMPLERS,
    AshaScheduler,
    SamplerSpec,
    SchedulerSpec,
    TpeSampler,
    unmodelled_by_numeric_sampler,
)

SECTIONS = ("data", "model", "optimizer")


class Objective(Frozen):
    metric: str = "val_acc"
    mode: Literal["max", "min"] = "max"


# Objectives a trial reports once rather than per epoch (not logged by the model): they can
# only follow a first, per-epoch objective, which drives the best epoch and early stopping.
TRIAL_METRICS = ("param_count", "train_time_s")


class Budget(Frozen):
    num_samples: Annotated[int, Field(ge=1)] = 8
    max_epochs: Annotated[int, Field(ge=1)] = 5
    grace_period: Annotated[int, Field(ge=1)] = 1
    reduction_factor: Annotated[int, Field(ge=2)] = 2
    time_budget_s: Annotated[float, Field(gt=0)] | None = None
    # Stop the sweep once its trials have trained this many epochs in all: the same compute
    # for any sampler or scheduler (trials still running then are stopped).
    total_epochs: Annotated[int, Field(ge=1)] | None = None
    # Run a decaying learning-rate schedule (cosine, one-cycle) as cycles that end at the
    # scheduler's rungs (asha, hyperband), so that a trial is judged at the end of a cycle
    # rather than at its peak learning rate (sets optimizer.cycle_ends in each trial's config).
    # On by default: with start points it paid in the search bench (results/PERFORMANCE.md).
    fair_rungs: bool = True

    @model_validator(mode="after")
    def _grace_within_run(self) -> Budget:
        if self.grace_period > self.max_epochs:
            raise ValueError(
                f"grace_period: {self.grace_period} exceeds max_epochs {self.max_epochs}"
            )
        return self


class Resources(Frozen):
    cpus_per_trial: Annotated[float, Field(gt=0)] = 1.0
    gpus_per_trial: Annotated[float, Field(ge=0)] = 0.0
    max_concurrent: Annotated[int, Field(ge=1)] | None = None
    workers_per_trial: Annotated[int, Field(ge=1)] = 1

    @model_validator(mode="after")
    def _whole_gpus_above_one(self) -> Resources:
        if self.gpus_per_trial > 1 and self.gpus_per_trial != int(self.gpus_per_trial):
            raise ValueError(
                f"gpus_per_trial: fractions are for sharing one GPU (<= 1), "
                f"got {self.gpus_per_trial}"
            )
        return self


@dataclass(frozen=True)
class SearchSpace:
    experiment: str
    data: dict[str, Any]
    model: dict[str, Any]
    optimizer: dict[str, Any] = field(default_factory=dict)
    search: tuple[Param, ...] = ()
    # The first objective is logged every epoch: it picks a trial's best epoch and is what
    # early stopping goes by. More than one makes a multi-objective study.
    objectives: tuple[Objective, ...] = (Objective(),)
    budget: Budget = Budget()
    resources: Resources = Resources()
    seed: int = 0
    # Known configurations tried first (e.g. the lab's hand-tuned ones): path -> value.
    start_points: tuple[dict[str, Any], ...] = ()
    sampler: SamplerSpec = TpeSampler()
    scheduler: SchedulerSpec = AshaScheduler()
    source: str = "<memory>"

    @property
    def objective(self) -> Objective:
        """The first objective: the one logged every epoch."""
        return self.objectives[0]

    @property
    def multi_objective(self) -> bool:
        return len(self.objectives) > 1

    def fixed(self, section: str) -> dict[str, Any]:
        return copy.deepcopy(getattr(self, section))

    @property
    def param_names(self) -> tuple[str, ...]:
        return tuple(p.path for p in self.search)


_TOP_KEYS = {
    "experiment",
    "description",
    "data",
    "model",
    "optimizer",
    "search",
    "objective",
    "budget",
    "resources",
    "seed",
    "start_points",
    "sampler",
    "scheduler",
}


def _parse_search(raw: Any, where: str) -> tuple[Param, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: expected a mapping of 'section.key' -> distribution")
    params: list[Param] = []
    for path, spec in raw.items():
        pwhere = f"{where}.{path}"
        section = str(path).split(".", 1)[0]
        if section not in SECTIONS or "." not in str(path):
            raise ConfigError(f"{pwhere}: must be 'data.KEY', 'model.KEY' or 'optimizer.KEY'")
        if path in ("data.name", "model.family", "data.target", "model.target"):
            raise ConfigError(f"{pwhere}: the dataset and model are fixed per file")
        spec = dict(spec) if isinstance(spec, Mapping) else spec
        when_raw = spec.pop("when", None) if isinstance(spec, dict) else None
        when = parse_when(when_raw, f"{pwhere}.when", [p.path for p in params]) if when_raw else ()
        dist = parse_dist(spec, pwhere)
        params.append(Param(path=str(path), dist=dist, when=when))
    return tuple(params)


def parse_space(raw: Any, source: str = "<memory>") -> SearchSpace:
    """Validate a loaded YAML document into a :class:`SearchSpace`.

    Errors name the file and the key (``search_spaces/x.yaml: search.model.dropout: ...``).
    """
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{source}: expected a mapping at the top level")
    unknown = sorted(set(raw) - _TOP_KEYS)
    if unknown:
        raise ConfigError(
            f"{source}: {unknown[0]}: unknown key (allowed: {', '.join(sorted(_TOP_KEYS))})"
        )
    for key in ("experiment", "data", "model"):
        if key not in raw:
            raise ConfigError(f"{source}: {key}: missing")
    try:
        for section in SECTIONS:
            if not isinstance(raw.get(section) or {}, Mapping):
                raise ConfigError(f"{section}: expected a mapping")
        space = SearchSpace(
            experiment=_experiment_name(raw["experiment"]),
            data=dict(raw["data"]),
            model=dict(raw["model"]),
            optimizer=dict(raw.get("optimizer") or {}),
            search=_parse_search(raw.get("search"), "search"),
            objectives=_parse_objectives(raw.get("objective")),
            budget=validated(Budget, raw.get("budget") or {}, "budget"),
            resources=validated(Resources, raw.get("resources") or {}, "resources"),
            seed=_int(raw.get("seed", 0), "seed"),
            source=source,
        )
        space = replace(
            space,
            start_points=_parse_start_points(raw.get("start_points"), space),
            sampler=_parse_named(raw.get("sampler"), "sampler", SAMPLER_SPEC, "tpe"),
            scheduler=_parse_named(raw.get("scheduler"), "scheduler", SCHEDULER_SPEC,
                                   "none" if len(space.objectives) > 1 else "asha"),
        )
        _check_search_method(space)
        _check_against_configs(space)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    return space


def _parse_objectives(raw: Any) -> tuple[Objective, ...]:
    """``objective:`` is one ``{metric, mode}`` mapping or a list of them."""
    if isinstance(raw, list):
        if not raw:
            raise ConfigError("objective: empty list")
        objectives = tuple(
            validated(Objective, o if o is not None else {}, f"objective[{i}]")
            for i, o in enumerate(raw)
        )
    else:
        objectives = (validated(Objective, raw if raw is not None else {}, "objective"),)
    metrics = [o.metric for o in objectives]
    if len(set(metrics)) < len(metrics):
        raise ConfigError(f"objective: a metric is listed twice ({', '.join(metrics)})")
    if objectives[0].metric in TRIAL_METRICS:
        raise ConfigError(
            f"objective: {objectives[0].metric} is known once per trial, not per epoch: list "
            "a validation metric first (e.g. val_acc), then it")
    for i, objective in enumerate(objectives[1:], start=1):
        if objective.metric not in TRIAL_METRICS and not objective.metric.startswith("val_"):
            raise ConfigError(
                f"objective[{i}].metric: a later objective must be a validation metric (val_*) "
                f"or one of {', '.join(TRIAL_METRICS)}, got {objective.metric!r}")
    return objectives


def _parse_named(raw: Any, where: str, kinds: TypeAdapter[Any], default: str) -> Any:
    """A ``{name: ..., option: ...}`` mapping (or just the name) as the model of its kind;
    ``kinds`` is the union discriminated by ``name``."""
    if raw is None:
        raw = {"name": default}
    elif isinstance(raw, str):
        raw = {"name": raw}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: expected a name or a mapping with a 'name', got {raw!r}")
    return validated(kinds, {"name": default, **raw}, where)


def _check_search_method(space: SearchSpace) -> None:
    """Refuse a sampler, scheduler and objectives that cannot work together."""
    sampler, n_objectives = space.sampler.name, len(space.objectives)
    if n_objectives > 1 and sampler in SINGLE_OBJECTIVE_SAMPLERS:
        raise ConfigError(
            f"sampler: {sampler} optimizes one objective, this study has {n_objectives}; "
            f"use tpe, nsga2, gp, random or qmc")
    if n_objectives > 1 and space.scheduler.name != "none":
        raise ConfigError(
            f"scheduler: {space.scheduler.name} stops trials by one objective, and a trial "
            "stopped early has no place on a Pareto front; use scheduler: none with several "
            "objectives")
    if sampler in NUMERIC_SAMPLERS:
        for param in space.search:
            why = unmodelled_by_numeric_sampler(param)
            if why:
                raise ConfigError(
                    f"sampler: {sampler} cannot model search.{param.path} ({why}); Optuna would "
                    "draw it at random. Use tpe, gp or random, or search numbers only")


def _parse_start_points(raw: Any, space: SearchSpace) -> tuple[dict[str, Any], ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ConfigError("start_points: expected a list of mappings 'section.key' -> value")
    known = {p.path: p for p in space.search}
    points = []
    for i, point in enumerate(raw):
        if not isinstance(point, Mapping):
            raise ConfigError(f"start_points[{i}]: expected a mapping 'section.key' -> value")
        for path, value in point.items():
            if path not in known:
                raise ConfigError(f"start_points[{i}].{path}: not a searched parameter")
            if isinstance(known[path].dist, ListDist) and not isinstance(value, list):
                raise ConfigError(f"start_points[{i}].{path}: expected a list, got {value!r}")
            # Optuna would refuse it only once the sweep has started and written its folder
            # (a number outside a range it takes, with a warning).
            dist = known[path].dist
            choice = dist.each if isinstance(dist, ListDist) else dist
            values = value if isinstance(dist, ListDist) else [value]
            if isinstance(choice, ChoiceDist) and any(v not in choice.values for v in values):
                raise ConfigError(f"start_points[{i}].{path}: {value!r} is not one of "
                                  f"{list(choice.values)}")
        points.append(dict(point))
    return tuple(points)


def _experiment_name(value: Any) -> str:
    if not isinstance(value, str) or not value or any(c in value for c in "/\\ "):
        raise ConfigError(f"experiment: must be a name without spaces or slashes, got {value!r}")
    return value


def _int(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    return value


def _check_against_configs(space: SearchSpace) -> None:
    """Build the trial config at each end of every range, so unknown keys, wrong types and
    architectures that cannot work are reported now rather than by the first trial."""
    from hpsearch.search_spaces.train_config import check_sections, train_config_from_sections

    base = base_sections(space)
    cfg = train_config_from_sections(base, max_epochs=space.budget.max_epochs, seed=space.seed)
    if not cfg.user_code:  # what the user's own module logs is known after its first epoch
        _check_objective_metrics(space, cfg.data.num_classes == 2)
    for param in space.search:
        if cfg.user_code and param.section == "optimizer":
            raise ConfigError(f"search.{param.path}: a model given by target sets up its own "
                              "optimizer (configure_optimizers); make it an init argument")
    for param in space.search:
        field_name = param.key.split(".", 1)[0]
        for value in param.dist.candidates():
            sections = base_sections(space)
            sections[param.section][field_name] = value
            try:
                check_sections(sections)
            except ConfigError as exc:
                raise ConfigError(f"search.{param.path}: {exc}") from None
            # Whether the drawn architecture fits the data (e.g. too many pools for a small
            # image) is left to the trial: such draws are recorded as errored trials.


def base_sections(space: SearchSpace) -> dict[str, dict[str, Any]]:
    """The fixed sections; those given by ``target`` also get each searched argument's first
    candidate, since the user's class may have no default for it."""
    from hpsearch.search_spaces.targets import names_target

    sections = {s: space.fixed(s) for s in SECTIONS}
    for param in space.search:
        if names_target(sections[param.section]) and "." not in param.key:
            sections[param.section].setdefault(param.key, param.dist.candidates()[0])
    return sections


def _check_objective_metrics(space: SearchSpace, binary: bool) -> None:
    """Every objective is a metric the model logs (the first one every epoch), so a typo is
    refused now instead of failing every trial."""
    from hpsearch.lightning_modules.metrics import epoch_metrics

    logged = epoch_metrics(binary)
    for i, objective in enumerate(space.objectives):
        valid = logged if i == 0 else (*(m for m in logged if m.startswith("val_")),
                                       *TRIAL_METRICS)
        if objective.metric not in valid:
            where = "objective" if len(space.objectives) == 1 else f"objective[{i}]"
            raise ConfigError(
                f"{where}.metric: {objective.metric!r} is not a metric this model logs "
                f"(valid: {', '.join(valid)})")


def load_yaml_mapping(path: str | Path, what: str = "search-space file") -> dict[str, Any]:
    """The top-level mapping of YAML file ``path``; a missing file, invalid YAML or another
    top-level value is a one-line :class:`ConfigError` naming the file."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: {what} not found")
    try:
        raw = yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{p}: not valid YAML{at}: {problem}") from None
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{p}: expected a mapping at the top level")
    return dict(raw)


def load_space(path: str | Path) -> SearchSpace:
    """Read and validate a search-space YAML file."""
    return parse_space(load_yaml_mapping(path), source=str(Path(path)))


def builtin_spaces() -> list[Path]:
    """The search-space files shipped with hpsearch."""
    return sorted(Path(__file__).parent.glob("*.yaml"))
