"""The benchmark's arithmetic and output on synthetic figures (`make bench` runs it for real)."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from hpsearch.scripts.bench.run import (
    FULL,
    MIN_VAL_IMAGES,
    MNIST_TRAIN_IMAGES,
    EpochModel,
    Figure,
    SweepTiming,
    TrialSize,
    TrialSpan,
    format_csv,
    format_table,
    sweep_figures,
    training_figure,
    trial_spans,
)


def test_training_figure_takes_medians_of_paired_epochs() -> None:
    # Columns: wall, CPU seconds. One disturbed epoch on each side does not move the medians.
    ours = np.array([[1.0, 1.0], [1.1, 1.0], [3.0, 1.2], [1.2, 1.1]])
    ref = np.array([[1.0, 0.9], [0.4, 0.4], [1.0, 1.0], [1.0, 1.0]])
    dm = SimpleNamespace(train_x=range(50), val_x=range(10))
    figure = training_figure("mlp", dm, "cpu", ours, ref)
    assert (figure.ours, figure.baseline) == pytest.approx((1.15, 1.0))
    assert figure.ratio == pytest.approx(1.15) and figure.met
    assert figure.item == "mlp epoch (50 train + 10 val images)"
    assert "median of 4" in figure.note and "ratios 1 to 3" in figure.note
    assert not training_figure("mlp", dm, "cpu", ours * 1.2, ref).met


def test_sweep_efficiency_and_lost_slot_time() -> None:
    # Two slots over 10 s; slot A runs trials 0-4 s and 4.5-9 s, slot B one trial 1-8 s.
    spans = (TrialSpan(0.0, 4.0, 3.5), TrialSpan(1.0, 8.0, 6.0), TrialSpan(4.5, 9.0, 4.0))
    timing = SweepTiming(wall_s=10.0, spans=spans, slots=2)
    assert timing.train_s == pytest.approx(13.5)
    assert timing.efficiency == pytest.approx(13.5 / 20)
    assert timing.lost_per_trial_s == pytest.approx((20 - 13.5) / 3)
    # Only the third trial follows another in its slot: 0.5 s gap + 0.5 s outside epochs.
    assert timing.steady_lost_per_trial_s == pytest.approx(1.0)


def test_steady_lost_takes_the_slot_freed_last() -> None:
    # Both slots are free when the third trial starts; it follows the one that ended at 5 s.
    spans = (TrialSpan(0.0, 3.0, 3.0), TrialSpan(0.0, 5.0, 5.0), TrialSpan(5.25, 7.0, 1.75))
    assert SweepTiming(7.0, spans, 2).steady_lost_per_trial_s == pytest.approx(0.25)
    assert math.isnan(SweepTiming(5.0, spans[:2], 2).steady_lost_per_trial_s)


def test_trial_spans_from_tune_results(tmp_path: Path) -> None:
    for name, rows in {
        "trial_b": [{"reported_at": 105.0, "time_total_s": 2.0, "train_time_s": 1.5}],
        "trial_a": [
            {"reported_at": 101.0, "time_total_s": 1.0, "train_time_s": 0.8},
            {"reported_at": 102.0, "time_total_s": 2.0, "train_time_s": 1.7},
        ],
    }.items():
        (tmp_path / "ray" / name).mkdir(parents=True)
        text = "".join(json.dumps(row) + "\n" for row in rows)
        (tmp_path / "ray" / name / "result.json").write_text(text)
    (tmp_path / "ray" / "never_reported").mkdir()
    (tmp_path / "ray" / "never_reported" / "result.json").write_text("")
    assert trial_spans(tmp_path) == [TrialSpan(100.0, 102.0, 1.7), TrialSpan(103.0, 105.0, 1.5)]


def test_table_and_csv_hold_every_figure() -> None:
    figures = [
        Figure("train", "mlp epoch", 1.1, 1.0, "s", "hand-written loop", "ratio <= 1.15", True),
        Figure("sweep", "efficiency", 0.9, 0.0, "", "Ray Tune defaults", note="a, b"),
    ]
    table = format_table(figures).splitlines()
    assert len(table) == 4 and table[0].split()[:3] == ["part", "what", "hpsearch"]
    assert "1.1" in table[2] and "yes" in table[2]
    rows = list(csv.DictReader(io.StringIO(format_csv(figures, {"mode": "quick"}))))
    assert [r["item"] for r in rows] == ["mlp epoch", "efficiency"]
    assert float(rows[0]["ratio"]) == pytest.approx(1.1)
    assert rows[1]["ratio"] == "nan" and rows[1]["note"] == "a, b" and rows[1]["met"] == ""
    assert {r["mode"] for r in rows} == {"quick"}


def test_epoch_model_fits_two_sizes_and_sizes_trials_to_a_length() -> None:
    # 20 us per training image and 5 us per validation image, as two timed sizes show them.
    true = EpochModel(train_s=20e-6, val_s=5e-6)
    model = EpochModel.fit({50_000: true.epoch_s(50_000), 10_000: true.epoch_s(10_000)})
    assert (model.train_s, model.val_s) == pytest.approx((20e-6, 5e-6))
    size = model.size_for(1.5, min_epochs=2)
    assert size.epochs == 2 and size.val_size == MNIST_TRAIN_IMAGES - size.train_images
    assert 2 * model.epoch_s(size.train_images) == pytest.approx(1.5, abs=1e-4)
    # Longer than two epochs on (nearly) all images allow: more epochs, not more images.
    longer = model.size_for(4.0, min_epochs=2)
    assert longer.epochs == 4 and longer.train_images <= MNIST_TRAIN_IMAGES - MIN_VAL_IMAGES
    assert 4 * model.epoch_s(longer.train_images) == pytest.approx(4.0, abs=1e-4)
    # Shorter than validation alone takes: the fewest training images there can be.
    assert model.size_for(0.1, min_epochs=2).train_images == MIN_VAL_IMAGES


def test_sweep_targets_are_judged_only_for_trials_of_one_to_two_seconds() -> None:
    def timing(train_s: float, wall_s: float) -> SweepTiming:
        spans = tuple(TrialSpan(i, i + train_s, train_s) for i in range(4))
        return SweepTiming(wall_s, spans, slots=2, ray_start_s=5.0)

    base = timing(1.5, 20.0)
    size = TrialSize(40_000, 2)
    judged = {f.item.split(",")[0]: f for f in sweep_figures(FULL, size, timing(1.5, 3.2), base)}
    assert judged["efficiency = training / (wall x slots)"].met is True  # 6 / 6.4 = 0.94
    assert judged["lost slot time per trial"].ours == pytest.approx(0.1)
    slow = sweep_figures(FULL, size, timing(1.5, 4.0), base)  # 6 / 8 = 0.75
    assert [f.met for f in slow if f.item.startswith("efficiency")] == [False]
    short = sweep_figures(FULL, size, timing(0.6, 1.5), base)
    assert all(f.met is None for f in short)
    assert "outside the 1-2 s" in next(f.note for f in short if f.item.startswith("efficiency"))
    assert "40,000 images" in short[0].note and "trials of 0.60 s" in short[0].item
