"""The one place optimizers and learning-rate schedulers are built from an :class:`OptimConfig`."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
from torch.optim import Optimizer
from torch.optim.lr_scheduler import CosineAnnealingLR, OneCycleLR

from .configs import OptimConfig


def build_optimizer(params: Iterable[Any], cfg: OptimConfig) -> Optimizer:
    """Optimizer named by ``cfg.name`` over ``params`` (tensors or param-group dicts)."""
    eps = cfg.resolved_eps
    if cfg.name == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, eps=eps, weight_decay=cfg.weight_decay)
    if cfg.name == "adamw":
        # Pass weight_decay explicitly: torch's AdamW default (1e-2) would silently differ from
        # the config's default of 0.
        return torch.optim.AdamW(params, lr=cfg.lr, eps=eps, weight_decay=cfg.weight_decay)
    if cfg.name == "rmsprop":
        return torch.optim.RMSprop(
            params,
            lr=cfg.lr,
            alpha=cfg.rho,
            eps=eps,
            momentum=cfg.momentum,
            weight_decay=cfg.weight_decay,
        )
    if cfg.name == "sgd":
        return torch.optim.SGD(
            params,
            lr=cfg.lr,
            momentum=cfg.momentum,
            nesterov=cfg.nesterov,
            weight_decay=cfg.weight_decay,
        )
    # OptimConfig validates the name, so this only trips if a name is added there but not here.
    raise ValueError(f"optimizer.name: no factory for optimizer {cfg.name!r}")


def build_scheduler(
    optimizer: Optimizer,
    cfg: OptimConfig,
    *,
    max_epochs: int | None = None,
    total_steps: float | None = None,
) -> dict[str, Any] | None:
    """Lightning ``lr_scheduler`` config (``scheduler`` + ``interval``) for ``cfg.schedule``,
    or None for ``"none"``.

    ``cosine`` needs ``max_epochs`` (stepped once per epoch); ``onecycle`` needs ``total_steps``,
    the number of optimizer steps in the whole run (stepped once per batch).
    """
    if cfg.schedule == "none":
        return None
    if cfg.schedule == "cosine":
        if not max_epochs or max_epochs < 1:
            raise ValueError(
                f"optimizer.schedule: 'cosine' needs a positive max_epochs, got {max_epochs}"
            )
        return {"scheduler": CosineAnnealingLR(optimizer, T_max=max_epochs), "interval": "epoch"}
    if cfg.schedule == "onecycle":
        if total_steps is None or not math.isfinite(total_steps) or total_steps < 1:
            raise ValueError(
                "optimizer.schedule: 'onecycle' needs a finite number of training steps "
                f"(set max_epochs or max_steps), got {total_steps}"
            )
        # cycle_momentum=False keeps the configured momentum/betas: cycling would override them
        # and turn plain SGD (momentum 0) into momentum SGD.
        scheduler = OneCycleLR(
            optimizer, max_lr=cfg.lr, total_steps=int(total_steps), cycle_momentum=False
        )
        return {"scheduler": scheduler, "interval": "step"}
    raise ValueError(f"optimizer.schedule: no factory for schedule {cfg.schedule!r}")
