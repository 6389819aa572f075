"""A small ResNet (family ``"resnet"``): a stem, then ``depth`` stages of ``blocks_per_stage``
basic residual blocks (two 3x3 convs with batch norm, and a shortcut), each stage after the
first halving the resolution and doubling the width; global average pooling, dropout and the
classifier layer. ``stem: basic`` keeps the input size (MNIST's 28 px); ``strided`` is
ResNet's 7x7 stride-2 conv and 3x3 max-pool, a quarter of the size (X-rays at 128 px)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field
from torch import Tensor, nn

from .configs import Dropout, ModelConfig, require_halvings, require_images
from .registry import register_family


class ResNetConfig(ModelConfig):
    family: Literal["resnet"] = "resnet"
    stem: Literal["basic", "strided"] = "basic"
    width: Annotated[int, Field(ge=4, le=512)] = 16
    depth: Annotated[int, Field(ge=1, le=6)] = 3
    blocks_per_stage: Annotated[int, Field(ge=1, le=8)] = 2
    dropout: Dropout = 0.0

    def check_data(self, input_shape: tuple[int, ...], where: str) -> None:
        require_images(self, input_shape, where)
        halvings = self.depth - 1 + (2 if self.stem == "strided" else 0)
        require_halvings(input_shape, halvings, f"{where}.depth",
                         f"{self.depth} stages after a {self.stem} stem need")


class BasicBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False),
            nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False),
            nn.BatchNorm2d(out_channels))
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                nn.BatchNorm2d(out_channels))
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.relu(self.body(x) + self.shortcut(x))


class ResNet(nn.Module):
    def __init__(self, cfg: ResNetConfig, input_shape: tuple[int, ...], num_outputs: int) -> None:
        super().__init__()
        channels, width = input_shape[0], cfg.width
        if cfg.stem == "strided":
            stem = [nn.Conv2d(channels, width, 7, 2, 3, bias=False), nn.BatchNorm2d(width),
                    nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1)]
        else:
            stem = [nn.Conv2d(channels, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width),
                    nn.ReLU(inplace=True)]
        self.stem = nn.Sequential(*stem)
        blocks: list[nn.Module] = []
        in_channels = width
        for stage in range(cfg.depth):
            out_channels = width * 2**stage
            for i in range(cfg.blocks_per_stage):
                stride = 2 if stage > 0 and i == 0 else 1
                blocks.append(BasicBlock(in_channels, out_channels, stride))
                in_channels = out_channels
        self.stages = nn.Sequential(*blocks)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(cfg.dropout),
                                  nn.Linear(in_channels, num_outputs))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.stages(self.stem(x)))


@register_family("resnet", ResNetConfig)
def build_resnet(cfg: ResNetConfig, input_shape: tuple[int, ...], num_outputs: int) -> ResNet:
    return ResNet(cfg, input_shape, num_outputs)
