"""``--storage s3://...`` for real, against moto's S3 server started by the test session:
a sweep killed and resumed, its leaderboard rebuilt from S3, its best checkpoint loaded from
S3, and its best trial re-trained."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pyarrow.fs
import pytest
import yaml
from sweep_process import REPO, Sweep

from hpsearch.lightning_modules.classifier import ClassifierModule
from hpsearch.scripts.experiment_folder import LEADERBOARD

pytestmark = pytest.mark.slow

SPACE = {
    "experiment": "s3sweep",
    "data": {"name": "mnist", "val_size": 500, "batch_size": 100},
    "model": {"family": "mlp", "hidden": [32]},
    "optimizer": {"name": "sgd", "momentum": 0.9},
    "search": {"optimizer.lr": {"type": "float", "low": 0.01, "high": 0.1, "log": True}},
    "objective": {"metric": "val_acc", "mode": "max"},
    "budget": {"num_samples": 4, "max_epochs": 3, "grace_period": 3},
    "resources": {"cpus_per_trial": 1, "max_concurrent": 1},
}


def _s3_fs(env: dict[str, str]) -> pyarrow.fs.S3FileSystem:
    return pyarrow.fs.S3FileSystem(endpoint_override=env["AWS_ENDPOINT_URL"],
                                   access_key="testing", secret_key="testing",
                                   region="us-east-1")


def _storage(s3_server, form: str, bucket: str) -> tuple[str, dict[str, str]]:  # noqa: ANN001
    """``--storage`` and the environment, in each of the two forms a user may write: the
    endpoint in ``AWS_ENDPOINT_URL``, or in the URI's query (as pyarrow and Ray document)."""
    env = {**os.environ, **s3_server.env(), "PYTHONUNBUFFERED": "1"}
    if form == "env":
        return f"s3://{bucket}/hp", env
    env.pop("AWS_ENDPOINT_URL")
    return (f"s3://{bucket}/hp?endpoint_override=127.0.0.1:{s3_server.port}&scheme=http",
            env)


@pytest.mark.parametrize("form", ["env", "query"])
def test_a_sweep_in_s3_is_killed_resumed_rebuilt_and_retrained(
    s3_server, mnist_subset_dir: Path, tmp_path: Path, form: str
):
    bucket = s3_server.make_bucket(f"sweeps-{form}")
    storage, env = _storage(s3_server, form, bucket)
    space = tmp_path / "s3.yaml"
    space.write_text(yaml.safe_dump(SPACE))
    results = tmp_path / "results"
    args = [str(space), "--results-dir", str(results), "--data-dir", str(mnist_subset_dir),
            "--storage", storage]
    exp_dir = results / "s3sweep"

    sweep = Sweep(args, env)
    deadline = time.monotonic() + 240
    while not ((exp_dir / LEADERBOARD).is_file() and (pd.read_csv(
            exp_dir / LEADERBOARD).status == "completed").sum() >= 1):
        assert sweep.proc.poll() is None and time.monotonic() < deadline, sweep.output
        time.sleep(0.05)
    sweep.kill()
    resumed = Sweep([*args, "--resume"], env)
    assert resumed.wait() == 0
    assert "resumed: " in resumed.output

    board = pd.read_csv(exp_dir / LEADERBOARD, dtype={"trial_id": str})
    assert len(board) == 4 and set(board.status) == {"completed"}, board
    assert not (exp_dir / "ray").exists()  # Ray's experiment is in S3 only
    fs = _s3_fs(s3_server.env())
    best = board.iloc[0]
    assert best["checkpoint"].startswith(f"{bucket}/hp/s3sweep/ray/trial-"), best["checkpoint"]
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp, "model.ckpt")
        with fs.open_input_stream(f"{best['checkpoint']}/model.ckpt") as src:
            local.write_bytes(src.read())
        module = ClassifierModule.load_from_checkpoint(local, weights_only=False)
        assert list(module.model_cfg.hidden) == json.loads(best["config"])["model"]["hidden"]

    (exp_dir / LEADERBOARD).unlink()
    rebuilt = subprocess.run([sys.executable, "-m", "hpsearch", "leaderboard", str(exp_dir),
                              "--rebuild"], cwd=REPO, env=env, capture_output=True, text=True,
                             timeout=120)
    assert rebuilt.returncode == 0, rebuilt.stdout + rebuilt.stderr
    again = pd.read_csv(exp_dir / LEADERBOARD, dtype={"trial_id": str})
    assert sorted(again.trial_id) == sorted(board.trial_id)

    retrained = subprocess.run(
        [sys.executable, "-m", "hpsearch", "retrain", str(exp_dir), "--epochs", "1",
         "--data-dir", str(mnist_subset_dir)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert retrained.returncode == 0, retrained.stdout + retrained.stderr
    assert (exp_dir / "best" / "metrics.json").is_file()


def test_a_storage_uri_no_file_system_takes_is_one_line_and_leaves_no_folder(
    mnist_subset_dir: Path, tmp_path: Path
):
    space = tmp_path / "s3.yaml"
    space.write_text(yaml.safe_dump(SPACE))
    proc = subprocess.run(
        [sys.executable, "-m", "hpsearch", "sweep", str(space), "--results-dir",
         str(tmp_path / "results"), "--data-dir", str(mnist_subset_dir), "--storage",
         "s3://b/hp?endpoint_override=127.0.0.1:9&scheme=ftp"],
        cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Invalid S3 connection scheme 'ftp'" in lines[0], proc.stderr
    assert not (tmp_path / "results").exists()
