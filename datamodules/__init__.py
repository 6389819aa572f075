"""Datasets as in-memory tensors for Lightning: MNIST, Fashion-MNIST, HOG-MNIST, pneumonia X-rays.

Importing this package costs numpy, torch and pytorch_lightning only; PIL and scikit-learn
are imported when a pneumonia folder is decoded. Nothing here imports ray or optuna, so the
data layer works (and is tested) without the sweep machinery.
"""

from .base import Splits, TensorDataModule, clear_cache
from .batches import TensorBatches
from .configs import DataConfig, HogMnistConfig, IdxConfig, PneumoniaConfig
from .errors import DataError
from .hog import HogMnistDataModule, hog_feature_size, hog_features
from .idx import IdxDataModule, read_idx
from .paths import CACHE_DIR_ENV, DATA_DIR_ENV, resolve_data_dir
from .pneumonia import PneumoniaDataModule
from .registry import (
    DATASETS,
    build_datamodule,
    config_class,
    data_config_from_dict,
    default_config,
)

__all__ = [
    "CACHE_DIR_ENV",
    "DATASETS",
    "DATA_DIR_ENV",
    "DataConfig",
    "DataError",
    "HogMnistConfig",
    "HogMnistDataModule",
    "IdxConfig",
    "IdxDataModule",
    "PneumoniaConfig",
    "PneumoniaDataModule",
    "Splits",
    "TensorBatches",
    "TensorDataModule",
    "build_datamodule",
    "clear_cache",
    "config_class",
    "data_config_from_dict",
    "default_config",
    "hog_feature_size",
    "hog_features",
    "read_idx",
    "resolve_data_dir",
]
