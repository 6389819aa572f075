"""``hpsearch retrain results/<experiment>``: re-train a sweep's trial locally, evaluate it on
the held-out test set and write a full report to ``results/<experiment>/best/``."""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hpsearch.datamodules.paths import make_temp_dir
from hpsearch.lightning_modules.classifier import ClassifierModule
from hpsearch.lightning_modules.metrics import (
    binary_metrics,
    choose_threshold,
    metrics_from_confusion,
)
from hpsearch.scripts.compute import COMPUTE_KEY, runs_compute
from hpsearch.scripts.experiment_folder import ExperimentFolder
from hpsearch.scripts.leaderboard import STATUS_ERRORED
from hpsearch.scripts.provenance import code_version
from hpsearch.scripts.reports.retrain_report import most_confused, write_report
from hpsearch.scripts.train import EpochHistory, TrainResult, train
from hpsearch.search_spaces.errors import ConfigError, replaced
from hpsearch.search_spaces.schema import load_yaml_mapping
from hpsearch.search_spaces.train_config import TrainConfig

# Re-training a trial with its seed on the same machine repeats its computation; across
# thread counts float sums may round differently, so we promise agreement within this.
REPRODUCE_TOLERANCE = 0.005
# The scalar test metrics that are repeated per seed and summarised over the seeds.
SCALAR_TEST_METRICS = ("accuracy", "macro_f1", "f1", "auc", "loss", "sensitivity", "specificity",
                       "threshold", "fixed_threshold_accuracy", "fixed_threshold_f1")


@dataclass(frozen=True)
class RetrainOptions:
    rank: int | None = None
    trial_id: str | None = None
    config: str | None = None
    epochs: int | None = None
    seed: int | None = None
    accelerator: str = "auto"
    train_on: str = "train"
    data_dir: str | None = None
    seeds: int = 1


def pick_trial(board: pd.DataFrame, opts: RetrainOptions) -> pd.Series:
    """The leaderboard row to re-train: by trial id, by rank, or the best (rank 1)."""
    if board.empty:
        raise ConfigError("the leaderboard has no trials")
    if opts.trial_id is not None:
        rows = board[board.trial_id.astype(str) == opts.trial_id]
        if rows.empty:
            raise ConfigError(f"no trial '{opts.trial_id}' in the leaderboard")
        row = rows.iloc[0]
    else:
        rank = opts.rank or 1
        if rank > len(board):
            raise ConfigError(f"--rank {rank}: the leaderboard has only {len(board)} trials")
        row = board.iloc[rank - 1]
    if row["status"] == STATUS_ERRORED:
        raise ConfigError(
            f"trial {row['trial_id']} errored ({row.get('error') or 'no message'}); "
            "pick another with --rank or --trial"
        )
    if not isinstance(row.get("config"), str) or not row["config"]:
        raise ConfigError(f"trial {row['trial_id']} has no recorded config (it never reported)")
    return row


def _config_from_file(path: str) -> TrainConfig:
    p = Path(path)
    raw = load_yaml_mapping(p, "config file")
    try:
        return TrainConfig.from_dict(raw)
    except ConfigError as exc:
        raise ConfigError(f"{p}: {exc}") from None


def resolve_run(exp_dir: Path, opts: RetrainOptions) -> tuple[TrainConfig, int, dict[str, Any]]:
    """The config to train, how many epochs to run, and where it came from."""
    folder = ExperimentFolder(exp_dir)
    meta = folder.read_meta()
    metric = meta.objective.metric
    if opts.config:
        cfg = _config_from_file(opts.config)
        source: dict[str, Any] = {"config_file": opts.config}
        epochs = opts.epochs or cfg.max_epochs
    else:
        row = pick_trial(folder.read_leaderboard(), opts)
        cfg = TrainConfig.from_dict(json.loads(row["config"]))
        epochs = opts.epochs or int(row["best_epoch"])
        source = {
            "trial_id": str(row["trial_id"]),
            "rank": int(row["rank"]),
            "status": row["status"],
            "sweep_metric": metric,
            "sweep_value": float(row[metric]),
            "sweep_best_epoch": int(row["best_epoch"]),
        }
    if opts.seed is not None:
        cfg = replaced(cfg, seed=opts.seed)
    return cfg, epochs, {**source, "experiment": meta.experiment,
                         "objective": meta.objective.model_dump(mode="json")}


