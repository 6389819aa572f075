"""What every dataset's config shares: everything a model needs to know about the data, without
loading it. Each dataset's own config class lives in its file (``idx.py``, ``hog.py``...).

Each config is a frozen pydantic model whose ``name`` field (a ``Literal``) picks it in the
registry's union, so ``model_dump(mode="json")`` and the registry's parser round-trip.
Settings that change the tensors (split sizes, seeds, HOG parameters, image size) are config
fields; where the files live (``data_dir``) and whether to download are not, because they
differ between machines running the same experiment. Bad values raise pydantic's
``ValidationError`` (``search_spaces`` turns it into a one-line ``ConfigError``).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

# Strict: no "3" -> 3 or True -> 1 coercion; frozen: configs are hashable cache keys;
# forbid: an unknown key is a typo.
CONFIG = ConfigDict(frozen=True, extra="forbid", strict=True)

BatchSize = Annotated[int, Field(gt=0)]

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


def check_val_size(val_size: int, train_size: int, train_subset: int | None = None) -> None:
    """Validation images are carved from ``train_size`` training images: some must be left,
    at least ``train_subset`` of them where it is set."""
    if not 0 < val_size < train_size:
        raise ValueError(f"val_size: must be between 1 and {train_size - 1} (of the "
                         f"{train_size:,} training images), got {val_size!r}")
    if train_subset is not None and not 0 < train_subset <= train_size - val_size:
        raise ValueError(f"train_subset: must be between 1 and {train_size - val_size:,} (the "
                         f"training images left after validation), got {train_subset!r}")


class DataConfig(BaseModel):
    """A dataset's config: its ``name`` (``Literal`` in each dataset's class), the batch size,
    and what a model needs to know: ``input_shape`` (without the batch) and ``class_names``."""

    model_config = CONFIG

    name: str
    batch_size: BatchSize = 128

    @property
    def input_shape(self) -> tuple[int, ...]:
        raise NotImplementedError

    @property
    def class_names(self) -> tuple[str, ...]:
        raise NotImplementedError

    @property
    def num_classes(self) -> int:
        return len(self.class_names)
