"""Experiment trackers (``--logger mlflow[=URI]``, ``wandb``): Ray Tune's own logger
callbacks, one run per trial with its drawn values and every epoch's metrics."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hpsearch.search_spaces.errors import ConfigError

TRACKERS = {"mlflow": "mlflow", "wandb": "wandb"}  # name -> the package it needs
MLFLOW_DB = "mlflow.db"


@dataclass(frozen=True)
class TrackerSpec:
    name: str
    uri: str | None  # where the tracker keeps its runs (mlflow's tracking URI)


def parse_trackers(text: str | None) -> list[TrackerSpec]:
    """``mlflow``, ``mlflow=sqlite:///runs.db``, ``mlflow,wandb``: checked before the sweep
    starts, with one line for a tracker that is unknown or not installed."""
    specs = []
    for part in filter(None, (p.strip() for p in (text or "").split(","))):
        name, _, uri = part.partition("=")
        if name not in TRACKERS:
            raise ConfigError(f"--logger {name!r}: unknown tracker (known: "
                              f"{', '.join(TRACKERS)}; mlflow takes =URI)")
        if uri and name != "mlflow":
            raise ConfigError(f"--logger {part!r}: only mlflow takes a URI")
        if importlib.util.find_spec(TRACKERS[name]) is None:
            extra = "pip install -e '.[mlflow]'" if name == "mlflow" else "pip install wandb"
            raise ConfigError(f"--logger {name}: {TRACKERS[name]} is not installed ({extra})")
        specs.append(TrackerSpec(name, uri or None))
    return specs


def mlflow_uri(spec: TrackerSpec, exp_dir: Path) -> str:
    """The tracking URI given, else $MLFLOW_TRACKING_URI, else a SQLite file in the
    experiment folder (MLflow 3 keeps its plain-file store for existing data only)."""
    import os

    return spec.uri or os.environ.get("MLFLOW_TRACKING_URI") or (
        f"sqlite:///{(exp_dir / MLFLOW_DB).resolve()}")


def tracker_callbacks(specs: list[TrackerSpec], exp_dir: Path, experiment: str,
                      code_version: str) -> list[Any]:
    """Tune callbacks that send each trial to its tracker, under the experiment's name."""
    callbacks: list[Any] = []
    for spec in specs:
        if spec.name == "mlflow":
            from ray.air.integrations.mlflow import MLflowLoggerCallback

            callbacks.append(MLflowLoggerCallback(
                mlflow_uri(spec, exp_dir), experiment_name=experiment,
                tags={"hpsearch.code_version": code_version}))
        else:
            from ray.air.integrations.wandb import WandbLoggerCallback

            callbacks.append(WandbLoggerCallback(project=experiment))
    return callbacks
