"""The user's own LightningModule and LightningDataModule, named in a space file by
``target`` (tests/external/digits_lit, swept by tests/external/digits.yaml): bad input refused
in one line when the space is read, the typed config, ``train()`` on them, the Python API's
errors; then (slow) real sweeps from the command line, whose folders pass the same checks as
the built-in experiments' (tests/test_sweep.py)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import pytorch_lightning as pl
import torch
import yaml
from sweep_process import SWEEP_TIMEOUT_S, cli_in_process
from test_sweep import _search_report
from torch.utils.data import DataLoader, TensorDataset

import hpsearch
from hpsearch.scripts.cli import main as cli_main
from hpsearch.scripts.experiment_folder import LEADERBOARD
from hpsearch.scripts.reports.retrain import REPRODUCE_TOLERANCE
from hpsearch.scripts.study import load_study
from hpsearch.scripts.train import EpochHistory, MetricNotLoggedError, train
from hpsearch.search_spaces.errors import ConfigError
from hpsearch.search_spaces.schema import parse_space
from hpsearch.search_spaces.targets import UserData, UserModel
from hpsearch.search_spaces.train_config import TrainConfig

REPO = Path(__file__).resolve().parents[1]
EXTERNAL = REPO / "tests" / "external"
DIGITS_YAML = EXTERNAL / "digits.yaml"
NET = "digits_lit.models:DigitsNet"
DATA = "digits_lit.data:DigitsData"
README_HEADING = "## Bring your own model"


@pytest.fixture
def user_code(monkeypatch: pytest.MonkeyPatch) -> None:
    """tests/external on sys.path, as PYTHONPATH puts it there for the command line."""
    monkeypatch.syspath_prepend(str(EXTERNAL))


def _digits() -> dict[str, Any]:
    """tests/external/digits.yaml as loaded."""
    return yaml.safe_load(DIGITS_YAML.read_text())


def _dense_params(hidden: int) -> int:
    """DigitsNet's parameters: 64 -> hidden -> 10."""
    return 64 * hidden + hidden + hidden * 10 + 10


# --------------------------------------------------------------------------- bad input


def _set(section: str, **values: Any) -> Callable[[dict], None]:
    return lambda raw: raw[section].update(values)


def _search(path: str, dist: dict[str, Any]) -> Callable[[dict], None]:
    return lambda raw: raw["search"].update({path: dist})


def _builtin_model(raw: dict) -> None:
    raw["model"] = {"family": "mlp", "hidden": [32]}
    raw["search"] = {"data.batch_size": raw["search"]["data.batch_size"]}


INT = {"type": "int", "low": 8, "high": 32}
# (what is wrong, the change to digits.yaml, the key the error names, text it also holds)
BAD_SPACES = [
    ("target that does not import", _set("model", target="no_such_pkg.mod:Net"),
     "model.target", "no_such_pkg"),
    ("data target that does not import", _set("data", target="digits_lit.nope:Data"),
     "data.target", "digits_lit.nope"),
    ("class missing from its module", _set("model", target="digits_lit.models:Nope"),
     "model.target", "Nope"),
    ("module path without ':'", _set("model", target="digits_lit.models.DigitsNet"),
     "model.target", "package.module:Class"),
    ("not a LightningModule", _set("model", target="digits_lit.models:NotAModule"),
     "model.target", "not a LightningModule"),
    ("data target that is a LightningModule", _set("data", target=NET),
     "data.target", "not a LightningDataModule"),
    ("searched key not an init argument", _search("model.hidden_dm", INT),
     "model.hidden_dm", "hidden_dim"),
    ("fixed key not an init argument", _set("model", hidden_dm=32),
     "model.hidden_dm", "hidden_dim"),
    ("fixed data key not an init argument", _set("data", batch=32),
     "data.batch", "batch_size"),
    ("required init argument missing",
     lambda raw: (raw["model"].update(target="digits_lit.extras:NeedsWidth"),
                  raw["search"].pop("model.hidden_dim"), raw["search"].pop("model.dropout")),
     "model.width", "missing"),
    ("optimizer section with a target model",
     lambda raw: raw.update(optimizer={"name": "adam", "lr": 0.01}),
     "optimizer", "configure_optimizers"),
    ("searched optimizer key with a target model",
     _search("optimizer.lr", {"type": "float", "low": 1e-3, "high": 1e-1, "log": True}),
     "search.optimizer.lr", "configure_optimizers"),
    ("built-in model family with a target datamodule", _builtin_model,
     "model", "model.target"),
    ("searching model.target",
     _search("model.target", {"type": "choice", "values": [NET]}),
     "search.model.target", "fixed"),
]


