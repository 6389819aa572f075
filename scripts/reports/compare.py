"""``hpsearch compare results/``: one table of every experiment's best trial, next to the
lab's best hand-tuned result."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from hpsearch.datamodules.paths import atomic_write_text
from hpsearch.lightning_modules.registry import canonical_family
from hpsearch.scripts.compute import COMPUTE_KEY
from hpsearch.scripts.experiment_folder import ExperimentFolder
from hpsearch.scripts.leaderboard import (
    STATUS_COMPLETED,
    STATUS_EARLY_STOPPED,
    STATUS_ERRORED,
)
from hpsearch.scripts.reports import plots
from hpsearch.scripts.reports.retrain_report import f1_name, format_mean_std
from hpsearch.scripts.sweep_record import SweepMeta
from hpsearch.search_spaces.errors import ConfigError

# The students' best hand-tuned test results (../shared/lab-reports), by (dataset, family).
LAB_BEST: dict[tuple[str, str], dict[str, float]] = {
    ("mnist", "mlp"): {"acc": 0.985},
    ("hog_mnist", "mlp"): {"acc": 0.984},
    ("mnist", "cnn"): {"acc": 0.9938},
    ("fashion_mnist", "cnn"): {"acc": 0.9055},
    ("pneumonia", "cnn"): {"acc": 0.79, "f1": 0.85},
}

# Published test accuracies on the same test set, by (dataset, family): (who, accuracy).
LECUN_MLP = ("LeCun et al. 1998 MLP-800", 0.984)
MEDMNIST = (("MedMNIST v2 ResNet-18@28 (AUC 0.944)", 0.854), ("auto-sklearn", 0.855),
            ("AutoKeras", 0.878), ("Google AutoML Vision", 0.946))
PUBLISHED: dict[tuple[str, str], tuple[tuple[str, float], ...]] = {
    ("mnist", "mlp"): (LECUN_MLP,),
    ("hog_mnist", "mlp"): (LECUN_MLP,),  # on raw pixels; the same MNIST test set
    ("mnist", "cnn"): (("Keras mnist_cnn", 0.9925),),
    ("fashion_mnist", "cnn"): (("Zalando benchmark CNNs, no augmentation, lowest", 0.876),
                               ("highest", 0.934)),
    ("pneumonia", "cnn"): MEDMNIST,
}
# What we aim for beyond the lab's best, by (dataset, family): test accuracy (and AUC).
AIMS: dict[tuple[str, str], dict[str, float]] = {
    ("mnist", "mlp"): {"acc": 0.988},
    ("hog_mnist", "mlp"): {"acc": 0.990},
    ("mnist", "cnn"): {"acc": 0.995},
    # Zalando's best CNN without augmentation is 0.934.
    ("fashion_mnist", "cnn"): {"acc": 0.935},
    ("pneumonia", "cnn"): {"acc": 0.91, "auc": 0.97},
}

ACCURACY_PLOT = "accuracy_vs_params.png"


def by_experiment(table: dict[tuple[str, str], Any], meta: SweepMeta, empty: Any) -> Any:
    """``table``'s entry for the sweep's dataset and family; for another family on a lab's
    dataset (a ResNet on MNIST), the entry of the lab's best model on that dataset."""
    dataset, family = meta.dataset, canonical_family(meta.family)
    if (dataset, family) in table:
        return table[(dataset, family)]
    labs = [f for d, f in LAB_BEST if d == dataset]
    best = max(labs, key=lambda f: LAB_BEST[(dataset, f)]["acc"], default=None)
    return table.get((dataset, best), empty)
# The columns of comparison.md's first table, the headline; the rest follow in a second.
HEADLINE = ("experiment", "test_acc", "test_f1", "test_auc", "seeds", "lab_test_acc",
            "gain_vs_lab", "beats_lab", "clear_of_lab", "aim_acc", "reaches_aim",
            "published", "total_cpu_h", "gpu_h")

# The test columns that hold the mean over the re-train's seeds, each with a ``<name>_std``.
MEAN_COLUMNS = ("test_acc", "test_f1", "test_auc")
STD_COLUMNS = tuple(f"{c}_std" for c in MEAN_COLUMNS)


