"""A results dir on a disk that fills up: real sweeps on small tmpfs mounts (root only)."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from test_fault_injection import SPACE, _board, _one_line_error, _run, _sweep

from hpsearch.scripts.experiment_folder import MIN_FREE_BYTES

pytestmark = pytest.mark.slow


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Callable[[str, int], Path]]:
    mounted: list[Path] = []

    def mount(name: str, size_mb: int) -> Path:
        point = tmp_path / name
        point.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs",
                               str(point)], capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
        mounted.append(point)
        return point

    yield mount
    for point in mounted:
        subprocess.run(["umount", "-l", str(point)], check=False)


def _fill_until_free(disk: Path, free: int) -> Path:
    """A ballast file leaving ``free`` bytes on ``disk``."""
    ballast = disk / "ballast"
    with ballast.open("wb") as f:
        f.truncate(0)
        f.write(b"\0" * max(0, shutil.disk_usage(disk).free - free))
    return ballast


def test_a_disk_too_full_to_start_is_one_line_and_no_folder(
    small_disk, mnist_subset_dir: Path, tmp_path: Path
):
    disk = small_disk("tiny", 3)  # the 3 MB the sweep once left wreckage on
    (tmp_path / "space.yaml").write_text(yaml.safe_dump(SPACE))
    proc = _run("sweep", str(tmp_path / "space.yaml"), "--results-dir", str(disk / "results"),
                "--data-dir", str(mnist_subset_dir), timeout=120)
    _one_line_error(proc, "MiB free on its disk")
    assert not (disk / "results").exists()


def _tune_trial_log(path: Path) -> bool:
    return path.name in ("result.json", "progress.csv") or path.name.startswith(
        "events.out.tfevents.")


def test_a_disk_filling_up_stops_the_sweep_cleanly_and_it_resumes_once_freed(
    small_disk, mnist_subset_dir: Path, tmp_path: Path
):
    disk = small_disk("disk", 128)
    raw = {**SPACE, "budget": {"num_samples": 5, "max_epochs": 8, "grace_period": 8}}
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump(raw))
    common = ["--results-dir", str(disk / "results"), "--data-dir", str(mnist_subset_dir)]
    sweep = _sweep(str(space), *common)
    exp_dir = disk / "results" / "faults"
    deadline = time.monotonic() + 240
    while not ((exp_dir / "leaderboard.csv").is_file()
               and (_board(exp_dir).status == "completed").any()):
        assert sweep.proc.poll() is None and time.monotonic() < deadline, sweep.output
        time.sleep(0.05)
    ballast = _fill_until_free(disk, MIN_FREE_BYTES // 2)
    assert sweep.wait() == 1
    err = [line for line in sweep.lines if line.startswith("hpsearch: error:")]
    assert len(err) == 1 and "MiB free on its disk" in err[0] and "resume with" in err[0]
    assert "Traceback" not in sweep.output and "Errno 28" not in sweep.output, sweep.output
    stopped = _board(exp_dir)
    assert set(stopped.status) <= {"completed", "interrupted"}, stopped
    for ckpt in stopped.checkpoint.dropna():  # each one named is whole
        torch.load(exp_dir / ckpt / "model.ckpt", map_location="cpu", weights_only=False)
    # No file cut to nothing. Empty by design: Ray's and our dot-files (markers), and the logs
    # Tune opens as a trial starts (result.json, progress.csv, TensorBoard's events), for a
    # trial started as the sweep stopped, before it reported an epoch.
    reported = {f"trial-{t}" for t in stopped.query("epochs_run > 0").trial_id}
    assert not [p for p in exp_dir.rglob("*") if p.is_file() and p.stat().st_size == 0
                and not p.name.startswith(".")
                and not (p.parent.name not in reported and _tune_trial_log(p))]

    refused = _run("sweep", str(space), *common, "--resume", timeout=120)
    _one_line_error(refused, "MiB free on its disk")
    ballast.unlink()
    resumed = _run("sweep", str(space), *common, "--resume")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    board: pd.DataFrame = _board(exp_dir)
    assert len(board) == 5 and set(board.status) == {"completed"}, board
    kept = board.set_index("trial_id").loc[stopped.query("status == 'completed'").trial_id]
    assert list(kept.val_acc) == list(stopped.query("status == 'completed'").val_acc)
