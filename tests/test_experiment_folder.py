"""The experiment folder as a unit, in unit tests: its name, its lock, the checks a sweep
makes before it writes anything, and the one-line errors of the sweep command."""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import os
import shlex
import stat
import subprocess
from pathlib import Path

import pytest
from pydantic import ValidationError

from hpsearch.datamodules.errors import DataError
from hpsearch.datamodules.paths import atomic_write, make_temp_dir
from hpsearch.scripts.cli import _one_line, build_parser
from hpsearch.scripts.experiment_folder import (
    LEADERBOARD,
    LOCK_FILE,
    ExperimentFolder,
    check_name,
    experiment_lock,
)
from hpsearch.scripts.leaderboard import STATUS_INTERRUPTED, mark_interrupted, relative_to_folder
from hpsearch.scripts.provenance import code_version
from hpsearch.scripts.reports.format import short_headers
from hpsearch.scripts.sweep_record import SweepMeta
from hpsearch.scripts.train import MetricNotLoggedError
from hpsearch.scripts.tune.cluster import placement_problem
from hpsearch.scripts.tune.options import SweepOptions, resume_command, sweep_flags, sweep_meta
from hpsearch.scripts.tune.trainable import failure_report, repeatable
from hpsearch.search_spaces.errors import ConfigError
from hpsearch.search_spaces.schema import parse_space

REPO = Path(__file__).resolve().parents[1]
SPACE = {
    "experiment": "unit",
    "data": {"name": "mnist", "batch_size": 100},
    "model": {"family": "mlp", "hidden": [32]},
    "search": {"optimizer.lr": {"type": "float", "low": 0.01, "high": 0.1, "log": True}},
    "budget": {"num_samples": 2, "max_epochs": 2, "grace_period": 1},
}


@pytest.mark.parametrize("name", ["../../x", "a/b", "..", ".hidden", "", "a b"])
def test_a_name_that_is_not_a_plain_folder_name_is_refused(name: str):
    with pytest.raises(ConfigError, match="plain folder name"):
        check_name(name, "--name")


def test_plain_names_are_kept():
    assert check_name("mnist_mlp-2026.12", "--name") == "mnist_mlp-2026.12"


def _hold_lock(folder: str, ready, release) -> None:  # noqa: ANN001 - multiprocessing events
    with experiment_lock(Path(folder)):
        ready.set()
        release.wait(30)


def test_a_held_folder_is_refused_naming_its_holder_and_freed_when_it_ends(tmp_path: Path):
    ctx = multiprocessing.get_context("spawn")
    ready, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold_lock, args=(str(tmp_path / "exp"), ready, release))
    holder.start()
    try:
        assert ready.wait(60)
        with pytest.raises(ConfigError, match=rf"in use by another sweep \(host=\S+ "
                                              rf"pid={holder.pid}\)"):
            with experiment_lock(tmp_path / "exp"):
                pass
    finally:
        release.set()
        holder.join(30)
    with experiment_lock(tmp_path / "exp"):  # freed when its holder ended
        pass


def test_a_lock_left_by_a_killed_process_does_not_block(tmp_path: Path):
    ctx = multiprocessing.get_context("spawn")
    ready, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold_lock, args=(str(tmp_path / "exp"), ready, release))
    holder.start()
    assert ready.wait(60)
    holder.kill()
    holder.join(30)
    assert f"pid={holder.pid}" in (tmp_path / "exp" / LOCK_FILE).read_text()  # left behind
    with experiment_lock(tmp_path / "exp"):
        assert f"pid={os.getpid()}" in (tmp_path / "exp" / LOCK_FILE).read_text()


def test_a_second_lock_in_the_same_process_is_refused_too(tmp_path: Path):
    with experiment_lock(tmp_path / "exp"):
        with pytest.raises(ConfigError, match="in use"):
            with experiment_lock(tmp_path / "exp"):
                pass


@pytest.mark.parametrize(("resources", "problem"), [
    ({"cpus_per_trial": 3}, "a trial of 3 CPU cannot be placed"),
    ({"cpus_per_trial": 1, "gpus_per_trial": 1}, "a trial of 1 CPU + 1 GPU cannot be placed"),
    ({"cpus_per_trial": 1, "gpus_per_trial": 0.5}, "+ 0.5 GPU cannot be placed"),
    ({"cpus_per_trial": 2, "workers_per_trial": 2}, "2 workers x (2 CPU) cannot be placed"),
])
def test_a_trial_no_node_can_hold_is_named(resources: dict, problem: str):
    space = parse_space({**SPACE, "resources": resources}, "unit.yaml")
    nodes = [{"CPU": 2.0, "memory": 1e9}]
    assert problem in placement_problem(space, nodes)


