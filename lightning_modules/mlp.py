"""Multilayer perceptron (family ``"mlp"``): ``hidden`` widths, each Linear [+BN] + activation
[+dropout]; flattens its input, so images and feature vectors both work."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import field_validator
from torch import Tensor, nn

from .blocks import dense_head
from .configs import Dropout, ModelConfig, Widths, check_activation
from .registry import register_family


class MLPConfig(ModelConfig):
    family: Literal["mlp"] = "mlp"
    hidden: Widths = (300,)
    activation: str = "relu"
    dropout: Dropout = 0.0
    batch_norm: bool = False

    _activation = field_validator("activation")(check_activation)


class MLP(nn.Module):
    def __init__(self, cfg: MLPConfig, input_shape: tuple[int, ...], num_outputs: int) -> None:
        super().__init__()
        self.layers = dense_head(
            math.prod(input_shape),
            cfg.hidden,
            num_outputs,
            activation=cfg.activation,
            dropout=cfg.dropout,
            batch_norm=cfg.batch_norm,
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)


@register_family("mlp", MLPConfig)
def build_mlp(cfg: MLPConfig, input_shape: tuple[int, ...], num_outputs: int) -> MLP:
    return MLP(cfg, input_shape, num_outputs)
