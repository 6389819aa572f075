"""For the error tests: a LightningModule with an init argument that has no default (a space
file must set it, fixed or searched)."""

from __future__ import annotations

from digits_lit.models import DigitsNet


class NeedsWidth(DigitsNet):
    def __init__(self, width: int, lr: float = 1e-3) -> None:
        super().__init__(hidden_dim=width, lr=lr)