def test_a_trial_that_fits_some_node_is_placeable():
    nodes = [{"CPU": 2.0}, {"CPU": 8.0, "GPU": 1.0}]
    for resources in ({"cpus_per_trial": 8, "gpus_per_trial": 1}, {"cpus_per_trial": 2},
                      {"cpus_per_trial": 2, "workers_per_trial": 5}):
        space = parse_space({**SPACE, "resources": resources}, "unit.yaml")
        assert placement_problem(space, nodes) is None, resources


def test_an_objective_the_model_never_logs_is_refused_with_the_valid_names():
    with pytest.raises(ConfigError, match=r"objective.metric: 'val_accuracy' is not a metric "
                                          r"this model logs \(valid: .*val_acc, val_f1"):
        parse_space({**SPACE, "objective": {"metric": "val_accuracy"}}, "unit.yaml")
    binary = {**SPACE, "data": {"name": "pneumonia"},
              "model": {"family": "binary_cnn", "filters": [4]},
              "objective": {"metric": "val_auc"}}
    assert parse_space(binary, "unit.yaml").objective.metric == "val_auc"
    with pytest.raises(ConfigError, match="'val_auc' is not a metric"):
        parse_space({**SPACE, "objective": {"metric": "val_auc"}}, "unit.yaml")


def test_the_resume_hint_is_the_command_with_every_flag_given():
    parser = build_parser()
    argv = ["sweep", "my space.yaml", "--results-dir", "out", "--name", "n1", "--storage",
            "s3://b/p", "--address", "auto", "--no-ship-data", "--num-samples", "7",
            "--time-budget", "2m30s"]
    args = parser.parse_args(argv)
    opts = SweepOptions(**{f.name: getattr(args, f.name) for _, f in sweep_flags()})
    hint = resume_command(args.space, opts)
    words = shlex.split(hint)
    assert words[:3] == ["hpsearch", "sweep", "my space.yaml"] and words[-1] == "--resume"
    again = parser.parse_args(words[1:])
    for _, f in sweep_flags():
        expected = True if f.name == "resume" else getattr(args, f.name)
        assert getattr(again, f.name) == expected, f.name


@pytest.mark.parametrize(("text", "seconds"), [("90", 90.0), ("90s", 90.0), ("3m", 180.0),
                                               ("1h30m", 5400.0), ("2.5m", 150.0)])
def test_a_time_budget_is_a_duration(text: str, seconds: float):
    args = build_parser().parse_args(["sweep", "x.yaml", "--time-budget", text])
    assert args.time_budget == seconds


@pytest.mark.parametrize("text", ["3 minutes", "0s", "m", ""])
def test_a_time_budget_that_is_no_duration_is_refused(text: str, capsys):
    with pytest.raises(SystemExit) as stop:
        build_parser().parse_args(["sweep", "x.yaml", "--time-budget", text])
    assert stop.value.code == 2 and "--time-budget" in capsys.readouterr().err


def test_the_time_budget_overrides_the_file_s_and_a_resume_may_change_it():
    from hpsearch.scripts.tune.options import PER_RUN, apply_overrides

    space = parse_space({**SPACE, "budget": {"time_budget_s": 600}}, "unit.yaml")
    assert apply_overrides(space, SweepOptions(time_budget=180.0)).budget.time_budget_s == 180
    assert apply_overrides(space, SweepOptions()).budget.time_budget_s == 600
    assert "time_budget" in PER_RUN


def test_a_storage_uri_keeps_its_query_at_the_end_of_every_derived_path():
    from hpsearch.scripts.uris import join_uri

    uri = "s3://bucket/sweeps?endpoint_override=127.0.0.1:9000&scheme=http"
    meta = SweepMeta(experiment="exp", storage=uri, objective={}, max_epochs=1, num_samples=1)
    folder = ExperimentFolder(Path("r/exp"))
    assert folder.ray_storage_path(meta) == (
        "s3://bucket/sweeps/exp?endpoint_override=127.0.0.1:9000&scheme=http")
    assert folder.ray_experiment_path(meta) == (
        "s3://bucket/sweeps/exp/ray?endpoint_override=127.0.0.1:9000&scheme=http")
    assert join_uri("s3://bucket?region=x", "a", "b") == "s3://bucket/a/b?region=x"
    assert join_uri("/mnt/shared/", "exp") == "/mnt/shared/exp"
    local = folder.ray_experiment_path(meta.model_copy(update={"storage": None}))
    assert local == str(Path("r/exp").resolve() / "ray") == folder.ray_experiment_path()


