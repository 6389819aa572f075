"""The family registry: a model config's ``family`` picks the function that builds its
backbone."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeAlias

from torch import nn

from .cnn import build_cnn
from .configs import ModelConfig
from .mlp import build_mlp

BackboneBuilder: TypeAlias = Callable[[Any, tuple[int, ...], int], nn.Module]

FAMILIES: dict[str, BackboneBuilder] = {
    "mlp": build_mlp,
    "cnn": build_cnn,
    "binary_cnn": build_cnn,
}


def build_backbone(
    model_cfg: ModelConfig, input_shape: Sequence[int], num_classes: int
) -> nn.Module:
    """Build the backbone of an already validated ``model_cfg`` (the data-fit check runs once,
    where the training config is built).

    The backbone returns raw logits: ``(N, num_classes)``, or ``(N, 1)`` for binary families.
    """
    return FAMILIES[model_cfg.family](model_cfg, tuple(input_shape), num_classes)
