"""The dataset decoded once in the driver and shipped to the trials through Ray's object store."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from hpsearch.datamodules import Splits, TensorDataModule, build_datamodule
from hpsearch.datamodules.configs import BATCH_FIELDS, data_key
from hpsearch.scripts.tune import internals
from hpsearch.search_spaces.schema import SearchSpace

DATA_FROM_OBJECT_STORE = "object-store"


DATA_FROM_FILES = "files"


@dataclass(frozen=True)
class ShippedData:
    """A decoded dataset: the six split tensors as numpy arrays (Ray hands numpy arrays out
    of the object store without copying)."""

    arrays: dict[str, np.ndarray]

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.arrays.values())


@dataclass(frozen=True)
class DataHandle:
    """What trials receive: a reference to the :class:`ShippedData` in the object store and
    the data config fields it was decoded with (``key``), checked without fetching it.

    Passing the reference (not the data) lets a data-parallel trial forward it to its
    workers, which then read the one stored copy instead of a re-serialized one."""

    ref: Any  # ray.ObjectRef[ShippedData]
    key: tuple[tuple[str, Any], ...]
    nbytes: int

    def get(self) -> ShippedData:
        import ray

        return ray.get(self.ref)


def searched_data_fields(space: SearchSpace) -> list[str]:
    """Searched parameters that change the decoded tensors (``batch_size`` and ``augment``
    do not)."""
    return [p.path for p in space.search if p.section == "data" and p.key not in BATCH_FIELDS]


def load_data(space: SearchSpace, data_dir: str) -> TensorDataModule:
    """Load the space's dataset once in the driver, so a missing or corrupt file is one clear
    error before any experiment folder or trial exists; shipped to the trials from here."""
    from hpsearch.datamodules import build_datamodule, data_config_from_dict

    dm = build_datamodule(data_config_from_dict(space.fixed("data")), data_dir)
    with internals.without_huge_pages():  # decoded to be copied to the object store
        dm.setup("fit")
    return dm


def ship_data(dm: TensorDataModule) -> DataHandle:
    """Put the decoded tensors of ``dm`` (set up here, in the driver) in the object store.

    Trials whose drawn values change the data (a searched ``data.val_size``, say) get other
    tensors than the shipped ones and read their files from the data directory instead,
    which must then exist on every node (see :func:`trial_datamodule`).
    """
    import ray

    dm.setup("fit")
    arrays = {name: getattr(dm, name).numpy() for name in Splits._fields}
    shipped = ShippedData(arrays=arrays)
    return DataHandle(ref=ray.put(shipped), key=data_key(dm.cfg), nbytes=shipped.nbytes)


def trial_datamodule(
    cfg_data: Any, data_dir: str | None, data: DataHandle | None
) -> tuple[TensorDataModule, str]:
    """The datamodule of one trial and where its tensors come from (``object-store`` or
    ``files``): loaded from the shipped data when it matches ``cfg_data``; otherwise left to
    read its files at ``setup``."""
    dm = build_datamodule(cfg_data, data_dir)
    if data is None or data.key != data_key(cfg_data):
        return dm, DATA_FROM_FILES
    shipped = data.get()
    with warnings.catch_warnings():
        # Object-store arrays are read-only; the datamodules never write to their tensors
        # (their per-process cache already relies on that), so sharing them is safe.
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        splits = Splits(*(torch.from_numpy(shipped.arrays[name]) for name in Splits._fields))
    return type(dm).from_splits(cfg_data, splits, data_dir=data_dir), DATA_FROM_OBJECT_STORE