def test_a_negative_max_failures_is_refused_by_the_command_line(capsys):
    with pytest.raises(SystemExit) as stop:
        build_parser().parse_args(["sweep", "x.yaml", "--max-failures", "-1"])
    assert stop.value.code == 2
    assert "--max-failures: must be 0 or more, got -1" in capsys.readouterr().err


def test_errors_a_retry_would_repeat_are_told_apart():
    assert repeatable(FloatingPointError("train_loss is nan at epoch 2"))
    assert repeatable(ConfigError("model: too many pools"))
    assert repeatable(MetricNotLoggedError("never logged"))
    assert not repeatable(DataError("missing file"))  # another node may have it
    assert not repeatable(RuntimeError("CUDA out of memory"))
    assert not repeatable(MemoryError())
    last = {"epoch": 2, "best_value": 0.8}
    report = failure_report(FloatingPointError("train_loss is nan\nmore"), last)
    assert report == {**last, "failed": "FloatingPointError: train_loss is nan"}
    assert failure_report(ConfigError("bad"), {})["epoch"] == 0


def test_a_remote_traceback_is_reported_by_its_last_line():
    exc = RuntimeError("Traceback (most recent call last):\n  File \"x\", line 1\n"
                       "KeyError: 'Record does not exist.'\n")
    assert _one_line(exc) == "RuntimeError: KeyError: 'Record does not exist.'"


def test_a_corrupt_sweep_record_is_one_line_naming_the_file(tmp_path: Path):
    folder = ExperimentFolder(tmp_path)
    with pytest.raises(ConfigError, match="not an hpsearch experiment folder .no sweep.json"):
        folder.read_meta()
    (tmp_path / "sweep.json").write_text('{"experiment": ')
    with pytest.raises(ConfigError, match=rf"{tmp_path}/sweep.json: not valid JSON"):
        folder.read_meta()
    (tmp_path / "sweep.json").write_text("[1]")
    with pytest.raises(ConfigError, match="sweep.json: not an hpsearch sweep record"):
        folder.read_meta()
    (tmp_path / "sweep.json").write_text('{"experiment": "x", "max_epochs": "many"}')
    with pytest.raises(ConfigError, match=r"sweep.json: not an hpsearch sweep record \(") as exc:
        folder.read_meta()
    assert "\n" not in str(exc.value)


@pytest.mark.parametrize("path", sorted(REPO.glob("results/*/sweep.json")),
                         ids=lambda p: p.parent.name)
def test_every_committed_sweep_record_loads_and_is_written_back_unchanged(path: Path):
    raw = json.loads(path.read_text())
    meta = ExperimentFolder(path.parent).read_meta()
    assert meta.to_json() == raw and list(meta.to_json()) == list(raw)  # keys in their order
    assert meta.objectives[0] == meta.objective and meta.max_epochs >= 1


def test_a_sweep_record_changes_by_copies_and_keeps_its_keys(tmp_path: Path):
    space = parse_space(SPACE, "unit.yaml")
    meta = sweep_meta(space, SPACE, SweepOptions(num_samples=3), "unit")
    assert meta.objectives == (meta.objective,) and meta.overrides == {"num_samples": 3}
    with pytest.raises(ValidationError):
        meta.wall_time_s = 1.0  # frozen
    folder = ExperimentFolder(tmp_path)
    folder.write_meta(meta.started(100.0))
    ran = folder.read_meta().after_run(30.0, {"sweep_cpu_h": 0.5})
    assert (ran.run_started_at, ran.wall_time_s, ran.compute) == (100.0, 30.0, {"sweep_cpu_h": 0.5})
    assert ran.after_run(12.0, {}).wall_time_s == 42.0 and meta.wall_time_s == 0.0
    folder.write_meta(ran)
    committed = json.loads(next(REPO.glob("results/*/sweep.json")).read_text())
    assert list(json.loads(folder.meta_file.read_text())) == list(committed)


