"""Layer blocks shared by every backbone family.

Each family module (``mlp.py``, ``cnn.py``) assembles these blocks; nothing here knows about
configs, so the blocks can be reused by any future family without import cycles.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from torch import nn

# Names are what configs and search spaces write; values are the torch classes they build.
ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "leaky_relu": nn.LeakyReLU,
}


def make_activation(name: str) -> nn.Module:
    """A fresh activation module for ``name`` (one of :data:`ACTIVATIONS`)."""
    try:
        return ACTIVATIONS[name]()
    except KeyError:
        known = ", ".join(sorted(ACTIVATIONS))
        raise ValueError(f"unknown activation {name!r} (known: {known})") from None


def conv_block(
    in_channels: int, out_channels: int, kernel_size: int, activation: str, batch_norm: bool
) -> nn.Sequential:
    """conv ("same" padding) [+ batch norm] + activation + 2x2 max-pool, as in the lab's Keras CNNs.

    With batch norm the conv bias is redundant (BN's shift replaces it) but it is kept so the
    parameter count only changes by BN's own parameters, which keeps counts easy to compare.
    """
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    layers["conv"] = nn.Conv2d(in_channels, out_channels, kernel_size, padding="same")
    if batch_norm:
        layers["bn"] = nn.BatchNorm2d(out_channels)
    layers["act"] = make_activation(activation)
    # Floor division of odd sizes (7 -> 3) matches Keras MaxPooling2D with "valid" padding.
    layers["pool"] = nn.MaxPool2d(2)
    return nn.Sequential(layers)


def dense_head(
    in_features: int,
    hidden: Sequence[int],
    num_outputs: int,
    *,
    activation: str,
    dropout: float = 0.0,
    batch_norm: bool = False,
) -> nn.Sequential:
    """Flatten, ``Linear [+ BN] + activation [+ dropout]`` per hidden width, then the output layer.

    The output layer returns raw logits: softmax / sigmoid live in the loss so that training
    uses the numerically stable fused versions.
    """
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    layers["flatten"] = nn.Flatten()
    width = in_features
    for i, out in enumerate(hidden, start=1):
        layers[f"dense{i}"] = nn.Linear(width, out)
        if batch_norm:
            layers[f"bn{i}"] = nn.BatchNorm1d(out)
        layers[f"act{i}"] = make_activation(activation)
        if dropout > 0:
            # Skipped at 0 so printed models show no no-op layers.
            layers[f"dropout{i}"] = nn.Dropout(dropout)
        width = out
    layers["out"] = nn.Linear(width, num_outputs)
    return nn.Sequential(layers)
