"""Convolutional network (family ``"cnn"``): conv blocks (conv [+BN] + activation + 2x2
max-pool), then ``dense`` hidden layers (activation + dropout), then the classifier layer, as
in the lab's Keras CNNs. ``binary_cnn`` (from before two classes made the head binary for every
family) is read as ``cnn``."""

from __future__ import annotations

from collections import OrderedDict
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator
from torch import Tensor, nn

from .blocks import conv_block, dense_head
from .configs import (
    Dropout,
    KernelSize,
    ModelConfig,
    Widths,
    check_activation,
    require_halvings,
    require_images,
)
from .registry import register_family


class CNNConfig(ModelConfig):
    """``kernel_size`` is one size for every block or one per block."""

    family: Literal["cnn"] = "cnn"
    filters: Annotated[Widths, Field(min_length=1)] = (32, 64)
    kernel_size: KernelSize = 3
    activation: str = "relu"
    batch_norm: bool = False
    dense: Widths = (128,)
    dropout: Dropout = 0.0

    _activation = field_validator("activation")(check_activation)

    @model_validator(mode="after")
    def _one_kernel_size_per_block(self) -> CNNConfig:
        if isinstance(self.kernel_size, tuple) and len(self.kernel_size) != len(self.filters):
            raise ValueError(
                f"kernel_size: has {len(self.kernel_size)} entries but filters has "
                f"{len(self.filters)}; give one kernel size per conv block or a single int"
            )
        return self

    @property
    def kernel_sizes(self) -> tuple[int, ...]:
        """One kernel size per conv block."""
        if isinstance(self.kernel_size, int):
            return (self.kernel_size,) * len(self.filters)
        return self.kernel_size

    def check_data(self, input_shape: tuple[int, ...], where: str) -> None:
        require_images(self, input_shape, where)
        blocks = len(self.filters)
        what = "1 conv block with 2x2 pooling needs" if blocks == 1 else \
            f"{blocks} conv blocks with 2x2 pooling need"
        require_halvings(input_shape, blocks, f"{where}.filters", what)


class ConvNet(nn.Module):
    """``len(filters)`` conv blocks (each halving height and width), then a dense head."""

    def __init__(self, cfg: CNNConfig, input_shape: tuple[int, ...], num_outputs: int) -> None:
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


@register_family("cnn", CNNConfig, aliases=("binary_cnn",))
def build_cnn(cfg: CNNConfig, input_shape: tuple[int, ...], num_outputs: int) -> ConvNet:
    return ConvNet(cfg, input_shape, num_outputs)