def retrain_seeds(cfg: TrainConfig, opts: RetrainOptions) -> list[int]:
    """``opts.seeds`` consecutive seeds from ``--seed``, else from the config's own seed."""
    if opts.seeds < 1:
        raise ConfigError(f"--seeds must be at least 1, got {opts.seeds}")
    first = cfg.seed if opts.seed is None else opts.seed
    return list(range(first, first + opts.seeds))


def _finite_or_none(value: Any) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


def summarize(values: Iterable[float | None]) -> dict[str, Any] | None:
    """Mean, sample std (ddof=1) and Student-t 95% interval of the finite ``values``; std
    and interval are None for a single value, and the whole summary for none."""
    from scipy import stats

    data = np.array([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    if data.size == 0:
        return None
    mean, n = float(data.mean()), int(data.size)
    std = low = high = None
    if n > 1:
        std = float(data.std(ddof=1))
        half = float(stats.t.ppf(0.975, n - 1)) * std / math.sqrt(n)
        low, high = mean - half, mean + half
    return {"mean": mean, "std": std, "ci95_low": low, "ci95_high": high, "n": n}


def summarize_seeds(per_seed: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """``summarize`` of every scalar test metric over the seeds' entries."""
    out = {}
    for name in dict.fromkeys(k for entry in per_seed for k in entry["test"]):
        summary = summarize(entry["test"].get(name) for entry in per_seed)
        if summary is not None:
            out[name] = summary
    return out


def scalar_test(test: dict[str, Any]) -> dict[str, float | None]:
    """The scalar metrics of a ``test_metrics`` dict (no confusion, per-class or threshold);
    a user's own module's are whatever its ``test_step`` logged."""
    if "confusion" not in test:
        return {k: _finite_or_none(v) for k, v in test.items()}
    return {k: _finite_or_none(test[k]) for k in SCALAR_TEST_METRICS if k in test}


def validation_scores(module: Any, datamodule: Any) -> tuple[np.ndarray, np.ndarray]:
    """A binary model's positive-class probabilities on the validation split, and its
    targets (what the threshold is chosen on)."""
    import torch

    module.eval()
    scores, targets = [], []
    with torch.no_grad():
        for x, y in datamodule.val_dataloader():
            scores.append(torch.sigmoid(module(x.to(module.device))).cpu())
            targets.append(y.cpu())
    return torch.cat(scores).numpy(), torch.cat(targets).numpy()


def test_metrics(result: TrainResult) -> dict[str, Any]:
    module, test = result.module, result.test or {}
    if not isinstance(module, ClassifierModule):  # the user's own: what its test_step logged
        # "acc" is read as "accuracy", the name the reports and compare show.
        names = {k.removeprefix("test_"): v for k, v in test.items()}
        return {("accuracy" if k == "acc" else k): v for k, v in names.items()}
    names = list(result.datamodule.class_names)
    out: dict[str, Any] = {"loss": test.get("test_loss")}
    if module.binary:
        threshold, rule = module.model_cfg.threshold, module.model_cfg.threshold_rule
        if rule != "fixed":
            # Beside the figures at the threshold chosen on validation, those at the fixed one.
            fixed = binary_metrics(module.test_scores, module.test_targets, threshold)
            out |= {f"fixed_threshold_{k}": fixed[k] for k in ("accuracy", "f1")}
            out["fixed_threshold"] = threshold
            out["threshold_rule"] = rule
            threshold = choose_threshold(*validation_scores(module, result.datamodule), rule)
        b = binary_metrics(module.test_scores, module.test_targets, threshold)
        out |= {k: b[k] for k in ("accuracy", "f1", "auc", "sensitivity", "specificity")}
        out["threshold"] = threshold
        confusion = np.asarray(b["confusion"])
    else:
        confusion = np.asarray(module.test_confusion)
        m = metrics_from_confusion(confusion)
        out |= {"accuracy": m["accuracy"], "macro_f1": m["macro_f1"]}
        out["per_class"] = {
            name: {"precision": p, "recall": r, "f1": f, "support": s}
            for name, p, r, f, s in zip(
                names, m["precision"], m["recall"], m["f1"], m["support"], strict=True
            )
        }
    out["confusion"] = confusion.tolist()
    return out


def _train_and_test(cfg: TrainConfig, epochs: int, objective: dict[str, str],
                    opts: RetrainOptions) -> tuple[TrainResult, dict[str, Any]]:
    result = train(
        cfg, data_dir=opts.data_dir, history=EpochHistory(objective["metric"], objective["mode"]),
        accelerator=opts.accelerator, progress_bar=True, run_test=True, stop_after=epochs,
        train_on=opts.train_on, keep_checkpoint=True,
    )
    return result, test_metrics(result)


def _retrain_value(result: TrainResult, metric: str) -> float:
    return float(result.history[-1].get(metric, math.nan))


def train_seeds(cfg: TrainConfig, seeds: Sequence[int], epochs: int, objective: dict[str, str],
                opts: RetrainOptions) -> tuple[TrainResult, dict[str, Any], list[dict[str, Any]]]:
    """Train and test ``cfg`` once per seed: the first seed's result and test metrics (for
    the report), and every seed's scalar test metrics. Later seeds' models are not kept."""
    first: tuple[TrainResult, dict[str, Any]] | None = None
    per_seed = []
    for i, seed in enumerate(seeds, 1):
        if len(seeds) > 1:
            print(f"Seed {seed} ({i} of {len(seeds)})", flush=True)
        result, test = _train_and_test(replaced(cfg, seed=seed), epochs, objective, opts)
        per_seed.append({"seed": seed, "test": scalar_test(test),
                         "retrain_value": _retrain_value(result, objective["metric"]),
                         "train_time_s": result.train_time_s,
                         "train_cpu_s": result.train_cpu_s, "train_gpu_s": result.train_gpu_s})
        first = first or (result, test)
    assert first is not None  # retrain_seeds gives at least one seed
    return first[0], first[1], per_seed


def _swap_in(exp_dir: Path, result: TrainResult, info: dict[str, Any]) -> Path:
    """Build the report beside the old one and swap it in whole: never half a report."""
    final = ExperimentFolder(exp_dir).best_dir
    tmp = make_temp_dir(exp_dir, f".{final.name}-")
    try:
        write_report(tmp, result, info)
        if final.exists():
            old = exp_dir / f".{final.name}-old"
            shutil.rmtree(old, ignore_errors=True)
            final.rename(old)
            shutil.rmtree(old, ignore_errors=True)
        tmp.rename(final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def retrain(exp_dir: Path, opts: RetrainOptions) -> Path:
    """Re-train (once per seed), evaluate and write ``exp_dir/best/``; returns the report's
    path. With several seeds the report's model, plots and per-class figures are the first
    seed's, and ``metrics.json`` adds every seed's test metrics and their summary."""
    if not exp_dir.is_dir():
        raise ConfigError(f"{exp_dir}: no such results folder")
    cfg, epochs, info = resolve_run(exp_dir, opts)
    seeds = retrain_seeds(cfg, opts)
    metric = info["objective"]["metric"]
    result, test, per_seed = train_seeds(cfg, seeds, epochs, info["objective"], opts)
    names = [str(n) for n in getattr(result.datamodule, "class_names", ())]
    info |= {
        "config": result.config.to_dict(),
        "epochs": epochs,
        "train_on": opts.train_on,
        "code_version": code_version(),
        "retrain_value": _retrain_value(result, metric),
        "validation": {k: v for k, v in result.history[-1].items() if k.startswith("val_")},
        "test": test,
        "param_count": result.param_count,
        "train_time_s": result.train_time_s,
        "class_names": names,
        "most_confused": (most_confused(np.asarray(test["confusion"]), names)
                          if "confusion" in test else []),
        "seeds": seeds,
        "per_seed": per_seed,
        "summary": summarize_seeds(per_seed),
        COMPUTE_KEY: runs_compute(per_seed),
    }
    return _swap_in(exp_dir, result, info) / "report.md"
