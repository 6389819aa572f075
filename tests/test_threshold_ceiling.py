"""The threshold-ceiling measurement: its arithmetic on synthetic scores, and its refusals."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hpsearch.scripts.bench.threshold_ceiling import (
    accuracy_at,
    best_threshold,
    em_prior_shift,
    seed_row,
)


def _balanced_posteriors(n: int, prior: float, rng: np.random.Generator):
    """Labels with ``prior`` positives and the posterior of a model calibrated to a 50:50 mix
    (two unit Gaussians one apart: the log-likelihood ratio is x - 0.5)."""
    targets = (rng.random(n) < prior).astype(int)
    x = rng.normal(targets.astype(float), 1.0)
    return 1 / (1 + np.exp(-(x - 0.5))), targets


def test_the_best_threshold_separates_separable_scores_perfectly():
    scores, targets = np.array([0.1, 0.2, 0.7, 0.9]), np.array([0, 0, 1, 1])
    threshold, accuracy = best_threshold(scores, targets)
    assert accuracy == 1.0 and 0.2 <= threshold < 0.7
    assert accuracy_at(scores, targets, 0.8) == 0.75


def test_em_recovers_the_class_mix_of_unlabeled_scores():
    rng = np.random.default_rng(0)
    for prior in (0.25, 0.8):
        scores, _ = _balanced_posteriors(20_000, prior, rng)
        estimate, adapted = em_prior_shift(scores)
        assert abs(estimate - prior) < 0.03, (prior, estimate)
        assert abs(adapted.mean() - estimate) < 1e-6


def test_no_threshold_beats_the_best_on_the_test_set():
    rng = np.random.default_rng(1)
    val, test = _balanced_posteriors(500, 0.7, rng), _balanced_posteriors(500, 0.4, rng)
    row = seed_row(3, val, test, "youden_smooth")
    assert row["seed"] == 3 and row["true_test_prior"] == test[1].mean()
    for key in ("accuracy", "accuracy_at_0.5", "em_accuracy"):
        assert row[key] <= row["best_test_accuracy"]
    assert 0.7 < row["test_auc"] < 0.8  # two unit Gaussians one apart: AUC 0.76


def test_the_rows_are_written_as_a_csv_and_the_path_is_said(tmp_path, capsys):
    from hpsearch.scripts.bench.search_stats import write_rows_csv

    path = tmp_path / "ceiling.csv"
    write_rows_csv(path, [{"seed": 0, "accuracy": 0.5}, {"seed": 1, "accuracy": 0.75}])
    assert path.read_text() == "seed,accuracy\n0,0.5\n1,0.75\n"
    assert f"Written to {path}" in capsys.readouterr().out


def test_a_folder_that_is_no_two_class_experiment_is_refused_in_one_line(tmp_path, capsys):
    from hpsearch.scripts.bench.threshold_ceiling import main

    repo = Path(__file__).resolve().parents[1]
    for folder, message in ((tmp_path / "none", "not an hpsearch experiment folder"),
                            (repo / "results" / "mnist_cnn", "not a two-class experiment")):
        assert main([str(folder)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err
    assert not (tmp_path / "none").exists()
