"""Datasets as in-memory tensors for Lightning: MNIST, Fashion-MNIST, HOG-MNIST, pneumonia X-rays.

Importing this package costs numpy, torch and pytorch_lightning only; PIL and scikit-learn
are imported when a pneumonia folder is decoded. Nothing here imports ray or optuna, so the
data layer works (and is tested) without the sweep machinery.

Every module of this folder is imported here, so a dataset's ``@register_dataset`` runs: a new
dataset is one file.
"""

import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

from .base import Splits, TensorDataModule, clear_cache  # noqa: E402
from .batches import TensorBatches  # noqa: E402
from .configs import DataConfig  # noqa: E402
from .errors import DataError  # noqa: E402
from .hog import HogMnistConfig, HogMnistDataModule, hog_feature_size, hog_features  # noqa: E402
from .idx import FashionMnistConfig, IdxConfig, IdxDataModule, MnistConfig, read_idx  # noqa: E402
from .paths import CACHE_DIR_ENV, DATA_DIR_ENV, resolve_data_dir  # noqa: E402
from .pneumonia import PneumoniaConfig, PneumoniaDataModule  # noqa: E402
from .registry import (  # noqa: E402
    DATASETS,
    build_datamodule,
    config_class,
    data_config_from_dict,
    default_config,
    register_dataset,
)

__all__ = [
    "CACHE_DIR_ENV",
    "DATASETS",
    "DATA_DIR_ENV",
    "DataConfig",
    "DataError",
    "FashionMnistConfig",
    "HogMnistConfig",
    "HogMnistDataModule",
    "IdxConfig",
    "IdxDataModule",
    "MnistConfig",
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
    "register_dataset",
    "resolve_data_dir",
]
