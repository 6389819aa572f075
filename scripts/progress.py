"""A training progress bar that counts mini-batches, whatever Lightning steps over."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from hpsearch.datamodules.batches import BatchChunk


class MiniBatchProgress(pl.Callback):
    """``Epoch 3/20 ━━━━ 120/469 0:00:04 val_acc 0.9812``: epochs counted from 1 and the
    mini-batches (optimizer steps) of the epoch, where Lightning's own bar would count the
    chunks of 64 mini-batches it takes as one step (``datamodules.batches.BatchChunks``)."""

    def __init__(self, batches_per_epoch: int) -> None:
        self.batches_per_epoch = batches_per_epoch
        self._progress: Progress | None = None
        self._task: Any = None

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._progress = Progress(TextColumn("{task.description}"), BarColumn(),
                                  MofNCompleteColumn(), TimeElapsedColumn(),
                                  TextColumn("{task.fields[metrics]}"))
        self._task = self._progress.add_task("", total=self.batches_per_epoch, metrics="")
        self._progress.start()

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._progress is not None:
            self._progress.reset(self._task, total=self.batches_per_epoch,
                                 description=f"Epoch {trainer.current_epoch + 1}/"
                                             f"{trainer.max_epochs}")

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           outputs: Any, batch: Any, batch_idx: int) -> None:
        if self._progress is not None:
            self._progress.advance(self._task, batch.count if isinstance(batch, BatchChunk)
                                   else 1)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # After the epoch's validation (and the module's own epoch-end logging).
        if self._progress is not None:
            shown = "  ".join(f"{k} {float(v):.4f}" for k, v in
                              sorted(trainer.callback_metrics.items()) if k.startswith("val_"))
            self._progress.update(self._task, metrics=shown)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._stop()

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                     exception: BaseException) -> None:
        self._stop()

    def _stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
