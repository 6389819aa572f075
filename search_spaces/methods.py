"""How a sweep searches: Optuna's samplers (which configuration to try next) and Ray Tune's
trial schedulers (which trial to stop early), each a frozen model of its main options, picked
by ``name`` in a search-space file's ``sampler:`` and ``scheduler:``."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, TypeAdapter

from hpsearch.search_spaces.distributions import ChoiceDist, Frozen, ListDist, Param


# Optuna's samplers, each with its main options; an option left out keeps Optuna's default,
# and ``seed`` defaults to the space's seed.
class TpeSampler(Frozen):
    name: Literal["tpe"] = "tpe"
    n_startup_trials: int | None = None
    multivariate: bool | None = None
    group: bool | None = None
    constant_liar: bool | None = None
    seed: int | None = None


class RandomSampler(Frozen):
    name: Literal["random"] = "random"
    seed: int | None = None


class GpSampler(Frozen):
    name: Literal["gp"] = "gp"
    n_startup_trials: int | None = None
    seed: int | None = None


class CmaEsSampler(Frozen):
    name: Literal["cmaes"] = "cmaes"
    n_startup_trials: int | None = None
    popsize: int | None = None
    seed: int | None = None


class QmcSampler(Frozen):
    name: Literal["qmc"] = "qmc"
    qmc_type: Literal["sobol", "halton"] | None = None
    scramble: bool | None = None
    seed: int | None = None


class Nsga2Sampler(Frozen):
    name: Literal["nsga2"] = "nsga2"
    population_size: int | None = None
    mutation_prob: float | None = None
    crossover_prob: float | None = None
    seed: int | None = None


class RungTpeSampler(Frozen):
    """hpsearch's own (``scripts/rung_sampler.py``): TPE fitted on the scheduler's rungs,
    guided by the start points with a weight that decays as values come in."""

    name: Literal["rung_tpe"] = "rung_tpe"
    min_points: Annotated[int, Field(ge=2)] | None = None  # None: sized to the budget
    prior_weight: Annotated[float, Field(ge=0, lt=1)] = 0.5  # 1 would leave nothing to judge it by
    prior_halflife: Annotated[float, Field(gt=0)] = 10.0
    prior_spread: Annotated[float, Field(gt=0, le=0.5)] = 0.15
    seed: int | None = None


SamplerSpec = (TpeSampler | RandomSampler | GpSampler | CmaEsSampler | QmcSampler
               | Nsga2Sampler | RungTpeSampler)
SAMPLER_SPEC: TypeAdapter[Any] = TypeAdapter(Annotated[SamplerSpec, Field(discriminator="name")])
SAMPLERS: dict[str, type] = {
    "tpe": TpeSampler, "random": RandomSampler, "gp": GpSampler, "cmaes": CmaEsSampler,
    "qmc": QmcSampler, "nsga2": Nsga2Sampler, "rung_tpe": RungTpeSampler,
}
# Samplers that model one objective only.
SINGLE_OBJECTIVE_SAMPLERS = frozenset({"cmaes", "rung_tpe"})
# Samplers that model numeric parameters of a fixed search space only: a choice, a
# conditional parameter or a list of drawn length would be sampled at random, unmodelled.
NUMERIC_SAMPLERS = frozenset({"cmaes", "qmc"})


def unmodelled_by_numeric_sampler(param: Param) -> str:
    """Why a sampler of :data:`NUMERIC_SAMPLERS` cannot model ``param``; empty if it can."""
    dists = [param.dist.length, param.dist.each] if isinstance(param.dist, ListDist) \
        else [param.dist]
    if any(isinstance(d, ChoiceDist) for d in dists):
        return "a choice"
    if param.when:
        return "a conditional parameter"
    if isinstance(param.dist, ListDist) and param.dist.length.low != param.dist.length.high:
        return "a list of drawn length"
    return ""


# Ray Tune's trial schedulers. They read ``budget.grace_period`` and
# ``budget.reduction_factor``; ``hyperband`` is Ray's asynchronous HyperBand (ASHA over
# several brackets), which never pauses a trial.
class AshaScheduler(Frozen):
    name: Literal["asha"] = "asha"


class HyperbandScheduler(Frozen):
    name: Literal["hyperband"] = "hyperband"
    brackets: Annotated[int, Field(ge=1)] = 3


class MedianScheduler(Frozen):
    name: Literal["median"] = "median"
    min_samples_required: Annotated[int, Field(ge=1)] = 3


class NoScheduler(Frozen):
    name: Literal["none"] = "none"


SchedulerSpec = AshaScheduler | HyperbandScheduler | MedianScheduler | NoScheduler
SCHEDULER_SPEC: TypeAdapter[Any] = TypeAdapter(
    Annotated[SchedulerSpec, Field(discriminator="name")]
)
SCHEDULERS: dict[str, type] = {
    "asha": AshaScheduler, "hyperband": HyperbandScheduler, "median": MedianScheduler,
    "none": NoScheduler,
}
