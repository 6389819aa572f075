"""Which code made a result: the git commit, for every result row and report."""

from __future__ import annotations

import subprocess
from pathlib import Path


def code_version() -> str:
    """The git commit that made a result (``+dirty`` when the tree had changes)."""
    root = Path(__file__).resolve().parents[1]
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"], cwd=root, capture_output=True,
            text=True, check=True, timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
            capture_output=True, text=True, timeout=10,
        ).stdout.strip()
        return rev + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        from importlib.metadata import version

        return f"hpsearch-{version('hpsearch')}"
