"""Classification metrics as pure functions of confusion matrices and scores.

The LightningModule accumulates confusion matrices / scores on the device during an epoch and
calls these once at epoch end, so the per-step path never synchronises with the CPU.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from sklearn.metrics import roc_auc_score

# What ClassifierModule logs per evaluation (with a ``val_`` or ``test_`` prefix).
EVAL_METRICS = ("loss", "acc", "f1")
BINARY_EVAL_METRICS = ("auc", "sensitivity", "specificity")


def epoch_metrics(binary: bool) -> tuple[str, ...]:
    """The metrics ClassifierModule logs every epoch, for a binary or a multiclass head:
    the names a sweep's objective can name."""
    evals = EVAL_METRICS + (BINARY_EVAL_METRICS if binary else ())
    return ("train_loss", "train_acc", *(f"val_{name}" for name in evals))


def _ratio(num: np.ndarray, den: np.ndarray, empty: float) -> np.ndarray:
    """Elementwise ``num / den`` with ``empty`` where ``den`` is 0 (no warning)."""
    num = np.asarray(num, dtype=float)
    den = np.asarray(den, dtype=float)
    out = np.full(np.broadcast(num, den).shape, empty, dtype=float)
    np.divide(num, den, out=out, where=den > 0)
    return out


def metrics_from_confusion(cm: ArrayLike) -> dict[str, Any]:
    """Accuracy, macro-F1 and per-class precision/recall/F1 from a confusion matrix.

    ``cm[i, j]`` counts samples of true class ``i`` predicted as ``j``. Precision, recall and F1
    of a class with an empty denominator are 0 (sklearn's ``zero_division=0``). Macro-F1 averages
    over classes that occur as a true or predicted label, like sklearn's ``f1_score`` without
    ``labels``, so a small validation split that lacks a class is not penalised for it.
    Per-class values are plain lists (JSON-ready); accuracy and macro-F1 are NaN for an empty
    matrix.
    """
    cm = np.asarray(cm)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1] or cm.shape[0] == 0:
        raise ValueError(f"confusion matrix must be square and non-empty, got shape {cm.shape}")
    if np.any(cm < 0):
        raise ValueError("confusion matrix counts must be >= 0")
    tp = np.diag(cm).astype(float)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    precision = _ratio(tp, predicted, 0.0)
    recall = _ratio(tp, support, 0.0)
    # 2TP / (2TP + FP + FN) == 2PR / (P + R), without the 0/0 when P = R = 0.
    f1 = _ratio(2 * tp, support + predicted, 0.0)
    present = (support + predicted) > 0
    total = cm.sum()
    return {
        "accuracy": float(tp.sum() / total) if total else float("nan"),
        "macro_f1": float(f1[present].mean()) if present.any() else float("nan"),
        "precision": precision.tolist(),
        "recall": recall.tolist(),
        "f1": f1.tolist(),
        "support": support.astype(int).tolist(),
    }


def binary_metrics(scores: ArrayLike, targets: ArrayLike, threshold: float = 0.5) -> dict[str, Any]:
    """Metrics of a binary classifier from positive-class probabilities and 0/1 targets.

    A sample is predicted positive when ``score > threshold`` (Keras' ``binary_accuracy``
    convention). Returns ``accuracy``, ``f1`` (of the positive class; 0 when it is never
    predicted nor present), ``auc`` (ROC-AUC), ``sensitivity`` (recall of positives),
    ``specificity`` (recall of negatives) and ``confusion`` (2x2 int array, rows = true class).
    ``auc`` is NaN when only one class is present, and so is sensitivity without positives or
    specificity without negatives: those are undefined, and NaN keeps them from being mistaken
    for a score.
    """
    scores = np.asarray(scores, dtype=float).ravel()
    targets = np.asarray(targets).ravel()
    if scores.shape != targets.shape:
        raise ValueError(f"{scores.size} scores but {targets.size} targets")
    if not np.isin(targets, (0, 1)).all():
        raise ValueError("binary targets must be 0 or 1")
    targets = targets.astype(np.int64)
    preds = (scores > threshold).astype(np.int64)
    confusion = np.bincount(targets * 2 + preds, minlength=4).reshape(2, 2)
    (tn, fp), (fn, tp) = confusion
    both_classes = 0 < tp + fn < targets.size
    return {
        "accuracy": float((tp + tn) / targets.size) if targets.size else float("nan"),
        "f1": float(_ratio(2 * tp, 2 * tp + fp + fn, 0.0)),
        "auc": float(roc_auc_score(targets, scores)) if both_classes else float("nan"),
        "sensitivity": float(_ratio(tp, tp + fn, float("nan"))),
        "specificity": float(_ratio(tn, tn + fp, float("nan"))),
        "confusion": confusion,
    }