def _key_of(message: str) -> str:
    """The key a ``s.yaml: KEY: problem`` message names."""
    assert message.startswith("s.yaml: "), message
    return message.removeprefix("s.yaml: ").split(": ", 1)[0]


@pytest.mark.parametrize(("change", "key", "also"),
                         [case[1:] for case in BAD_SPACES], ids=[case[0] for case in BAD_SPACES])
def test_a_bad_space_is_refused_in_one_line_naming_the_key(
    user_code: None, change: Callable[[dict], None], key: str, also: str
):
    raw = _digits()
    change(raw)
    with pytest.raises(ConfigError) as caught:
        parse_space(raw, source="s.yaml")
    message = str(caught.value)
    assert "\n" not in message, message
    # A searched key may be named as the search entry or as the init argument it sets.
    assert _key_of(message) in (key, f"search.{key}"), message
    assert also in message, message


def test_the_shipped_space_reads_and_a_required_argument_may_be_fixed_or_searched(
    user_code: None
):
    space = parse_space(_digits(), source="s.yaml")
    assert space.model["target"] == NET and space.data["target"] == DATA
    assert space.param_names == ("model.hidden_dim", "model.dropout", "model.lr",
                                 "data.batch_size")
    for change in (_set("model", target="digits_lit.extras:NeedsWidth", width=16),
                   lambda raw: raw.update(search={"model.width": INT})):
        raw = _digits()
        raw["model"] = {"target": "digits_lit.extras:NeedsWidth"}
        raw["search"] = {}
        change(raw)
        parse_space(raw, source="s.yaml")


@pytest.mark.parametrize(("change", "key"), [
    (_search("model.hidden_dm", INT), "model.hidden_dm"),
    (_set("model", target="no_such_pkg.mod:Net"), "model.target"),
    (_set("model", target="digits_lit.models:NotAModule"), "model.target"),
], ids=["searched typo", "no import", "not a module"])
def test_the_cli_refuses_a_bad_space_in_one_line_and_writes_nothing(
    user_code: None, change: Callable[[dict], None], key: str, tmp_path: Path,
    capsys: pytest.CaptureFixture
):
    raw = _digits()
    change(raw)
    space = tmp_path / "s.yaml"
    space.write_text(yaml.safe_dump(raw))
    results = tmp_path / "results"
    code, err = cli_in_process(["sweep", str(space), "--results-dir", str(results)], capsys)
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"hpsearch: error: {space}: "), err
    assert key in lines[0] and "Traceback" not in err, err
    assert not results.exists(), "nothing may be written for a rejected file"


# --------------------------------------------------------------------------- the config


def test_a_target_config_round_trips_without_an_optimizer(user_code: None):
    raw = {"data": {"target": DATA, "batch_size": 32, "split_seed": 1},
           "model": {"target": NET, "hidden_dim": 61, "dropout": 0.25, "lr": 0.01},
           "max_epochs": 4, "seed": 3}
    cfg = TrainConfig.from_dict(raw)
    assert isinstance(cfg.model, UserModel) and isinstance(cfg.data, UserData)
    assert cfg.user_code
    assert cfg.model.kwargs == {"hidden_dim": 61, "dropout": 0.25, "lr": 0.01}
    as_dict = cfg.to_dict()
    assert "optimizer" not in as_dict
    assert as_dict == raw
    assert TrainConfig.from_dict(as_dict) == cfg
    assert TrainConfig.from_dict(json.loads(cfg.to_json())) == cfg
    # What a leaderboard row holds, read back as retrain and export read it.
    assert TrainConfig.from_dict(yaml.safe_load(yaml.safe_dump(as_dict))) == cfg


