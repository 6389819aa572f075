"""Datasets by name: each dataset's file decorates its config class with
``@register_dataset(ItsDataModule)``, and the package imports every module of its folder, so a
new dataset is one file (plus a search space). The config union, ``hpsearch data check`` and
``hpsearch data download`` are built from here."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypeVar, Union, get_args

import torch
from pydantic import Field, TypeAdapter

from .base import TensorDataModule
from .configs import DataConfig

C = TypeVar("C", bound=type[DataConfig])
# data_dir -> (the folder the loader reads, whether anything was fetched)
Downloader = Callable[[str | Path | None], tuple[Path, bool]]


@dataclass(frozen=True)
class Dataset:
    name: str
    config: type[DataConfig]
    datamodule: type[TensorDataModule]
    download: Downloader | None = None


DATASETS: dict[str, Dataset] = {}


def register_dataset(datamodule: type[TensorDataModule], *, download: Downloader | None = None
                     ) -> Callable[[C], C]:
    """Register the decorated config class (its ``name`` field is ``Literal[NAME]``) as the
    dataset NAME, loaded by ``datamodule``; ``download`` fetches its files, where it can."""

    def register(config: C) -> C:
        (name,) = get_args(config.model_fields["name"].annotation)
        if name in DATASETS:
            raise ValueError(f"dataset {name!r} is registered twice (by {config.__module__} "
                             f"and {DATASETS[name].config.__module__})")
        DATASETS[name] = Dataset(name, config, datamodule, download)
        return config

    return register


def _entry(name: str) -> Dataset:
    try:
        return DATASETS[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"name: unknown dataset {name!r} (known: {', '.join(DATASETS)})"
        ) from None


def config_class(name: str) -> type[DataConfig]:
    """The config class of dataset ``name``; ValueError for an unknown name."""
    return _entry(name).config


def default_config(name: str) -> DataConfig:
    """Config of dataset ``name`` with every other field at its default."""
    return config_class(name)(name=name)


def data_config_union() -> Any:
    """The registered datasets' configs as one discriminated union (``name`` picks)."""
    classes = tuple(d.config for d in DATASETS.values())
    return Annotated[Union[classes], Field(discriminator="name")]  # noqa: UP007


@functools.cache
def _data_adapter(names: tuple[str, ...]) -> TypeAdapter[Any]:
    return TypeAdapter(data_config_union())


def data_config_from_dict(d: Mapping[str, Any]) -> DataConfig:
    """Strictly parse a plain mapping (YAML, JSON, checkpoint) whose ``name`` picks the dataset;
    raises pydantic's ``ValidationError``."""
    return _data_adapter(tuple(DATASETS)).validate_python(d)


def build_datamodule(
    cfg: DataConfig,
    data_dir: str | Path | None = None,
    download: bool = False,
    device: str | torch.device | None = None,
    seed: int = 0,
) -> TensorDataModule:
    """Datamodule for ``cfg`` (nothing is loaded until ``setup()``)."""
    return _entry(cfg.name).datamodule(cfg, data_dir=data_dir, download=download, device=device,
                                       seed=seed)
