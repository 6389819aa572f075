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
from hpsearch.lightning_modules.summary import parameter_table
from hpsearch.scripts.compute import COMPUTE_KEY, runs_compute
from hpsearch.scripts.leaderboard import (
    STATUS_ERRORED,
    atomic_write_json,
    read_leaderboard,
    read_meta,
)
from hpsearch.scripts.provenance import code_version
from hpsearch.scripts.reports import plots
from hpsearch.scripts.reports.format import format_parameter_table
from hpsearch.scripts.train import EpochHistory, TrainResult, train
from hpsearch.search_spaces.errors import ConfigError, replaced
from hpsearch.search_spaces.schema import load_yaml_mapping
from hpsearch.search_spaces.train_config import TrainConfig

BEST_DIR = "best"
# Re-training a trial with its seed on the same machine repeats its computation; across
# thread counts float sums may round differently, so we promise agreement within this.
REPRODUCE_TOLERANCE = 0.005
# The scalar test metrics that are repeated per seed and summarised over the seeds.
SCALAR_TEST_METRICS = ("accuracy", "macro_f1", "f1", "auc", "loss", "sensitivity", "specificity",
                       "fixed_threshold_accuracy", "fixed_threshold_f1")

THRESHOLD_RULES = {"youden": "Youden's J (sensitivity + specificity - 1)",
                   "f1": "the positive class's F1"}


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
    meta = read_meta(exp_dir)
    metric = meta["objective"]["metric"]
    if opts.config:
        cfg = _config_from_file(opts.config)
        source: dict[str, Any] = {"config_file": opts.config}
        epochs = opts.epochs or cfg.max_epochs
    else:
        row = pick_trial(read_leaderboard(exp_dir), opts)
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
    return cfg, epochs, {**source, "experiment": meta["experiment"], "objective": meta["objective"]}


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


def f1_name(test: dict[str, Any]) -> str:
    """The F1 the reports show: macro F1 for several classes, the positive class's for two."""
    return "macro_f1" if "macro_f1" in test else "f1"


def format_mean_std(mean: float | None, std: float | None, digits: int = 4) -> str:
    if mean is None:
        return ""
    return f"{mean:.{digits}f}" + ("" if std is None else f" ± {std:.{digits}f}")


def format_interval(summary: dict[str, Any] | None, digits: int = 4) -> str:
    """``0.8703 to 0.9697``: the 95% interval; empty without one (a single seed)."""
    if not summary or summary["ci95_low"] is None:
        return ""
    return f"{summary['ci95_low']:.{digits}f} to {summary['ci95_high']:.{digits}f}"


def format_summary(summary: dict[str, Any], digits: int = 4) -> str:
    """``0.9200 ± 0.0200 (95% CI 0.8703 to 0.9697)``; just the mean for a single seed."""
    text = format_mean_std(summary["mean"], summary["std"], digits)
    interval = format_interval(summary, digits)
    return f"{text} (95% CI {interval})" if interval else text


def _user_module(info: dict[str, Any]) -> bool:
    """Whether the report is of the user's own module (``model.target``)."""
    return "target" in (info.get("config") or {}).get("model", {})


def format_test_results(info: dict[str, Any]) -> str:
    """The test metrics as a small table for the terminal: mean ± std and the 95% interval
    over the seeds when several."""
    from hpsearch.scripts.reports.format import render_table

    test = info["test"]
    names = [("accuracy", "accuracy"), ("F1", f1_name(test)), ("AUC", "auc"),
             ("sensitivity", "sensitivity"), ("specificity", "specificity"), ("loss", "loss")]
    if _user_module(info):  # what its test_step logged
        names = [(k, k) for k in test]
    if "fixed_threshold" in test:
        at = f"at threshold {test['fixed_threshold']:g}"
        names += [(f"accuracy {at}", "fixed_threshold_accuracy"),
                  (f"F1 {at}", "fixed_threshold_f1")]
    summary = info.get("summary") or {}
    seeds = info.get("seeds") or [info["config"]["seed"]]
    if len(seeds) == 1:
        rows = [[label, f"{test[k]:.4f}"] for label, k in names if test.get(k) is not None]
        return render_table(["test metric", f"seed {seeds[0]}"], rows, right=(1,))
    rows = [[label, format_mean_std(summary[k]["mean"], summary[k]["std"]),
             format_interval(summary[k])] for label, k in names if k in summary]
    return render_table(["test metric", f"mean ± std over {len(seeds)} seeds", "95% interval"],
                        rows, right=(1, 2), title=f"seeds {', '.join(map(str, seeds))}")


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
        return {k.removeprefix("test_"): v for k, v in test.items()}
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