# --------------------------------------------------------------------------- train()


class RandomDigits(pl.LightningDataModule):
    """96 random 8x8 images in 10 classes (64 train, 16 val, 16 test); counts its
    ``prepare_data`` calls."""

    def __init__(self, batch_size: int = 16) -> None:
        super().__init__()
        self.batch_size = batch_size
        self.prepare_calls = 0

    def prepare_data(self) -> None:
        self.prepare_calls += 1

    def setup(self, stage: str | None = None) -> None:
        g = torch.Generator().manual_seed(0)
        x, y = torch.rand(96, 1, 8, 8, generator=g), torch.randint(0, 10, (96,), generator=g)
        self.train_set = TensorDataset(x[:64], y[:64])
        self.val_set = TensorDataset(x[64:80], y[64:80])
        self.test_set = TensorDataset(x[80:], y[80:])

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=self.batch_size)

    def test_dataloader(self) -> DataLoader:
        return DataLoader(self.test_set, batch_size=self.batch_size)


def _random_digits_config(model: str = NET, epochs: int = 2) -> TrainConfig:
    return TrainConfig.from_dict({
        "data": {"target": f"{__name__}:RandomDigits", "batch_size": 16},
        "model": {"target": model, "hidden_dim": 16, "lr": 0.01},
        "max_epochs": epochs, "seed": 0,
    })


def test_train_fits_the_user_s_module_on_its_datamodule_preparing_it_once(user_code: None):
    from digits_lit.models import DigitsNet

    result = train(_random_digits_config(), accelerator="cpu", run_test=True)
    assert isinstance(result.module, DigitsNet)
    assert isinstance(result.datamodule, RandomDigits)
    assert result.datamodule.prepare_calls == 1
    assert [row["epoch"] for row in result.history] == [1, 2]
    for row in result.history:
        assert 0.0 <= row["val_acc"] <= 1.0 and np.isfinite(row["val_loss"]), row
        assert "train_loss" in row
    accs = [row["val_acc"] for row in result.history]
    assert result.best_value == max(accs) and result.best_epoch == 1 + accs.index(max(accs))
    assert result.param_count == _dense_params(16)
    assert result.test is not None and 0.0 <= result.test["test_acc"] <= 1.0, result.test
    assert "test_loss" in result.test


def test_train_uses_a_datamodule_it_is_given_as_it_is(user_code: None):
    given = RandomDigits(batch_size=16)
    result = train(_random_digits_config(epochs=1), datamodule=given, accelerator="cpu")
    assert result.datamodule is given and given.prepare_calls == 0  # prepared by its owner
    assert len(result.history) == 1 and result.test is None  # run_test is off by default


def test_train_stops_a_module_that_never_logs_the_objective(user_code: None):
    with pytest.raises(MetricNotLoggedError, match="'val_acc' was never logged .*val_loss"):
        train(_random_digits_config(model="digits_lit.models:SilentNet", epochs=1),
              history=EpochHistory("val_acc", "max"), accelerator="cpu")


def test_train_plus_val_is_refused_for_the_user_s_datamodule(user_code: None):
    with pytest.raises(ValueError, match="train\\+val: needs a built-in dataset"):
        train(_random_digits_config(epochs=1), train_on="train+val", accelerator="cpu")


