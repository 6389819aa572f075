"""Compute an experiment took, in CPU- and GPU-hours, for sweep.json, metrics.json and compare.

Training hours are measured: CPU time of the processes that trained, GPU wall time on each
GPU used. A sweep's hours are what it held: its wall time times the cluster's CPUs (and
GPUs, when trials asked for them), over every run of a resumed sweep."""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd

COMPUTE_KEY = "compute"


def hours(seconds: float | None) -> float | None:
    return None if seconds is None else float(seconds) / 3600


def sweep_compute(before: Mapping[str, float] | None, elapsed_s: float, cpus: float,
                  gpus_held: float, board: pd.DataFrame | None) -> dict[str, float]:
    """sweep.json's ``compute`` after one more run of ``elapsed_s`` seconds on ``cpus`` CPUs
    (and ``gpus_held`` GPUs); the training hours are the leaderboard's sum over trials."""
    before = before or {}
    train = {"train_cpu_h": 0.0, "train_gpu_h": 0.0}
    if board is not None:
        for col in train:
            if col in board.columns:
                train[col] = float(board[col].fillna(0.0).sum())
    return {
        "sweep_cpu_h": before.get("sweep_cpu_h", 0.0) + elapsed_s * cpus / 3600,
        "sweep_gpu_h": before.get("sweep_gpu_h", 0.0) + elapsed_s * gpus_held / 3600,
        **train,
    }


def runs_compute(runs: Iterable[Mapping[str, Any]]) -> dict[str, float]:
    """A re-train's ``compute``: the training hours of its runs (one per seed), each with
    ``train_time_s``, ``train_cpu_s`` and ``train_gpu_s``."""
    runs = list(runs)
    return {"train_cpu_h": sum(r["train_cpu_s"] for r in runs) / 3600,
            "train_gpu_h": sum(r["train_gpu_s"] for r in runs) / 3600,
            "wall_h": sum(r["train_time_s"] for r in runs) / 3600}