COMPARISON_HEADER = (
    "# hpsearch: best trial of each experiment\n\n"
    "test_*: the re-trained best trial on the held-out test set (`hpsearch retrain`), as "
    "mean ± std over its seeds (`seeds`: how many; 0: not re-trained); lab_*: the students' "
    "best hand-tuned test results; beats_lab: the mean at or above the lab's best; "
    "clear_of_lab: the mean minus one std above it; aim_acc: what we aim for; published: "
    "published test accuracies on the same test set; total_cpu_h: CPU-hours of the sweep "
    "(its wall time times the CPUs it held) and of the re-train (CPU time spent training); "
    "gpu_h: GPU-hours, empty when no GPU ran.\n\n"
)
DETAILS_HEADER = (
    "\n## Details\n\n"
    "val_best: the sweep's objective on the validation split for the best trial; "
    "trials_cpu_h: CPU time the sweep's trials spent training; sweep_wall_s: the sweep's wall "
    "time over all its runs.\n\n"
)


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def experiment_row(exp_dir: Path) -> dict[str, Any]:
    folder = ExperimentFolder(exp_dir)
    meta = folder.read_meta()
    board = folder.read_leaderboard()
    metric = meta.objective.metric
    counts = board["status"].value_counts().to_dict()
    best = board.iloc[0]
    params = "; ".join(f"{p.split('.', 1)[1]}={_fmt(best[p], 4)}" for p in meta.params
                       if p in best and not pd.isna(best[p]))
    lab = by_experiment(LAB_BEST, meta, {})
    row: dict[str, Any] = {
        "experiment": meta.experiment,
        "dataset": meta.dataset,
        "family": meta.family,
        "best_trial": best["trial_id"],
        "hyperparameters": params,
        "objective": metric,
        "val_best": float(best[metric]),
        "test_acc": None,
        "test_f1": None,
        "test_auc": None,
        "test_acc_std": None,
        "test_f1_std": None,
        "test_auc_std": None,
        "seeds": 0,
        "lab_test_acc": lab.get("acc"),
        "lab_test_f1": lab.get("f1"),
        "param_count": int(best["param_count"]) if not pd.isna(best["param_count"]) else None,
        "best_epoch": int(best["best_epoch"]),
        "epochs_run": int(best["epochs_run"]),
        "train_time_s": float(best["train_time_s"]),
        "trials": len(board),
        "completed": int(counts.get(STATUS_COMPLETED, 0)),
        "early_stopped": int(counts.get(STATUS_EARLY_STOPPED, 0)),
        "errored": int(counts.get(STATUS_ERRORED, 0)),
        "sweep_wall_s": meta.wall_time_s,
        "published": "; ".join(f"{who} {acc:.4g}" for who, acc in
                               by_experiment(PUBLISHED, meta, ())),
    }
    metrics_file = folder.best_dir / "metrics.json"
    metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else None
    if metrics is not None:
        row |= retrain_columns(metrics)
    row |= verdict_columns(row, by_experiment(AIMS, meta, {}))
    row |= compute_columns(meta.compute, (metrics or {}).get(COMPUTE_KEY))
    return row


def verdict_columns(row: dict[str, Any], aim: dict[str, float]) -> dict[str, Any]:
    """The re-trained mean against the lab's best (at or above it; above it by more than one
    std) and against the aim (accuracy, and AUC where one is set)."""
    out: dict[str, Any] = {"gain_vs_lab": None, "beats_lab": None, "clear_of_lab": None,
                           "aim_acc": aim.get("acc"), "aim_auc": aim.get("auc"),
                           "reaches_aim": None}
    mean, lab = row["test_acc"], row["lab_test_acc"]
    if mean is None:
        return out
    if lab is not None:
        std = row["test_acc_std"] or 0.0
        out |= {"gain_vs_lab": mean - lab, "beats_lab": bool(mean >= lab),
                "clear_of_lab": bool(mean - std > lab)}
    if aim:
        auc_ok = "auc" not in aim or (row["test_auc"] or 0.0) >= aim["auc"]
        out["reaches_aim"] = bool(mean >= aim["acc"] and auc_ok)
    return out