def test_the_train_command_trains_an_exported_config_of_the_user_s_module(
    user_code: None, tmp_path: Path, capsys: pytest.CaptureFixture
):
    """What ``hpsearch export`` writes for such a sweep ("Train it with: hpsearch train
    --config THIS_FILE"), on scikit-learn's bundled digits."""
    config = tmp_path / "best.yaml"
    config.write_text("# digits_external: trial 0 (rank 1, completed)\n# Train it with: "
                      "hpsearch train --config THIS_FILE\n" + yaml.safe_dump({
                          "data": {"target": DATA, "batch_size": 64},
                          "model": {"target": NET, "hidden_dim": 32, "lr": 0.01},
                          "max_epochs": 1, "seed": 0}))
    code = cli_main(["train", "--config", str(config), "--accelerator", "cpu"])
    out, err = capsys.readouterr()
    assert code == 0, out + err
    assert "val_acc=" in out and "test_acc=" in out, out


# --------------------------------------------------------------------------- Python API


def test_the_python_api_raises_bad_input_as_one_line_config_errors(
    user_code: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.chdir(tmp_path)  # a default results/ would land here
    with pytest.raises(ConfigError) as caught:
        hpsearch.sweep(DIGITS_YAML, bogus=1)
    assert str(caught.value).startswith("sweep(): unknown option 'bogus' (known: ")
    assert "\n" not in str(caught.value) and "num_samples" in str(caught.value)

    raw = _digits()
    raw["model"]["hidden_dm"] = 32
    with pytest.raises(ConfigError, match=r"^<dict>: model\.hidden_dm: not an init argument"):
        hpsearch.sweep(raw, results_dir=tmp_path / "results")

    with pytest.raises(ConfigError, match="not an hpsearch experiment folder"):
        hpsearch.load(tmp_path)
    with pytest.raises(ConfigError, match="not an hpsearch experiment folder"):
        hpsearch.retrain(tmp_path)
    with pytest.raises(ConfigError, match="^retrain\\(\\): unknown option 'bogus'"):
        hpsearch.retrain(tmp_path, bogus=1)
    assert not any(tmp_path.iterdir()), list(tmp_path.iterdir())


# --------------------------------------------------------------------------- real sweeps
# `hpsearch sweep` as the user runs it: in the folder of their package, which PYTHONPATH
# names (Ray's workers import it from there too). Each starts its own local Ray.


def _env(*paths: Path) -> dict[str, str]:
    parts = [*(str(p) for p in paths), os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in parts if p)}


def _hpsearch(*args: str) -> list[str]:
    """The console script beside this Python (``python -m hpsearch`` without one)."""
    script = Path(sys.executable).with_name("hpsearch")
    return [str(script), *args] if script.is_file() else [sys.executable, "-m", "hpsearch", *args]


def _run(*args: str, cwd: Path = EXTERNAL) -> subprocess.CompletedProcess:
    return subprocess.run(_hpsearch(*args), cwd=cwd, env=_env(cwd), capture_output=True,
                          text=True, timeout=SWEEP_TIMEOUT_S)


