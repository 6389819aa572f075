"""Data-parallel trials: one Tune trial training on N Ray Train workers with Lightning DDP."""

from __future__ import annotations

import contextlib
import os
import socket
import tempfile
from typing import Any

import pytorch_lightning as pl
import ray.train
import torch

from hpsearch.scripts.tune.cluster import current_node_id
from hpsearch.scripts.tune.data import DataHandle, trial_datamodule
from hpsearch.scripts.tune.driver_watch import DriverIdentity, stop_if_driver_gone, watch_driver
from hpsearch.scripts.tune.trainable import TuneReporter, _device_name
from hpsearch.search_spaces.schema import SearchSpace

# Logical memory the Tune side of a data-parallel trial asks for. That actor only drives the
# Ray Train run, so it takes no CPU: asking for one would leave N workers x 1 CPU unable to
# start on an N-CPU cluster. Tune needs some resource in the bundle, and memory is one every
# node has.
DDP_DRIVER_MEMORY = 256 * 1024**2


class DDPReporter(TuneReporter):
    """Reports to Ray Train from every worker (``ray.train.report`` is collective);
    Ray Train's ``TuneReportCallback`` forwards rank 0's metrics to the Tune trial.
    The placement columns list every worker's host, node id and device."""

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
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
                # Rank 0 writes; the whole state (optimizer, loops), to resume from.
                trainer.save_checkpoint(os.path.join(tmp, "model.ckpt"), weights_only=False)
                if trainer.global_rank == 0:
                    checkpoint = ray.train.Checkpoint.from_directory(tmp)
            stop_if_driver_gone(self.driver)
            ray.train.report(metrics, checkpoint=checkpoint)


def _ddp_worker(loop_config: dict[str, Any]) -> None:
    """One Ray Train worker of a data-parallel trial: ``train()`` under Lightning DDP, each
    rank training on its shard of the training split.

    A retried trial (its node died, or the sweep was resumed) starts a Train run of the same
    name and storage, whose latest checkpoint ``ray.train.get_checkpoint()`` hands back: the
    workers continue from it (its best epoch so far) instead of from the first epoch."""
    from ray.train.lightning import RayDDPStrategy, RayLightningEnvironment

    from hpsearch.scripts.train import Distributed, EpochHistory, train
    from hpsearch.search_spaces.trials import sampled_params, trial_config

    space: SearchSpace = loop_config["space"]
    watch_driver(loop_config["driver"])
    torch.set_num_threads(max(1, int(space.resources.cpus_per_trial)))
    params = sampled_params(space, loop_config["flat"])
    cfg = trial_config(space, params)
    dm, source = trial_datamodule(cfg.data, loop_config["data_dir"], loop_config["data"])
    history = EpochHistory(space.objective.metric, space.objective.mode)
    reporter = DDPReporter(params, cfg, history, driver=loop_config["driver"])
    reporter.static["data"] = source
    checkpoint = ray.train.get_checkpoint()
    with checkpoint.as_directory() if checkpoint else contextlib.nullcontext() as ckpt_dir:
        train(
            cfg,
            data_dir=loop_config["data_dir"],
            datamodule=dm,
            history=history,
            callbacks=[reporter],
            accelerator="gpu" if space.resources.gpus_per_trial > 0 else "cpu",
            distributed=Distributed(RayDDPStrategy(), [RayLightningEnvironment()]),
            ckpt_path=os.path.join(ckpt_dir, "model.ckpt") if ckpt_dir else None,
        )


def run_ddp_trial(
    config: dict[str, Any],
    space: SearchSpace,
    data_dir: str | None,
    data: DataHandle | None = None,
    train_storage: str | None = None,
    driver: DriverIdentity | None = None,
) -> None:
    """The Tune trainable of a data-parallel trial: launches a ``TorchTrainer`` with
    ``workers_per_trial`` workers and waits for it; results reach Tune through Ray Train's
    ``TuneReportCallback`` (one result per epoch, rank 0's). It and its workers end with
    ``driver``, the sweep's driver."""
    watch_driver(driver)
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
                           "data": data, "driver": driver},
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
