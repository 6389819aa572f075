"""The single LightningModule used for every model family.

Architecture lives in the backbone (built from the model config); this module owns the loss,
the train/validation/test steps, metric logging and the optimizer setup.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from torch import Tensor, nn

from .configs import (
    ModelConfig,
    OptimConfig,
    model_config_from_dict,
    optim_config_from_dict,
    validate_for_data,
)
from .metrics import BINARY_EVAL_METRICS, binary_metrics, metrics_from_confusion
from .optim import build_optimizer, build_scheduler
from .registry import build_backbone


class ClassifierModule(pl.LightningModule):
    """Image/feature classifier: multiclass (softmax cross-entropy) or binary (one logit, BCE).

    Batches are ``(inputs, targets)`` with integer class targets of shape ``(N,)``.

    Logged once per epoch (the names are an API used by search and reporting code):
    ``train_loss``, ``train_acc``; ``val_loss``, ``val_acc``, ``val_f1`` (macro-F1 for multiclass,
    positive-class F1 for binary) and, for binary models, ``val_auc``, ``val_sensitivity``,
    ``val_specificity``; the same with a ``test_`` prefix on test. After a test run
    :attr:`test_confusion` (rows = true class) and, for binary models, :attr:`test_scores` /
    :attr:`test_targets` hold the raw results for confusion-matrix and ROC plots.
    Lightning runs an epoch's validation before ``on_train_epoch_end``, so code that wants an
    epoch's train and val metrics together should read them at train-epoch end, not at
    validation end.

    ``pos_weight`` weights the positive class (label 1) of a 2-class problem: BCE ``pos_weight``
    for binary heads, class weights ``[1, pos_weight]`` for a softmax head.

    Metrics are accumulated per process; the module assumes single-device training (one Ray Tune
    trial per device).
    """

    def __init__(
        self,
        model: ModelConfig | Mapping[str, Any],
        optim: OptimConfig | Mapping[str, Any],
        input_shape: Sequence[int],
        num_classes: int,
        pos_weight: float | None = None,
        max_epochs: int | None = None,
        steps_per_chunk: int = 1,
    ) -> None:
        super().__init__()
        input_shape = tuple(input_shape)
        # Typed configs come already validated (TrainConfig checks the model fits the data);
        # plain dicts are what load_from_checkpoint passes back from the hparams, so they go
        # through the same parse and data-fit check here.
        if not isinstance(model, ModelConfig):
            model = model_config_from_dict(model)
            validate_for_data(model, input_shape, num_classes)
        if not isinstance(optim, OptimConfig):
            optim = optim_config_from_dict(optim)
        if pos_weight is not None:
            pos_weight = float(pos_weight)
            if not pos_weight > 0:
                raise ValueError(f"pos_weight must be positive, got {pos_weight}")
            if num_classes != 2:
                raise ValueError(
                    f"pos_weight weights the positive class of a 2-class problem, "
                    f"got {num_classes} classes"
                )
        self.model_cfg: ModelConfig = model
        self.optim_cfg: OptimConfig = optim
        self.input_shape = input_shape
        self.num_classes = num_classes
        self.max_epochs = max_epochs
        # Two classes: one logit for the positive class, whatever the family.
        self.binary = num_classes == 2
        # Opting into chunks: each Lightning step is then `steps_per_chunk` plain optimizer
        # steps (see training_step), which saves Lightning's per-step bookkeeping on small
        # models. Single-device runs only: DDP averages gradients in Lightning's own backward.
        self.steps_per_chunk = steps_per_chunk
        self.automatic_optimization = steps_per_chunk == 1
        # Plain types only, so checkpoints load with torch.load(weights_only=True) and
        # load_from_checkpoint can rebuild the module from them.
        self.save_hyperparameters(
            {
                "model": model.model_dump(mode="json"),
                "optim": optim.model_dump(mode="json"),
                "input_shape": list(input_shape),
                "num_classes": num_classes,
                "pos_weight": pos_weight,
                "max_epochs": max_epochs,
            }
        )

        self.backbone = build_backbone(model, input_shape, num_classes)
        if self.binary:
            weight = None if pos_weight is None else torch.tensor([pos_weight])
            self.loss_fn: nn.Module = nn.BCEWithLogitsLoss(pos_weight=weight)
        else:
            weight = None if pos_weight is None else torch.tensor([1.0, pos_weight])
            self.loss_fn = nn.CrossEntropyLoss(weight=weight)

        self.test_confusion: np.ndarray | None = None
        self.test_scores: np.ndarray | None = None
        self.test_targets: np.ndarray | None = None
        self._reset_train_totals()
        self._reset_eval_totals()

    def forward(self, x: Tensor) -> Tensor:
        """Logits: ``(N, num_classes)``, or ``(N,)`` for binary models."""
        logits = self.backbone(x)
        return logits.squeeze(-1) if self.binary else logits

    def _loss(self, logits: Tensor, targets: Tensor) -> Tensor:
        if self.binary:
            return self.loss_fn(logits, targets.to(logits.dtype))
        return self.loss_fn(logits, targets)

    def _train_loss_of(self, logits: Tensor, targets: Tensor) -> Tensor:
        """The loss the optimizer minimises: :meth:`_loss` with label smoothing, if any."""
        smoothing = self.optim_cfg.label_smoothing
        if not smoothing:
            return self._loss(logits, targets)
        if self.binary:
            soft = targets.to(logits.dtype) * (1 - smoothing) + smoothing / 2
            return self.loss_fn(logits, soft)
        return nn.functional.cross_entropy(logits, targets, weight=self.loss_fn.weight,
                                           label_smoothing=smoothing)

    # ----------------------------------------------------------------------- training

    def _reset_train_totals(self) -> None:
        # A step only keeps its detached loss and logits, and the epoch's loss and accuracy
        # are computed from them once: logging or .item() per step would force a CPU sync
        # every batch, and even the four tiny tensor ops of a running accuracy cost a small
        # MLP about 5% of its step time.
        self._train_outputs: list[tuple[Tensor, Tensor, Tensor]] = []  # loss, logits, targets
        self._train_logged = False

    def on_train_epoch_start(self) -> None:
        self._reset_train_totals()

    def training_step(self, batch: Any, batch_idx: int) -> Tensor | None:
        """One mini-batch ``(x, y)``; with ``steps_per_chunk > 1`` also a chunk of them (any
        iterable of ``(x, y)`` pairs, e.g. ``datamodules.batches.BatchChunk``).

        Without automatic optimization every mini-batch gets a plain PyTorch step (zero_grad,
        backward, optimizer and per-step scheduler step) and Lightning's per-step hooks and
        plugins are skipped: meant for a single-device, 32-bit Trainer without gradient
        clipping or accumulation, the one ``scripts.train.train`` builds.
        """
        if self.automatic_optimization:
            loss = self._train_loss(batch)
        else:
            loss = None
            self._manual_steps([batch] if isinstance(batch, (tuple, list)) else batch)
        if self._trainer is not None and self._trainer.is_last_batch:
            self._log_train_totals()
        return loss

    def _train_loss(self, batch: tuple[Tensor, Tensor]) -> Tensor:
        x, y = batch
        logits = self(x)
        loss = self._train_loss_of(logits, y)
        self._train_outputs.append((loss.detach(), logits.detach(), y))
        return loss

    def _manual_steps(self, batches: Any) -> None:
        optimizer = self.optimizers(use_pl_optimizer=False)
        per_step = [c.scheduler for c in self.trainer.lr_scheduler_configs if c.interval == "step"]
        for batch in batches:
            optimizer.zero_grad(set_to_none=True)
            self._train_loss(batch).backward()
            optimizer.step()
            for scheduler in per_step:
                scheduler.step()

    def _log_train_totals(self) -> None:
        # Logged at the last batch rather than in on_train_epoch_end: Lightning runs the
        # callbacks' on_train_epoch_end (EpochHistory, the sweep's reporter) before the
        # module's, so they would record the previous epoch's training metrics.
        if self._train_outputs and not self._train_logged:
            losses, logits, targets = zip(*self._train_outputs, strict=True)
            sizes = torch.tensor([len(t) for t in targets], device=losses[0].device)
            count = int(sizes.sum())
            logits, y = torch.cat(logits), torch.cat(targets)
            if self.binary:
                preds = torch.sigmoid(logits) > self.model_cfg.threshold
            else:
                preds = logits.argmax(dim=1)
            metrics = {
                "train_loss": (torch.stack(losses) * sizes).sum() / count,
                "train_acc": (preds == y).sum() / count,
            }
            for name, value in metrics.items():
                self.log(name, value, on_step=False, on_epoch=True, batch_size=count)
            self._train_outputs = []
            self._train_logged = True

    def on_train_epoch_end(self) -> None:
        self._log_train_totals()  # an epoch cut short never reaches its last batch
        if not self.automatic_optimization:
            for config in self.trainer.lr_scheduler_configs:
                if config.interval == "epoch":
                    config.scheduler.step()

    # ----------------------------------------------------------------------- evaluation

    def _reset_eval_totals(self) -> None:
        # Reset at every validation/test epoch start, so Lightning's sanity-check pass (and a
        # validation inside a training epoch) never leaks into the next epoch's metrics.
        self._eval_loss_sum = torch.zeros((), device=self.device)
        self._eval_count = 0
        self._eval_confusion = torch.zeros(
            self.num_classes**2, dtype=torch.long, device=self.device
        )
        self._eval_scores: list[Tensor] = []
        self._eval_targets: list[Tensor] = []

    def _eval_step(self, batch: tuple[Tensor, Tensor]) -> None:
        x, y = batch
        logits = self(x)
        self._eval_loss_sum.add_(self._loss(logits, y), alpha=y.shape[0])
        self._eval_count += y.shape[0]
        if self.binary:
            # Kept whole because ROC-AUC needs every score; thresholding happens at epoch end.
            self._eval_scores.append(torch.sigmoid(logits).float())
            self._eval_targets.append(y)
        else:
            cells = y * self.num_classes + logits.argmax(dim=1)
            self._eval_confusion.add_(torch.bincount(cells, minlength=self.num_classes**2))

    def _eval_epoch_end(self, stage: str) -> None:
        if not self._eval_count:
            return
        metrics = {"loss": (self._eval_loss_sum / self._eval_count).item()}
        if self.binary:
            scores = torch.cat(self._eval_scores).cpu().numpy()
            targets = torch.cat(self._eval_targets).cpu().numpy()
            result = binary_metrics(scores, targets, self.model_cfg.threshold)
            confusion = result["confusion"]
            metrics |= {"acc": result["accuracy"], "f1": result["f1"]}
            metrics |= {name: result[name] for name in BINARY_EVAL_METRICS}
        else:
            scores = targets = None
            confusion = self._eval_confusion.view(self.num_classes, -1).cpu().numpy()
            result = metrics_from_confusion(confusion)
            metrics |= {"acc": result["accuracy"], "f1": result["macro_f1"]}
        for name, value in metrics.items():
            self.log(f"{stage}_{name}", value, prog_bar=name in ("loss", "acc"))
        if stage == "test":
            self.test_confusion = confusion
            self.test_scores, self.test_targets = scores, targets

    def on_validation_epoch_start(self) -> None:
        self._reset_eval_totals()

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._eval_step(batch)

    def on_validation_epoch_end(self) -> None:
        self._eval_epoch_end("val")

    def on_test_epoch_start(self) -> None:
        self._reset_eval_totals()

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._eval_step(batch)

    def on_test_epoch_end(self) -> None:
        self._eval_epoch_end("test")

    # ----------------------------------------------------------------------- optimizer

    def configure_optimizers(self) -> Any:
        optimizer = build_optimizer(self.parameters(), self.optim_cfg)
        max_epochs = total_steps = None
        if self.optim_cfg.schedule == "cosine" or self.optim_cfg.cycle_ends:
            max_epochs = self.max_epochs or self.trainer.max_epochs
        if self.optim_cfg.schedule == "onecycle":
            # Spans the configured epochs, not the Trainer's (a re-train that stops at the
            # trial's best epoch must see the same schedule); asked for only when needed,
            # since estimating it loads the train dataloader.
            total_steps = self.trainer.estimated_stepping_batches
            # Lightning counts a chunk of mini-batches (datamodules.batches.BatchChunks) as one
            # batch, but the optimizer steps once per mini-batch in it.
            chunked = getattr(self.trainer.train_dataloader, "num_batches", None)
            if chunked is not None:
                total_steps = chunked * max(self.trainer.max_epochs or 1, 1)
            if self.max_epochs and self.trainer.max_epochs:
                per_epoch = math.ceil(total_steps / self.trainer.max_epochs)
                total_steps = per_epoch * self.max_epochs
        scheduler = build_scheduler(
            optimizer, self.optim_cfg, max_epochs=max_epochs, total_steps=total_steps
        )
        if scheduler is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": scheduler}
