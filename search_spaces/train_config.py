"""The typed configuration of one training run: data + model + optimizer + schedule.

``TrainConfig`` is what ``train()`` consumes, what a sweep trial builds from its sampled
hyperparameters, what a leaderboard row stores (as JSON) and what ``retrain`` rebuilds.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from datamodules import data_config_from_dict
from lightning_modules.configs import (
    ModelConfig,
    OptimConfig,
    model_config_from_dict,
    validate_for_data,
)
from search_spaces.typed import ConfigError, from_dict, to_dict


@dataclass(frozen=True)
class TrainConfig:
    data: Any  # one of the datamodules' config classes
    model: ModelConfig
    optim: OptimConfig
    max_epochs: int = 5
    seed: int = 0

    def __post_init__(self) -> None:
        if self.max_epochs < 1:
            raise ConfigError(f"max_epochs: must be at least 1, got {self.max_epochs}")
        validate_for_data(self.model, self.data.input_shape, self.data.num_classes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "data": to_dict(self.data),
            "model": to_dict(self.model),
            "optimizer": to_dict(self.optim),
            "max_epochs": self.max_epochs,
            "seed": self.seed,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> TrainConfig:
        unknown = sorted(set(raw) - {"data", "model", "optimizer", "max_epochs", "seed"})
        if unknown:
            raise ConfigError(f"{unknown[0]}: unknown key")
        return train_config_from_sections(
            raw, max_epochs=raw.get("max_epochs", 5), seed=raw.get("seed", 0)
        )


def train_config_from_sections(
    sections: Mapping[str, Any], *, max_epochs: int, seed: int
) -> TrainConfig:
    """Build a :class:`TrainConfig` from the plain ``data``/``model``/``optimizer`` mappings."""
    return TrainConfig(
        data=data_config_from_dict(sections.get("data") or {}, "data"),
        model=model_config_from_dict(sections.get("model") or {}, "model"),
        optim=from_dict(OptimConfig, sections.get("optimizer") or {}, "optimizer"),
        max_epochs=max_epochs,
        seed=seed,
    )


def preset_sections(name: str) -> dict[str, Any]:
    """The ``data``/``model``/``optimizer`` sections of lab preset ``name`` (a known one)."""
    from lightning_modules.presets import PRESETS

    preset = PRESETS[name]
    return {
        "data": {"name": preset.dataset, "batch_size": preset.batch_size, **preset.data},
        "model": to_dict(preset.model),
        "optimizer": to_dict(preset.optim),
    }


def check_sections(sections: Mapping[str, Any]) -> None:
    """Validate each section on its own (keys, types, ranges), without checking that the
    model fits the data."""
    data_config_from_dict(sections.get("data") or {}, "data")
    model_config_from_dict(sections.get("model") or {}, "model")
    from_dict(OptimConfig, sections.get("optimizer") or {}, "optimizer")
