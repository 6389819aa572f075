"""Stops a sweep cleanly when its results disk runs low, before a write is cut short."""

from __future__ import annotations

import signal
import time
from pathlib import Path

from ray import tune

from hpsearch.scripts.experiment_folder import MIN_FREE_BYTES, disk_space_problem


class DiskGuard(tune.Callback):
    """Checks the free space on the experiment folder's disk every ``every_s`` seconds of
    Tune's loop. Below the reserve it stops the sweep the way Ctrl-C does (Tune saves its
    state and the running trials resume from their checkpoints), so no file is left cut
    short; ``problem`` then says why."""

    def __init__(self, exp_dir: Path, min_free: int = MIN_FREE_BYTES, every_s: float = 0.5):
        self.exp_dir = exp_dir
        self.min_free = min_free
        self.every_s = every_s
        self.problem: str | None = None
        self._checked = 0.0

    def on_step_begin(self, iteration, trials, **info):  # noqa: ANN001
        if self.problem is not None or time.monotonic() - self._checked < self.every_s:
            return
        self._checked = time.monotonic()
        self.problem = disk_space_problem(self.exp_dir, self.min_free)
        if self.problem is not None:
            print(f"hpsearch: {self.problem}: stopping the sweep, its state saved", flush=True)
            signal.raise_signal(signal.SIGINT)  # Tune's own handler: a clean, resumable stop
