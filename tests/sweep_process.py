"""``hpsearch sweep`` as a subprocess, for the tests that stop, kill or race sweeps."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from hpsearch.scripts.chaos import descendants

REPO = Path(__file__).resolve().parents[1]
SWEEP_TIMEOUT_S = 300
# What may write into the experiment folder after a driver is killed: Ray's workers (the
# trials) and the local Ray's raylet and GCS. Ray's dashboard and runtime-env agents
# (ray::DashboardAgent, ray::RuntimeEnvAgent) live on for a while but write only to Ray's
# own session folder.
WRITERS = ("default_worker", "ray::", "raylet", "gcs_server")
NOT_WRITERS = ("Agent",)
SETTLE_TIMEOUT_S = 10.0  # the guarantee: a killed sweep's writers are gone within 10 s


def sweep_writers(pid: int) -> list[psutil.Process]:
    """The processes started by the sweep of driver ``pid`` that may write its folder."""
    return descendants(pid, lambda text: any(w in text for w in WRITERS)
                       and not any(w in text for w in NOT_WRITERS))


def wait_gone(procs: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Wait until ``procs`` have all exited; returns those still alive after ``timeout``."""
    _, alive = psutil.wait_procs(procs, timeout=timeout)
    return alive


class Sweep:
    """``hpsearch sweep`` as a subprocess, its output collected by a thread (so a test can
    act on a line while the sweep runs)."""

    def __init__(self, args: list[str], env: dict[str, str], cwd: Path = REPO) -> None:
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "hpsearch", "sweep", *args], cwd=cwd, env=env,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for_line(self, prefix: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not any(line.startswith(prefix) for line in self.lines):
            assert self.proc.poll() is None, f"sweep exited early:\n{self.output}"
            assert time.monotonic() < deadline, f"no '{prefix}' line:\n{self.output}"
            time.sleep(0.05)

    def wait(self, timeout: float = SWEEP_TIMEOUT_S) -> int:
        try:
            rc = self.proc.wait(timeout=timeout)
        finally:
            self.kill()
        self._reader.join(timeout=10)
        print(self.output)  # shown by pytest when the test fails
        return rc

    def kill(self) -> None:
        """SIGKILL the driver, then wait until the processes of its sweep that could write
        into the folder are gone (a test may then copy, snapshot or resume it)."""
        if self.proc.poll() is not None:
            return
        writers = sweep_writers(self.proc.pid)
        self.proc.kill()
        self.proc.wait()
        alive = wait_gone(writers, SETTLE_TIMEOUT_S)
        assert not alive, f"still running {SETTLE_TIMEOUT_S:g} s after the kill: {alive}"


def cli_in_process(args: tuple[str, ...] | list[str],
                   capsys: pytest.CaptureFixture) -> tuple[int, str]:
    """``hpsearch ARGS`` as the console script runs ``main``, in this process (no start-up of
    its own, for commands refused before Ray starts): the exit status and stderr."""
    from hpsearch.scripts.cli import main

    try:
        code = main(list(args))
    except SystemExit as stop:  # argparse's errors
        code = int(stop.code or 0)
    return code, capsys.readouterr().err