def compute_columns(sweep: dict[str, float] | None,
                    retrain: dict[str, float] | None) -> dict[str, Any]:
    """CPU- and GPU-hours: the sweep's (held, and spent training), the re-train's, in all."""
    sweep, retrain = sweep or {}, retrain or {}
    out = {"sweep_cpu_h": sweep.get("sweep_cpu_h"), "trials_cpu_h": sweep.get("train_cpu_h"),
           "retrain_cpu_h": retrain.get("train_cpu_h")}
    known = [v for v in (out["sweep_cpu_h"], out["retrain_cpu_h"]) if v is not None]
    out["total_cpu_h"] = sum(known) if known else None
    gpu = sweep.get("sweep_gpu_h", 0.0) + retrain.get("train_gpu_h", 0.0)
    out["gpu_h"] = gpu if gpu > 0 else None  # empty when no GPU ran
    return out


def retrain_columns(metrics: dict[str, Any]) -> dict[str, Any]:
    """``test_acc``/``test_f1``/``test_auc`` of a re-train's ``metrics.json``: the means over
    its seeds with their standard deviations when it has several, else its one run's."""
    test = metrics["test"]
    seeds = len(metrics.get("seeds") or []) or 1
    summary = metrics.get("summary") or {}
    out: dict[str, Any] = {"seeds": seeds}
    for col, name in zip(MEAN_COLUMNS, ("accuracy", f1_name(test), "auc"), strict=True):
        stats = summary.get(name) if seeds > 1 else None
        out[col] = stats["mean"] if stats else test.get(name)
        out[f"{col}_std"] = stats["std"] if stats else None
    return out


def _cell(row: pd.Series, col: str) -> str:
    """A markdown cell: ``mean ± std`` for a test metric over several seeds."""
    digits = 1 if col.endswith("_s") else 4
    value, std = row[col], row.get(f"{col}_std")
    if col in MEAN_COLUMNS and row.get("seeds", 0) > 1 and pd.notna(value) and pd.notna(std):
        return format_mean_std(float(value), float(std), digits)
    return _fmt(value, digits)


def _markdown(frame: pd.DataFrame) -> str:
    # The standard deviations are shown inside their mean's cell.
    cols = [c for c in frame.columns if c not in STD_COLUMNS]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, row in frame.iterrows():
        lines.append("| " + " | ".join(_cell(row, c).replace("|", "/") for c in cols) + " |")
    return "\n".join(lines) + "\n"


def _number_or_none(value: Any) -> float | None:
    return None if value is None or pd.isna(value) else float(value)


def accuracy_panel(exp_dir: Path, row: pd.Series) -> plots.AccuracyPanel:
    board = ExperimentFolder(exp_dir).read_leaderboard()
    metric = row["objective"]
    scored = board[board["param_count"].notna() & board[metric].notna()] if (
        "param_count" in board.columns) else board.iloc[:0]
    # The validation values are accuracies only where the objective is one.
    accuracy = metric.endswith("acc")
    return plots.AccuracyPanel(
        title=str(row["experiment"]),
        trial_params=list(scored["param_count"]) if accuracy else [],
        trial_val_acc=list(scored[metric]) if accuracy else [],
        best_params=_number_or_none(row["param_count"]),
        test_acc=_number_or_none(row["test_acc"]),
        test_std=_number_or_none(row["test_acc_std"]),
        lab_acc=_number_or_none(row["lab_test_acc"]),
    )


def compare(results_dir: Path) -> str:
    """Write ``comparison.csv``, ``comparison.md`` and the accuracy-against-parameters plot
    under ``results_dir``; return the table."""
    if not results_dir.is_dir():
        raise ConfigError(f"{results_dir}: no such results folder")
    folders = (ExperimentFolder(p) for p in results_dir.iterdir() if p.is_dir())
    exp_dirs = sorted(f.root for f in folders if f.meta_file.is_file() and f.leaderboard.is_file())
    if not exp_dirs:
        raise ConfigError(f"{results_dir}: no experiment with a leaderboard found")
    frame = pd.DataFrame([experiment_row(d) for d in exp_dirs])
    atomic_write_text(results_dir / "comparison.csv", frame.to_csv(index=False))
    plots.accuracy_vs_params([accuracy_panel(d, row) for d, (_, row) in
                              zip(exp_dirs, frame.iterrows(), strict=True)],
                             results_dir / ACCURACY_PLOT)
    headline = _markdown(frame[[c for h in HEADLINE for c in (h, f"{h}_std")
                                if c in frame.columns]])
    details = _markdown(frame[["experiment", *(c for c in frame.columns if c not in HEADLINE)]])
    atomic_write_text(results_dir / "comparison.md", COMPARISON_HEADER + headline
                      + DETAILS_HEADER + details)
    return headline