def _space_file(tmp_path: Path, **sections: dict[str, Any]) -> Path:
    """A copy of digits.yaml with ``sections``' keys set (e.g. ``data={"prepare_log": ...}``)."""
    raw = _digits()
    for section, values in sections.items():
        raw[section] = {**raw[section], **values}
    path = tmp_path / "digits.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def _check_leaderboard(exp: Path, rows: int) -> pd.DataFrame:
    """The checks tests/test_sweep.py makes of a leaderboard, on DigitsNet's trials."""
    board = pd.read_csv(exp / LEADERBOARD, dtype={"trial_id": str})
    assert len(board) == rows and board.trial_id.is_unique, board
    for col in ("rank", "trial_id", "status", "model.hidden_dim", "model.dropout", "model.lr",
                "data.batch_size", "val_acc", "best_epoch", "epochs_run", "param_count",
                "train_time_s", "error", "checkpoint", "config", "seed", "code_version",
                "node", "device"):
        assert col in board.columns, col
    assert set(board.status) <= {"completed", "early-stopped"}, board[["trial_id", "error"]]
    assert list(board["rank"]) == list(range(1, rows + 1))
    assert board.val_acc.notna().all() and board.val_acc.is_monotonic_decreasing
    best = board.iloc[0]
    assert best["status"] == "completed" and best["val_acc"] > 0.8, best
    assert not Path(best["checkpoint"]).is_absolute()  # the folder can move
    assert Path(exp, best["checkpoint"], "model.ckpt").is_file()
    for row in board.to_dict("records"):
        config = json.loads(row["config"])
        assert config["model"]["target"] == NET and config["data"]["target"] == DATA
        assert "optimizer" not in config
        assert config["model"]["hidden_dim"] == row["model.hidden_dim"]
        assert config["data"]["batch_size"] == row["data.batch_size"]
        assert row["param_count"] == _dense_params(row["model.hidden_dim"])
    meta = json.loads((exp / "sweep.json").read_text())
    assert meta["params"] == ["model.hidden_dim", "model.dropout", "model.lr",
                              "data.batch_size"]
    assert meta["compute"]["train_cpu_h"] == pytest.approx(board["train_cpu_h"].sum())
    # The Optuna study holds each trial once, with the leaderboard's value.
    study = load_study(exp)
    told = {t.user_attrs["ray_trial_id"]: t.value for t in study.trials}
    assert told == dict(zip(board.trial_id, board.val_acc, strict=True))
    return board


