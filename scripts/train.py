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

from hpsearch.datamodules import Splits, TensorDataModule, build_datamodule
from hpsearch.datamodules.batches import BatchChunks
from hpsearch.lightning_modules.classifier import ClassifierModule
from hpsearch.scripts.progress import MiniBatchProgress
from hpsearch.search_spaces.errors import ConfigError
from hpsearch.search_spaces.targets import UserData, UserModel
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
    module: pl.LightningModule
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

    @property
    def network(self) -> torch.nn.Module:
        """The layers a parameter table lists: hpsearch classifier's backbone, or the user's
        whole module."""
        return getattr(self.module, "backbone", self.module)


@dataclass(frozen=True)
class Distributed:
    """How a data-parallel Ray Train worker runs its Trainer: ``RayDDPStrategy()`` with
    ``[RayLightningEnvironment()]`` (``ray.train.lightning.prepare_trainer`` only checks that
    pairing, so it is not needed); each rank then trains on its shard of the training split."""

    strategy: Any
    plugins: Sequence[Any] = ()
    devices: int | str = "auto"


def resolve_accelerator(accelerator: str) -> str:
    if accelerator == "auto":
        return "gpu" if torch.cuda.is_available() else "cpu"
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise ValueError("--accelerator gpu: no CUDA GPU is visible on this machine")
    return accelerator


def build_datamodule_of(cfg: TrainConfig, data_dir: str | Path | None) -> Any:
    """The datamodule of ``cfg``: the user's own (``data.target``) or a built-in one."""
    if isinstance(cfg.data, UserData):
        return cfg.data.build()
    return build_datamodule(cfg.data, data_dir, seed=cfg.seed)


def build_module(cfg: TrainConfig, datamodule: Any, steps_per_chunk: int = 1) -> pl.LightningModule:
    """The LightningModule of ``cfg``: the user's own (``model.target``), or hpsearch's
    classifier for a built-in family (which opts into chunked steps)."""
    if isinstance(cfg.model, UserModel):
        return cfg.model.build()
    return ClassifierModule(
        model=cfg.model,
        optim=cfg.optim,
        input_shape=tuple(cfg.data.input_shape),
        num_classes=cfg.data.num_classes,
        pos_weight=getattr(datamodule, "pos_weight", None),
        max_epochs=cfg.max_epochs,
        steps_per_chunk=steps_per_chunk,
    )


def _joined_train_val(dm: TensorDataModule, seed: int) -> TensorDataModule:
    # The validation split fitted too: for a final model (its validation metrics are then
    # optimistic).
    joined = Splits(torch.cat([dm.train_x, dm.val_x]), torch.cat([dm.train_y, dm.val_y]),
                    dm.val_x, dm.val_y, dm.test_x, dm.test_y)
    return type(dm).from_splits(dm.cfg, joined, data_dir=dm.data_dir, device=dm.device, seed=seed)


def _batches_per_epoch(datamodule: Any) -> int:
    if isinstance(datamodule, TensorDataModule):
        return len(datamodule.train_dataloader(rank=0, world_size=1))
    return len(datamodule.train_dataloader())


def _has_own(obj: Any, hook: str, base: type) -> bool:
    return getattr(type(obj), hook, None) is not getattr(base, hook, None)


