"""What runs in a Ray worker: the trial function and its per-epoch reports to Tune."""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import socket
import tempfile
import time
import traceback
from collections.abc import Mapping
from typing import Any

import pytorch_lightning as pl
import torch
from ray import tune

from hpsearch.datamodules.errors import DataError
from hpsearch.scripts.leaderboard import FAILED_KEY
from hpsearch.scripts.train import EpochHistory, MetricNotLoggedError, train
from hpsearch.scripts.tune.cluster import current_node_id
from hpsearch.scripts.tune.data import DataHandle, trial_datamodule
from hpsearch.scripts.tune.driver_watch import DriverIdentity, stop_if_driver_gone, watch_driver
from hpsearch.scripts.tune.internals import ReportSender
from hpsearch.scripts.tune.schedulers import OBJECTIVE_SO_FAR
from hpsearch.search_spaces.rungs import decision_epochs
from hpsearch.search_spaces.schema import SearchSpace
from hpsearch.search_spaces.train_config import TrainConfig
from hpsearch.search_spaces.trials import sampled_params, trial_config


def _device_name() -> str:
    if torch.cuda.is_available():
        idx = torch.cuda.current_device()
        return f"cuda:{idx} ({torch.cuda.get_device_name(idx)})"
    return "cpu"


def _deliver_report(metrics: dict[str, Any], checkpoint_dir: str | None,
                    driver: DriverIdentity | None) -> None:
    try:
        stop_if_driver_gone(driver)  # the report writes into the sweep's folder
        checkpoint = tune.Checkpoint.from_directory(checkpoint_dir) if checkpoint_dir else None
        tune.report(metrics, checkpoint=checkpoint)  # copies the checkpoint into Tune's storage
    finally:
        if checkpoint_dir:
            shutil.rmtree(checkpoint_dir, ignore_errors=True)


class TuneReporter(pl.Callback):
    """Reports every epoch to Tune; saves a checkpoint only when the objective improved,
    so the trial's latest checkpoint is always its best one.

    Reports go through a :class:`ReportSender`: training waits for the driver only at the
    ``decision_epochs`` (where the scheduler may stop the trial) and at the end of ``fit``.

    ``history`` is the run's epoch recorder, the one given to ``train(history=...)``; it
    records each epoch before this callback reports it. ``driver``: the sweep's driver; no
    report is sent once it is gone."""

    def __init__(self, params: Mapping[str, Any], cfg: TrainConfig, history: EpochHistory,
                 decision_epochs: frozenset[int] = frozenset(),
                 driver: DriverIdentity | None = None) -> None:
        self.history = history
        self.driver = driver
        self.static = {
            "params": dict(params),
            "config_json": cfg.to_json(),
            "seed": cfg.seed,
            "node": socket.gethostname(),
        }
        self.best_snapshot: dict[str, float] = {}
        self.last_metrics: dict[str, Any] = {}
        self.decision_epochs = decision_epochs
        self.sender = ReportSender()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        history = self.history
        row = history.epochs[-1]
        if history.improved:
            self.best_snapshot = {f"best_{k}": v for k, v in row.items() if k.startswith("val_")}
        metrics = {
            **row,
            **self.best_snapshot,
            **self.static,
            "best_value": history.best_value,
            "best_epoch": history.best_epoch,
            "train_time_s": history.train_time_s,
            "train_cpu_s": history.train_cpu_s,
            "train_gpu_s": history.train_gpu_s,
            "param_count": sum(p.numel() for p in pl_module.parameters()),
            "device": _device_name(),
            # Tune's own timestamp is in whole seconds; `hpsearch bench` needs trial timelines.
            "reported_at": time.time(),
        }
        node_id = current_node_id()
        if node_id:
            metrics["node_id"] = node_id
        self.last_metrics = metrics
        self._report(trainer, metrics, history.improved)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.sender.wait()  # the last report is delivered before the trial function returns

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                     exception: BaseException) -> None:
        # Deliver the epoch reported before the failure, so the trial's results keep it;
        # the exception being raised is what the trial ends with.
        with contextlib.suppress(BaseException):
            self.sender.wait()

    def state_dict(self) -> dict[str, Any]:
        return {"best_snapshot": self.best_snapshot}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best_snapshot = dict(state_dict["best_snapshot"])

    def _report(self, trainer: pl.Trainer, metrics: dict[str, Any], improved: bool) -> None:
        # Overridden by the data-parallel trial, whose workers report to Ray Train instead.
        checkpoint_dir = None
        if improved:
            # Saved now, in the training thread: the weights of this epoch.
            checkpoint_dir = tempfile.mkdtemp(prefix="hpsearch-checkpoint-")
            trainer.save_checkpoint(os.path.join(checkpoint_dir, "model.ckpt"), weights_only=False)
        self.sender.send(functools.partial(_deliver_report, metrics, checkpoint_dir, self.driver),
                         wait=metrics["epoch"] in self.decision_epochs)


def repeatable(exc: BaseException) -> bool:
    """Whether a trial's error would happen again on a retry: a bad or infeasible config, a
    diverging loss, an objective never logged. Not a missing data file (another node may
    have it), nor a lost worker, node or memory."""
    return (isinstance(exc, (ValueError, FloatingPointError, MetricNotLoggedError))
            and not isinstance(exc, DataError))


def failure_report(exc: BaseException, last: Mapping[str, Any]) -> dict[str, Any]:
    """The trial's last report when it fails repeatably: its last epoch's metrics (or an
    epoch 0 without a value) and the error, in one line."""
    text = str(exc).strip().splitlines()
    base = dict(last) if last else {"epoch": 0, OBJECTIVE_SO_FAR: float("nan")}
    return {**base, FAILED_KEY: f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")}


def run_trial(
    config: dict[str, Any],
    space: SearchSpace,
    data_dir: str | None,
    data: DataHandle | None = None,
    driver: DriverIdentity | None = None,
) -> None:
    """The Tune trainable: build the trial's config from the drawn values and train it.

    ``data``: the dataset shipped through the object store, used when it matches the trial's
    data config (see :func:`scripts.tune.data.trial_datamodule`). An error a retry would
    repeat (:func:`repeatable`) ends the trial with a report saying so, so Tune keeps its
    retries for lost workers. The process ends with ``driver``, the sweep's driver."""
    watch_driver(driver)
    reporter: TuneReporter | None = None
    try:
        cpus = max(1, int(space.resources.cpus_per_trial))
        torch.set_num_threads(cpus)
        params = sampled_params(space, config)
        cfg = trial_config(space, params)  # an infeasible draw raises here
        datamodule, source = trial_datamodule(cfg.data, data_dir, data)
        history = EpochHistory(space.objective.metric, space.objective.mode)
        reporter = TuneReporter(params, cfg, history, decision_epochs(space), driver)
        reporter.static["data"] = source
        # A trial that Tune restarts (--resume, a lost node) continues from its last
        # checkpoint, its best epoch so far, instead of training from scratch.
        checkpoint = tune.get_checkpoint()
        with checkpoint.as_directory() if checkpoint else contextlib.nullcontext() as ckpt_dir:
            train(
                cfg,
                data_dir=data_dir,
                datamodule=datamodule,
                history=history,
                callbacks=[reporter],
                ckpt_path=os.path.join(ckpt_dir, "model.ckpt") if ckpt_dir else None,
            )
    except Exception as exc:
        if not repeatable(exc):
            raise
        traceback.print_exc()  # the trial's log keeps the whole story
        tune.report(failure_report(exc, reporter.last_metrics if reporter else {}))