@pytest.mark.slow
def test_the_readme_example_then_the_cli_on_its_folder(
    user_code: None, tmp_path: Path, capsys: pytest.CaptureFixture
):
    """The README's notebook example (hpsearch.sweep, then hpsearch.retrain over 3 seeds) in a
    copy of tests/external whose space logs its prepare_data calls; then the command line on
    the folder it left: a sweep resumed with more trials, status, leaderboard, report,
    export and compare."""
    code = _readme_example()
    here = tmp_path / "external"  # a copy, so the example's results stay out of the repo
    shutil.copytree(EXTERNAL, here, ignore=shutil.ignore_patterns("__pycache__"))
    prepared = tmp_path / "prepared.log"
    space = _space_file(here, data={"prepare_log": str(prepared)})
    untouched = _files(EXTERNAL)
    ran = subprocess.run([sys.executable, "-c", code], cwd=here, env=_env(here),
                         capture_output=True, text=True, timeout=2 * SWEEP_TIMEOUT_S)
    assert ran.returncode == 0, f"{code}\n{ran.stdout}\n{ran.stderr}"
    assert _files(EXTERNAL) == untouched, "the example wrote into tests/external"
    exp = here / "results" / "digits_external"
    board = _check_leaderboard(exp, rows=4)
    # The sweep prepared once on its one node, not once per trial (4); each of the 3 re-train
    # seeds is a fit of its own, prepared by train() as Lightning would.
    assert prepared.read_text().splitlines() == ["prepared"] * (1 + 3)

    best = exp / "best"
    for name in ("metrics.json", "report.md", "model.ckpt", "learning_curves.png",
                 "parameters.csv"):
        assert (best / name).is_file(), name
    metrics = json.loads((best / "metrics.json").read_text())
    s = int(board.seed[0])
    assert metrics["trial_id"] == board.trial_id[0]
    assert metrics["seeds"] == [s, s + 1, s + 2]
    assert [e["seed"] for e in metrics["per_seed"]] == [s, s + 1, s + 2]
    assert metrics["config"] == json.loads(board.config[0])
    # The trial's own seed and epochs: the sweep's validation value is reproduced.
    assert metrics["epochs"] == metrics["sweep_best_epoch"] == board.best_epoch[0]
    assert abs(metrics["retrain_value"] - metrics["sweep_value"]) <= REPRODUCE_TOLERANCE
    # The module's own test_step metrics (test_acc, test_loss), per seed and summarised.
    accs = np.array([e["test"]["accuracy"] for e in metrics["per_seed"]])
    assert (accs > 0.8).all(), metrics["per_seed"]
    assert metrics["test"] == metrics["per_seed"][0]["test"]
    acc = metrics["summary"]["accuracy"]
    assert acc["n"] == 3 and set(metrics["summary"]) == {"accuracy", "loss"}
    assert acc["mean"] == pytest.approx(accs.mean())
    assert acc["std"] == pytest.approx(accs.std(ddof=1))
    assert acc["ci95_low"] <= acc["mean"] <= acc["ci95_high"]
    assert metrics["compute"]["train_cpu_h"] == pytest.approx(
        sum(e["train_cpu_s"] for e in metrics["per_seed"]) / 3600)
    report = (best / "report.md").read_text()
    assert "## Test set over 3 seeds" in report and "| seed | loss | accuracy |" in report
    for e in metrics["per_seed"]:
        assert f"| {e['seed']} | {e['test']['loss']:.4f} | {e['test']['accuracy']:.4f} |" in report
    assert f"{acc['mean']:.4f} ± {acc['std']:.4f}" in report
    from digits_lit.models import DigitsNet

    module = DigitsNet.load_from_checkpoint(best / "model.ckpt", map_location="cpu")
    assert module(torch.zeros(2, 1, 8, 8)).shape == (2, 10)

    # The command line on the same folder: resumed with more trials, the finished ones kept.
    again = _run("sweep", str(space), "--results-dir", "results", "--resume", "--num-samples",
                 "6", cwd=here)
    assert again.returncode == 0, again.stdout + again.stderr
    resumed = _check_leaderboard(exp, rows=6)
    kept = resumed.set_index("trial_id").loc[board.trial_id]
    for col in ("status", "val_acc", "best_epoch", "epochs_run", "param_count",
                "train_time_s", "config", "checkpoint"):
        assert list(kept[col]) == list(board[col]), col
    assert prepared.read_text().splitlines() == ["prepared"] * (1 + 3 + 1)  # once more: a run
    board = resumed

    assert cli_main(["status", str(exp)]) == 0
    status = capsys.readouterr().out
    assert "not running" in status and "6/6 trials" in status, status
    assert cli_main(["leaderboard", str(exp)]) == 0
    shown = capsys.readouterr().out
    assert "hidden_dim" in shown and board.trial_id[0] in shown, shown

    assert _search_report(exp) == {"optimization_history", "parallel_coordinate",
                                   "param_importances", "intermediate_values"}
    capsys.readouterr()

    assert cli_main(["export", str(exp)]) == 0
    exported = capsys.readouterr().out
    assert exported.startswith(f"# {exp.name}: trial {board.trial_id[0]} (rank 1")
    raw = yaml.safe_load(exported)
    assert raw == {**json.loads(board.config[0]), "max_epochs": int(board.best_epoch[0])}
    cfg = TrainConfig.from_dict(raw)
    assert cfg.user_code and cfg.model.target == NET and cfg.data.target == DATA
    assert cfg.model.kwargs["hidden_dim"] == board["model.hidden_dim"][0]

    # compare reads the module's re-trained test accuracy like a built-in experiment's.
    assert cli_main(["compare", str(exp.parent)]) == 0
    row = pd.read_csv(exp.parent / "comparison.csv").iloc[0]
    assert row["seeds"] == 3 and row["test_acc"] == pytest.approx(acc["mean"])


