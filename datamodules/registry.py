"""Dataset names -> (config class, datamodule class), and building datamodules from configs."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from .base import TensorDataModule
from .configs import DATA_CONFIG, DataConfig, HogMnistConfig, IdxConfig, PneumoniaConfig
from .hog import HogMnistDataModule
from .idx import IdxDataModule
from .pneumonia import PneumoniaDataModule

DATASETS: dict[str, tuple[type[Any], type[TensorDataModule]]] = {
    "mnist": (IdxConfig, IdxDataModule),
    "fashion_mnist": (IdxConfig, IdxDataModule),
    "hog_mnist": (HogMnistConfig, HogMnistDataModule),
    "pneumonia": (PneumoniaConfig, PneumoniaDataModule),
}


def _entry(name: str) -> tuple[type[Any], type[TensorDataModule]]:
    try:
        return DATASETS[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"name: unknown dataset {name!r} (known: {', '.join(DATASETS)})"
        ) from None


def config_class(name: str) -> type[Any]:
    """The config class of dataset ``name``; ValueError for an unknown name."""
    return _entry(name)[0]


def default_config(name: str) -> DataConfig:
    """Config of dataset ``name`` with every other field at its default."""
    return config_class(name)(name=name)


def data_config_from_dict(d: Mapping[str, Any]) -> DataConfig:
    """Strictly parse a plain mapping (YAML, JSON, checkpoint) whose ``name`` picks the dataset;
    raises pydantic's ``ValidationError``."""
    return DATA_CONFIG.validate_python(d)


def build_datamodule(
    cfg: DataConfig,
    data_dir: str | Path | None = None,
    download: bool = False,
    device: str | torch.device | None = None,
    seed: int = 0,
) -> TensorDataModule:
    """Datamodule for ``cfg`` (nothing is loaded until ``setup()``)."""
    return _entry(cfg.name)[1](cfg, data_dir=data_dir, download=download, device=device, seed=seed)
