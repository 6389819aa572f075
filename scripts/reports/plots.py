"""The pictures of the reports: confusion matrix, learning curves, ROC curve, Pareto front,
accuracy against parameter count."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers and CI

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import NullFormatter  # noqa: E402

from hpsearch.datamodules.paths import atomic_write  # noqa: E402


def save(fig: plt.Figure, path: Path) -> None:
    """Write ``fig`` as a PNG, atomically, and close it."""
    fig.tight_layout()
    atomic_write(path, lambda out: fig.savefig(out, dpi=110, format="png"))
    plt.close(fig)


def confusion_matrix(cm: np.ndarray, names: Sequence[str], path: Path, title: str) -> None:
    cm = np.asarray(cm)
    size = max(4.0, 0.6 * len(names) + 2)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    image = ax.imshow(cm, cmap="Blues")
    fig.colorbar(image, ax=ax, fraction=0.046)
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"{title}: confusion matrix (test)")
    threshold = cm.max() / 2 if cm.size else 0
    for (i, j), value in np.ndenumerate(cm):
        ax.text(j, i, str(value), ha="center", va="center", fontsize=8,
                color="white" if value > threshold else "black")
    save(fig, path)


def learning_curves(history: Sequence[dict[str, float]], path: Path, title: str) -> None:
    epochs = [row["epoch"] for row in history]
    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(10, 4))
    for ax, what in ((loss_ax, "loss"), (acc_ax, "acc")):
        for split, style in (("train", "o-"), ("val", "s--")):
            values = [row.get(f"{split}_{what}") for row in history]
            if any(v is not None for v in values):
                ax.plot(epochs, values, style, label=split)
        ax.set_xlabel("epoch")
        ax.set_ylabel("accuracy" if what == "acc" else what)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(f"{title}: learning curves")
    save(fig, path)


def roc_curve(scores: np.ndarray, targets: np.ndarray, path: Path, title: str) -> None:
    from sklearn.metrics import roc_auc_score
    from sklearn.metrics import roc_curve as sk_roc_curve

    fpr, tpr, _ = sk_roc_curve(targets, scores)
    auc = roc_auc_score(targets, scores)
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot(fpr, tpr, label=f"AUC = {auc:.3f}")
    ax.plot([0, 1], [0, 1], "k:", label="chance")
    ax.set_xlabel("false positive rate (1 - specificity)")
    ax.set_ylabel("true positive rate (sensitivity)")
    ax.set_title(f"{title}: ROC (test)")
    ax.legend(loc="lower right")
    save(fig, path)


def pareto_front(points: Sequence[tuple[float, float, int]], labels: tuple[str, str],
                 path: Path, title: str) -> None:
    """The trials of a two-objective sweep, ``(x, y, pareto_rank)`` each (rank -1: off the
    ranking), with the front (rank 0) highlighted and joined in order of ``x``."""
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    rest = [(x, y) for x, y, rank in points if rank != 0]
    front = sorted((x, y) for x, y, rank in points if rank == 0)
    if rest:
        ax.scatter(*zip(*rest, strict=True), s=22, color="0.6", label="other trials")
    if front:
        ax.plot(*zip(*front, strict=True), "o-", color="tab:red", label="Pareto front")
    if labels[0] == "param_count" and all(x > 0 for x, _, _ in points):
        ax.set_xscale("log")
    ax.set_xlabel(labels[0])
    ax.set_ylabel(labels[1])
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(f"{title}: Pareto front")
    save(fig, path)


@dataclass(frozen=True)
class AccuracyPanel:
    """One experiment in :func:`accuracy_vs_params`: its trials' validation accuracy, and its
    re-trained best trial's test accuracy (mean ± std over seeds) beside the lab's best."""

    title: str
    trial_params: Sequence[float]
    trial_val_acc: Sequence[float]
    best_params: float | None
    test_acc: float | None
    test_std: float | None
    lab_acc: float | None


def _accuracy_floor(p: AccuracyPanel) -> float:
    """Down to the median trial, so that a few hopeless trials do not flatten the rest."""
    marks = [v for v in (p.lab_acc, p.test_acc) if v is not None]
    if len(p.trial_val_acc):
        marks.append(float(np.median(p.trial_val_acc)))
    return max(0.0, min(marks) - 0.02) if marks else 0.0


def accuracy_vs_params(panels: Sequence[AccuracyPanel], path: Path) -> None:
    """A panel per experiment: accuracy against parameter count (log scale)."""
    cols = min(3, len(panels))
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.8 * rows), squeeze=False)
    for ax, p in zip(axes.flat, panels, strict=False):
        ax.scatter(p.trial_params, p.trial_val_acc, s=14, color="0.6", label="trials (val)")
        if p.best_params is not None and p.test_acc is not None:
            ax.errorbar([p.best_params], [p.test_acc], yerr=[p.test_std or 0.0], fmt="o",
                        color="tab:red", capsize=4, label="best, re-trained (test)")
        if p.lab_acc is not None:
            ax.axhline(p.lab_acc, color="tab:blue", linestyle="--", label="lab's best (test)")
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())  # minor log labels overlap
        top = max([*p.trial_val_acc, p.lab_acc or 0.0, (p.test_acc or 0.0) + (p.test_std or 0.0)])
        ax.set_ylim(_accuracy_floor(p), min(1.0, top + 0.005))
        ax.set_xlabel("parameters")
        ax.set_ylabel("accuracy")
        ax.set_title(p.title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    save(fig, path)
