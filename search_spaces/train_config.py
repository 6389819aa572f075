"""The typed configuration of one training run: data + model + optimizer + schedule.

``TrainConfig`` is what ``train()`` consumes, what a sweep trial builds from its sampled
hyperparameters, what a leaderboard row stores (as JSON) and what ``retrain`` rebuilds.
Building one is the single place a model is checked against its data.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    model_validator,
)

from hpsearch.datamodules import data_config_from_dict
from hpsearch.datamodules.registry import data_config_union
from hpsearch.lightning_modules.configs import (
    OptimConfig,
    model_config_from_dict,
    model_config_union,
    optim_config_from_dict,
    validate_for_data,
)
from hpsearch.search_spaces.errors import config_error, validated
from hpsearch.search_spaces.targets import UserData, UserModel, names_target


def _builtin_or_target(value: Any) -> str:
    return "<target>" if names_target(value) else "<builtin>"


# A section names either a built-in dataset or family, or the user's own class by ``target``;
# the "<...>" tags are left out of error key paths.
AnyData = Annotated[Annotated[data_config_union(), Tag("<builtin>")]
                    | Annotated[UserData, Tag("<target>")], Discriminator(_builtin_or_target)]
AnyModel = Annotated[Annotated[model_config_union(), Tag("<builtin>")]
                     | Annotated[UserModel, Tag("<target>")], Discriminator(_builtin_or_target)]


class TrainConfig(BaseModel):
    # ``optim`` is written ``optimizer`` in files, JSON and checkpoints (by alias); Python
    # code may use either name.
    model_config = ConfigDict(
        frozen=True, extra="forbid", strict=True,
        validate_by_name=True, validate_by_alias=True, serialize_by_alias=True,
    )

    data: AnyData
    model: AnyModel
    optim: OptimConfig = Field(default_factory=OptimConfig, alias="optimizer")
    max_epochs: Annotated[int, Field(ge=1)] = 5
    seed: int = 0

    @model_validator(mode="after")
    def _model_fits_data(self) -> TrainConfig:
        if isinstance(self.model, UserModel):
            if self.optim != OptimConfig():
                raise ValueError("optimizer: a model given by target sets up its own optimizer "
                                 "(configure_optimizers); make the settings its init arguments")
            return self
        if isinstance(self.data, UserData):
            raise ValueError("model: a built-in family needs a built-in dataset (it reads the "
                             "input shape and classes from it); with data.target, give "
                             "model.target too")
        # The one data-fit check: ClassifierModule and build_backbone trust typed configs.
        validate_for_data(self.model, self.data.input_shape, self.data.num_classes)
        return self

    @property
    def user_code(self) -> bool:
        """Whether the model is the user's own LightningModule (trained plainly)."""
        return isinstance(self.model, UserModel)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (tuples as lists): keys data, model, optimizer, max_epochs, seed; no
        optimizer for the user's own module, which sets up its own."""
        return self.model_dump(mode="json", exclude={"optim"} if self.user_code else None)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> TrainConfig:
        """Strictly parse :meth:`to_dict`'s form (``optimizer`` may be left out; an empty
        section, ``null`` in YAML, means all defaults); raises a one-line ``ConfigError``."""
        sections = {k: raw[k] or {} for k in ("data", "model", "optimizer") if k in raw}
        return validated(cls, {**raw, **sections})


def train_config_from_sections(
    sections: Mapping[str, Any], *, max_epochs: int, seed: int
) -> TrainConfig:
    """Build a :class:`TrainConfig` from the plain ``data``/``model``/``optimizer`` mappings."""
    raw = {
        "data": sections.get("data") or {},
        "model": sections.get("model") or {},
        "optimizer": sections.get("optimizer") or {},
        "max_epochs": max_epochs,
        "seed": seed,
    }
    return validated(TrainConfig, raw)


def preset_sections(name: str) -> dict[str, Any]:
    """The ``data``/``model``/``optimizer`` sections of lab preset ``name`` (a known one)."""
    from hpsearch.lightning_modules.presets import PRESETS

    preset = PRESETS[name]
    return {
        "data": {"name": preset.dataset, "batch_size": preset.batch_size, **preset.data},
        "model": preset.model.model_dump(mode="json"),
        "optimizer": preset.optim.model_dump(mode="json"),
    }


def check_sections(sections: Mapping[str, Any]) -> None:
    """Validate each section on its own (keys, types, ranges), without checking that the
    model fits the data."""
    parsers = {
        "data": (data_config_from_dict, UserData.model_validate),
        "model": (model_config_from_dict, UserModel.model_validate),
        "optimizer": (optim_config_from_dict, optim_config_from_dict),
    }
    for section, (builtin, target) in parsers.items():
        raw = sections.get(section) or {}
        try:
            (target if names_target(raw) else builtin)(raw)
        except ValidationError as exc:
            raise config_error(exc, section, raw) from None
