"""``train(cfg) -> TrainResult``: the one training path used by the CLI, the sweep trials,
the re-train command, the benchmark and the tests."""

from __future__ import annotations

import contextlib
import logging
import math
import os
import tempfile
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from hpsearch.datamodules import Splits, build_datamodule
from hpsearch.datamodules.batches import BatchChunks
from hpsearch.lightning_modules.classifier import ClassifierModule
from hpsearch.scripts.progress import MiniBatchProgress
from hpsearch.search_spaces.train_config import TrainConfig

# Mini-batches per Lightning training step (see datamodules.batches.BatchChunks): Lightning's
# per-step bookkeeping, about as long as a step of the HOG MLP, is then paid once per 64 steps,
# while a progress bar still moves 7 times per MNIST epoch.
STEPS_PER_CHUNK = 64

NVML_CUDA_CHECK_ENV = "PYTORCH_NVML_BASED_CUDA_CHECK"

# Lightning's start-up banners ("GPU available: False", tips about its cloud loggers) and a
# deprecation inside Lightning itself drown our own output; warnings about the user's setup
# still come through.
logging.getLogger("pytorch_lightning.utilities.rank_zero").setLevel(logging.WARNING)
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")


@contextlib.contextmanager
def plain_cuda_check() -> Iterator[None]:
    """Let ``torch.cuda.is_available()`` use the CUDA runtime's cached answer inside the block.

    Importing Lightning sets ``PYTORCH_NVML_BASED_CUDA_CHECK=1`` (so that asking does not
    initialise CUDA before a fork), and then every ``is_available()`` loads and initialises
    NVML, or fails to dlopen it on a machine without a GPU driver. Adam, AdamW and RMSprop ask
    at every ``step()``: measured 0.2-0.4 ms per step on our 2-core machine, as long as a whole
    step of the HOG MLP. During ``fit`` the device is chosen and nothing forks, so the plain
    check is safe there.
    """
    saved = os.environ.pop(NVML_CUDA_CHECK_ENV, None)
    try:
        yield
    finally:
        if saved is not None:
            os.environ[NVML_CUDA_CHECK_ENV] = saved


class MetricNotLoggedError(RuntimeError):
    """The objective metric was never logged, so a sweep would optimise nothing."""


def _as_float(value: Any) -> float:
    return float(value.item() if isinstance(value, torch.Tensor) else value)


class EpochHistory(pl.Callback):
    """Records every epoch's logged metrics and tracks the best value of the objective."""

    def __init__(self, objective: str = "val_acc", mode: str = "max") -> None:
        self.objective = objective
        self.mode = mode
        self.epochs: list[dict[str, float]] = []
        self.best_value = math.nan
        self.best_epoch = 0
        self.improved = False
        self._epoch_started = 0.0
        self._epoch_cpu_started = 0.0
        self.train_time_s = 0.0
        # Compute spent training: CPU time of this process (times the ranks, which all do
        # the same work), and GPU time as wall time on each GPU the run held.
        self.train_cpu_s = 0.0
        self.train_gpu_s = 0.0

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._epoch_started = time.perf_counter()
        self._epoch_cpu_started = time.process_time()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Lightning runs validation before on_train_epoch_end, so train_* and val_* of
        # this epoch are both in callback_metrics now.
        elapsed = time.perf_counter() - self._epoch_started
        self.train_time_s += elapsed
        self.train_cpu_s += (time.process_time() - self._epoch_cpu_started) * trainer.world_size
        if pl_module.device.type == "cuda":
            self.train_gpu_s += elapsed * trainer.world_size
        metrics = {k: _as_float(v) for k, v in trainer.callback_metrics.items()}
        if self.objective not in metrics:
            raise MetricNotLoggedError(
                f"objective metric '{self.objective}' was never logged "
                f"(logged: {', '.join(sorted(metrics)) or 'nothing'})"
            )
        epoch = trainer.current_epoch + 1
        for name in ("train_loss", "val_loss"):
            if name in metrics and not math.isfinite(metrics[name]):
                raise FloatingPointError(
                    f"{name} is {metrics[name]} at epoch {epoch}: training diverged"
                )
        row = {"epoch": epoch, **metrics, "epoch_time_s": elapsed}
        self.epochs.append(row)
        value = metrics[self.objective]
        better = value > self.best_value if self.mode == "max" else value < self.best_value
        self.improved = math.isnan(self.best_value) or bool(better)
        if self.improved:
            self.best_value, self.best_epoch = value, epoch

    # Saved in every checkpoint, so a trial resumed from one keeps its earlier epochs and best.
    def state_dict(self) -> dict[str, Any]:
        return {"epochs": self.epochs, "best_value": self.best_value,
                "best_epoch": self.best_epoch, "train_time_s": self.train_time_s,
                "train_cpu_s": self.train_cpu_s, "train_gpu_s": self.train_gpu_s}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.epochs = list(state_dict["epochs"])
        self.best_value = state_dict["best_value"]
        self.best_epoch = state_dict["best_epoch"]
        self.train_time_s = state_dict["train_time_s"]
        # Checkpoints written before compute was counted have none.
        self.train_cpu_s = state_dict.get("train_cpu_s", 0.0)
        self.train_gpu_s = state_dict.get("train_gpu_s", 0.0)


