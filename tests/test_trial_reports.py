"""How a trial reports to Tune: training goes on while a report is in flight, except at the
epochs where the ASHA scheduler may stop the trial, and at the end of fit."""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import pytorch_lightning as pl

from hpsearch.scripts.train import EpochHistory, train
from hpsearch.scripts.tune import trainable
from hpsearch.scripts.tune.schedulers import make_scheduler
from hpsearch.scripts.tune.trainable import TuneReporter
from hpsearch.search_spaces.rungs import decision_epochs
from hpsearch.search_spaces.schema import parse_space
from hpsearch.search_spaces.train_config import train_config_from_sections

WAIT_S = 30.0  # generous: only a broken implementation waits this long


def _space(max_epochs: int, grace_period: int, reduction_factor: int) -> Any:
    return parse_space({
        "experiment": "t",
        "data": {"name": "mnist"},
        "model": {"family": "mlp"},
        "optimizer": {"name": "adam"},
        "search": {"optimizer.lr": {"type": "float", "low": 1e-3, "high": 1e-2}},
        "budget": {"num_samples": 2, "max_epochs": max_epochs, "grace_period": grace_period,
                   "reduction_factor": reduction_factor},
    }, "t.yaml")


@pytest.mark.parametrize("budget", [(3, 2, 2), (10, 1, 2), (27, 1, 3), (100, 5, 3), (8, 8, 2),
                                    (50, 3, 4)])
def test_decision_epochs_are_the_rungs_of_the_sweeps_scheduler(budget):
    space = _space(*budget)
    rungs = make_scheduler(space)._brackets[0]._rungs  # Ray's own bookkeeping
    assert decision_epochs(space) == {math.ceil(milestone) for milestone, _ in rungs}






class _EpochStarts(pl.Callback):
    def __init__(self) -> None:
        self.started: list[int] = []

    def on_train_epoch_start(self, trainer, pl_module) -> None:  # noqa: ANN001
        self.started.append(trainer.current_epoch + 1)


class _FakeDriver:
    """Stands in for ``tune.report``: records each report and blocks until released, as the
    real one blocks until Tune's driver has processed it."""

    def __init__(self) -> None:
        self.reported: list[int] = []
        self.checkpoints: list[bool] = []
        self.released: dict[int, threading.Event] = {}
        self.stop_at: int | None = None

    def report(self, metrics: dict[str, Any], checkpoint: Any = None) -> None:
        epoch = metrics["epoch"]
        self.released.setdefault(epoch, threading.Event())
        self.reported.append(epoch)
        # The checkpoint's folder must still hold the file while Tune copies it.
        self.checkpoints.append(
            checkpoint is not None and "model.ckpt" in os.listdir(checkpoint.path))
        if epoch == self.stop_at:
            raise SystemExit(0)
        assert self.released[epoch].wait(WAIT_S)

    def release(self, epoch: int) -> None:
        self.released.setdefault(epoch, threading.Event()).set()


def _until(condition: Callable[[], bool]) -> bool:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def _cfg() -> Any:
    sections = {"data": {"name": "mnist", "val_size": 16, "batch_size": 16},
                "model": {"family": "mlp", "hidden": [8]}, "optimizer": {"name": "adam"}}
    return train_config_from_sections(sections, max_epochs=3, seed=0)


def _fit_in_thread(reporter: TuneReporter, starts: _EpochStarts, datamodule: Any,
                   outcome: dict[str, Any]) -> threading.Thread:
    def fit() -> None:
        try:
            outcome["result"] = train(_cfg(), datamodule=datamodule, history=reporter.history,
                                      callbacks=[reporter, starts], accelerator="cpu")
        except BaseException as exc:  # noqa: BLE001 - the test inspects it
            outcome["error"] = exc

    thread = threading.Thread(target=fit, daemon=True)
    thread.start()
    return thread


def test_training_overlaps_reports_except_at_decision_epochs_and_the_end(
    monkeypatch: pytest.MonkeyPatch, synthetic_mnist: Callable[[], Any]
):
    driver = _FakeDriver()
    monkeypatch.setattr(trainable.tune, "report", driver.report)
    reporter = TuneReporter({}, _cfg(), EpochHistory(), decision_epochs=frozenset({2}))
    starts, outcome = _EpochStarts(), {}
    thread = _fit_in_thread(reporter, starts, synthetic_mnist(), outcome)

    # Epoch 1 is not a decision epoch: epoch 2 trains while its report waits for the driver.
    assert _until(lambda: driver.reported == [1])
    assert _until(lambda: 2 in starts.started)
    driver.release(1)
    # Epoch 2 is: nothing more trains until the driver has answered.
    assert _until(lambda: driver.reported == [1, 2])
    time.sleep(0.3)
    assert starts.started == [1, 2]
    driver.release(2)
    assert _until(lambda: 3 in starts.started)
    # The last report is delivered before fit returns.
    assert _until(lambda: driver.reported == [1, 2, 3])
    time.sleep(0.3)
    assert thread.is_alive()
    driver.release(3)
    thread.join(WAIT_S)
    assert not thread.is_alive() and "error" not in outcome
    assert [row["epoch"] for row in outcome["result"].history] == [1, 2, 3]
    # Improved epochs carried the checkpoint saved at that epoch (the first one always does).
    assert driver.checkpoints[0]


def test_a_trial_stopped_at_a_decision_epoch_trains_no_further(
    monkeypatch: pytest.MonkeyPatch, synthetic_mnist: Callable[[], Any]
):
    driver = _FakeDriver()
    driver.stop_at = 2
    driver.release(1)
    monkeypatch.setattr(trainable.tune, "report", driver.report)
    reporter = TuneReporter({}, _cfg(), EpochHistory(), decision_epochs=frozenset({2}))
    starts, outcome = _EpochStarts(), {}
    thread = _fit_in_thread(reporter, starts, synthetic_mnist(), outcome)
    thread.join(WAIT_S)
    assert not thread.is_alive()
    assert isinstance(outcome.get("error"), SystemExit)  # Ray's thread runner: a clean stop
    assert starts.started == [1, 2] and driver.reported == [1, 2]

