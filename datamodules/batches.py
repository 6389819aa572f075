"""Mini-batches straight from in-memory tensors, replacing ``DataLoader`` for small datasets.

For MNIST-sized data a ``DataLoader`` spends most of its time fetching samples one by one and
collating them (or starting worker processes); indexing the whole tensor with a slice of a
permutation costs one gather per batch and works the same on CPU and GPU tensors.

Images are kept as 8-bit pixels and become float32 in [0, 1] one batch at a time
(:func:`model_inputs`): a quarter of the memory to decode, ship between processes and gather
from, and the same values as converting the whole dataset up front.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Sized
from typing import Protocol

import torch

from .augment import random_affine

# Added to the seed of an epoch's augmentation draws, so they are not its permutation's.
AUGMENT_SEED_OFFSET = 1_000_003

Batch = tuple[torch.Tensor, torch.Tensor]

PIXEL_MAX = 255


def model_inputs(x: torch.Tensor) -> torch.Tensor:
    """What a model is fed: uint8 pixels as float32 in [0, 1]; float inputs unchanged."""
    if x.dtype == torch.uint8:
        return x.to(torch.float32).div_(PIXEL_MAX)
    return x


class TensorBatches:
    """Iterable of ``(xb, yb)`` batches over tensors ``x`` and ``y`` (same first dimension).

    ``shuffle``: every ``iter()`` (one epoch) draws a fresh permutation from a
    ``torch.Generator`` seeded with ``seed + epoch`` and then advances ``epoch``, so runs with
    equal seeds see identical batch orders. ``set_epoch`` pins the epoch explicitly (e.g. when
    resuming). Without shuffling, batches are contiguous views (no copy).

    ``rank`` / ``world_size`` shard every epoch for data-parallel training: all ranks draw the
    same permutation and rank ``r`` takes its ``r``-th block of ``len(x) // world_size``
    samples, so shards are disjoint and equally long; the remainder (< ``world_size``
    samples) is skipped for that epoch, and differs from epoch to epoch when shuffling.

    ``len()`` is the number of batches one rank yields per epoch, as Lightning expects.
    Batches of ``x`` come as :func:`model_inputs` (uint8 pixels scaled to float32), then,
    with ``augment`` > 0, randomly shifted, rotated and scaled at that strength
    (:func:`~datamodules.augment.random_affine`).
    """

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        batch_size: int,
        shuffle: bool = False,
        drop_last: bool = False,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        augment: float = 0.0,
    ) -> None:
        if len(x) != len(y):
            raise ValueError(f"x has {len(x)} samples but y has {len(y)}")
        if batch_size <= 0:
            raise ValueError(f"batch_size must be > 0, got {batch_size}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, world={world_size}")
        self.x = x
        self.y = y
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.augment = augment
        self.epoch = 0

    @property
    def num_samples(self) -> int:
        """Samples this rank sees per epoch."""
        return len(self.x) // self.world_size if self.world_size > 1 else len(self.x)

    def __len__(self) -> int:
        n = self.num_samples
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        """Make the next ``iter()`` use the permutation of ``epoch``."""
        self.epoch = epoch

    def _indices(self) -> torch.Tensor | None:
        """This rank's sample indices for the current epoch, or None for plain ``0..n-1``."""
        n = len(self.x)
        if not self.shuffle and self.world_size == 1:
            return None
        if self.shuffle:
            gen = torch.Generator().manual_seed(self.seed + self.epoch)
            perm = torch.randperm(n, generator=gen)
        else:
            perm = torch.arange(n)
        per_rank = self.num_samples
        perm = perm[self.rank * per_rank : (self.rank + 1) * per_rank]
        # One host->device copy per epoch instead of one per batch when data lives on a GPU.
        return perm.to(self.x.device)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        idx = self._indices()
        # The augmentation's draws of this epoch: seeded like its permutation, apart from it.
        warp = torch.Generator().manual_seed(AUGMENT_SEED_OFFSET + self.seed + self.epoch)
        if self.shuffle:
            self.epoch += 1
        n = self.num_samples
        stop = n - n % self.batch_size if self.drop_last else n
        for start in range(0, stop, self.batch_size):
            end = min(start + self.batch_size, n)
            if idx is None:
                xb, yb = model_inputs(self.x[start:end]), self.y[start:end]
            else:
                # index_select rather than x[batch]: the same gather, 2-3x faster on CPU.
                batch = idx[start:end]
                xb, yb = model_inputs(self.x.index_select(0, batch)), self.y.index_select(0, batch)
            yield (random_affine(xb, self.augment, warp) if self.augment else xb), yb


class SizedBatches(Sized, Iterable[Batch], Protocol):
    """What :class:`BatchChunks` wraps: a re-iterable of batches with a length."""


class BatchChunk:
    """The next ``count`` mini-batches of a shared iterator, taken when the chunk is iterated.

    Taken late, each mini-batch is gathered just before its step (still in cache, like in a
    plain loop) and no chunk-sized copy of the data exists; in exchange the chunks of one
    epoch must be iterated in order, each once, as Lightning's training loop does (its
    prefetching only creates the next chunk object early). Deliberately neither a sequence
    nor a dataclass: Lightning's batch-to-device transfer passes other objects through
    untouched, so the tensors must already be on the training device (a ``TensorDataModule``
    moved there does that).
    """

    __slots__ = ("_source", "count", "_used")

    def __init__(self, source: Iterator[Batch], count: int) -> None:
        self._source = source
        self.count = count
        self._used = False

    def __iter__(self) -> Iterator[Batch]:
        if self._used:
            raise RuntimeError("a BatchChunk can be iterated only once")
        self._used = True
        return itertools.islice(self._source, self.count)

    def __len__(self) -> int:
        return self.count


class BatchChunks:
    """The batches of ``batches`` grouped into :class:`BatchChunk` s of ``size`` mini-batches.

    Lightning's bookkeeping of one training step (hooks, progress tracking, the optimizer
    closure) takes about as long as a whole step of a small MLP on MNIST. A module that takes
    one optimizer step per mini-batch of a chunk (``ClassifierModule`` with
    ``automatic_optimization = False``) pays it once per chunk, at the same results.

    ``len()`` is the number of chunks (what Lightning counts as batches) and ``num_batches``
    the number of mini-batches, i.e. optimizer steps per epoch; both rely on ``len(batches)``
    being exact. Each iteration iterates ``batches`` once, so a :class:`TensorBatches` still
    reshuffles every epoch.
    """

    def __init__(self, batches: SizedBatches, size: int) -> None:
        if size <= 0:
            raise ValueError(f"size must be > 0, got {size}")
        self.batches = batches
        self.size = size

    @property
    def num_batches(self) -> int:
        return len(self.batches)

    def __len__(self) -> int:
        return -(-len(self.batches) // self.size)

    def __iter__(self) -> Iterator[BatchChunk]:
        source = iter(self.batches)
        total = len(self.batches)
        for start in range(0, total, self.size):
            yield BatchChunk(source, min(self.size, total - start))
