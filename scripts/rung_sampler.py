"""``sampler: rung_tpe``: an Optuna sampler that learns from every rung and is guided by the
start points, for sweeps whose trials are stopped early.

- **Model on the rungs** (as BOHB and Hyper-Tune do): TPE is fitted on every trial that has
  reached a rung, ranked as ASHA ranks them (by the highest rung reached, then by the value
  there), instead of on finished trials only: a trial stopped at the first rung, or one still
  running, teaches the model. (The values at the highest rung alone would be those of
  promoted trials only, all good, and would teach TPE to avoid them.) Until ``min_points``
  trials have reached a rung, trials are drawn at random; ``min_points`` is sized to the
  budget (:func:`startup_points`), not a fixed 10 trials.
- **Start points as a prior** (in the manner of PriorBand and piBO): after the start points
  themselves, a trial is drawn around one of them with probability
  ``prior_weight * halflife / (halflife + n)``, ``n`` the trials that have reached a rung, so
  the prior's weight decays as evidence comes in. The prior is judged by the same ranking:
  once the trials drawn from it rank mostly in the bottom half, its weight falls to zero.

The sampler's state (its random generator and how each trial was proposed) pickles with it,
so ``--resume`` continues it. It asks the study only for its trials, their parameters and
intermediate values: whatever proposed a trial, the study's record is the searcher's.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.samplers import BaseSampler, RandomSampler, TPESampler
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

# How a trial was proposed (kept per trial number, and as the trial's ``proposed_by``).
START, PRIOR, MODEL, RANDOM = "start point", "prior", "model", "random"
# The prior is forgotten when at most this share of its trials rank in the top half, and
# keeps its full weight from twice that share on (a linear ramp between).
FORGET_SHARE = 0.25


def startup_points(expected_trials: int, dims: int) -> int:
    """Trials drawn at random before the model is fitted: BOHB's ``dims + 1``, but at most a
    tenth of the trials the budget affords by ASHA's arithmetic (and at least 3). Ray's
    asynchronous ASHA promotes the first trials freely, so a sweep runs fewer trials than
    that arithmetic says: 18-25 of a predicted 51 in the search bench's 128-epoch runs."""
    return max(3, min(dims + 1, expected_trials // 10))


class RungTPESampler(BaseSampler):
    """TPE on the trials ranked by rung, with a decaying prior around ``centers``.

    ``rungs``: the epochs at which the scheduler compares trials, the last one the trial's
    full run. ``centers``: the start points in Optuna's flat parameter names."""

    def __init__(self, rungs: Sequence[int], centers: Sequence[Mapping[str, Any]] = (), *,
                 min_points: int = 3, prior_weight: float = 0.5, prior_halflife: float = 10.0,
                 prior_spread: float = 0.15, seed: int = 0) -> None:
        if not rungs:
            raise ValueError("rungs: at least one epoch is needed")
        self.rungs = tuple(sorted(set(int(r) for r in rungs)))
        self.centers = tuple(dict(c) for c in centers)
        self.min_points = min_points
        self.prior_weight, self.prior_halflife = prior_weight, prior_halflife
        self.prior_spread = prior_spread
        self._rng = np.random.RandomState(seed)
        self._random = RandomSampler(seed=seed)
        self.proposed: dict[int, tuple[str, int | None]] = {}  # number -> (how, center)
        self._model: TPESampler | None = None
        self._rung_study: optuna.Study | None = None

    # -- what the sampler knows --------------------------------------------------------------

    def scores(self, study: optuna.Study) -> list[tuple[FrozenTrial, float]]:
        """Every trial that has reached a rung, scored as ASHA ranks trials: by the highest
        rung it reached (one still running has passed it), then by its value there. Higher is
        better; only the order matters (TPE splits the trials by it)."""
        sign = 1.0 if study.direction == StudyDirection.MAXIMIZE else -1.0
        placed: list[tuple[FrozenTrial, int, float]] = []
        for trial in study.get_trials(deepcopy=False, states=(
                TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)):
            values = trial.intermediate_values
            reached = [i for i, rung in enumerate(self.rungs)
                       if values.get(rung) is not None and math.isfinite(values[rung])]
            if reached:
                level = 2 * reached[-1] + (trial.state == TrialState.RUNNING)
                placed.append((trial, level, sign * values[self.rungs[reached[-1]]]))
        out = []
        for level in sorted({level for _, level, _ in placed}):
            mine = [(trial, value) for trial, at, value in placed if at == level]
            low, high = min(v for _, v in mine), max(v for _, v in mine)
            out += [(trial, level + (0.99 * (v - low) / (high - low) if high > low else 0.5))
                    for trial, v in mine]
        return out

    def prior_quality(self, study: optuna.Study) -> float:
        """1 while the prior's trials rank well, falling to 0 as they rank in the bottom half
        (1 until 3 of its trials and 3 others have reached a rung)."""
        scored = [(self.proposed.get(t.number, (RANDOM,))[0] in (PRIOR, START), score)
                  for t, score in self.scores(study)]
        mine = [score for from_prior, score in scored if from_prior]
        if len(mine) < 3 or len(scored) - len(mine) < 3:
            return 1.0
        ordered = sorted((score for _, score in scored), reverse=True)
        cut = ordered[(len(ordered) - 1) // 2]  # the worst score still in the top half
        share = sum(score >= cut for score in mine) / len(mine)
        return float(np.clip((share - FORGET_SHARE) / FORGET_SHARE, 0.0, 1.0))

    def prior_probability(self, study: optuna.Study) -> float:
        """The chance that the next trial is drawn around a start point."""
        if not self.centers:
            return 0.0
        decay = self.prior_halflife / (self.prior_halflife + len(self.scores(study)))
        return self.prior_weight * decay * self.prior_quality(study)

    # -- Optuna's sampler interface ------------------------------------------------------------

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self._model = self._rung_study = None
        if "fixed_params" in trial.system_attrs:
            self.proposed[trial.number] = (START, None)
            return
        if self._rng.rand() < self.prior_probability(study):
            self.proposed[trial.number] = (PRIOR, self._pick_center(study))
            return
        scores = self.scores(study)
        if len(scores) < self.min_points:
            self.proposed[trial.number] = (RANDOM, None)
            return
        self.proposed[trial.number] = (MODEL, None)
        self._rung_study = self._study_of(scores)
        with warnings.catch_warnings():  # group=True is experimental; it is pinned with Optuna
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            self._model = TPESampler(seed=int(self._rng.randint(2**31 - 1)),
                                     multivariate=True, group=True, n_startup_trials=0,
                                     constant_liar=False)

    def infer_relative_search_space(self, study: optuna.Study,
                                    trial: FrozenTrial) -> dict[str, BaseDistribution]:
        if self._model is None or self._rung_study is None:
            return {}
        return self._model.infer_relative_search_space(self._rung_study, trial)

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        if self._model is None or self._rung_study is None or not search_space:
            return {}
        return self._model.sample_relative(self._rung_study, trial, search_space)

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        how, center = self.proposed.get(trial.number, (RANDOM, None))
        if how == PRIOR and center is not None and param_name in self.centers[center]:
            return self._around(self.centers[center][param_name], param_distribution)
        if how == MODEL and self._model is not None and self._rung_study is not None:
            return self._model.sample_independent(self._rung_study, trial, param_name,
                                                  param_distribution)
        return self._random.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(self, study: optuna.Study, trial: FrozenTrial, state: TrialState,
                    values: Sequence[float] | None) -> None:
        self._model = self._rung_study = None

    def reseed_rng(self) -> None:
        self._rng.seed()
        self._random.reseed_rng()

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_model": None, "_rung_study": None}

    # -- helpers -------------------------------------------------------------------------------

    def _pick_center(self, study: optuna.Study) -> int:
        """A start point to sample around: with probability 1/2 the one whose own trial
        ranks best so far, else any."""
        if len(self.centers) == 1 or self._rng.rand() < 0.5:
            return int(self._rng.randint(len(self.centers)))
        scored = []
        for trial, score in self.scores(study):
            if self.proposed.get(trial.number, (RANDOM,))[0] == START:
                index = next((i for i, c in enumerate(self.centers)
                              if all(trial.params.get(k) == v for k, v in c.items())), None)
                if index is not None:
                    scored.append((score, index))
        if not scored:
            return int(self._rng.randint(len(self.centers)))
        return max(scored)[1]

    def _around(self, value: Any, dist: BaseDistribution) -> Any:
        """A value near ``value``: a truncated normal of ``prior_spread`` of the range (on the
        log scale where the distribution is), or for a choice the same value with probability
        ``1 - 2 * prior_spread`` (another, uniformly, otherwise)."""
        if isinstance(dist, CategoricalDistribution):
            if value in dist.choices and self._rng.rand() >= 2 * self.prior_spread:
                return value
            return dist.choices[int(self._rng.randint(len(dist.choices)))]
        if not isinstance(dist, (FloatDistribution, IntDistribution)):
            raise TypeError(f"rung_tpe: no prior for a {type(dist).__name__}")
        scale = (math.log if dist.log else float)
        low, high = scale(dist.low), scale(dist.high)
        center = min(max(scale(value), low), high)
        width = (high - low) or 1.0
        for _ in range(100):
            drawn = center + self._rng.normal(0.0, self.prior_spread * width)
            if low <= drawn <= high:
                break
        else:
            drawn = center
        drawn = math.exp(drawn) if dist.log else drawn
        if isinstance(dist, IntDistribution):
            step = dist.step
            drawn = dist.low + round((drawn - dist.low) / step) * step
            return int(min(max(drawn, dist.low), dist.high))
        return float(min(max(drawn, dist.low), dist.high))

    @staticmethod
    def _study_of(scores: Sequence[tuple[FrozenTrial, float]]) -> optuna.Study:
        """An in-memory study of the trials' scores, for TPE to fit."""
        rung_study = optuna.create_study(direction="maximize",
                                         storage=optuna.storages.InMemoryStorage())
        rung_study.add_trials([
            optuna.trial.create_trial(params=t.params, distributions=t.distributions, value=v)
            for t, v in scores])
        return rung_study
