"""Frozen dataset configs; everything a model needs to know about the data, without loading it.

Each config starts with a ``name`` field so ``search_spaces.typed.to_dict`` /
``from_dict`` round-trip and the registry can pick the class back from a plain mapping.
Settings that change the tensors (split sizes, seeds, HOG parameters, image size) are config
fields; where the files live (``data_dir``) and whether to download are not, because they
differ between machines running the same experiment.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

from search_spaces.typed import ConfigError

MNIST_SIZE = 28
MNIST_TRAIN_SIZE = 60_000
DIGIT_CLASSES = tuple(str(d) for d in range(10))
FASHION_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Bag",
    "Sneaker",
    "Ankle boot",
)
PNEUMONIA_CLASSES = ("normal", "pneumonia")


def _positive(cfg: Any, *fields: str) -> None:
    for f in fields:
        value = getattr(cfg, f)
        if value <= 0:
            raise ConfigError(f"{f}: must be > 0, got {value!r}")


def _one_of(cfg: Any, field: str, allowed: tuple[str, ...]) -> None:
    # from_dict checks Literal fields, but direct construction in Python code does not.
    value = getattr(cfg, field)
    if value not in allowed:
        raise ConfigError(f"{field}: must be one of {', '.join(map(repr, allowed))}, got {value!r}")


def _val_size_ok(val_size: int) -> None:
    if not 0 < val_size < MNIST_TRAIN_SIZE:
        raise ConfigError(
            f"val_size: must be between 1 and {MNIST_TRAIN_SIZE - 1} "
            f"(images taken from the {MNIST_TRAIN_SIZE:,} training images), got {val_size!r}"
        )


def hog_grid(image_size: int, pixels_per_cell: int, cells_per_block: int) -> tuple[int, int]:
    """``(cells_per_side, blocks_per_side)`` for a square image; raises if no block fits."""
    n_cells = image_size // pixels_per_cell
    n_blocks = n_cells - cells_per_block + 1
    if pixels_per_cell < 1 or cells_per_block < 1 or n_blocks < 1:
        raise ValueError(
            f"HOG with pixels_per_cell={pixels_per_cell}, cells_per_block={cells_per_block} "
            f"does not fit a {image_size}x{image_size} image"
        )
    return n_cells, n_blocks


def hog_feature_size(
    image_size: int, orientations: int, pixels_per_cell: int, cells_per_block: int = 1
) -> int:
    """Length of the HOG vector of a square ``image_size`` image (skimage's block layout)."""
    _, n_blocks = hog_grid(image_size, pixels_per_cell, cells_per_block)
    return n_blocks * n_blocks * cells_per_block * cells_per_block * orientations


def data_key(cfg: Any) -> tuple[tuple[str, Any], ...]:
    """The config fields that change the loaded tensors: every field except ``batch_size``.

    Used as the in-process cache key, so trials that differ only in batch size share one
    decoded copy of the data.
    """
    return (("type", type(cfg).__name__),) + tuple(
        (f.name, getattr(cfg, f.name)) for f in dataclasses.fields(cfg) if f.name != "batch_size"
    )


@dataclass(frozen=True)
class IdxConfig:
    """MNIST or Fashion-MNIST from the original IDX files, as (1, 28, 28) images in [0, 1].

    The official 60,000 training images are split into ``60000 - val_size`` train and
    ``val_size`` validation images by a permutation seeded with ``split_seed``; the official
    10,000 test images are the test split.
    """

    name: Literal["mnist", "fashion_mnist"] = "mnist"
    batch_size: int = 128
    val_size: int = 10_000
    split_seed: int = 0

    def __post_init__(self) -> None:
        _one_of(self, "name", ("mnist", "fashion_mnist"))
        _positive(self, "batch_size")
        _val_size_ok(self.val_size)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (1, MNIST_SIZE, MNIST_SIZE)

    @property
    def num_classes(self) -> int:
        return 10

    @property
    def class_names(self) -> tuple[str, ...]:
        return FASHION_CLASSES if self.name == "fashion_mnist" else DIGIT_CLASSES


@dataclass(frozen=True)
class HogMnistConfig:
    """MNIST as standardized HOG feature vectors (for MLPs and linear models).

    Features follow ``skimage.feature.hog(..., block_norm="L2-Hys")`` on the [0, 1] images;
    splits are the same as :class:`IdxConfig` with equal ``val_size`` / ``split_seed``.
    """

    name: Literal["hog_mnist"] = "hog_mnist"
    batch_size: int = 128
    val_size: int = 10_000
    split_seed: int = 0
    orientations: int = 8
    pixels_per_cell: int = 4
    cells_per_block: int = 1

    def __post_init__(self) -> None:
        _one_of(self, "name", ("hog_mnist",))
        _positive(self, "batch_size", "orientations")
        _val_size_ok(self.val_size)
        if not 1 <= self.pixels_per_cell <= MNIST_SIZE:
            raise ConfigError(
                f"pixels_per_cell: must be between 1 and {MNIST_SIZE}, got {self.pixels_per_cell!r}"
            )
        n_cells = MNIST_SIZE // self.pixels_per_cell
        if not 1 <= self.cells_per_block <= n_cells:
            raise ConfigError(
                f"cells_per_block: must be between 1 and {n_cells} (the {n_cells}x{n_cells} "
                f"cells of {self.pixels_per_cell}px in a 28x28 image), got {self.cells_per_block!r}"
            )

    @property
    def input_shape(self) -> tuple[int, ...]:
        n = hog_feature_size(
            MNIST_SIZE, self.orientations, self.pixels_per_cell, self.cells_per_block
        )
        return (n,)

    @property
    def num_classes(self) -> int:
        return 10

    @property
    def class_names(self) -> tuple[str, ...]:
        return DIGIT_CLASSES


@dataclass(frozen=True)
class PneumoniaConfig:
    """Pediatric chest X-rays, normal (0) vs pneumonia (1), as (1, S, S) images in [0, 1].

    ``source``: ``"npz"`` is MedMNIST's ``pneumoniamnist.npz`` (28x28, its own train/val/test
    split, ``val_fraction`` unused); ``"folder"`` is the Kaggle ``chest_xray/`` tree (validation
    carved from train, stratified, ``val_fraction`` of it); ``"auto"`` takes the folder when
    present, else the npz. Images are resized to ``image_size`` once, at load.
    """

    name: Literal["pneumonia"] = "pneumonia"
    batch_size: int = 32
    source: Literal["auto", "npz", "folder"] = "auto"
    image_size: int = 128
    val_fraction: float = 0.1
    split_seed: int = 0

    def __post_init__(self) -> None:
        _one_of(self, "name", ("pneumonia",))
        _one_of(self, "source", ("auto", "npz", "folder"))
        _positive(self, "batch_size")
        if not 8 <= self.image_size <= 1024:
            raise ConfigError(f"image_size: must be between 8 and 1024, got {self.image_size!r}")
        if not 0.0 < self.val_fraction < 1.0:
            raise ConfigError(
                f"val_fraction: must be strictly between 0 and 1, got {self.val_fraction!r}"
            )

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (1, self.image_size, self.image_size)

    @property
    def num_classes(self) -> int:
        return 2

    @property
    def class_names(self) -> tuple[str, ...]:
        return PNEUMONIA_CLASSES


DataConfig = IdxConfig | HogMnistConfig | PneumoniaConfig