def most_confused(confusion: np.ndarray, names: list[str], top: int = 5) -> list[str]:
    """The largest off-diagonal cells, e.g. ``"4 predicted as 9: 13"``."""
    cm = np.asarray(confusion).copy()
    np.fill_diagonal(cm, 0)
    order = np.argsort(cm, axis=None)[::-1][:top]
    pairs = [np.unravel_index(i, cm.shape) for i in order]
    return [f"{names[t]} predicted as {names[p]}: {cm[t, p]}" for t, p in pairs if cm[t, p] > 0]


def _report_md(info: dict[str, Any], table: str, binary: bool) -> str:
    test = info["test"]
    lines = [f"# {info['experiment']}: re-trained best trial", ""]
    if "trial_id" in info:
        lines.append(
            f"Trial `{info['trial_id']}` (rank {info['rank']}), {info['epochs']} epochs on "
            f"`{info['train_on']}`, seed {info['config']['seed']}, code `{info['code_version']}`."
        )
        lines.append(
            f"Sweep {info['sweep_metric']} {info['sweep_value']:.4f}; re-trained "
            f"{info['sweep_metric']} {info['retrain_value']:.4f}"
            + (" (the validation split was part of training here, so this is not a held-out "
               "figure; the test set below is)." if info["train_on"] == "train+val" else ".")
        )
    lines += ["", "## Test set", "", "| metric | value |", "|---|---|"]
    keys = ("accuracy", "loss", "f1", "auc", "sensitivity", "specificity", "threshold") if binary \
        else ("accuracy", "loss", "macro_f1")
    lines += [f"| {k} | {test[k]:.4f} |" for k in keys if test.get(k) is not None]
    if "threshold_rule" in test:
        lines += [f"| accuracy at the fixed threshold {test['fixed_threshold']:g} | "
                  f"{test['fixed_threshold_accuracy']:.4f} |",
                  f"| f1 at the fixed threshold {test['fixed_threshold']:g} | "
                  f"{test['fixed_threshold_f1']:.4f} |",
                  "", f"The threshold {test['threshold']:.4f} maximises "
                  f"{THRESHOLD_RULES[test['threshold_rule']]} on the validation split."]
    if not binary:
        lines += ["", "| class | precision | recall | f1 | support |", "|---|---|---|---|---|"]
        for name, m in test["per_class"].items():
            lines.append(f"| {name} | {m['precision']:.4f} | {m['recall']:.4f} | "
                         f"{m['f1']:.4f} | {m['support']} |")
    lines += _seeds_section(info, binary)
    lines += ["", "## Most confused", ""]
    lines += [f"- {p}" for p in info["most_confused"]] or ["- none"]
    lines += ["", "![confusion matrix](confusion_matrix.png)", "",
              "![learning curves](learning_curves.png)", ""]
    if binary:
        lines += ["![ROC curve](roc_curve.png)", ""]
    lines += ["## Parameters per layer", "", "```", table, "```", "",
              "## Config", "", "```json", json.dumps(info["config"], indent=2), "```", "",
              "Checkpoint: `model.ckpt` (`ClassifierModule.load_from_checkpoint`).", ""]
    return "\n".join(lines)


