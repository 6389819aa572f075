"""The dataset decoded once in the driver and shipped to the trials through Ray's object store."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from hpsearch.datamodules import Splits, TensorDataModule, build_datamodule
from hpsearch.datamodules.configs import BATCH_FIELDS, data_key
from hpsearch.datamodules.errors import DataError
from hpsearch.scripts.tune import internals
from hpsearch.search_spaces.schema import SearchSpace, base_sections
from hpsearch.search_spaces.targets import UserData, names_target

DATA_FROM_OBJECT_STORE = "object-store"


DATA_FROM_FILES = "files"
DATA_FROM_USER = "user datamodule"


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


def load_data(space: SearchSpace, data_dir: str) -> TensorDataModule | None:
    """Load the space's dataset once in the driver, so a missing or corrupt file is one clear
    error before any experiment folder or trial exists; shipped to the trials from here.
    None for the user's own datamodule (see :func:`prepare_on_every_node`)."""
    from hpsearch.datamodules import build_datamodule, data_config_from_dict

    if names_target(space.data):
        return None
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


def _prepare_data(data: UserData) -> None:
    data.build().prepare_data()


def prepare_on_every_node(space: SearchSpace) -> None:
    """Call the user's own datamodule's ``prepare_data`` once on each node of the cluster,
    before any trial: Lightning's contract (download once per node), while the trials only
    call ``setup``. A node that joins later is not prepared."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    data = UserData.model_validate(base_sections(space)["data"])
    task = ray.remote(num_cpus=0, max_retries=0)(_prepare_data)
    nodes = [node["NodeID"] for node in ray.nodes() if node["Alive"]]
    refs = [task.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False))
            .remote(data) for node in nodes]
    try:
        ray.get(refs)
    except ray.exceptions.RayTaskError as exc:
        cause = exc.cause if exc.cause is not None else exc
        raise DataError(f"data.target: {data.target}.prepare_data failed: "
                        f"{type(cause).__name__}: {str(cause).strip().splitlines()[-1]}") from None


def trial_datamodule(
    cfg_data: Any, data_dir: str | None, data: DataHandle | None
) -> tuple[Any, str]:
    """The datamodule of one trial and where its tensors come from (``object-store`` or
    ``files``): loaded from the shipped data when it matches ``cfg_data``; otherwise left to
    read its files at ``setup``. The user's own datamodule is built from its arguments (and
    was prepared on this node by the driver)."""
    if isinstance(cfg_data, UserData):
        return cfg_data.build(), DATA_FROM_USER
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
