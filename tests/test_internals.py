"""The contracts hpsearch relies on in Ray's, Tune's and NumPy's internals
(``scripts/tune/internals.py``), checked on the pinned versions, and the version check that
guards them."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
import time
import tomllib
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from hpsearch.scripts.tune import internals
from hpsearch.scripts.tune.durability import back_up_state, state_backup_dir
from hpsearch.scripts.tune.internals import (
    RAY_SYNCER_LOGGER,
    ReportSender,
    SnapshotRaceFilter,
    snapshot_on_trial_changes,
    state_file_complete,
    without_huge_pages,
)
from hpsearch.scripts.versions import PINNED, VersionMismatch, check_pinned_versions

REPO = Path(__file__).resolve().parents[1]
WAIT_S = 30.0  # generous: only a broken implementation waits this long


def test_installed_versions_are_the_pinned_ones_and_pyproject_pins_them():
    check_pinned_versions()
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    for name, version in PINNED.items():
        assert any(d.split("[")[0].split("=")[0] == name and d.endswith(f"=={version}")
                   for d in deps), (name, deps)


def test_a_different_version_is_one_clear_error():
    versions = {**PINNED, "ray": "2.61.0"}
    with pytest.raises(VersionMismatch, match=r"ray 2.61.0 found, hpsearch needs ray==2.60.0"):
        check_pinned_versions(versions.__getitem__)


def test_importing_the_internals_under_another_ray_fails_naming_the_version():
    code = ("import importlib.metadata as m; real = m.version\n"
            "m.version = lambda name: '2.61.0' if name == 'ray' else real(name)\n"
            "import hpsearch.scripts.tune.internals")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode != 0
    assert "VersionMismatch: ray 2.61.0 found, hpsearch needs ray==2.60.0" in proc.stderr


def test_tunes_actors_go_without_the_runtime_env_only_inside_the_block(monkeypatch):
    from ray.tune.execution import class_cache

    monkeypatch.setenv("PL_DISABLE_FORK", "1")
    before = dict(class_cache.DEFAULT_ENV_VARS)
    assert before.get("PL_DISABLE_FORK") == "1"  # what Tune puts in every trial's runtime env
    with internals.warm_trial_workers():
        assert "PL_DISABLE_FORK" not in class_cache.DEFAULT_ENV_VARS
    assert class_cache.DEFAULT_ENV_VARS == before


def test_ray_knows_the_system_config_keys_hpsearch_starts_it_with():
    from ray._private import ray_constants  # noqa: F401 - Ray's config lives in its C++ core

    config = internals.ray_system_config()
    assert config["preload_python_modules"] == ["hpsearch.scripts.tune.trainable"]
    assert set(config) == {"preload_python_modules", "idle_worker_killing_time_threshold_ms"}


def test_a_state_file_cut_short_is_seen_without_unpickling_it(tmp_path: Path):
    import pickle

    whole = tmp_path / "searcher-state-1.pkl"
    whole.write_bytes(pickle.dumps({"trials": list(range(100))}))
    cut = tmp_path / "search_gen_state-1.json"  # Tune names some pickles .json
    cut.write_bytes(whole.read_bytes()[:-20])
    text = tmp_path / "experiment_state-1.json"
    text.write_text(json.dumps({"a": 1}))
    short_text = tmp_path / "experiment_state-2.json"
    short_text.write_text('{"a": ')
    named_json = tmp_path / "search_gen_state-2.json"
    named_json.write_bytes(whole.read_bytes())
    assert state_file_complete(whole) and state_file_complete(text)
    assert state_file_complete(named_json)
    assert not state_file_complete(cut) and not state_file_complete(short_text)
    assert [p.name for p in internals.state_files(tmp_path)] == sorted(
        p.name for p in (whole, cut, text, short_text, named_json))


def test_token_auth_is_only_sent_when_this_machine_holds_a_token(tmp_path):
    # In a fresh process: Ray caches the token it found once per process (in C++).
    env = {k: v for k, v in __import__("os").environ.items()
           if k not in ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_AUTH_MODE")}
    code = ("from hpsearch.scripts.tune import internals\n"
            "print(internals.enable_token_auth_if_available())")
    for token in (None, "0123456789abcdef0123456789abcdef"):
        if token:
            (tmp_path / ".ray").mkdir()
            (tmp_path / ".ray" / "auth_token").write_text(token)
        proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                              text=True, timeout=120, env={**env, "HOME": str(tmp_path)})
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.split()[-1] == str(bool(token))
        assert "Token authentication is enabled" not in proc.stderr  # said quietly


def test_only_ray_s_report_of_a_snapshot_copy_race_is_dropped():
    from ray.train._internal import syncer

    assert syncer.logger.name == RAY_SYNCER_LOGGER  # the logger the filter is put on

    def record(error: str) -> logging.LogRecord:
        message = ("Last sync command failed with the following error:\nTraceback (most recent "
                   f"call last):\n  ...\n{error}")
        return logging.LogRecord(RAY_SYNCER_LOGGER, logging.WARNING, "syncer.py", 1, message,
                                 None, None)

    race = ("FileNotFoundError: [Errno 2] Failed to open local file '/tmp/ray/session_1/"
            "artifacts/x/ray/driver_artifacts/.2c91-tmp-searcher-state-2026.pkl'. Detail: "
            "[errno 2] No such file or directory")
    assert not SnapshotRaceFilter().filter(record(race))
    lost = race.replace(".2c91-tmp-searcher-state-2026.pkl", "experiment_state-2026.json")
    assert SnapshotRaceFilter().filter(record(lost))
    assert SnapshotRaceFilter().filter(record("PermissionError: [Errno 13] Permission denied"))


def test_tune_state_is_saved_when_a_trial_is_created_finishes_or_checkpoints(tmp_path: Path):
    # Tune's own TuneController.checkpoint, called once per step of its loop, on a stand-in
    # controller whose experiment-state manager records how each snapshot was asked for.
    from ray.tune.execution.tune_controller import TuneController

    ray_dir = tmp_path / "ray"
    backup = state_backup_dir(ray_dir)
    ray_dir.mkdir()
    calls: list[tuple[bool, bool]] = []

    def sync_up_experiment_state(save_fn, force, wait) -> None:  # noqa: ANN001
        calls.append((force, wait))
        (ray_dir / "experiment_state-x.json").write_text(json.dumps(len(calls)))

    manager = SimpleNamespace(sync_up_experiment_state=sync_up_experiment_state)
    trials = [SimpleNamespace(trial_id="a", status="PENDING", checkpoint=None)]
    controller = SimpleNamespace(get_trials=lambda: trials, _checkpoint_manager=manager,
                                 save_to_dir=lambda: None)
    original = TuneController.checkpoint
    with snapshot_on_trial_changes(lambda: back_up_state(ray_dir, backup)):
        def step() -> None:
            TuneController.checkpoint(controller)

        step()  # a new trial
        step()  # nothing changed: Tune's own period decides
        trials[0].status = "RUNNING"  # saved with its first checkpoint
        step()
        trials[0].checkpoint = SimpleNamespace(path="/ckpt/1")
        step()
        trials.append(SimpleNamespace(trial_id="b", status="PENDING", checkpoint=None))
        step()
        trials[0].status = "TERMINATED"
        step()
        step()
        trials[1].status = "ERROR"
        step()
        TuneController.checkpoint(controller, force=True)  # Tune's own forcing still holds
    forced = (True, True)
    assert calls == [forced, (False, False), (False, False), forced, forced, forced,
                     (False, False), forced, (True, False)]
    assert TuneController.checkpoint is original
    # Each forced save was copied to the backup once on disk: the last forced one is there.
    assert json.loads((backup / "experiment_state-x.json").read_text()) == 8


def test_report_sender_delivers_in_order_one_at_a_time():
    delivered: list[int] = []
    gate = threading.Event()

    def deliver(n: int) -> None:
        if n == 0:
            assert gate.wait(WAIT_S)
        delivered.append(n)

    sender = ReportSender()
    sender.send(lambda: deliver(0), wait=False)
    assert delivered == []  # returned while report 0 is still in flight
    second = threading.Thread(target=lambda: sender.send(lambda: deliver(1), wait=True))
    second.start()
    time.sleep(0.2)
    assert second.is_alive() and delivered == []  # report 1 waits for report 0
    gate.set()
    second.join(WAIT_S)
    assert delivered == [0, 1]


def test_report_sender_hands_tunes_stop_to_the_training_thread():
    def stopped() -> None:
        raise SystemExit(0)  # what tune.report raises when Tune stops the trial

    sender = ReportSender()
    sender.send(stopped, wait=False)
    with pytest.raises(SystemExit):
        sender.wait()
    sender.wait()  # raised once


def test_decoding_without_huge_pages_restores_numpy_s_setting():
    toggle = np._core.multiarray._set_madvise_hugepage

    def current() -> bool:
        value = toggle(True)
        toggle(value)
        return value

    before = current()
    with without_huge_pages():
        assert current() is False
        images = np.zeros((10, 28, 28), np.uint8)[np.arange(5)]
    assert current() == before and images.shape == (5, 28, 28)