def _seeds_section(info: dict[str, Any], binary: bool) -> list[str]:
    """The per-seed test table with mean ± std and the 95% interval; none for one seed."""
    per_seed = info.get("per_seed") or []
    if len(per_seed) < 2:
        return []
    if _user_module(info):  # what its test_step logged
        cols = [(k, k) for k in info["test"]]
    else:
        cols = [("accuracy", "accuracy"), ("F1", f1_name(info["test"]))]
        cols += [("AUC", "auc")] if binary else []
        cols += [("loss", "loss")]
    summary = info["summary"]
    stats = [summary.get(k) for _, k in cols]
    lines = ["", f"## Test set over {len(per_seed)} seeds", "",
             f"The model, plots and checkpoint in this folder are those of seed "
             f"{per_seed[0]['seed']}. ± is the sample standard deviation over the seeds; the "
             "interval is the Student-t 95% confidence interval of the mean.", "",
             "| seed | " + " | ".join(label for label, _ in cols) + " |",
             "|---|" + "---|" * len(cols)]
    for entry in per_seed:
        cells = [format_mean_std(entry["test"].get(k), None) for _, k in cols]
        lines.append(f"| {entry['seed']} | " + " | ".join(cells) + " |")
    lines.append("| mean ± std | " + " | ".join(
        format_mean_std(s["mean"], s["std"]) if s else "" for s in stats) + " |")
    lines.append("| 95% interval | " + " | ".join(format_interval(s) for s in stats) + " |")
    return lines


def _user_module_report_md(info: dict[str, Any], table: str) -> str:
    """The report of a user's own module: its logged test metrics, curves and parameters."""
    test = info["test"]
    lines = [f"# {info['experiment']}: re-trained best trial", "",
             f"Trial `{info.get('trial_id', '-')}`, {info['epochs']} epochs, seed "
             f"{info['config']['seed']}, code `{info['code_version']}`.", "", "## Test set", ""]
    if test:
        lines += ["| metric | value |", "|---|---|"]
        lines += [f"| {k} | {v:.4f} |" for k, v in test.items() if v is not None]
    else:
        lines.append("The module has no `test_step`, so nothing was tested.")
    lines += _seeds_section(info, binary=False)
    lines += ["", "![learning curves](learning_curves.png)", "",
              "## Parameters per layer", "", "```", table, "```", "",
              "## Config", "", "```json", json.dumps(info["config"], indent=2), "```", "",
              f"Checkpoint: `model.ckpt` (`{info['config']['model']['target']}"
              ".load_from_checkpoint`).", ""]
    return "\n".join(lines)


def write_report(out: Path, result: TrainResult, info: dict[str, Any]) -> None:
    if not isinstance(result.module, ClassifierModule):
        plots.learning_curves(result.history, out / "learning_curves.png", info["experiment"])
        rows = parameter_table(result.module)
        pd.DataFrame(rows).to_csv(out / "parameters.csv", index=False)
        assert result.checkpoint is not None  # trained with keep_checkpoint=True
        (out / "model.ckpt").write_bytes(result.checkpoint)
        atomic_write_json(out / "metrics.json", info)
        (out / "report.md").write_text(_user_module_report_md(info, format_parameter_table(rows)))
        return
    names = [str(n) for n in result.datamodule.class_names]
    test = info["test"]
    confusion = np.asarray(test["confusion"])
    pd.DataFrame(confusion, index=names, columns=names).to_csv(out / "confusion_matrix.csv")
    plots.confusion_matrix(confusion, names, out / "confusion_matrix.png", info["experiment"])
    plots.learning_curves(result.history, out / "learning_curves.png", info["experiment"])
    if result.module.binary:
        plots.roc_curve(result.module.test_scores, result.module.test_targets,
                        out / "roc_curve.png", info["experiment"])
    rows = parameter_table(result.module.backbone)
    pd.DataFrame(rows).to_csv(out / "parameters.csv", index=False)
    assert result.checkpoint is not None  # trained with keep_checkpoint=True
    (out / "model.ckpt").write_bytes(result.checkpoint)
    atomic_write_json(out / "metrics.json", info)
    (out / "report.md").write_text(
        _report_md(info, format_parameter_table(rows), result.module.binary)
    )


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
    tmp = make_temp_dir(exp_dir, f".{BEST_DIR}-")
    try:
        write_report(tmp, result, info)
        final = exp_dir / BEST_DIR
        if final.exists():
            old = exp_dir / f".{BEST_DIR}-old"
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