@dataclass
class TrainResult:
    config: TrainConfig
    history: list[dict[str, float]]
    best_value: float
    best_epoch: int
    train_time_s: float
    param_count: int
    module: ClassifierModule
    datamodule: Any
    train_cpu_s: float = 0.0
    train_gpu_s: float = 0.0
    test: dict[str, Any] | None = None
    # The Lightning checkpoint of the trained (and tested) run, with ``keep_checkpoint=True``.
    checkpoint: bytes | None = None

    @property
    def metrics(self) -> dict[str, float]:
        """The last epoch's metrics."""
        return self.history[-1] if self.history else {}


def resolve_accelerator(accelerator: str) -> str:
    if accelerator == "auto":
        return "gpu" if torch.cuda.is_available() else "cpu"
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise ValueError("--accelerator gpu: no CUDA GPU is visible on this machine")
    return accelerator


def build_module(cfg: TrainConfig, datamodule: Any) -> ClassifierModule:
    return ClassifierModule(
        model=cfg.model,
        optim=cfg.optim,
        input_shape=tuple(cfg.data.input_shape),
        num_classes=cfg.data.num_classes,
        pos_weight=getattr(datamodule, "pos_weight", None),
        max_epochs=cfg.max_epochs,
    )


def train(
    cfg: TrainConfig,
    *,
    data_dir: str | Path | None = None,
    callbacks: Sequence[pl.Callback] = (),
    objective: str = "val_acc",
    mode: str = "max",
    accelerator: str = "auto",
    progress_bar: bool = False,
    run_test: bool = False,
    datamodule: Any = None,
    root_dir: str | Path | None = None,
    stop_after: int | None = None,
    train_on: str = "train",
    ckpt_path: str | None = None,
    history: EpochHistory | None = None,
    strategy: Any = "auto",
    plugins: Sequence[Any] = (),
    devices: int | str = 1,
    keep_checkpoint: bool = False,
) -> TrainResult:
    """Train ``cfg`` and return its per-epoch history, best objective value and module.

    ``callbacks`` come after the history recorder, so they can read ``history.epochs[-1]``
    (the sweep's Tune reporter does). ``stop_after`` ends training after that many epochs
    while LR schedules still span ``cfg.max_epochs``, so a re-train up to a trial's best
    epoch repeats that trial exactly. ``train_on="train+val"`` also fits the validation
    split (its validation metrics are then optimistic). ``ckpt_path``: a checkpoint of this
    run to continue from (weights, optimizer, LR schedule, epoch and history); a run whose
    checkpoint already holds its last epoch trains nothing more.

    ``history``: the recorder of the epochs (made here from ``objective`` and ``mode`` if not
    given), for callers whose callbacks read it. ``strategy``, ``plugins`` and ``devices`` go
    to the Trainer: a data-parallel Ray Train worker passes ``RayDDPStrategy()`` and
    ``[RayLightningEnvironment()]`` (``ray.train.lightning.prepare_trainer`` only checks
    that pairing, so it is not needed); each rank then trains on its shard of the training
    split. ``keep_checkpoint``: put the final checkpoint in ``TrainResult.checkpoint``.
    """
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    accelerator = resolve_accelerator(accelerator)
    if datamodule is None:
        datamodule = build_datamodule(cfg.data, data_dir, seed=cfg.seed)
    datamodule.setup("fit")
    if train_on == "train+val":
        dm = datamodule
        joined = Splits(torch.cat([dm.train_x, dm.val_x]), torch.cat([dm.train_y, dm.val_y]),
                        dm.val_x, dm.val_y, dm.test_x, dm.test_y)
        datamodule = type(dm).from_splits(dm.cfg, joined, data_dir=dm.data_dir,
                                          device=dm.device, seed=cfg.seed)
    elif train_on != "train":
        raise ValueError(f"train_on: must be 'train' or 'train+val', got {train_on!r}")
    module = build_module(cfg, datamodule)
    history = history if history is not None else EpochHistory(objective, mode)
    # Shown by single-process runs (train, retrain): one rank's mini-batches are all of them.
    progress = ([MiniBatchProgress(len(datamodule.train_dataloader(rank=0, world_size=1)))]
                if progress_bar else [])
    trainer = pl.Trainer(
        max_epochs=stop_after or cfg.max_epochs,
        accelerator=accelerator,
        devices=devices,
        strategy=strategy,
        plugins=list(plugins) or None,
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        enable_progress_bar=False,  # MiniBatchProgress instead, with progress_bar
        num_sanity_val_steps=0,
        callbacks=[history, *callbacks, *progress],
        default_root_dir=str(root_dir) if root_dir else None,
        deterministic=False,
    )
    if accelerator == "gpu":
        # These datasets fit on any GPU: keeping them there removes the per-batch copy.
        datamodule.to(trainer.strategy.root_device)
    # The ranks are known before fit (a Ray worker's from its Train context): each rank
    # draws the same permutation per epoch and takes its own block of it.
    batches = datamodule.train_dataloader(seed=cfg.seed, rank=trainer.global_rank,
                                          world_size=trainer.world_size)
    if trainer.world_size == 1:
        # The module takes one plain optimizer step per mini-batch of each chunk (see
        # ClassifierModule.training_step); results are the same as one Lightning step per
        # batch.
        module.automatic_optimization = False
        train_batches: Any = BatchChunks(batches, STEPS_PER_CHUNK)
    else:
        # DDP averages gradients only in a backward that follows its forward: the steps
        # inside a chunk run within one forward and would skip it, so every mini-batch is
        # a Lightning step here.
        train_batches = batches
    with plain_cuda_check():
        trainer.fit(module, train_batches, datamodule.val_dataloader(), ckpt_path=ckpt_path)
    result = TrainResult(
        config=cfg,
        history=history.epochs,
        best_value=history.best_value,
        best_epoch=history.best_epoch,
        train_time_s=history.train_time_s,
        param_count=sum(p.numel() for p in module.parameters()),
        module=module,
        datamodule=datamodule,
        train_cpu_s=history.train_cpu_s,
        train_gpu_s=history.train_gpu_s,
    )
    if run_test:
        datamodule.setup("test")
        tested = trainer.test(module, datamodule=datamodule, verbose=False)[0]
        result.test = {k: _as_float(v) for k, v in tested.items()}
    if keep_checkpoint:
        with tempfile.TemporaryDirectory(prefix="hpsearch-train-") as tmp:
            path = Path(tmp, "model.ckpt")
            trainer.save_checkpoint(path, weights_only=False)  # loadable and resumable
            result.checkpoint = path.read_bytes()
    return result
