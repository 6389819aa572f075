"""Convolutional backbone for families ``"cnn"`` (softmax over classes) and ``"binary_cnn"``
(one logit for the positive class)."""

from __future__ import annotations

from collections import OrderedDict

from torch import Tensor, nn

from .blocks import conv_block, dense_head
from .configs import ConvNetConfig


class ConvNet(nn.Module):
    """``len(filters)`` conv blocks (each halving height and width), then a dense head."""

    def __init__(self, cfg: ConvNetConfig, input_shape: tuple[int, ...], num_outputs: int) -> None:
        super().__init__()
        channels, height, width = input_shape
        blocks: OrderedDict[str, nn.Module] = OrderedDict()
        sizes = zip(cfg.filters, cfg.kernel_sizes, strict=True)
        for i, (out_channels, kernel_size) in enumerate(sizes, start=1):
            blocks[f"block{i}"] = conv_block(
                channels, out_channels, kernel_size, cfg.activation, cfg.batch_norm
            )
            channels = out_channels
            height, width = height // 2, width // 2
        self.features = nn.Sequential(blocks)
        self.classifier = dense_head(
            channels * height * width,
            cfg.dense,
            num_outputs,
            activation=cfg.activation,
            dropout=cfg.dropout,
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))


def build_cnn(cfg: ConvNetConfig, input_shape: tuple[int, ...], num_classes: int) -> ConvNet:
    """Backbone builder for ``"cnn"`` and ``"binary_cnn"``; the binary head has one output."""
    return ConvNet(cfg, input_shape, 1 if cfg.binary else num_classes)
