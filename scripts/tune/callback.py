"""The leaderboard written from Tune's trials: live by a callback, or rebuilt from Ray's folder."""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ray import tune
from ray.tune import ExperimentAnalysis

from hpsearch.scripts.experiment_folder import RAY_DIR, ExperimentFolder
from hpsearch.scripts.leaderboard import (
    STATUS_ERRORED,
    error_summary,
    trial_status,
    write_leaderboard,
)
from hpsearch.scripts.reports.pareto_front import write_pareto_plot
from hpsearch.scripts.sweep_record import SweepMeta
from hpsearch.scripts.tune.options import space_from_meta
from hpsearch.search_spaces.errors import ConfigError
from hpsearch.search_spaces.schema import SearchSpace

WRITE_EVERY_S = 2.0  # while results arrive, the leaderboard is rewritten at most this often


class LeaderboardCallback(tune.Callback):
    """Driver-side Tune callback: rewrites the leaderboard when a trial reports its first
    epoch or finishes (and every few seconds while results arrive), and prints one line per
    finished trial.

    A finished trial is written at the end of the step that finished it, once Tune's state
    saying so is on disk (:func:`snapshot_on_trial_changes` saves it in that step): what the
    leaderboard shows as finished, a ``--resume`` after a killed driver finds finished too.

    Module-level and holding only plain data, because Tune pickles it with the experiment
    and brings it back on ``--resume``."""

    def __init__(
        self, exp_dir: Path, meta: SweepMeta, space: SearchSpace, say: bool = True
    ) -> None:
        self.exp_dir = exp_dir
        self.meta = meta
        self.space = space
        self.say = say  # print a line per finished trial
        self._last_write = 0.0
        self._finished: dict[str, str] = {}  # trial id -> Tune's status, not yet written
        self._started: set[str] = set()
        self._ended: set[str] = set()

    @property
    def unfinished_ids(self) -> set[str]:
        """The trials this run started that have not finished (nor errored)."""
        return self._started - self._ended

    def _write(self, trials: list[Any], ray_status: Mapping[str, str] | None = None) -> None:
        write_leaderboard(self.exp_dir, trials, self.meta, self.space, ray_status)
        self._last_write = time.monotonic()

    def _say(self, trial: Any, ray_status: str) -> None:
        if not self.say:
            return
        result = trial.last_result or {}
        status = trial_status(trial, self.meta.max_epochs, ray_status)
        metric = self.meta.objective.metric
        value = result.get("best_value")
        shown = f"best {metric}={value:.4f}" if isinstance(value, float) else "no result"
        line = f"  trial {trial.trial_id} {status}: {shown} after {result.get('epoch', 0)} epoch(s)"
        if status == STATUS_ERRORED:
            line += f" ({error_summary(trial.get_error())})"
        print(line, flush=True)

    def on_trial_result(self, iteration, trials, trial, result, **info):  # noqa: ANN001
        # A trial's first epoch is on the leaderboard at once; later ones every few seconds.
        first = result.get("training_iteration") == 1
        if first or time.monotonic() - self._last_write > WRITE_EVERY_S:
            self._write(trials)

    def on_trial_start(self, iteration, trials, trial, **info):  # noqa: ANN001
        self._started.add(trial.trial_id)

    def on_trial_complete(self, iteration, trials, trial, **info):  # noqa: ANN001
        self._finished[trial.trial_id] = "TERMINATED"
        self._ended.add(trial.trial_id)

    def on_trial_error(self, iteration, trials, trial, **info):  # noqa: ANN001
        self._finished[trial.trial_id] = "ERROR"
        self._ended.add(trial.trial_id)

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


def load_trials(exp_dir: Path) -> list[Any]:
    """The Tune trials of an experiment folder, read from Ray's saved experiment state."""
    folder = ExperimentFolder(exp_dir)
    meta = folder.read_meta() if folder.meta_file.is_file() else None
    ray_dir = folder.ray_experiment_path(meta)
    if not (meta is not None and meta.storage) and not Path(ray_dir).is_dir():
        raise ConfigError(f"{exp_dir}: no Ray experiment folder ({RAY_DIR}/) to rebuild from")
    return list(ExperimentAnalysis(ray_dir).trials)


def rebuild_leaderboard(exp_dir: Path) -> Path:
    meta = ExperimentFolder(exp_dir).read_meta()
    path = write_leaderboard(exp_dir, load_trials(exp_dir), meta, space_from_meta(meta))
    write_pareto_plot(exp_dir, meta)
    return path


class TellStoppedTrials(tune.Callback):
    """Tells the searcher how the trials ended that Tune stopped for a spent budget
    (``time_budget_s``, ``budget.total_epochs``): Tune marks those TERMINATED without telling
    its search algorithm, which would leave them RUNNING in the Optuna study and, with a
    concurrency limit, hold their slots on ``--resume``. Telling a trial twice is a no-op."""

    def __init__(self, search_alg: Any) -> None:
        self.search_alg = search_alg
        self._told: set[str] = set()

    def on_step_end(self, iteration, trials, **info):  # noqa: ANN001
        from ray.tune.experiment import Trial
        from ray.tune.utils import flatten_dict

        for trial in trials:
            if trial.status == Trial.TERMINATED and trial.trial_id not in self._told:
                self._told.add(trial.trial_id)
                self.search_alg.on_trial_complete(
                    trial.trial_id, result=flatten_dict(trial.last_result or {}))
