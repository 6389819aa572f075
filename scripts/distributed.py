"""Sweeps on a Ray cluster: joining it, shipping the data to its nodes, and data-parallel trials.

* :func:`connect` joins an existing cluster (``auto``, ``HOST:PORT``, ``ray://…``), handing
  Ray the cluster's auth token when this machine holds one.
* :func:`ship_data` decodes the dataset once, on the driver, and puts the tensors in Ray's
  object store; trials on any node read them from there (:func:`trial_datamodule`), so a
  node needs no data directory and decodes nothing.
* :func:`run_ddp_trial` is the Tune trainable of ``--workers-per-trial N``: one trial whose
  training runs on N Ray Train workers with Lightning DDP (gloo on CPU, NCCL on GPU).
"""

from __future__ import annotations

import os
import socket
import tempfile
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch

from datamodules import Splits, TensorDataModule, build_datamodule
from datamodules.configs import data_key
from search_spaces.schema import SearchSpace

# Logical memory the Tune side of a data-parallel trial asks for. That actor only drives the
# Ray Train run, so it takes no CPU: asking for one would leave N workers x 1 CPU unable to
# start on an N-CPU cluster. Tune needs some resource in the bundle, and memory is one every
# node has.
DDP_DRIVER_MEMORY = 256 * 1024**2

DATA_FROM_OBJECT_STORE = "object-store"
DATA_FROM_FILES = "files"


# ---------------------------------------------------------------------------------------
# Joining a cluster
# ---------------------------------------------------------------------------------------


def _enable_token_auth_if_available() -> bool:
    """Send this machine's Ray auth token (``$RAY_AUTH_TOKEN``, ``$RAY_AUTH_TOKEN_PATH`` or
    ``~/.ray/auth_token``) when connecting, unless ``$RAY_AUTH_MODE`` says otherwise.

    A head started with ``ray start --head`` on a machine that holds a token requires it,
    but ``ray.init(address=HOST:PORT)`` only sends it for ``auto``. A cluster without auth
    ignores the token, so sending it whenever one exists is safe.
    """
    try:
        from ray._private.authentication.authentication_token_setup import (
            maybe_enable_token_auth_if_token_available,
        )
    except ImportError:  # a Ray without token auth
        return False
    return maybe_enable_token_auth_if_token_available(warn_if_disabled=False)


def connect(address: str) -> None:
    """``ray.init`` against the existing cluster at ``address``."""
    import ray

    from search_spaces.typed import ConfigError

    sends_token = _enable_token_auth_if_available()
    if address.startswith("ray://"):
        try:
            import grpc  # noqa: F401 - Ray Client's transport
        except ImportError:
            raise ConfigError(
                f"--address {address}: Ray Client needs `pip install 'ray[client]'`; or run "
                "the sweep on the cluster with `ray job submit -- hpsearch sweep … --address auto`"
            ) from None
    try:
        ray.init(address=address, log_to_driver=False)
    except ConnectionError as exc:
        hint = "" if sends_token else (
            " (if the cluster uses token auth, copy the head's ~/.ray/auth_token here "
            "or set RAY_AUTH_TOKEN)")
        raise ConfigError(f"--address {address}: {str(exc).splitlines()[0]}{hint}") from None


def storage_uri(storage: str | None) -> str | None:
    """``--storage`` as Ray needs it: URIs as given, local paths made absolute."""
    if not storage:
        return None
    if "://" in storage:
        return storage.rstrip("/")
    return str(Path(storage).expanduser().resolve())


def cluster_summary() -> dict[str, Any]:
    """Alive nodes and total CPUs/GPUs of the connected cluster."""
    import ray

    nodes = [n for n in ray.nodes() if n.get("Alive")]
    total = ray.cluster_resources()
    return {
        "nodes": len(nodes),
        "cpus": float(total.get("CPU", 0.0)),
        "gpus": float(total.get("GPU", 0.0)),
    }


def check_placement(space: SearchSpace) -> None:
    """Reject placements that cannot work before anything starts."""
    from search_spaces.typed import ConfigError

    res = space.resources
    if res.workers_per_trial > 1 and 0 < res.gpus_per_trial < 1:
        # NCCL refuses two ranks of one process group on the same GPU.
        raise ConfigError(
            f"--gpus-per-trial {res.gpus_per_trial:g} with --workers-per-trial "
            f"{res.workers_per_trial}: data-parallel workers need whole GPUs"
        )


def default_max_concurrent(space: SearchSpace, summary: Mapping[str, Any]) -> int | None:
    """How many data-parallel trials fit at once, for ``--workers-per-trial`` without
    ``--max-concurrent``: Tune would otherwise start a driver for every trial, each waiting
    for workers that cannot be placed. Computed from the cluster's size now, so on an
    autoscaling cluster that starts small, pass ``--max-concurrent``."""
    res = space.resources
    if res.workers_per_trial <= 1:
        return None
    fits = [summary["cpus"] / (res.workers_per_trial * res.cpus_per_trial)]
    if res.gpus_per_trial > 0:
        fits.append(summary["gpus"] / (res.workers_per_trial * res.gpus_per_trial))
    return max(1, int(min(fits)))


# ---------------------------------------------------------------------------------------
# Data through the object store
# ---------------------------------------------------------------------------------------


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
    """Searched parameters that change the decoded tensors (``batch_size`` does not)."""
    return [p.path for p in space.search if p.section == "data" and p.key != "batch_size"]


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
        tensors = [torch.from_numpy(shipped.arrays[name]) for name in Splits._fields]
    for name, tensor in zip(Splits._fields, tensors, strict=True):
        setattr(dm, name, tensor)
    return dm, DATA_FROM_OBJECT_STORE


