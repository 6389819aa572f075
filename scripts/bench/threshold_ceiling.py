"""How far is a binary experiment's test accuracy from what any threshold could give? The
best trial is re-trained per seed as ``hpsearch retrain`` trains it, and its test accuracy is
shown at the threshold chosen on validation (the model's rule), at 0.5, at the threshold
best on the test set itself (a ceiling, not a result: it is chosen with the test labels),
and after adapting to the test set's class mix estimated from its unlabeled scores (EM,
Saerens et al. 2002). A gap the ceiling closes is the threshold's; one it does not, the
model's ranking.

    python -m hpsearch.scripts.bench.threshold_ceiling results/pneumonia_cnn [--seeds 5]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike


def accuracy_at(scores: ArrayLike, targets: ArrayLike, threshold: float) -> float:
    """Accuracy of ``score > threshold`` as positive."""
    return float(((np.asarray(scores) > threshold) == np.asarray(targets)).mean())


def best_threshold(scores: ArrayLike, targets: ArrayLike) -> tuple[float, float]:
    """The threshold (among the scores and 0) with the highest accuracy, and that accuracy."""
    scores, targets = np.asarray(scores, dtype=float).ravel(), np.asarray(targets).ravel()
    cuts = np.concatenate([[0.0], np.unique(scores)])
    accuracies = [accuracy_at(scores, targets, c) for c in cuts]
    i = int(np.argmax(accuracies))
    return float(cuts[i]), float(accuracies[i])


def em_prior_shift(scores: ArrayLike, train_prior: float = 0.5,
                   iterations: int = 500) -> tuple[float, np.ndarray]:
    """The positive-class share of unlabeled ``scores`` estimated by EM (Saerens et al.
    2002), and the scores re-weighted to it. ``train_prior``: the share the scores are
    calibrated to (0.5 for a loss weighted to balance the classes)."""
    scores = np.clip(np.asarray(scores, dtype=float).ravel(), 1e-9, 1 - 1e-9)
    prior, adapted = train_prior, scores
    for _ in range(iterations):
        positive = prior / train_prior * scores
        adapted = positive / (positive + (1 - prior) / (1 - train_prior) * (1 - scores))
        prior = float(adapted.mean())
    return prior, adapted


def seed_row(seed: int, val: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray],
             rule: str, fixed: float = 0.5) -> dict[str, Any]:
    """One seed's test accuracy at each threshold, from its validation and test scores."""
    from sklearn.metrics import roc_auc_score

    from hpsearch.lightning_modules.metrics import choose_threshold

    (val_scores, val_targets), (scores, targets) = val, test
    # As the re-train reports it: a "fixed" rule keeps the model's own threshold.
    chosen = fixed if rule == "fixed" else choose_threshold(val_scores, val_targets, rule)
    ceiling, ceiling_accuracy = best_threshold(scores, targets)
    prior, adapted = em_prior_shift(scores)
    return {"seed": seed, "test_auc": float(roc_auc_score(targets, scores)),
            "rule": rule, "threshold": chosen,
            "accuracy": accuracy_at(scores, targets, chosen),
            "accuracy_at_0.5": accuracy_at(scores, targets, 0.5),
            "best_test_threshold": ceiling, "best_test_accuracy": ceiling_accuracy,
            "em_test_prior": prior, "true_test_prior": float(np.mean(targets)),
            "em_accuracy": accuracy_at(adapted, targets, 0.5)}


def measure(folder: Path, seeds: int, data_dir: str | None) -> list[dict[str, Any]]:
    """Re-train the experiment's best trial per seed and score each threshold."""
    from hpsearch.scripts.reports.retrain import (
        RetrainOptions,
        resolve_run,
        retrain_seeds,
        validation_scores,
    )
    from hpsearch.scripts.train import EpochHistory, train
    from hpsearch.search_spaces.errors import ConfigError, replaced

    opts = RetrainOptions(data_dir=data_dir, seeds=seeds)
    cfg, epochs, info = resolve_run(folder, opts)
    if getattr(cfg.data, "num_classes", None) != 2:
        raise ConfigError(f"{folder}: not a two-class experiment; a threshold needs one")
    metric, mode = info["objective"]["metric"], info["objective"]["mode"]
    rows = []
    for seed in retrain_seeds(cfg, opts):
        result = train(replaced(cfg, seed=seed), data_dir=data_dir, run_test=True,
                       stop_after=epochs, history=EpochHistory(metric, mode))
        module = result.module
        test = (np.asarray(module.test_scores), np.asarray(module.test_targets))
        rows.append(seed_row(seed, validation_scores(module, result.datamodule), test,
                             module.model_cfg.threshold_rule, module.model_cfg.threshold))
        print(", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}"
                        for k, v in rows[-1].items()), flush=True)
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hpsearch.scripts.bench.threshold_ceiling",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("folder", help="a binary experiment's folder, after its sweep")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--out", help="CSV to write (default: results/threshold-ceiling-NAME.csv)")
    parser.add_argument("--data-dir", default=None, help="folder holding the datasets")
    args = parser.parse_args(argv)
    from hpsearch.scripts.bench.search_stats import write_rows_csv
    from hpsearch.search_spaces.errors import ConfigError

    folder = Path(args.folder)
    try:
        rows = measure(folder, args.seeds, args.data_dir)
    except ConfigError as exc:
        print(f"threshold_ceiling: error: {exc}", file=sys.stderr)
        return 2
    for key in ("test_auc", "accuracy", "accuracy_at_0.5", "best_test_accuracy",
                "best_test_threshold", "em_test_prior", "em_accuracy"):
        values = [row[key] for row in rows]
        print(f"{key}: mean {np.mean(values):.4f}, range {min(values):.4f}-{max(values):.4f}")
    write_rows_csv(Path(args.out or f"results/threshold-ceiling-{folder.name}.csv"), rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
