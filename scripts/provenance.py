"""Which code made a result: the git commit, for every result row and report."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def _git(root: Path, *args: str) -> bytes:
    return subprocess.run(["git", *args], cwd=root, capture_output=True, check=True,
                          timeout=10).stdout


def code_version(root: Path = REPO_ROOT) -> str:
    """The git commit that made a result. With uncommitted changes to tracked files outside
    ``results/`` it is ``COMMIT+dirty.HASH``, HASH the start of the sha1 of that diff
    (``git diff HEAD``): the result can still be matched to the code it ran with. Installed
    (not a checkout of hpsearch: ``root`` is no repository's top), the package's version."""
    try:
        top = _git(root, "rev-parse", "--show-toplevel").decode().strip()
        if Path(top).resolve() != root.resolve():  # e.g. a venv inside the user's own repo
            raise subprocess.SubprocessError(f"{root} is inside {top}, not its checkout")
        rev = _git(root, "rev-parse", "--short=12", "HEAD").decode().strip()
        # results/ is left out: a sweep or re-train rewriting committed results is not code.
        diff = _git(root, "diff", "HEAD", "--binary", "--", ".", ":(exclude)results")
    except (OSError, subprocess.SubprocessError):
        from importlib.metadata import version

        return f"hpsearch-{version('hpsearch')}"
    return rev + (f"+dirty.{hashlib.sha1(diff).hexdigest()[:8]}" if diff else "")
