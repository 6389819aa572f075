"""hpsearch's searcher: Optuna's ask-and-tell API behind Ray Tune's public ``Searcher``
interface, so that the Optuna study records what the sweep did.

- Every epoch is an intermediate value (``step`` = epoch): the first objective as the sweep
  defines it, the best epoch's value so far, which is also what the scheduler goes by.
- A trial the scheduler stopped is told PRUNED (Optuna then keeps its last intermediate
  value, and TPE ranks it by the step it reached); one that ran all its epochs COMPLETE, with
  the values the leaderboard shows; an errored one FAIL.
- Each Optuna trial carries the Ray trial id, the leaderboard status, the epochs run and the
  parameter count as ``user_attrs``.
"""

from __future__ import annotations

import logging
import math
import pickle
from collections.abc import Mapping
from typing import Any

import optuna
from optuna.storages import JournalStorage
from optuna.trial import TrialState
from ray.tune.search import Searcher

from hpsearch.scripts.leaderboard import (
    FAILED_KEY,
    STATUS_COMPLETED,
    STATUS_EARLY_STOPPED,
    STATUS_ERRORED,
    finished_status,
)
from hpsearch.scripts.rung_sampler import RungTPESampler, startup_points
from hpsearch.scripts.study import open_journal
from hpsearch.scripts.tune.schedulers import OBJECTIVE_SO_FAR
from hpsearch.search_spaces.rungs import expected_trials, rungs
from hpsearch.search_spaces.schema import TRIAL_METRICS, SearchSpace
from hpsearch.search_spaces.trials import define_by_run, flat_point

logger = logging.getLogger(__name__)


# The leaderboard's status of a finished trial -> the state Optuna is told.
OPTUNA_STATE = {
    STATUS_COMPLETED: TrialState.COMPLETE,
    STATUS_EARLY_STOPPED: TrialState.PRUNED,
    STATUS_ERRORED: TrialState.FAIL,
}


# The parts of a trial's latest result that its final tell needs.
_KEPT = ("epoch", OBJECTIVE_SO_FAR, "param_count", "best_epoch")


_SAMPLER_CLASSES = {
    "tpe": optuna.samplers.TPESampler,
    "random": optuna.samplers.RandomSampler,
    "gp": optuna.samplers.GPSampler,
    "cmaes": optuna.samplers.CmaEsSampler,
    "qmc": optuna.samplers.QMCSampler,
    "nsga2": optuna.samplers.NSGAIISampler,
}


def make_sampler(space: SearchSpace) -> optuna.samplers.BaseSampler:
    """The sampler of ``space.sampler``: the options it sets, the defaults for the rest (the
    seed is the space's). ``rung_tpe`` learns the rungs and start points from the space."""
    spec = space.sampler
    options = {k: v for k, v in vars(spec).items() if k != "name" and v is not None}
    options.setdefault("seed", space.seed)
    if spec.name == "rung_tpe":
        options.setdefault("min_points",
                           startup_points(expected_trials(space), len(space.search)))
        centers = [flat_point(space, point) for point in space.start_points]
        return RungTPESampler(rungs(space), centers, **options)
    return _SAMPLER_CLASSES[spec.name](**options)


def objective_values(space: SearchSpace, result: Mapping[str, Any]) -> list[float]:
    """The trial's value of each objective, as the leaderboard shows them: the first at its
    best epoch, a later validation metric at that same epoch, a per-trial one as reported."""
    values = []
    for i, objective in enumerate(space.objectives):
        if i == 0:
            key = OBJECTIVE_SO_FAR
        elif objective.metric in TRIAL_METRICS:
            key = objective.metric
        else:
            key = f"best_{objective.metric}"
        values.append(float(result.get(key, math.nan)))
    return values


