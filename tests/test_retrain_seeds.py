"""``hpsearch retrain --seeds K``: the per-seed summary statistics, the seed list, the report's
seed table, ``compare``'s mean ± std columns and the CLI's check of ``--seeds``. No Ray, no
real data: hand-made experiment folders and metrics."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from hpsearch.scripts.cli import main
from hpsearch.scripts.compute import runs_compute
from hpsearch.scripts.experiment_folder import ExperimentFolder
from hpsearch.scripts.reports.compare import compare
from hpsearch.scripts.reports.retrain import (
    RetrainOptions,
    resolve_run,
    retrain_seeds,
    summarize,
    summarize_seeds,
)
from hpsearch.scripts.reports.retrain_report import _report_md, format_test_results
from hpsearch.scripts.sweep_record import SweepMeta
from hpsearch.search_spaces.errors import ConfigError
from hpsearch.search_spaces.train_config import TrainConfig

# t(0.975, 2) = 4.302652729911275: mean 0.92 ± 4.3027 * 0.02 / sqrt(3).
CI_LOW, CI_HIGH = 0.8703172457649935, 0.9696827542350066

CONFIG = {
    "data": {"name": "mnist", "batch_size": 64, "split_seed": 0, "val_size": 10000},
    "model": {"family": "mlp", "hidden": [32], "activation": "relu", "dropout": 0.1,
              "batch_norm": False},
    "optimizer": {"name": "adam", "lr": 0.001},
    "max_epochs": 10,
    "seed": 5,
}


# --------------------------------------------------------------------------- statistics


def test_summarize_gives_mean_sample_std_and_t_interval():
    s = summarize([0.9, 0.92, 0.94])
    assert s is not None and s["n"] == 3
    assert s["mean"] == pytest.approx(0.92)
    assert s["std"] == pytest.approx(0.02)  # ddof=1; the population std would be 0.0163
    assert s["ci95_low"] == pytest.approx(CI_LOW)
    assert s["ci95_high"] == pytest.approx(CI_HIGH)


def test_summarize_of_one_value_has_null_spread_and_stays_valid_json():
    s = summarize([0.85])
    assert s == {"mean": 0.85, "std": None, "ci95_low": None, "ci95_high": None, "n": 1}
    assert json.loads(json.dumps(s, allow_nan=False)) == s
    # Undefined values (NaN: an AUC on a one-class test set) are left out, never averaged.
    assert summarize([0.8, math.nan, None, 0.9])["n"] == 2
    assert summarize([math.nan, None]) is None


def test_summarize_seeds_covers_each_scalar_test_metric_present():
    per_seed = [
        {"seed": 0, "test": {"accuracy": 0.9, "f1": 0.8, "auc": 0.95, "loss": 0.3,
                             "sensitivity": 0.97, "specificity": 0.6}},
        {"seed": 1, "test": {"accuracy": 0.92, "f1": 0.82, "auc": 0.96, "loss": 0.25,
                             "sensitivity": 0.98, "specificity": 0.62}},
        {"seed": 2, "test": {"accuracy": 0.94, "f1": 0.84, "auc": None, "loss": 0.2,
                             "sensitivity": 0.99, "specificity": 0.64}},
    ]
    summary = summarize_seeds(per_seed)
    assert set(summary) == {"accuracy", "f1", "auc", "loss", "sensitivity", "specificity"}
    assert summary["accuracy"]["mean"] == pytest.approx(0.92)
    assert summary["f1"]["std"] == pytest.approx(0.02)
    assert summary["auc"]["n"] == 2 and summary["auc"]["mean"] == pytest.approx(0.955)
    json.dumps(summary, allow_nan=False)


# --------------------------------------------------------------------------- seeds


def _experiment(root: Path, name: str = "exp", dataset: str = "mnist",
                family: str = "mlp") -> Path:
    """A results/<experiment> folder shaped like a real sweep's: sweep.json and a
    one-trial leaderboard.csv."""
    exp = root / name
    exp.mkdir(parents=True)
    ExperimentFolder(exp).write_meta(SweepMeta(
        experiment=name, dataset=dataset, family=family,
        objective={"metric": "val_acc", "mode": "max"}, max_epochs=10, num_samples=1,
        params=["model.dropout", "optimizer.lr"], wall_time_s=12.5))
    pd.DataFrame([{
        "rank": 1, "trial_id": "abc123", "status": "completed", "model.dropout": 0.1,
        "optimizer.lr": 0.001, "val_acc": 0.98, "best_epoch": 7, "epochs_run": 10,
        "param_count": 25450, "train_time_s": 30.0, "seed": 5, "error": "",
        "config": json.dumps(CONFIG),
    }]).to_csv(exp / "leaderboard.csv", index=False)
    return exp


def test_seeds_count_up_from_seed_option_else_from_config():
    cfg = TrainConfig.from_dict(CONFIG)
    assert retrain_seeds(cfg, RetrainOptions()) == [5]
    assert retrain_seeds(cfg, RetrainOptions(seeds=3)) == [5, 6, 7]
    assert retrain_seeds(cfg, RetrainOptions(seeds=3, seed=0)) == [0, 1, 2]
    with pytest.raises(ConfigError, match="--seeds must be at least 1, got 0"):
        retrain_seeds(cfg, RetrainOptions(seeds=0))


def test_seeds_of_a_leaderboard_trial_start_at_its_recorded_seed(tmp_path: Path):
    exp = _experiment(tmp_path)
    for opts, expected in [(RetrainOptions(seeds=3), [5, 6, 7]),
                           (RetrainOptions(seeds=2, seed=11), [11, 12])]:
        cfg, epochs, info = resolve_run(exp, opts)
        assert retrain_seeds(cfg, opts) == expected
        assert epochs == 7 and info["trial_id"] == "abc123"


# --------------------------------------------------------------------------- report.md


def _binary_info(seeds: list[int]) -> dict[str, Any]:
    tests = [
        {"accuracy": 0.9, "f1": 0.8, "auc": 0.95, "loss": 0.3},
        {"accuracy": 0.92, "f1": 0.82, "auc": 0.96, "loss": 0.25},
        {"accuracy": 0.94, "f1": 0.84, "auc": 0.97, "loss": 0.2},
    ][:len(seeds)]
    per_seed = [{"seed": s, "test": t, "retrain_value": 0.99, "train_time_s": 10.0}
                for s, t in zip(seeds, tests, strict=True)]
    return {
        "experiment": "pneu", "trial_id": "abc123", "rank": 1, "epochs": 10,
        "train_on": "train", "code_version": "deadbeef", "sweep_metric": "val_auc",
        "sweep_value": 0.99, "retrain_value": 0.99, "config": {"seed": seeds[0]},
        "test": {**tests[0], "sensitivity": 0.98, "specificity": 0.66, "threshold": 0.5,
                 "confusion": [[155, 79], [7, 383]]},
        "most_confused": ["normal predicted as pneumonia: 79"],
        "seeds": seeds, "per_seed": per_seed, "summary": summarize_seeds(per_seed),
    }


def test_report_has_a_seed_table_with_mean_std_and_interval():
    text = _report_md(_binary_info([3, 4, 5]), "TABLE", binary=True)
    section = text.split("## Test set over 3 seeds\n", 1)[1].split("## Most confused")[0]
    assert "seed 3" in section
    rows = [line for line in section.splitlines() if line.startswith("|")]
    assert rows == [
        "| seed | accuracy | F1 | AUC | loss |",
        "|---|---|---|---|---|",
        "| 3 | 0.9000 | 0.8000 | 0.9500 | 0.3000 |",
        "| 4 | 0.9200 | 0.8200 | 0.9600 | 0.2500 |",
        "| 5 | 0.9400 | 0.8400 | 0.9700 | 0.2000 |",
        "| mean ± std | 0.9200 ± 0.0200 | 0.8200 ± 0.0200 | 0.9600 ± 0.0100 | 0.2500 ± 0.0500 |",
        f"| 95% interval | {CI_LOW:.4f} to {CI_HIGH:.4f} | 0.7703 to 0.8697 | 0.9352 to 0.9848 "
        "| 0.1258 to 0.3742 |",
    ]
    # Everything a single-seed report has is still there: the first seed's test table.
    assert "## Test set\n" in text and "| accuracy | 0.9000 |" in text
    assert "| specificity | 0.6600 |" in text and "- normal predicted as pneumonia: 79" in text
    assert "![ROC curve](roc_curve.png)" in text and "TABLE" in text


def test_single_seed_report_is_unchanged():
    info = _binary_info([0])
    old = {k: v for k, v in info.items() if k not in ("seeds", "per_seed", "summary")}
    text = _report_md(info, "TABLE", binary=True)
    assert text == _report_md(old, "TABLE", binary=True)
    assert "seeds" not in text and "±" not in text


def test_multiclass_seed_table_uses_macro_f1_and_no_auc():
    per_seed = [{"seed": s, "test": {"accuracy": a, "macro_f1": a - 0.01, "loss": 0.1}}
                for s, a in ((0, 0.98), (1, 0.99))]
    info = {"experiment": "m", "config": {"seed": 0}, "most_confused": [],
            "test": {"accuracy": 0.98, "macro_f1": 0.97, "loss": 0.1, "per_class": {}},
            "seeds": [0, 1], "per_seed": per_seed, "summary": summarize_seeds(per_seed)}
    text = _report_md(info, "TABLE", binary=False)
    assert "| seed | accuracy | F1 | loss |" in text
    assert "| 1 | 0.9900 | 0.9800 | 0.1000 |" in text
    assert "| mean ± std | 0.9850 ± 0.0071 | 0.9750 ± 0.0071 | 0.1000 ± 0.0000 |" in text


def _cells(table: str) -> list[list[str]]:
    return [[c.strip() for c in line.split("  ") if c.strip()] for line in table.splitlines()
            if line.strip() and not set(line.strip()) <= set("─━-")]


def test_terminal_table_gives_mean_std_and_interval_over_seeds():
    rows = _cells(format_test_results(_binary_info([3, 4, 5])))
    assert ["accuracy", "0.9200 ± 0.0200", f"{CI_LOW:.4f} to {CI_HIGH:.4f}"] in rows, rows
    assert ["F1", "0.8200 ± 0.0200", "0.7703 to 0.8697"] in rows
    assert ["AUC", "0.9600 ± 0.0100", "0.9352 to 0.9848"] in rows
    single = _cells(format_test_results(_binary_info([0])))
    assert ["test metric", "seed 0"] in single and ["accuracy", "0.9000"] in single, single
    assert ["AUC", "0.9500"] in single


# --------------------------------------------------------------------------- compare


def _write_metrics(exp: Path, metrics: dict[str, Any]) -> None:
    (exp / "best").mkdir()
    (exp / "best" / "metrics.json").write_text(json.dumps(metrics))


def test_compare_reports_mean_and_std_over_seeds(tmp_path: Path):
    many = _experiment(tmp_path, "many")
    per_seed = [{"seed": s, "test": {"accuracy": a, "macro_f1": a - 0.01, "loss": 0.1}}
                for s, a in ((5, 0.90), (6, 0.92), (7, 0.94))]
    _write_metrics(many, {"test": {"accuracy": 0.90, "macro_f1": 0.89, "loss": 0.1},
                          "seeds": [5, 6, 7], "per_seed": per_seed,
                          "summary": summarize_seeds(per_seed)})
    # A metrics.json from before --seeds, and a new single-seed one: one run each.
    old = _experiment(tmp_path, "old")
    _write_metrics(old, {"test": {"accuracy": 0.985, "macro_f1": 0.9849, "loss": 0.05}})
    one = _experiment(tmp_path, "one", dataset="pneumonia", family="binary_cnn")
    one_seed = [{"seed": 0, "test": {"accuracy": 0.86, "f1": 0.9, "auc": 0.94}}]
    _write_metrics(one, {"test": {"accuracy": 0.86, "f1": 0.9, "auc": 0.94}, "seeds": [0],
                         "per_seed": one_seed, "summary": summarize_seeds(one_seed)})
    _experiment(tmp_path, "untrained")

    table = compare(tmp_path)
    csv = pd.read_csv(tmp_path / "comparison.csv").set_index("experiment")
    for col in ("test_acc", "test_f1", "test_acc_std", "test_f1_std", "gain_vs_lab"):
        assert pd.api.types.is_float_dtype(csv[col]), col
    assert csv.loc["many", "test_acc"] == pytest.approx(0.92)
    assert csv.loc["many", "test_acc_std"] == pytest.approx(0.02)
    assert csv.loc["many", "test_f1"] == pytest.approx(0.91)
    assert csv.loc["many", "test_f1_std"] == pytest.approx(0.02)
    assert pd.isna(csv.loc["many", "test_auc"]) and pd.isna(csv.loc["many", "test_auc_std"])
    assert csv.loc["many", "gain_vs_lab"] == pytest.approx(0.92 - 0.985)  # the mean's gain
    assert csv.loc["old", "test_acc"] == 0.985 and pd.isna(csv.loc["old", "test_acc_std"])
    assert csv.loc["one", "test_auc"] == 0.94 and pd.isna(csv.loc["one", "test_auc_std"])
    assert csv["seeds"].to_dict() == {"many": 3, "old": 1, "one": 1, "untrained": 0}

    md = (tmp_path / "comparison.md").read_text()
    assert table in md.split("## Details")[0]  # the headline table
    header, _, *rows = table.splitlines()
    cols = [c.strip() for c in header.strip("|").split("|")]
    assert "test_acc_std" not in cols and "seeds" in cols
    cells = {r.split("|")[1].strip(): [c.strip() for c in r.strip("|").split("|")]
             for r in rows}
    pick = {name: dict(zip(cols, cells[name], strict=True)) for name in cells}
    assert pick["many"]["test_acc"] == "0.9200 ± 0.0200"
    assert pick["many"]["test_f1"] == "0.9100 ± 0.0200"
    assert pick["many"]["test_auc"] == "" and pick["many"]["seeds"] == "3"
    assert pick["old"]["test_acc"] == "0.9850" and pick["old"]["seeds"] == "1"
    assert pick["one"]["test_auc"] == "0.9400"
    assert pick["untrained"]["test_acc"] == "" and pick["untrained"]["seeds"] == "0"


def test_compare_judges_the_mean_against_the_lab_and_the_aim_and_adds_up_compute(
        tmp_path: Path):
    def exp_with(name: str, accs: list[float], **meta_extra: Any) -> Path:
        exp = _experiment(tmp_path, name)
        folder = ExperimentFolder(exp)
        folder.write_meta(folder.read_meta().model_copy(update=meta_extra))
        per_seed = [{"seed": s, "test": {"accuracy": a, "macro_f1": a}, "train_cpu_s": 360.0,
                     "train_gpu_s": 0.0, "train_time_s": 200.0} for s, a in enumerate(accs)]
        _write_metrics(exp, {"test": per_seed[0]["test"], "seeds": list(range(len(accs))),
                             "per_seed": per_seed, "summary": summarize_seeds(per_seed),
                             "compute": runs_compute(per_seed)})
        return exp

    # The lab's MNIST MLP best is 0.985, the aim 0.988.
    exp_with("clear", [0.989, 0.990, 0.991],
             compute={"sweep_cpu_h": 2.0, "sweep_gpu_h": 0.0, "train_cpu_h": 1.5})
    exp_with("close", [0.984, 0.986, 0.988],
             compute={"sweep_cpu_h": 1.0, "sweep_gpu_h": 0.5, "train_cpu_h": 0.8})
    exp_with("below", [0.980, 0.981])
    compare(tmp_path)
    csv = pd.read_csv(tmp_path / "comparison.csv").set_index("experiment")
    assert csv.loc["clear", ["beats_lab", "clear_of_lab", "reaches_aim"]].tolist() == [
        True, True, True]
    assert csv.loc["close", ["beats_lab", "clear_of_lab", "reaches_aim"]].tolist() == [
        True, False, False]
    assert csv.loc["below", ["beats_lab", "clear_of_lab"]].tolist() == [False, False]
    # Three seeds of 360 CPU-seconds each re-trained: 0.3 CPU-hours beside the sweep's.
    assert csv.loc["clear", "retrain_cpu_h"] == pytest.approx(0.3)
    assert csv.loc["clear", "total_cpu_h"] == pytest.approx(2.3)
    assert pd.isna(csv.loc["clear", "gpu_h"]) and csv.loc["close", "gpu_h"] == 0.5
    assert csv.loc["below", "total_cpu_h"] == pytest.approx(0.2)  # a sweep from before
    assert "LeCun" in csv.loc["clear", "published"]
    headline = (tmp_path / "comparison.md").read_text().split("## Details")[0]
    assert "| clear | 0.9900 ± 0.0010 |" in headline and "| yes | yes |" in headline


# --------------------------------------------------------------------------- CLI


@pytest.mark.parametrize("value", ["0", "-2", "three"])
def test_cli_rejects_a_bad_seed_count_in_one_line(value: str, tmp_path: Path, capsys):
    exp = _experiment(tmp_path)
    with pytest.raises(SystemExit) as exc:
        main(["retrain", str(exp), "--seeds", value])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("hpsearch retrain: error: argument --seeds")
    assert not (exp / "best").exists()


def test_cli_help_describes_every_retrain_option(capsys):
    with pytest.raises(SystemExit):
        main(["retrain", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    for text in ("--seeds K re-train K times with seeds S, S+1, ..., S+K-1",
                 "--rank RANK re-train the trial", "--epochs EPOCHS epochs to train",
                 "--seed SEED random seed", "--accelerator {auto,cpu,gpu} where to train",
                 "--train-on {train,train+val} train+val also fits"):
        assert text in out, text


def test_a_threshold_chosen_on_validation_is_reported_beside_the_fixed_one():
    info = _binary_info([0])
    info["test"] |= {"threshold": 0.3127, "threshold_rule": "youden", "fixed_threshold": 0.5,
                     "fixed_threshold_accuracy": 0.85, "fixed_threshold_f1": 0.78}
    text = _report_md(info, "TABLE", binary=True)
    assert "| threshold | 0.3127 |" in text and "| accuracy | 0.9000 |" in text
    assert "| accuracy at the fixed threshold 0.5 | 0.8500 |" in text
    assert "| f1 at the fixed threshold 0.5 | 0.7800 |" in text
    assert "maximises Youden's J (sensitivity + specificity - 1) on the validation" in text
    rows = _cells(format_test_results(info))
    assert ["accuracy at threshold 0.5", "0.8500"] in rows, rows