def train(
    cfg: TrainConfig,
    *,
    data_dir: str | Path | None = None,
    datamodule: Any = None,
    callbacks: Sequence[pl.Callback] = (),
    history: EpochHistory | None = None,
    accelerator: str = "auto",
    progress_bar: bool = False,
    run_test: bool = False,
    stop_after: int | None = None,
    train_on: str = "train",
    ckpt_path: str | None = None,
    distributed: Distributed | None = None,
    keep_checkpoint: bool = False,
) -> TrainResult:
    """Train ``cfg`` and return its per-epoch history, best objective value and module.

    ``history`` records the epochs and tracks the objective (``EpochHistory()``: val_acc,
    max); ``callbacks`` come after it, so they can read ``history.epochs[-1]``.
    ``datamodule``: one already built (a trial's, from the shipped data); otherwise it is
    built here, and the user's own is prepared (``prepare_data``) here. ``stop_after`` ends
    training after that many epochs while LR schedules still span ``cfg.max_epochs``, so a
    re-train up to a trial's best epoch repeats that trial exactly. ``train_on="train+val"``
    also fits the validation split (built-in datasets). ``ckpt_path``: a checkpoint of this
    run to continue from; a run whose checkpoint holds its last epoch trains nothing more.
    ``keep_checkpoint``: put the final checkpoint in ``TrainResult.checkpoint``.
    """
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    accelerator = resolve_accelerator(accelerator)
    if datamodule is None:
        datamodule = build_datamodule_of(cfg, data_dir)
        if not isinstance(datamodule, TensorDataModule):
            datamodule.prepare_data()
    builtin_data = isinstance(datamodule, TensorDataModule)
    datamodule.setup("fit")
    if train_on == "train+val":
        if not builtin_data:
            raise ConfigError("--train-on train+val: needs a built-in dataset (a datamodule "
                             "given by data.target has its own splits)")
        datamodule = _joined_train_val(datamodule, cfg.seed)
    elif train_on != "train":
        raise ValueError(f"train_on: must be 'train' or 'train+val', got {train_on!r}")
    history = history if history is not None else EpochHistory()
    # Shown by single-process runs (train, retrain): one rank's mini-batches are all of them.
    progress = [MiniBatchProgress(_batches_per_epoch(datamodule))] if progress_bar else []
    trainer = pl.Trainer(
        max_epochs=stop_after or cfg.max_epochs,
        accelerator=accelerator,
        devices=distributed.devices if distributed else 1,
        strategy=distributed.strategy if distributed else "auto",
        plugins=list(distributed.plugins) if distributed and distributed.plugins else None,
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        enable_progress_bar=False,  # MiniBatchProgress instead, with progress_bar
        num_sanity_val_steps=0,
        callbacks=[history, *callbacks, *progress],
        deterministic=False,
    )
    # DDP averages gradients only in Lightning's own backward, so chunks are single-device.
    module = build_module(cfg, datamodule,
                          STEPS_PER_CHUNK if builtin_data and trainer.world_size == 1 else 1)
    if builtin_data:
        if accelerator == "gpu":
            # These datasets fit on any GPU: keeping them there removes the per-batch copy.
            datamodule.to(trainer.strategy.root_device)
        # The ranks are known before fit (a Ray worker's from its Train context): each rank
        # draws the same permutation per epoch and takes its own block of it.
        train_batches: Any = datamodule.train_dataloader(
            seed=cfg.seed, rank=trainer.global_rank, world_size=trainer.world_size)
        val_batches: Any = datamodule.val_dataloader()
    else:
        # The user's own datamodule was prepared once (here, or per node by the sweep); its
        # loaders go to a plain Lightning fit, so prepare_data is not called again per trial.
        train_batches, val_batches = datamodule.train_dataloader(), datamodule.val_dataloader()
    if getattr(module, "steps_per_chunk", 1) > 1:
        train_batches = BatchChunks(train_batches, module.steps_per_chunk)
    with plain_cuda_check():
        trainer.fit(module, train_batches, val_batches, ckpt_path=ckpt_path)
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
    if run_test and _has_own(module, "test_step", pl.LightningModule):
        datamodule.setup("test")
        test_batches = datamodule.test_dataloader()
        tested = trainer.test(module, test_batches, verbose=False)[0]
        result.test = {k: _as_float(v) for k, v in tested.items()}
    if keep_checkpoint:
        with tempfile.TemporaryDirectory(prefix="hpsearch-train-") as tmp:
            path = Path(tmp, "model.ckpt")
            trainer.save_checkpoint(path, weights_only=False)  # loadable and resumable
            result.checkpoint = path.read_bytes()
    return result
