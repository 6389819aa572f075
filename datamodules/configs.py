"""Frozen dataset configs; everything a model needs to know about the data, without loading it.

Each config is a frozen pydantic model whose ``name`` field is the discriminator of
:data:`DataConfig`, so ``model_dump(mode="json")`` and the registry's parser round-trip.
Settings that change the tensors (split sizes, seeds, HOG parameters, image size) are config
fields; where the files live (``data_dir``) and whether to download are not, because they
differ between machines running the same experiment. Bad values raise pydantic's
``ValidationError`` (``search_spaces`` turns it into a one-line ``ConfigError``).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, model_validator

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

# Strict: no "3" -> 3 or True -> 1 coercion; frozen: configs are hashable cache keys;
# forbid: an unknown key is a typo.
CONFIG = ConfigDict(frozen=True, extra="forbid", strict=True)

BatchSize = Annotated[int, Field(gt=0)]
# Images taken from the 60,000 MNIST training images for validation.
ValSize = Annotated[int, Field(gt=0, lt=MNIST_TRAIN_SIZE)]


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


# Fields applied to each batch as it is drawn: they leave the loaded tensors alone.
BATCH_FIELDS = ("batch_size", "augment")

# Strength of the training batches' random shift, rotation and scale (datamodules.augment):
# 0 is off, 1 shifts by up to 3 px of 28, rotates by up to 15 degrees, scales by 0.9-1.1.
Augment = Annotated[float, Field(ge=0.0, le=1.0)]


def data_key(cfg: Any) -> tuple[tuple[str, Any], ...]:
    """The config fields that change the loaded tensors: every field but :data:`BATCH_FIELDS`.

    Used as the in-process cache key, so trials that differ only in batch size or
    augmentation share one decoded copy of the data.
    """
    return (("type", type(cfg).__name__),) + tuple(
        (name, getattr(cfg, name)) for name in type(cfg).model_fields if name not in BATCH_FIELDS
    )


class IdxConfig(BaseModel):
    """MNIST or Fashion-MNIST from the original IDX files, as (1, 28, 28) images in [0, 1].

    The official 60,000 training images are split into ``60000 - val_size`` train and
    ``val_size`` validation images by a permutation seeded with ``split_seed``; the official
    10,000 test images are the test split.
    """

    model_config = CONFIG

    name: Literal["mnist", "fashion_mnist"] = "mnist"
    batch_size: BatchSize = 128
    augment: Augment = 0.0
    val_size: ValSize = 10_000
    split_seed: int = 0

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (1, MNIST_SIZE, MNIST_SIZE)

    @property
    def num_classes(self) -> int:
        return 10

    @property
    def class_names(self) -> tuple[str, ...]:
        return FASHION_CLASSES if self.name == "fashion_mnist" else DIGIT_CLASSES


class HogMnistConfig(BaseModel):
    """MNIST as standardized HOG feature vectors (for MLPs and linear models).

    Features follow ``skimage.feature.hog(..., block_norm="L2-Hys")`` on the [0, 1] images;
    splits are the same as :class:`IdxConfig` with equal ``val_size`` / ``split_seed``.
    """

    model_config = CONFIG

    name: Literal["hog_mnist"] = "hog_mnist"
    batch_size: BatchSize = 128
    val_size: ValSize = 10_000
    split_seed: int = 0
    orientations: Annotated[int, Field(gt=0)] = 8
    pixels_per_cell: Annotated[int, Field(ge=1, le=MNIST_SIZE)] = 4
    cells_per_block: Annotated[int, Field(ge=1)] = 1

    @model_validator(mode="after")
    def _block_fits_image(self) -> HogMnistConfig:
        n_cells = MNIST_SIZE // self.pixels_per_cell
        if self.cells_per_block > n_cells:
            raise ValueError(
                f"cells_per_block: must be between 1 and {n_cells} (the {n_cells}x{n_cells} "
                f"cells of {self.pixels_per_cell}px in a 28x28 image), got {self.cells_per_block!r}"
            )
        return self

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


class PneumoniaConfig(BaseModel):
    """Pediatric chest X-rays, normal (0) vs pneumonia (1), as (1, S, S) images in [0, 1].

    ``source``: ``"npz"`` is MedMNIST's ``pneumoniamnist.npz`` (28x28, its own train/val/test
    split, ``val_fraction`` unused); ``"folder"`` is the Kaggle ``chest_xray/`` tree (validation
    carved from train, stratified, ``val_fraction`` of it); ``"auto"`` takes the folder when
    present, else the npz. Images are resized to ``image_size`` once, at load.
    """

    model_config = CONFIG

    name: Literal["pneumonia"] = "pneumonia"
    batch_size: BatchSize = 32
    augment: Augment = 0.0
    source: Literal["auto", "npz", "folder"] = "auto"
    image_size: Annotated[int, Field(ge=8, le=1024)] = 128
    val_fraction: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.1
    split_seed: int = 0

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (1, self.image_size, self.image_size)

    @property
    def num_classes(self) -> int:
        return 2

    @property
    def class_names(self) -> tuple[str, ...]:
        return PNEUMONIA_CLASSES


# The union a plain mapping is parsed into: ``name`` picks the class.
DataConfig = Annotated[IdxConfig | HogMnistConfig | PneumoniaConfig, Field(discriminator="name")]
DATA_CONFIG: TypeAdapter[Any] = TypeAdapter(DataConfig)
