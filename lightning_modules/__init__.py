"""Model layer: typed configs, backbones, the LightningModule, metrics and lab presets.

Data information (input shape, class count, positive-class weight) comes in as plain
arguments; nothing here imports the datamodules, search_spaces, Ray or Optuna. Configs are
pydantic models; bad values raise ``ValueError`` / ``ValidationError``.
"""

from .backbones import FAMILIES, build_backbone
from .classifier import ClassifierModule
from .configs import (
    BinaryCNNConfig,
    CNNConfig,
    ConvNetConfig,
    MLPConfig,
    ModelConfig,
    OptimConfig,
    model_config_from_dict,
    optim_config_from_dict,
    validate_for_data,
)
from .metrics import binary_metrics, metrics_from_confusion
from .optim import build_optimizer, build_scheduler
from .presets import PRESETS, Preset, get_preset
from .summary import count_parameters, parameter_table

__all__ = [
    "FAMILIES",
    "PRESETS",
    "BinaryCNNConfig",
    "CNNConfig",
    "ClassifierModule",
    "ConvNetConfig",
    "MLPConfig",
    "ModelConfig",
    "OptimConfig",
    "Preset",
    "binary_metrics",
    "build_backbone",
    "build_optimizer",
    "build_scheduler",
    "count_parameters",
    "get_preset",
    "metrics_from_confusion",
    "model_config_from_dict",
    "optim_config_from_dict",
    "parameter_table",
    "validate_for_data",
]
