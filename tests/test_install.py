"""hpsearch as a user gets it: a wheel built from the repo, installed (not editable) into a
fresh virtual environment, run from a folder that holds packages of its own named ``scripts``
and ``datamodules``. Everything must come from the installed ``hpsearch``, nothing from the
repo nor from the user's folder."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pandas as pd
import pytest
import yaml

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
TIMEOUT_S = 300
# Never part of the package, whatever pyproject.toml says.
NOT_PACKAGED = ("tests", "results", ".venv", ".git", "build", "dist", "data")

ONE_TRIAL = {
    "experiment": "tiny_install",
    "data": {"name": "mnist", "val_size": 500, "batch_size": 100},
    "model": {"family": "mlp", "hidden": [32]},
    "optimizer": {"name": "sgd", "momentum": 0.9},
    "search": {"optimizer.lr": {"type": "float", "low": 0.01, "high": 0.1, "log": True}},
    "objective": {"metric": "val_acc", "mode": "max"},
    "budget": {"num_samples": 1, "max_epochs": 1, "grace_period": 1},
    "resources": {"cpus_per_trial": 1, "max_concurrent": 1},
}


def _run(cmd: list[str | Path], **kwargs) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True,
                          timeout=TIMEOUT_S, **kwargs)


def _check(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 0, f"{proc.args}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def _source_copy(dest: Path) -> Path:
    """The repo's files as a clone plus uncommitted work holds them (what git does not
    ignore), copied to ``dest``: setuptools builds in the source tree (build/, egg-info), and
    a stale build/lib left by an earlier build would put deleted modules in the wheel."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others",
                             "--exclude-standard"], cwd=REPO, capture_output=True, timeout=60)
    if listed.returncode == 0:
        for rel in filter(None, listed.stdout.decode().split("\0")):
            src = REPO / rel
            if src.is_file():  # not a tracked file deleted in the working tree
                (dest / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dest / rel)
    else:  # not a git checkout (an unpacked sdist, say)
        shutil.copytree(REPO, dest, ignore=shutil.ignore_patterns(
            *NOT_PACKAGED, "*.egg-info", "__pycache__", ".*_cache"))
    return dest


def _expected_wheel_files(src: Path) -> set[str]:
    """``hpsearch/...`` for every module and YAML file of every package folder of ``src``:
    the root (it is ``hpsearch``) and each folder below it with an ``__init__.py``."""
    expected = set()
    for init in src.rglob("__init__.py"):
        folder = init.parent
        rel = folder.relative_to(src)
        if rel.parts and rel.parts[0] in NOT_PACKAGED:
            continue
        if not all((src / Path(*rel.parts[:i]) / "__init__.py").is_file()
                   for i in range(len(rel.parts))):
            continue  # below a folder that is not a package
        expected |= {f"hpsearch/{p.relative_to(src).as_posix()}" for p in folder.iterdir()
                     if p.is_file() and p.suffix in (".py", ".yaml")}
    return expected


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv (no system site-packages) with the wheel installed, seeing the dev
    venv's dependencies through a path line in a .pth file (torch and Ray not reinstalled),
    but not the dev venv's editable hpsearch: a path line adds the folder to sys.path without
    processing the .pth files in it, so its editable finder is never installed."""
    root = tmp_path_factory.mktemp("install")
    src = _source_copy(root / "src")
    dist = root / "dist"
    _check(_run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                 "--no-index", "-w", dist, src]))
    (wheel,) = dist.glob("hpsearch-*.whl")

    names = set(zipfile.ZipFile(wheel).namelist())
    packaged = {n for n in names if not n.startswith("hpsearch-")}  # less the .dist-info
    expected = _expected_wheel_files(src)
    assert not expected - packaged, f"missing from the wheel: {sorted(expected - packaged)}"
    assert not packaged - expected, f"unexpected in the wheel: {sorted(packaged - expected)}"
    assert any(n.endswith("search_spaces/quickstart.yaml") for n in names)

    venv = root / "venv"
    _check(_run([sys.executable, "-m", "venv", "--without-pip", venv]))
    python = venv / "bin" / "python"
    purelib = Path(_check(_run([python, "-c", "import sysconfig; "
                                "print(sysconfig.get_path('purelib'))"])).strip())
    (purelib / "_hpsearch_dev_deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    # --ignore-installed: pip sees the dev venv's hpsearch through the .pth and would try
    # (and refuse) to uninstall it.
    _check(_run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps",
                 "--no-index", "--ignore-installed", wheel]))
    return venv


def test_the_installed_wheel_runs_a_sweep_beside_the_user_s_own_scripts_package(
    installed: Path, mnist_subset_dir: Path, tmp_path: Path
):
    venv = installed
    purelib = next((venv / "lib").glob("python*/site-packages"))
    work = tmp_path / "work"
    for name in ("scripts", "datamodules"):  # the user's own, as a project might have
        (work / name).mkdir(parents=True)
        (work / name / "__init__.py").write_text("DUMMY = True\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}

    shown = _check(_run([venv / "bin" / "hpsearch", "--version"], cwd=work, env=env))
    assert shown.startswith("hpsearch "), shown
    code_version = shown.split("(code ", 1)[1].rstrip().rstrip(")")

    # `python -c` puts the working folder first on sys.path: the user's packages win there,
    # and hpsearch's own are under hpsearch., from the venv's site-packages.
    probe = ("import sys, scripts, datamodules, hpsearch, hpsearch.scripts.cli, "
             "hpsearch.datamodules\n"
             "print(scripts.DUMMY, datamodules.DUMMY)\n"
             "print(scripts.__file__)\n"
             "print(hpsearch.__file__)\n"
             "print(hpsearch.scripts.cli.__file__)\n"
             "print(hpsearch.datamodules.__file__)\n"
             "print(sorted(m for m in sys.modules if 'editable' in m))\n")
    lines = _check(_run([venv / "bin" / "python", "-c", probe], cwd=work, env=env)).splitlines()
    assert lines[0] == "True True", lines
    assert Path(lines[1]) == work / "scripts" / "__init__.py"
    for path in lines[2:5]:
        assert Path(path).is_relative_to(purelib / "hpsearch"), lines
        assert not Path(path).is_relative_to(REPO), lines
    assert lines[5] == "[]", f"the dev venv's editable finder was loaded: {lines[5]}"

    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump(ONE_TRIAL))
    results = tmp_path / "results"
    # A relative space path, as a user types it, and the Ray workers start in this folder too.
    swept = _run([venv / "bin" / "hpsearch", "sweep", os.path.relpath(space, work),
                  "--name", "install-test", "--results-dir", results,
                  "--data-dir", mnist_subset_dir], cwd=work, env=env)
    _check(swept)
    board = pd.read_csv(results / "install-test" / "leaderboard.csv", dtype={"trial_id": str})
    assert len(board) == 1, board
    assert board["status"].iloc[0] == "completed", board.to_dict("records")
    assert board["val_acc"].iloc[0] > 0.5
    # The trial ran the installed code: its provenance is the installed package's.
    assert board["code_version"].iloc[0] == code_version