@pytest.mark.slow
def test_on_a_terminal_the_user_s_sweep_shows_its_live_table_and_ctrl_c_then_resume_finish_it(
    user_code: None, tmp_path: Path
):
    import pty

    # One trial at a time, of 30 short epochs each, so that Ctrl-C lands mid-sweep.
    space = _space_file(tmp_path, budget={"num_samples": 3, "max_epochs": 30,
                                          "grace_period": 30},
                        resources={"max_concurrent": 1})
    results = tmp_path / "results"
    exp = results / "digits_external"
    leader, follower = pty.openpty()
    proc = subprocess.Popen(_hpsearch("sweep", str(space), "--results-dir", str(results)),
                            cwd=EXTERNAL, env={**_env(EXTERNAL), "COLUMNS": "150"},
                            stdout=follower, stderr=follower)
    os.close(follower)
    chunks: list[bytes] = []

    def read() -> None:
        with contextlib.suppress(OSError):  # EIO once the sweep has closed the terminal
            while chunk := os.read(leader, 65536):
                chunks.append(chunk)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    deadline = time.monotonic() + SWEEP_TIMEOUT_S
    while not ((exp / LEADERBOARD).is_file()
               and (pd.read_csv(exp / LEADERBOARD).status == "completed").any()):
        assert proc.poll() is None and time.monotonic() < deadline, b"".join(chunks).decode()
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=SWEEP_TIMEOUT_S) == 130
    reader.join(timeout=30)
    os.close(leader)
    out = b"".join(chunks).decode(errors="replace")
    assert "\x1b[2K" in out, out  # the live table, erased and redrawn in place
    assert "best val_acc 0." in out and "Resume with: " in out, out
    stopped = pd.read_csv(exp / LEADERBOARD, dtype={"trial_id": str})
    assert "interrupted" in set(stopped.status) or len(stopped) < 3, stopped
    done = stopped.query("status == 'completed'").set_index("trial_id")

    resumed = _run("sweep", str(space), "--results-dir", str(results), "--resume")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    board = _check_leaderboard(exp, rows=3).set_index("trial_id")
    assert set(board.status) == {"completed"}, board
    assert board.loc[done.index, "val_acc"].equals(done["val_acc"])  # kept, not re-run


@pytest.mark.slow
def test_a_module_that_never_logs_the_objective_stops_the_sweep_in_one_line(
    user_code: None, tmp_path: Path
):
    space = _space_file(tmp_path, model={"target": "digits_lit.models:SilentNet"})
    results = tmp_path / "results"
    swept = _run("sweep", str(space), "--results-dir", str(results))
    assert swept.returncode == 2, swept.stdout + swept.stderr
    lines = swept.stderr.strip().splitlines()
    assert len(lines) == 1, swept.stderr
    assert lines[0].startswith(f"hpsearch: error: {space}: objective.metric: "), lines[0]
    assert "val_acc" in lines[0] and "val_loss" in lines[0], lines[0]  # what it does log
    assert not (results / "digits_external").exists(), "the new folder is removed"


def _readme_example() -> str:
    lines = (REPO / "README.md").read_text().splitlines()
    if README_HEADING not in lines:
        pytest.fail(f"README.md has no '{README_HEADING}' section with a ```python example")
    rest = lines[lines.index(README_HEADING) + 1:]
    if "```python" not in rest:
        pytest.fail(f"README.md: no ```python block after '{README_HEADING}'")
    block = rest[rest.index("```python") + 1:]
    return "\n".join(block[:block.index("```")]) + "\n"


def _files(root: Path) -> set[Path]:
    return {p.relative_to(root) for p in root.rglob("*") if "__pycache__" not in p.parts}


def test_the_readme_example_is_read_from_the_first_python_block_after_its_heading(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
):
    (tmp_path / "README.md").write_text(
        "# x\n```python\nearlier()\n```\n## Bring your own model\n\ntext\n\n```yaml\na: 1\n"
        "```\n```python\nimport hpsearch\nhpsearch.sweep('digits.yaml')\n```\n"
        "```python\nlater()\n```\n")
    monkeypatch.setitem(globals(), "REPO", tmp_path)
    assert _readme_example() == "import hpsearch\nhpsearch.sweep('digits.yaml')\n"
    (tmp_path / "README.md").write_text("# x\n")
    with pytest.raises(pytest.fail.Exception, match="no '## Bring your own model' section"):
        _readme_example()