def test_checkpoints_inside_the_folder_are_stored_relative_to_it(tmp_path: Path):
    inside = tmp_path / "ray" / "t1" / "checkpoint_000001"
    assert relative_to_folder(str(inside), tmp_path) == "ray/t1/checkpoint_000001"
    assert relative_to_folder("/elsewhere/ckpt", tmp_path) == "/elsewhere/ckpt"
    assert relative_to_folder("s3://bucket/ckpt", tmp_path) == "s3://bucket/ckpt"
    assert relative_to_folder("", tmp_path) == ""


def test_interrupted_trials_are_labelled_so(tmp_path: Path):
    (tmp_path / LEADERBOARD).write_text(
        "rank,trial_id,status\n1,a,completed\n2,b,early-stopped\n3,c,running\n")
    mark_interrupted(tmp_path, {"b", "c"})
    text = (tmp_path / LEADERBOARD).read_text().splitlines()
    assert text[1:] == ["1,a,completed", f"2,b,{STATUS_INTERRUPTED}", f"3,c,{STATUS_INTERRUPTED}"]


@pytest.mark.parametrize(("umask", "file_mode", "dir_mode"),
                         [(0o022, 0o644, 0o755), (0o002, 0o664, 0o775), (0o077, 0o600, 0o700)])
def test_written_results_follow_the_umask(umask: int, file_mode: int, dir_mode: int,
                                          tmp_path: Path):
    old = os.umask(umask)
    try:
        atomic_write(tmp_path / "leaderboard.csv", lambda out: out.write(b"rank\n"))
        folder = make_temp_dir(tmp_path, ".best-")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "leaderboard.csv").stat().st_mode) == file_mode
    assert stat.S_IMODE(folder.stat().st_mode) == dir_mode


def test_a_dirty_code_version_names_the_hash_of_its_diff(tmp_path: Path):
    def git(*args: str) -> str:
        return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
                              cwd=tmp_path, capture_output=True, text=True, check=True).stdout

    git("init", "-q")
    (tmp_path / "train.py").write_text("lr = 0.1\n")
    git("add", "train.py")
    git("commit", "-qm", "first")
    clean = code_version(tmp_path)
    assert clean == git("rev-parse", "--short=12", "HEAD").strip()
    (tmp_path / "untracked.txt").write_text("not code\n")
    assert code_version(tmp_path) == clean  # only changes to tracked files count
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "leaderboard.csv").write_text("rank\n")
    git("add", "results")
    git("commit", "-qm", "a result")
    clean = code_version(tmp_path)
    (tmp_path / "results" / "leaderboard.csv").write_text("rank\n1\n")
    assert code_version(tmp_path) == clean  # a run rewriting committed results is not code
    (tmp_path / "train.py").write_text("lr = 0.2\n")
    diff = subprocess.run(["git", "diff", "HEAD", "--binary", "train.py"], cwd=tmp_path,
                          capture_output=True, check=True).stdout
    assert code_version(tmp_path) == f"{clean}+dirty.{hashlib.sha1(diff).hexdigest()[:8]}"
    (tmp_path / "train.py").write_text("lr = 0.3\n")
    assert code_version(tmp_path) != f"{clean}+dirty.{hashlib.sha1(diff).hexdigest()[:8]}"
    # Installed into a venv inside someone else's repository: not that repository's commit.
    installed = tmp_path / ".venv" / "site-packages" / "hpsearch"
    installed.mkdir(parents=True)
    assert code_version(installed).startswith("hpsearch-")


def test_every_option_explains_itself_and_names_its_default():
    def parsers(parser: argparse.ArgumentParser):
        yield parser
        for action in parser._actions:  # argparse keeps subcommands only here
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    yield from parsers(sub)

    unexplained, no_default = [], []
    for parser in parsers(build_parser()):
        required_groups = {id(a) for g in parser._mutually_exclusive_groups if g.required
                           for a in g._group_actions}
        for action in parser._actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                continue
            name = f"{parser.prog} {'/'.join(action.option_strings) or action.dest}"
            if not action.help:
                unexplained.append(name)
            elif (action.nargs != 0 and action.option_strings and "default" not in action.help
                  and id(action) not in required_groups and not action.required):
                no_default.append(name)
    assert not unexplained and not no_default, (unexplained, no_default)


def test_short_leaderboard_headers_stay_unambiguous():
    cols = ["rank", "optimizer.lr", "optimizer.name", "model.dropout", "data.dropout"]
    assert short_headers(cols) == ["rank", "lr", "optimizer.name", "model.dropout",
                                   "data.dropout"]
