"""``hpsearch sweep`` as a subprocess, for the tests that stop, kill or race sweeps."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SWEEP_TIMEOUT_S = 300


class Sweep:
    """``hpsearch sweep`` as a subprocess, its output collected by a thread (so a test can
    act on a line while the sweep runs)."""

    def __init__(self, args: list[str], env: dict[str, str], cwd: Path = REPO) -> None:
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "scripts.cli", "sweep", *args], cwd=cwd, env=env,
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
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
