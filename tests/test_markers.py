"""The test tiers: what `make test-fast` leaves out is marked slow, and the marks are known."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import HEAVY_FIXTURES, unmarked_heavy_tests

REPO = Path(__file__).resolve().parents[1]


class _Item:
    def __init__(self, nodeid: str, fixtures: list[str], slow: bool) -> None:
        self.nodeid, self.fixturenames, self.slow = nodeid, fixtures, slow

    def get_closest_marker(self, name: str) -> object | None:
        return object() if name == "slow" and self.slow else None


def test_a_test_using_ray_or_real_data_without_the_slow_mark_is_named():
    items = [_Item("t.py::fast", ["tmp_path"], slow=False),
             _Item("t.py::sweep", ["mnist_subset_dir", "real_data_dir"], slow=True),
             _Item("t.py::sneaky", ["tmp_path", "ray_session"], slow=False)]
    assert unmarked_heavy_tests(items) == ["t.py::sneaky (uses ray_session)"]
    assert {"real_data_dir", "ray_session", "s3_server"} <= HEAVY_FIXTURES


def test_every_collected_test_is_in_its_tier():
    """The whole suite as collected: no heavy test outside the slow tier, no unknown mark
    (``--strict-markers``), and the fast tier is not empty."""
    fast = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-m",
                           "not slow", "-p", "no:cacheprovider"], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert fast.returncode == 0, fast.stdout[-2000:] + fast.stderr[-2000:]
    collected = [line for line in fast.stdout.splitlines() if "::" in line]
    assert len(collected) > 100
    for heavy in ("test_sweep.py", "test_disk_full.py", "test_fault_injection.py",
                  "test_s3_storage.py", "test_spaces_smoke.py"):
        assert not any(line.startswith(f"tests/{heavy}") for line in collected), heavy


def test_our_configuration_refuses_an_unknown_mark(tmp_path: Path):
    (tmp_path / "test_x.py").write_text("import pytest\n\n@pytest.mark.slwo\ndef test_x():\n"
                                        "    pass\n")
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "-c", str(REPO / "pyproject.toml"), "--rootdir", str(tmp_path),
                           str(tmp_path / "test_x.py")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "'slwo' not found in `markers`" in proc.stdout + proc.stderr