# ---------------------------------------------------------------------------------------
# Data-parallel trials: Ray Train inside a Tune trial
# ---------------------------------------------------------------------------------------


def current_node_id() -> str:
    import ray

    try:
        return ray.get_runtime_context().get_node_id()
    except Exception:  # noqa: BLE001 - placement info is best effort
        return ""


def _make_ddp_reporter(params: Mapping[str, Any], cfg: Any) -> pl.Callback:
    # Built here so importing this module does not import the sweep (and Tune) eagerly.
    import ray.train

    from scripts.sweep import TuneReporter

    class DDPReporter(TuneReporter):
        """Reports to Ray Train from every worker (``ray.train.report`` is collective);
        Ray Train's ``TuneReportCallback`` forwards rank 0's metrics to the Tune trial.
        The placement columns list every worker's host, node id and device."""

        def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
            from scripts.sweep import _device_name

            mine = (socket.gethostname(), current_node_id(), _device_name())
            everyone: list[Any] = [None] * trainer.world_size
            torch.distributed.all_gather_object(everyone, mine)
            self.placement = {
                "node": ",".join(h for h, _, _ in everyone),
                "node_id": ",".join(n for _, n, _ in everyone),
                "device": ",".join(d for _, _, d in everyone),
                "workers": trainer.world_size,
            }

        def _report(self, trainer: pl.Trainer, metrics: dict[str, Any], improved: bool) -> None:
            metrics = {**metrics, **self.placement}
            # Every rank validates on the full validation split, so all agree; rank 0 decides
            # anyway, because saving a checkpoint is collective and must not diverge.
            improved = trainer.strategy.broadcast(improved, src=0)
            with tempfile.TemporaryDirectory() as tmp:
                checkpoint = None
                if improved:
                    trainer.save_checkpoint(os.path.join(tmp, "model.ckpt"))  # rank 0 writes
                    if trainer.global_rank == 0:
                        checkpoint = ray.train.Checkpoint.from_directory(tmp)
                ray.train.report(metrics, checkpoint=checkpoint)

    return DDPReporter(params, cfg)


def _ddp_worker(loop_config: dict[str, Any]) -> None:
    """One Ray Train worker of a data-parallel trial: the trial's model under Lightning DDP,
    each rank training on its shard (``TensorBatches`` shards by the trainer's rank)."""
    from ray.train.lightning import RayDDPStrategy, RayLightningEnvironment, prepare_trainer
    from ray.train.torch import get_device

    from scripts.train import EpochHistory, build_module, plain_cuda_check
    from scripts.trial_space import sampled_params, trial_config

    space: SearchSpace = loop_config["space"]
    torch.set_num_threads(max(1, int(space.resources.cpus_per_trial)))
    params = sampled_params(space, loop_config["flat"])
    cfg = trial_config(space, params)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    dm, source = trial_datamodule(cfg.data, loop_config["data_dir"], loop_config["data"])
    dm.seed = cfg.seed
    dm.setup("fit")
    use_gpu = space.resources.gpus_per_trial > 0
    if use_gpu:
        dm.to(get_device())
    module = build_module(cfg, dm)
    reporter = _make_ddp_reporter(params, cfg)
    reporter.static["data"] = source
    trainer = pl.Trainer(
        max_epochs=cfg.max_epochs,
        accelerator="gpu" if use_gpu else "cpu",
        devices="auto",
        strategy=RayDDPStrategy(),
        plugins=[RayLightningEnvironment()],
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        enable_progress_bar=False,
        num_sanity_val_steps=0,
        callbacks=[EpochHistory(space.objective.metric, space.objective.mode), reporter],
        deterministic=False,
    )
    with plain_cuda_check():  # as in train(): no NVML probe at every optimizer step
        prepare_trainer(trainer).fit(module, datamodule=dm)


def run_ddp_trial(
    config: dict[str, Any],
    space: SearchSpace,
    data_dir: str | None,
    data: DataHandle | None = None,
    train_storage: str | None = None,
) -> None:
    """The Tune trainable of a data-parallel trial: launches a ``TorchTrainer`` with
    ``workers_per_trial`` workers and waits for it; results reach Tune through Ray Train's
    ``TuneReportCallback`` (one result per epoch, rank 0's)."""
    import ray.train
    from ray import tune
    from ray.train.torch import TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    res = space.resources
    per_worker = {"CPU": res.cpus_per_trial}
    if res.gpus_per_trial > 0:
        per_worker["GPU"] = res.gpus_per_trial
    trainer = TorchTrainer(
        _ddp_worker,
        train_loop_config={"flat": dict(config), "space": space, "data_dir": data_dir,
                           "data": data},
        scaling_config=ray.train.ScalingConfig(
            num_workers=res.workers_per_trial,
            use_gpu=res.gpus_per_trial > 0,
            resources_per_worker=per_worker,
        ),
        run_config=ray.train.RunConfig(
            # The trial id keeps the name stable across Tune's retries of this trial, so a
            # retried trial finds its own Ray Train run again.
            name=f"trial-{tune.get_context().get_trial_id()}",
            storage_path=train_storage,
            callbacks=[TuneReportCallback()],
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=1),
        ),
    )
    trainer.fit()
