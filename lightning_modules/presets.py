"""Named reference models from the lab, with the Keras parameter counts they must reproduce.

A preset fixes the dataset, model, optimizer and training length, so a lab result can be rerun
(``preset.module()`` plus a datamodule for ``preset.dataset``) and used as a search baseline.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .classifier import ClassifierModule
from .cnn import CNNConfig
from .configs import ModelConfig, OptimConfig
from .mlp import MLPConfig

DATASETS: tuple[str, ...] = ("mnist", "fashion_mnist", "hog_mnist", "pneumonia")

MNIST_SHAPE = (1, 28, 28)
# HOG on 28x28 with 4x4-pixel cells and one cell per block: 7 * 7 cells * 8 orientations.
HOG_SHAPE = (392,)
CHEST_XRAY_SHAPE = (1, 128, 128)

# The MNIST labs trained with Keras' RMSprop and Adam at their defaults.
RMSPROP = OptimConfig(name="rmsprop", lr=1e-3, rho=0.9)
ADAM = OptimConfig(name="adam", lr=1e-3)


@dataclass(frozen=True)
class Preset:
    """A lab model: what to train, on what, for how long, and its Keras parameter count."""

    name: str
    description: str
    dataset: str
    model: ModelConfig
    optim: OptimConfig
    epochs: int
    batch_size: int
    expected_params: int
    input_shape: tuple[int, ...]
    num_classes: int = 10
    # Extra datamodule settings (e.g. HOG parameters, image size) beyond the dataset name.
    data: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.dataset not in DATASETS:
            raise ValueError(
                f"preset {self.name}: unknown dataset {self.dataset!r} "
                f"(known: {', '.join(DATASETS)})"
            )
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(f"preset {self.name}: epochs and batch_size must be positive")
        # Whether the model fits the data is checked once, where a preset becomes a training
        # config (search_spaces.train_config.preset_sections -> TrainConfig).

    def module(self, pos_weight: float | None = None) -> ClassifierModule:
        """A fresh :class:`ClassifierModule` for this preset."""
        return ClassifierModule(
            self.model,
            self.optim,
            self.input_shape,
            self.num_classes,
            pos_weight=pos_weight,
            max_epochs=self.epochs,
        )


_PRESETS = (
    Preset(
        name="mlp_784_300_10",
        description="MNIST MLP, one hidden layer of 300 ReLU units, RMSprop",
        dataset="mnist",
        model=MLPConfig(hidden=(300,)),
        optim=RMSPROP,
        epochs=10,
        batch_size=128,
        expected_params=238_510,
        input_shape=MNIST_SHAPE,
    ),
    Preset(
        name="mlp_784_1000_10_dropout",
        description="MNIST MLP, 1000 ReLU units with dropout 0.2, RMSprop",
        dataset="mnist",
        model=MLPConfig(hidden=(1000,), dropout=0.2),
        optim=RMSPROP,
        epochs=10,
        batch_size=128,
        expected_params=795_010,
        input_shape=MNIST_SHAPE,
    ),
    Preset(
        name="mlp_784_512_256_128_10",
        description="MNIST MLP, hidden layers 512-256-128, Adam",
        dataset="mnist",
        model=MLPConfig(hidden=(512, 256, 128)),
        optim=ADAM,
        epochs=10,
        batch_size=128,
        expected_params=567_434,
        input_shape=MNIST_SHAPE,
    ),
    Preset(
        name="hog_mlp_392_128_10",
        description="MLP on HOG features of MNIST (8 orientations, 4x4-pixel cells), Adam",
        dataset="hog_mnist",
        data={"orientations": 8, "pixels_per_cell": 4},
        model=MLPConfig(hidden=(128,)),
        optim=ADAM,
        epochs=10,
        batch_size=128,
        expected_params=51_594,
        input_shape=HOG_SHAPE,
    ),
    Preset(
        name="cnn_7465",
        description="Small MNIST CNN: 9@5x5, 9@5x5, 16@3x3 conv blocks, dense 25, Adam",
        dataset="mnist",
        model=CNNConfig(filters=(9, 9, 16), kernel_size=(5, 5, 3), dense=(25,)),
        optim=ADAM,
        epochs=10,
        batch_size=128,
        expected_params=7_465,
        input_shape=MNIST_SHAPE,
    ),
    Preset(
        name="cnn_121757",
        description="MNIST CNN: 32, 64, 128 @3x3 conv blocks, dense 25 with dropout 0.3, RMSprop",
        dataset="mnist",
        model=CNNConfig(filters=(32, 64, 128), kernel_size=3, dense=(25,), dropout=0.3),
        optim=RMSPROP,
        epochs=10,
        batch_size=128,
        expected_params=121_757,
        input_shape=MNIST_SHAPE,
    ),
    Preset(
        name="fashion_cnn_177600",
        description="Fashion-MNIST CNN: one 9@3x3 conv block, dense 100, Adam",
        dataset="fashion_mnist",
        model=CNNConfig(filters=(9,), kernel_size=3, dense=(100,)),
        optim=ADAM,
        epochs=10,
        batch_size=128,
        expected_params=177_600,
        input_shape=MNIST_SHAPE,
    ),
    Preset(
        name="chest_xray_cnn_164353",
        description=(
            "Chest X-ray pneumonia CNN on 128x128 grayscale: 8-16-32-64-128 @3x3 conv blocks, "
            "dense 32 and 16, one sigmoid logit, Adam + BCE"
        ),
        dataset="pneumonia",
        data={"image_size": 128},
        model=CNNConfig(
            filters=(8, 16, 32, 64, 128), kernel_size=3, dense=(32, 16), threshold=0.5
        ),
        optim=ADAM,
        epochs=15,
        batch_size=32,
        expected_params=164_353,
        input_shape=CHEST_XRAY_SHAPE,
        num_classes=2,
    ),
)

PRESETS: dict[str, Preset] = {p.name: p for p in _PRESETS}


def get_preset(name: str) -> Preset:
    """The preset called ``name``; unknown names raise ``ValueError`` listing the known."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r} (known: {', '.join(PRESETS)})") from None
