"""The report of ``hpsearch retrain``: ``best/report.md`` with its plots, tables, checkpoint
and ``metrics.json``, and the test metrics as the terminal shows them (mean ± std and the
95% interval over the seeds when several)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hpsearch.datamodules.paths import atomic_write_json
from hpsearch.lightning_modules.classifier import ClassifierModule
from hpsearch.lightning_modules.summary import parameter_table
from hpsearch.scripts.reports import plots
from hpsearch.scripts.reports.format import format_parameter_table, render_table
from hpsearch.scripts.train import TrainResult

THRESHOLD_RULES = {"youden": "Youden's J (sensitivity + specificity - 1)",
                   "youden_smooth": "Youden's J (sensitivity + specificity - 1) of the "
                                    "kernel-smoothed ROC",
                   "f1": "the positive class's F1"}


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


def _user_module(info: dict[str, Any]) -> bool:
    """Whether the report is of the user's own module (``model.target``)."""
    return "target" in (info.get("config") or {}).get("model", {})


def format_test_results(info: dict[str, Any]) -> str:
    """The test metrics as a small table for the terminal: mean ± std and the 95% interval
    over the seeds when several."""
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
    """The report folder's files: curves, parameters, checkpoint, metrics.json, report.md,
    and for hpsearch's classifier the confusion matrix (and ROC curve for two classes)."""
    builtin = isinstance(result.module, ClassifierModule)
    plots.learning_curves(result.history, out / "learning_curves.png", info["experiment"])
    if builtin:
        names = [str(n) for n in result.datamodule.class_names]
        confusion = np.asarray(info["test"]["confusion"])
        pd.DataFrame(confusion, index=names, columns=names).to_csv(out / "confusion_matrix.csv")
        plots.confusion_matrix(confusion, names, out / "confusion_matrix.png", info["experiment"])
        if result.module.binary:
            plots.roc_curve(result.module.test_scores, result.module.test_targets,
                            out / "roc_curve.png", info["experiment"])
    rows = parameter_table(result.network)
    pd.DataFrame(rows).to_csv(out / "parameters.csv", index=False)
    assert result.checkpoint is not None  # trained with keep_checkpoint=True
    (out / "model.ckpt").write_bytes(result.checkpoint)
    atomic_write_json(out / "metrics.json", info)
    table = format_parameter_table(rows)
    (out / "report.md").write_text(_report_md(info, table, result.module.binary) if builtin
                                   else _user_module_report_md(info, table))
