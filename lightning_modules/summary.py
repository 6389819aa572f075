"""Per-layer parameter tables, for comparing our backbones with the lab's Keras summaries."""

from __future__ import annotations

from typing import Any

from torch import nn


def count_parameters(module: nn.Module) -> int:
    """Trainable parameters, the number Keras reports as "Trainable params"."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def parameter_table(module: nn.Module) -> list[dict[str, Any]]:
    """One row per layer that owns parameters, then a ``total`` row.

    Each row has ``layer`` (dotted module path), ``type``, ``weights``, ``biases`` and ``total``.
    Parameters named ``bias`` count as biases and all others as weights (for batch norm that
    puts gamma under weights and beta under biases; running statistics are buffers, not
    parameters, so unlike Keras they are not counted).
    """
    rows: list[dict[str, Any]] = []
    for name, layer in module.named_modules():
        own = list(layer.named_parameters(recurse=False))
        if not own:
            continue
        biases = sum(p.numel() for pname, p in own if pname == "bias")
        weights = sum(p.numel() for pname, p in own if pname != "bias")
        rows.append(
            {
                "layer": name or type(layer).__name__,
                "type": type(layer).__name__,
                "weights": weights,
                "biases": biases,
                "total": weights + biases,
            }
        )
    rows.append(
        {
            "layer": "total",
            "type": "",
            "weights": sum(r["weights"] for r in rows),
            "biases": sum(r["biases"] for r in rows),
            "total": sum(r["total"] for r in rows),
        }
    )
    return rows