def smoothed_youden_threshold(scores: ArrayLike, targets: ArrayLike, grid: int = 2001) -> float:
    """The threshold that maximises Youden's J of the kernel-smoothed ROC: each score a
    Gaussian in logit space (Silverman's bandwidth), so the threshold depends on both classes'
    whole score distributions, not on the few images that decide the empirical maximum."""
    from scipy.special import ndtr

    scores = np.clip(np.asarray(scores, dtype=float).ravel(), 1e-6, 1 - 1e-6)
    targets = np.asarray(targets).ravel().astype(np.int64)
    z = np.log(scores / (1 - scores))
    positives, negatives = z[targets == 1], z[targets == 0]
    width = max(1.06 * float(np.std(z)) * z.size ** (-1 / 5), 1e-6)
    cuts = np.linspace(z.min(), z.max(), grid)
    sensitivity = ndtr((positives[None, :] - cuts[:, None]) / width).mean(axis=1)
    specificity = ndtr((cuts[:, None] - negatives[None, :]) / width).mean(axis=1)
    return float(1 / (1 + np.exp(-cuts[np.argmax(sensitivity + specificity)])))


def choose_threshold(scores: ArrayLike, targets: ArrayLike, rule: str) -> float:
    """The decision threshold that maximises ``rule`` on these (validation) scores:
    ``youden`` (sensitivity + specificity - 1) or ``f1`` (of the positive class). Candidates
    are the midpoints between consecutive distinct scores (``score > threshold`` is
    positive); ties go to the threshold closest to 0.5. ``youden_smooth``: Youden's J of
    the smoothed ROC (:func:`smoothed_youden_threshold`), steadier where a few validation
    images decide the maximum (a validation AUC near 1)."""
    from sklearn.metrics import precision_recall_curve, roc_curve

    scores = np.asarray(scores, dtype=float).ravel()
    targets = np.asarray(targets).ravel().astype(np.int64)
    if not 0 < targets.sum() < targets.size:
        raise ValueError("choosing a threshold needs both classes in the validation split")
    if rule == "youden_smooth":
        return smoothed_youden_threshold(scores, targets)
    if rule == "youden":
        fpr, tpr, cuts = roc_curve(targets, scores)
        gain = tpr - fpr
    elif rule == "f1":
        precision, recall, cuts = precision_recall_curve(targets, scores)
        gain = _ratio(2 * precision[:-1] * recall[:-1], precision[:-1] + recall[:-1], 0.0)
    else:
        raise ValueError(f"threshold rule: must be 'youden', 'youden_smooth' or 'f1', "
                         f"got {rule!r}")
    # sklearn's cut c predicts positive for score >= c; ours is score > t: the midpoint
    # between c and the next lower distinct score gives the same predictions.
    distinct = np.unique(scores)
    finite = np.isfinite(cuts)
    gain, cuts = gain[finite], cuts[finite]
    lower = np.array([distinct[distinct < c].max() if (distinct < c).any() else c - 1e-6
                      for c in cuts])
    mids = (cuts + lower) / 2
    best = np.flatnonzero(gain >= gain.max() - 1e-12)
    return float(np.clip(mids[best[np.argmin(np.abs(mids[best] - 0.5))]], 1e-6, 1 - 1e-6))
