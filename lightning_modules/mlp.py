"""Multilayer perceptron backbone (family ``"mlp"``)."""

from __future__ import annotations

import math

from torch import Tensor, nn

from .blocks import dense_head
from .configs import MLPConfig


class MLP(nn.Module):
    """Fully connected classifier; flattens its input so images and feature vectors both work."""

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


def build_mlp(cfg: MLPConfig, input_shape: tuple[int, ...], num_classes: int) -> MLP:
    """Backbone builder registered for ``"mlp"``: one logit per class."""
    return MLP(cfg, input_shape, num_classes)
