"""The one place optimizers and learning-rate schedulers are built from an :class:`OptimConfig`."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
from torch.optim import Optimizer
from torch.optim.lr_scheduler import CosineAnnealingLR, LambdaLR, OneCycleLR

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


# torch's OneCycleLR defaults, which the cycles of a one-cycle schedule follow.
ONECYCLE_PCT_START, ONECYCLE_DIV, ONECYCLE_FINAL_DIV = 0.3, 25.0, 1e4


class Cycles:
    """The learning-rate factor of a schedule run as cycles that end at ``ends`` (in the
    scheduler's steps) and at ``total``: each cycle a whole cosine decay, or a whole one
    cycle (warm-up to the peak, then annealing), as the schedule would run over the whole
    run. A callable object rather than a closure, so that the scheduler's state pickles."""

    def __init__(self, shape: str, ends: tuple[int, ...], total: int) -> None:
        self.shape = shape
        self.bounds = (0, *(e for e in ends if 0 < e < total), total)

    def __call__(self, step: int) -> float:
        i = max(j for j, b in enumerate(self.bounds[:-1]) if b <= min(step, self.bounds[-1] - 1))
        start, end = self.bounds[i], self.bounds[i + 1]
        if self.shape == "cosine":
            progress = min((step - start) / (end - start), 1.0)
            return 0.5 * (1.0 + math.cos(math.pi * progress))
        return _one_cycle(min(step - start, end - start - 1), end - start)


def _annealing_cos(start: float, end: float, pct: float) -> float:
    return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)


def _one_cycle(step: int, total: int) -> float:
    """torch's ``OneCycleLR`` factor (of ``max_lr``) at ``step`` of ``total``, its defaults."""
    low = 1.0 / ONECYCLE_DIV
    peak_at = ONECYCLE_PCT_START * total - 1
    if step <= peak_at:
        return _annealing_cos(low, 1.0, step / peak_at if peak_at > 0 else 1.0)
    return _annealing_cos(1.0, low / ONECYCLE_FINAL_DIV, (step - peak_at) / (total - 1 - peak_at))


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
    if cfg.cycle_ends:
        return _cycles(optimizer, cfg, max_epochs, total_steps)
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


def _cycles(optimizer: Optimizer, cfg: OptimConfig, max_epochs: int | None,
            total_steps: float | None) -> dict[str, Any]:
    """``cfg.schedule`` as cycles ending at ``cfg.cycle_ends``: cosine per epoch, one-cycle
    per optimizer step (``total_steps`` over ``max_epochs`` epochs)."""
    if not max_epochs or max_epochs < 1:
        raise ValueError(f"optimizer.cycle_ends: needs a positive max_epochs, got {max_epochs}")
    if cfg.schedule == "cosine":
        return {"scheduler": LambdaLR(optimizer, Cycles("cosine", cfg.cycle_ends, max_epochs)),
                "interval": "epoch"}
    if total_steps is None or not math.isfinite(total_steps) or total_steps < max_epochs:
        raise ValueError("optimizer.schedule: 'onecycle' needs a finite number of training "
                         f"steps (set max_epochs or max_steps), got {total_steps}")
    per_epoch = int(total_steps) // max_epochs
    ends = tuple(e * per_epoch for e in cfg.cycle_ends)
    return {"scheduler": LambdaLR(optimizer, Cycles("onecycle", ends, per_epoch * max_epochs)),
            "interval": "step"}
