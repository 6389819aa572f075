"""What the terminal shows while a sweep runs: a table refreshed in place (rich) on a
terminal, plain lines, one per event, otherwise."""

from __future__ import annotations

import time
from typing import Any

import pandas as pd
from ray import tune

from hpsearch.scripts.leaderboard import leaderboard_rows
from hpsearch.scripts.reports.format import params_text
from hpsearch.scripts.reports.status import LiveStatus, best_line, headline, sweep_state
from hpsearch.scripts.sweep_record import SweepMeta
from hpsearch.search_spaces.schema import SearchSpace
from hpsearch.search_spaces.trials import sampled_params

LIVE = "live"
LINES = "lines"
REDRAW_S = 1.0  # the table's rows are rebuilt at most this often


class SweepView(tune.Callback):
    """Driver-side: the live table (``mode="live"``) or one line per trial started and a
    headline after each trial finished (``mode="lines"``). ``earlier_s`` is the wall time
    of earlier runs of a resumed sweep, so elapsed time and the estimate cover them."""

    def __init__(self, meta: SweepMeta, space: SearchSpace, mode: str,
                 earlier_s: float = 0.0) -> None:
        self.meta = meta
        self.space = space
        self.mode = mode
        self._status = LiveStatus(self.meta, time.monotonic() - earlier_s, pd.DataFrame(),
                                  time.monotonic)
        self._live: Any = None
        self._last_draw = 0.0
        self._finished_in_step = False
        self._best_said: str | None = None

    def __getstate__(self) -> dict[str, Any]:
        # A terminal display is not state: Tune may pickle its callbacks.
        return {**self.__dict__, "_live": None}

    def start(self) -> None:
        if self.mode == LIVE:
            from rich.live import Live

            self._live = Live(self._status, refresh_per_second=2, redirect_stdout=True,
                              redirect_stderr=True)
            self._live.start()

    def close(self, trials: list[Any] | None = None) -> None:
        if trials is not None:
            self._redraw(trials)
        if self._live is not None:
            self._live.stop()
            self._live = None

    def _redraw(self, trials: list[Any]) -> None:
        self._status.update(pd.DataFrame(leaderboard_rows(trials, self.meta, self.space)))
        self._last_draw = time.monotonic()

    def on_trial_start(self, iteration, trials, trial, **info):  # noqa: ANN001
        if self.mode == LINES:
            params = params_text(sampled_params(self.space, trial.config or {}))
            print(f"  trial {trial.trial_id} started: {params}", flush=True)

    def on_trial_complete(self, iteration, trials, trial, **info):  # noqa: ANN001
        self._finished_in_step = True

    def on_trial_error(self, iteration, trials, trial, **info):  # noqa: ANN001
        self._finished_in_step = True

    def on_step_end(self, iteration, trials, **info):  # noqa: ANN001
        if self.mode == LIVE and time.monotonic() - self._last_draw > REDRAW_S:
            self._redraw(trials)
        if self.mode == LINES and self._finished_in_step:
            self._redraw(trials)
            state = sweep_state(self._status.board, self.meta,
                                time.monotonic() - self._status.started)
            print(f"  {headline(state)}", flush=True)
            best = best_line(state)
            if best != self._best_said:
                print(f"  {best}", flush=True)
                self._best_said = best
        self._finished_in_step = False

    def on_experiment_end(self, trials, **info):  # noqa: ANN001
        self.close(trials)