class OptunaSearcher(Searcher):
    """Draws each Ray trial's hyperparameters from an Optuna study and tells the study how
    the trial went. The study lives in Optuna's journal file ``journal``.

    Tune pickles the searcher with the experiment and saves :meth:`save`'s state as trials
    change; ``--resume`` restores both. The study itself is reopened from the journal."""

    def __init__(self, space: SearchSpace, journal: str, study_name: str,
                 resume: bool = False) -> None:
        """``resume``: Tune restores this searcher's saved state next (:meth:`restore`);
        otherwise a study already in the journal (a sweep stopped before Tune first saved
        its state) is continued, its trials asked before the stop told FAIL."""
        super().__init__(metric=OBJECTIVE_SO_FAR, mode=space.objective.mode)
        self.space = space
        self.journal = journal
        self.study_name = study_name
        self._sampler = make_sampler(space)
        self._numbers: dict[str, int] = {}  # Ray trial id -> Optuna trial number
        self._last_step: dict[str, int] = {}
        self._last_result: dict[str, dict[str, Any]] = {}  # what a failure's tell reuses
        self._finished: set[str] = set()
        self._storage: JournalStorage | None = None
        self._study: optuna.Study | None = None
        self._trials: dict[str, optuna.Trial] = {}
        try:
            study = optuna.create_study(
                storage=self.storage, sampler=self._sampler, study_name=study_name,
                directions=[("maximize" if o.mode == "max" else "minimize")
                            for o in space.objectives],
            )
        except optuna.exceptions.DuplicatedStudyError:
            self._study = optuna.load_study(study_name=study_name, storage=self.storage,
                                            sampler=self._sampler)
            if not resume:
                self._fail_abandoned_trials()
            return
        for point in space.start_points:
            study.enqueue_trial(flat_point(space, point))
        self._study = study

    # -- Tune's Searcher interface ---------------------------------------------------------

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        trial = self.study.ask()
        define_by_run(trial, self.space)
        trial.set_user_attr("ray_trial_id", trial_id)
        if isinstance(self._sampler, RungTPESampler):
            trial.set_user_attr("proposed_by", self._sampler.proposed[trial.number][0])
        self._numbers[trial_id] = trial.number
        self._trials[trial_id] = trial
        return dict(trial.params)

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        trial = self._trial(trial_id)
        if trial is not None and trial_id not in self._finished and FAILED_KEY not in result:
            self._last_result[trial_id] = {k: result[k] for k in _KEPT if k in result}
            self._report(trial_id, trial, result)

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None,
                          error: bool = False) -> None:
        trial = self._trial(trial_id)
        if trial is None or trial_id in self._finished:
            return
        # An errored trial comes without a result: its last reported one stands in.
        result = result or self._last_result.pop(trial_id, {})
        # Tune hands a trial's last result to this method instead of on_trial_result.
        self._report(trial_id, trial, result)
        epochs = int(result.get("epoch", 0) or 0)
        failed = error or bool(result.get(FAILED_KEY))
        status = finished_status(failed, epochs, self.space.budget.max_epochs)
        values = objective_values(self.space, result)
        if status == STATUS_COMPLETED and not all(math.isfinite(v) for v in values):
            status = STATUS_ERRORED  # Optuna takes no NaN: nothing was learned
        trial.set_user_attr("status", status)
        trial.set_user_attr("epochs_run", epochs)
        if result.get("param_count") is not None:
            trial.set_user_attr("param_count", int(result["param_count"]))
        if result.get("best_epoch") is not None:
            trial.set_user_attr("best_epoch", int(result["best_epoch"]))
        state = OPTUNA_STATE[status]
        self.study.tell(trial.number, values if state == TrialState.COMPLETE else None,
                        state=state, skip_if_finished=True)
        self._finished.add(trial_id)
        self._last_result.pop(trial_id, None)

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as out:
            pickle.dump(self._state(), out)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as src:
            state = pickle.load(src)
        self._numbers = dict(state["numbers"])
        self._last_step = dict(state["last_step"])
        self._last_result = dict(state["last_result"])
        self._finished = set(state["finished"])
        self._sampler = state["sampler"]
        self._storage, self._study, self._trials = None, None, {}
        self._fail_abandoned_trials()

    def _report(self, trial_id: str, trial: optuna.Trial, result: dict[str, Any]) -> None:
        """Record the epoch's objective so far as the intermediate value at step = epoch."""
        # Optuna keeps intermediate values for single-objective studies only.
        if self.space.multi_objective:
            return
        step, value = int(result.get("epoch", 0) or 0), result.get(OBJECTIVE_SO_FAR)
        # A trial resumed from its checkpoint repeats the epochs after it: keep the first.
        if step <= self._last_step.get(trial_id, 0) or value is None:
            return
        trial.report(float(value), step)
        self._last_step[trial_id] = step

    # -- the study -------------------------------------------------------------------------

    @property
    def storage(self) -> JournalStorage:
        if self._storage is None:
            self._storage = open_journal(self.journal)
        return self._storage

    @property
    def study(self) -> optuna.Study:
        if self._study is None:
            self._study = optuna.load_study(study_name=self.study_name, storage=self.storage,
                                            sampler=self._sampler)
        return self._study

    def _trial(self, trial_id: str) -> optuna.Trial | None:
        """The Optuna trial of a Ray trial (rebuilt from the journal after ``--resume``)."""
        if trial_id not in self._trials and trial_id in self._numbers:
            study_id = self.storage.get_study_id_from_name(self.study_name)
            storage_id = self.storage.get_trial_id_from_study_id_trial_number(
                study_id, self._numbers[trial_id])
            if self.storage.get_trial(storage_id).state.is_finished():
                # Told before the driver was killed, after the state Tune resumed from.
                self._finished.add(trial_id)
                return None
            self._trials[trial_id] = optuna.Trial(self.study, storage_id)
        return self._trials.get(trial_id)

    def _fail_abandoned_trials(self) -> None:
        """Fail the Optuna trials a killed driver asked for after its last saved state: Tune
        never ran them under those ids, and left RUNNING they would stay so for ever."""
        known = set(self._numbers.values())
        for frozen in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if frozen.number not in known:
                self.study.tell(frozen.number, state=TrialState.FAIL, skip_if_finished=True)
                logger.info("Optuna trial %d was never run (the sweep was stopped first): "
                            "told FAIL", frozen.number)

    def _state(self) -> dict[str, Any]:
        return {"numbers": self._numbers, "last_step": self._last_step,
                "last_result": self._last_result,
                "finished": sorted(self._finished), "sampler": self._sampler}

    def __getstate__(self) -> dict[str, Any]:
        # Pickled into Tune's experiment: without the open study (reopened from the journal).
        return {**self.__dict__, "_storage": None, "_study": None, "_trials": {}}
