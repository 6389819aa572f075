"""Model layer: typed configs, the family registry, the LightningModule, metrics and presets.

Data information (input shape, class count, positive-class weight) comes in as plain
arguments; nothing here imports the datamodules, search_spaces, Ray or Optuna. Configs are
pydantic models; bad values raise ``ValueError`` / ``ValidationError``.

Every module of this folder is imported here, so a family module's ``@register_family``
runs: a new family is one file (see ``resnet.py``).
"""

import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

from .classifier import ClassifierModule  # noqa: E402
from .cnn import CNNConfig  # noqa: E402
from .configs import (  # noqa: E402
    ModelConfig,
    OptimConfig,
    model_config_from_dict,
    optim_config_from_dict,
    validate_for_data,
)
from .metrics import binary_metrics, metrics_from_confusion  # noqa: E402
from .mlp import MLPConfig  # noqa: E402
from .optim import build_optimizer, build_scheduler  # noqa: E402
from .presets import PRESETS, Preset, get_preset  # noqa: E402
from .registry import FAMILIES, build_backbone, register_family  # noqa: E402
from .resnet import ResNetConfig  # noqa: E402
from .summary import count_parameters, parameter_table  # noqa: E402

__all__ = [
    "FAMILIES",
    "PRESETS",
    "CNNConfig",
    "ClassifierModule",
    "MLPConfig",
    "ModelConfig",
    "OptimConfig",
    "Preset",
    "ResNetConfig",
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
    "register_family",
    "validate_for_data",
]
