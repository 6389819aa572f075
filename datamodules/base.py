"""``TensorDataModule``: whole datasets as tensors in memory, served by :class:`TensorBatches`.

Every dataset here fits in memory (MNIST is 55 MB as uint8 pixels), so a datamodule decodes its
files once into six tensors and batches by indexing them. Decoded splits are cached per
process, keyed by the data-relevant config fields (not ``batch_size``) and the data folder,
so the many trials of a sweep that run in one worker process decode only once.
"""

from __future__ import annotations

import threading
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np
import pytorch_lightning as pl
import torch

from .batches import TensorBatches
from .configs import data_key
from .errors import DataError
from .paths import resolve_data_dir

Split = Literal["train", "val", "test"]
SPLITS: tuple[Split, ...] = ("train", "val", "test")

EVAL_BATCH_SIZE = 1024


class Splits(NamedTuple):
    """The six tensors of a dataset: inputs (uint8 pixels or float32 features) and int64
    labels per split."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor


_CACHE_SIZE = 4
_cache: OrderedDict[tuple[Any, ...], Splits] = OrderedDict()
_cache_lock = threading.Lock()


def clear_cache() -> None:
    """Forget all decoded datasets of this process (frees their memory once unreferenced)."""
    with _cache_lock:
        _cache.clear()




def pixel_tensor(images: np.ndarray) -> torch.Tensor:
    """``(N, H, W)`` uint8 -> ``(N, 1, H, W)`` uint8 pixels, scaled per batch by
    :func:`datamodules.batches.model_inputs`."""
    if images.dtype != np.uint8:
        raise TypeError(f"pixel_tensor takes uint8 images, got {images.dtype}")
    with warnings.catch_warnings():
        # Decoded files are read-only buffers; the datamodules never write to their tensors.
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.from_numpy(images).unsqueeze(1)


def labels_to_tensor(labels: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.asarray(labels, dtype=np.int64).reshape(-1).copy())


def split_train_val(n: int, val_size: int, seed: int, what: str = "",
                    train_subset: int | None = None) -> tuple[Any, Any]:
    """Index arrays ``(train_idx, val_idx)`` of a seeded random split of ``n`` samples;
    ``train_subset`` keeps that many of the training ones (drawn by the same permutation).

    One function for every dataset derived from the same source, so MNIST images and MNIST
    HOG features with equal ``val_size`` / ``split_seed`` get exactly the same split.
    """
    if not 0 < val_size < n:
        raise DataError(
            f"val_size: must be smaller than the {n} training samples{what}, got {val_size}"
        )
    if train_subset is not None and not 0 < train_subset <= n - val_size:
        raise DataError(f"train_subset: must be between 1 and the {n - val_size} training "
                        f"samples left after validation{what}, got {train_subset}")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).numpy()
    end = n if train_subset is None else val_size + train_subset
    return np.sort(perm[val_size:end]), np.sort(perm[:val_size])


class TensorDataModule(pl.LightningDataModule):
    """Base class: subclasses implement only :meth:`_load`, which returns :class:`Splits`.

    ``cfg`` is the dataset config; ``data_dir`` the data root (see
    :func:`datamodules.paths.resolve_data_dir`); ``download`` allows fetching missing files
    where the dataset supports it; ``device`` keeps all tensors on that device (e.g.
    ``"cuda"``: no per-batch host-to-device copy); ``seed`` seeds the training shuffle (the
    training code may pass another to :meth:`train_dataloader`); ``splits``: tensors already
    decoded (see :meth:`from_splits`), used instead of loading the files.

    After :meth:`setup`, ``train_x`` ... ``test_y`` hold the inputs, (N, 1, H, W) uint8 pixels
    or (N, F) float32 features, and int64 labels; the dataloaders' batches hold float32
    (pixels scaled to [0, 1], see :func:`datamodules.batches.model_inputs`).
    """

    def __init__(
        self,
        cfg: Any,
        data_dir: str | Path | None = None,
        download: bool = False,
        device: str | torch.device | None = None,
        seed: int = 0,
        splits: Splits | None = None,
    ) -> None:
        super().__init__()
        self.cfg = cfg
        self.data_dir = resolve_data_dir(data_dir)
        self.download = download
        self.seed = seed
        self.device = torch.device(device) if device is not None else None
        self.train_x: torch.Tensor | None = None
        self.train_y: torch.Tensor | None = None
        self.val_x: torch.Tensor | None = None
        self.val_y: torch.Tensor | None = None
        self.test_x: torch.Tensor | None = None
        self.test_y: torch.Tensor | None = None
        if splits is not None:
            _check_splits(splits, type(self).__name__)
            self._assign(splits)
            if self.device is not None:
                self.to(self.device)

    @classmethod
    def from_splits(
        cls,
        cfg: Any,
        splits: Splits,
        data_dir: str | Path | None = None,
        device: str | torch.device | None = None,
        seed: int = 0,
    ) -> TensorDataModule:
        """A datamodule of dataset ``cfg`` holding ``splits`` (tensors decoded elsewhere: shipped
        from the sweep driver, a subset, train and validation joined); ``setup`` loads nothing
        and the per-process cache is left as it is. Call it on the dataset's class."""
        return cls(cfg, data_dir, device=device, seed=seed, splits=splits)

    # -- to implement -------------------------------------------------------------------------

    def _load(self) -> Splits:
        """Decode the dataset from ``self.data_dir`` according to ``self.cfg``."""
        raise NotImplementedError

    def describe_source(self) -> str:
        """Where the data comes from (files or folder), without decoding; may raise DataError."""
        return str(self.data_dir)

    def check_details(self) -> dict[str, str]:
        """What ``hpsearch data check`` shows of the loaded data beyond sizes and counts."""
        return {}

    # -- loading ------------------------------------------------------------------------------

    @property
    def is_loaded(self) -> bool:
        return self.train_x is not None

    def cache_key(self) -> tuple[Any, ...]:
        return (type(self), data_key(self.cfg), str(self.data_dir))

    def setup(self, stage: str | None = None) -> None:
        """Load the tensors (once; later calls and other stages are no-ops)."""
        if self.is_loaded:
            return
        key = self.cache_key()
        with _cache_lock:
            splits = _cache.get(key)
            if splits is not None:
                _cache.move_to_end(key)
        if splits is None:
            splits = self._load()
            _check_splits(splits, type(self).__name__)
            with _cache_lock:
                _cache[key] = splits
                while len(_cache) > _CACHE_SIZE:
                    _cache.popitem(last=False)
        self._assign(splits)
        if self.device is not None:
            self.to(self.device)

    def _assign(self, splits: Splits) -> None:
        # Cached tensors are shared between datamodules: they are never modified in place.
        for name, tensor in zip(Splits._fields, splits, strict=True):
            setattr(self, name, tensor)

    def _splits(self) -> Splits:
        self.setup()
        return Splits(*(getattr(self, name) for name in Splits._fields))

    def to(self, device: str | torch.device) -> TensorDataModule:
        """Keep all tensors on ``device`` from now on (moved once, now or at ``setup``)."""
        self.device = torch.device(device)
        if self.is_loaded:
            self._assign(Splits(*(t.to(self.device) for t in self._splits())))
        return self

    # -- dataloaders --------------------------------------------------------------------------

    def _rank_world(self) -> tuple[int, int]:
        # Shard by the trainer's ranks: Lightning only injects a DistributedSampler into real
        # DataLoaders, never into plain iterables like TensorBatches.
        trainer = self.trainer
        if trainer is None:
            return 0, 1
        return trainer.global_rank, trainer.world_size

    def train_dataloader(
        self, *, seed: int | None = None, rank: int | None = None, world_size: int | None = None
    ) -> TensorBatches:
        """Shuffled training batches; ``seed`` (default ``self.seed``) and this process's
        ``rank`` of ``world_size`` (default: the attached trainer's, else 0 of 1) may be given
        by training code that builds the batches before the trainer runs."""
        s = self._splits()
        if rank is None or world_size is None:
            rank, world_size = self._rank_world()
        return TensorBatches(
            s.train_x,
            s.train_y,
            self.cfg.batch_size,
            shuffle=True,
            seed=self.seed if seed is None else seed,
            rank=rank,
            world_size=world_size,
            augment=getattr(self.cfg, "augment", 0.0),
        )

    def _eval_batches(self, x: torch.Tensor, y: torch.Tensor) -> TensorBatches:
        # Evaluation needs no gradients, so big batches are free and much faster.
        return TensorBatches(x, y, max(self.cfg.batch_size, EVAL_BATCH_SIZE), shuffle=False)

    def val_dataloader(self) -> TensorBatches:
        s = self._splits()
        return self._eval_batches(s.val_x, s.val_y)

    def test_dataloader(self) -> TensorBatches:
        s = self._splits()
        return self._eval_batches(s.test_x, s.test_y)

    # -- static facts and statistics ----------------------------------------------------------

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.cfg.input_shape

    @property
    def num_classes(self) -> int:
        return self.cfg.num_classes

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.cfg.class_names

    def split_sizes(self) -> dict[str, int]:
        s = self._splits()
        return {"train": len(s.train_y), "val": len(s.val_y), "test": len(s.test_y)}

    def labels(self, split: Split) -> torch.Tensor:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        self.setup()
        return getattr(self, f"{split}_y")

    def class_counts(self, split: Split) -> list[int]:
        """Number of samples of each class (index = label) in ``split``."""
        counts = torch.bincount(self.labels(split).cpu(), minlength=self.num_classes)
        return counts.tolist()


def _check_splits(splits: Splits, who: str) -> None:
    """Catch a loader bug here rather than as a shape error deep inside a model."""
    for part in ("train", "val", "test"):
        x, y = getattr(splits, f"{part}_x"), getattr(splits, f"{part}_y")
        good_x = x.dtype == torch.float32 or (x.dtype == torch.uint8 and x.ndim == 4)
        if not good_x or y.dtype != torch.int64 or len(x) != len(y):
            raise AssertionError(
                f"{who}._load returned bad {part} tensors: x {x.dtype} {tuple(x.shape)}, "
                f"y {y.dtype} {tuple(y.shape)}"
            )
