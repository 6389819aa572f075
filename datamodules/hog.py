"""HOG-MNIST: MNIST as standardized HOG feature vectors (``hog_features.py`` computes them),
cached per feature setting."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import torch
from pydantic import Field, model_validator

from .base import Splits, TensorDataModule, labels_to_tensor, split_train_val
from .configs import DataConfig, check_val_size
from .hog_features import hog_feature_size, hog_features
from .idx import IDX_SPECS, IdxArrays, load_idx_arrays, locate_idx_files
from .paths import atomic_write, fingerprint_bytes, resolve_cache_dir
from .registry import register_dataset

MNIST = IDX_SPECS["mnist"]
MNIST_SIZE = MNIST.image_size


class HogMnistConfig(DataConfig):
    """MNIST as standardized HOG feature vectors (for MLPs and linear models).

    Features follow ``skimage.feature.hog(..., block_norm="L2-Hys")`` on the [0, 1] images;
    splits are MNIST's with equal ``val_size`` / ``split_seed``.
    """

    name: Literal["hog_mnist"] = "hog_mnist"
    val_size: int = 10_000
    split_seed: int = 0
    # Train on a seeded subset of this many of the training images (quick runs, the bench).
    train_subset: Annotated[int, Field(ge=1)] | None = None
    orientations: Annotated[int, Field(gt=0)] = 8
    pixels_per_cell: Annotated[int, Field(ge=1, le=MNIST_SIZE)] = 4
    cells_per_block: Annotated[int, Field(ge=1)] = 1

    @model_validator(mode="after")
    def _fits_the_images(self) -> HogMnistConfig:
        check_val_size(self.val_size, MNIST.train_size, self.train_subset)
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
    def class_names(self) -> tuple[str, ...]:
        return MNIST.class_names


# -- the datamodule ---------------------------------------------------------------------------

_HOG_CACHE_VERSION = 2  # bump when the feature computation changes, to orphan old cache files
FEATURE_STD_FLOOR = 1e-6


def hog_cache_path(cfg: HogMnistConfig, fingerprint: str) -> Path:
    """Where the unstandardized features of all 70,000 MNIST images are cached on disk."""
    name = (
        f"hog-v{_HOG_CACHE_VERSION}-o{cfg.orientations}-p{cfg.pixels_per_cell}"
        f"-c{cfg.cells_per_block}-{fingerprint}.npy"
    )
    return resolve_cache_dir("hog_mnist") / name


def cached_mnist_hog(cfg: HogMnistConfig, raw: IdxArrays) -> np.ndarray:
    """HOG features of MNIST train images then test images, ``(70000, F)`` float32.

    Read from the disk cache when present; otherwise computed and written atomically. The
    cache file name holds the HOG parameters and a hash of the decoded pixels, so changed
    source data never reuses stale features.
    """
    images = (raw.train_images, raw.test_images)
    path = hog_cache_path(cfg, fingerprint_bytes(a.data for a in images))
    n = sum(len(a) for a in images)
    if path.is_file():
        try:
            features = np.load(path, allow_pickle=False)
            if features.shape == (n, cfg.input_shape[0]) and features.dtype == np.float32:
                return features
        except (OSError, ValueError):
            pass  # unreadable cache file: recompute and overwrite it
    features = hog_features(
        np.concatenate(images).astype(np.float32) / np.float32(255),
        cfg.orientations,
        cfg.pixels_per_cell,
        cfg.cells_per_block,
    )
    atomic_write(path, lambda f: np.save(f, features, allow_pickle=False))
    return features


class HogMnistDataModule(TensorDataModule):
    """MNIST as standardized HOG features ``(N, F)`` float32; same splits as MNIST images.

    HOG is computed on the float32 [0, 1] images (``uint8 / 255``). Features are standardized
    with the mean and standard deviation of the training split only, so validation and test
    statistics never leak in. A feature (nearly) constant in training is only centred, as
    sklearn's ``StandardScaler`` does: dividing by its tiny std would turn any value it takes
    in validation or test into a huge outlier.
    """

    cfg: HogMnistConfig

    def describe_source(self) -> str:
        files = locate_idx_files(MNIST, self.data_dir, self.download)
        return f"{files['train_images'].parent} (HOG cache: {resolve_cache_dir('hog_mnist')})"

    def _load(self) -> Splits:
        raw = load_idx_arrays(MNIST, self.data_dir, self.download)
        features = cached_mnist_hog(self.cfg, raw)
        n_train = len(raw.train_images)
        train_idx, val_idx = split_train_val(
            n_train,
            self.cfg.val_size,
            self.cfg.split_seed,
            what=f" in {raw.files['train_images']}",
            train_subset=self.cfg.train_subset,
        )
        train = features[train_idx]
        mean = train.mean(axis=0, dtype=np.float64)
        std = train.std(axis=0, dtype=np.float64)
        std[std < FEATURE_STD_FLOOR] = 1.0

        def standardize(a: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(((a - mean) / std).astype(np.float32))

        y = labels_to_tensor(raw.train_labels)
        return Splits(
            standardize(train),
            y[train_idx],
            standardize(features[val_idx]),
            y[val_idx],
            standardize(features[n_train:]),
            labels_to_tensor(raw.test_labels),
        )

    def check_details(self) -> dict[str, str]:
        return {"features": str(self.cfg.input_shape[0])}


register_dataset(HogMnistDataModule)(HogMnistConfig)
