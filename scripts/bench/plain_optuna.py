"""The search a one-machine user would write instead of hpsearch: plain Optuna in one
process, no Ray. The same space, objective and training path (``train()``), TPE with
Optuna's successive-halving pruner, the space's start points tried first, trials two at a
time in threads, and the same budget of training epochs. ``hpsearch bench --only search``
runs it as a command of its own, from a cold start, as it runs ``hpsearch sweep``:

    python -m hpsearch.scripts.bench.plain_optuna SPACE.yaml --seed 0 --events events.jsonl
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import optuna
import pytorch_lightning as pl
import torch

from hpsearch.datamodules.errors import DataError
from hpsearch.scripts.train import EpochHistory, train
from hpsearch.search_spaces.errors import ConfigError
from hpsearch.search_spaces.schema import SearchSpace, load_space
from hpsearch.search_spaces.trials import define_by_run, flat_point, sampled_params, trial_config


class EpochLog:
    """Every epoch trained by any trial, in order, as JSON lines; ``spend`` counts them
    against the budget of training epochs."""

    def __init__(self, path: Path, total_epochs: int) -> None:
        self.path, self.total_epochs = path, total_epochs
        self.epochs = 0
        self._lock = threading.Lock()
        path.write_text("")

    def spend(self, event: dict[str, Any]) -> bool:
        """Record one trained epoch; returns whether the budget is now spent."""
        with self._lock:
            self.epochs += 1
            with self.path.open("a") as out:
                out.write(json.dumps(event) + "\n")
            return self.epochs >= self.total_epochs


class EpochSpender(pl.Callback):
    """Records each trained epoch in the :class:`EpochLog` and stops the trial once the
    sweep's epoch budget is spent (``spent``)."""

    def __init__(self, trial: int, log: EpochLog) -> None:
        self.trial, self.epoch_log = trial, log
        self.spent = False

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        history = next(cb for cb in trainer.callbacks if isinstance(cb, EpochHistory))
        row = history.epochs[-1]
        self.spent = self.epoch_log.spend({
            "trial": self.trial, "epoch": row["epoch"], "val_acc": row.get("val_acc"),
            "best_value": history.best_value, "reported_at": time.time()})
        self.on_epoch(history, row["epoch"])
        if self.spent:
            trainer.should_stop = True

    def on_epoch(self, history: EpochHistory, epoch: int) -> None:
        """What a subclass does after each epoch is recorded."""


class Pruning(EpochSpender):
    """Reports each epoch's objective so far to Optuna and stops the trial when Optuna's
    pruner says so, or when the sweep's epoch budget is spent."""

    def __init__(self, trial: optuna.Trial, log: EpochLog) -> None:
        super().__init__(trial.number, log)
        self.optuna_trial = trial
        self.pruned = False

    def on_epoch(self, history: EpochHistory, epoch: int) -> None:
        self.optuna_trial.report(history.best_value, epoch)
        if self.spent:
            self.optuna_trial.study.stop()
        self.pruned = self.spent or self.optuna_trial.should_prune()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        if self.pruned:
            trainer.should_stop = True


def objective(trial: optuna.Trial, space: SearchSpace, data_dir: str | None,
              log: EpochLog) -> float:
    """One trial: draw the space, train the config, return its best epoch's value."""
    define_by_run(trial, space)
    cfg = trial_config(space, sampled_params(space, trial.params))
    pruning = Pruning(trial, log)
    result = train(cfg, data_dir=data_dir, callbacks=[pruning], accelerator="cpu",
                   history=EpochHistory(space.objective.metric, space.objective.mode))
    if pruning.pruned:
        raise optuna.TrialPruned()
    return result.best_value


def run(space: SearchSpace, seed: int, events: Path, data_dir: str | None,
        jobs: int = 2) -> optuna.Study:
    budget = space.budget
    if budget.total_epochs is None:
        raise ConfigError(f"{space.source}: budget.total_epochs: needed for a plain Optuna run")
    torch.set_num_threads(1)  # one core per trial, as a 1-CPU Ray trial
    study = optuna.create_study(
        direction="maximize" if space.objective.mode == "max" else "minimize",
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=optuna.pruners.SuccessiveHalvingPruner(
            min_resource=budget.grace_period, reduction_factor=budget.reduction_factor),
    )
    for point in space.start_points:  # tried first, as hpsearch sweep tries them
        study.enqueue_trial(flat_point(space, point))
    log = EpochLog(events, budget.total_epochs)
    study.optimize(lambda trial: objective(trial, space, data_dir, log),
                   n_trials=budget.num_samples, n_jobs=jobs,
                   catch=(ConfigError, DataError, FloatingPointError))
    return study


def baseline_parser(module: str, description: str, seeded: str) -> argparse.ArgumentParser:
    """The command line of a one-process baseline of the search bench (``seeded``: what its
    ``--seed`` seeds)."""
    parser = argparse.ArgumentParser(prog=f"python -m {module}", description=description)
    parser.add_argument("space", help="search-space YAML file with budget.total_epochs")
    parser.add_argument("--seed", type=int, default=0, help=f"{seeded}'s seed (default 0)")
    parser.add_argument("--events", required=True, help="JSON-lines file of trained epochs")
    parser.add_argument("--data-dir", default=None, help="folder holding the datasets")
    parser.add_argument("--jobs", type=int, default=2, help="trials at a time (default 2)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = baseline_parser(__spec__.name if __spec__ else __name__,
                           __doc__.splitlines()[0], "TPE").parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = run(load_space(args.space), args.seed, Path(args.events), args.data_dir, args.jobs)
    states = [t.state.name.lower() for t in study.trials]
    print(f"{len(states)} trials: " + ", ".join(f"{states.count(s)} {s}" for s in set(states)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
