"""The versions of the libraries the sweep relies on in detail, and the check that the
installed ones are those (pinned the same in ``pyproject.toml``)."""

from __future__ import annotations

from collections.abc import Callable
from importlib import metadata

PINNED = {
    "ray": "2.60.0", "optuna": "5.0.0", "pytorch-lightning": "2.6.6", "numpy": "2.4.6",
}


class VersionMismatch(RuntimeError):
    """An installed library is not the version hpsearch is pinned to."""


def check_pinned_versions(installed: Callable[[str], str] = metadata.version) -> None:
    """Raise :class:`VersionMismatch`, naming the library and both versions, if an installed
    library differs from its pin (instead of a sweep that silently behaves differently)."""
    for name, pinned in PINNED.items():
        try:
            found = installed(name)
        except metadata.PackageNotFoundError:
            found = "not installed"
        if found != pinned:
            raise VersionMismatch(
                f"{name} {found} found, hpsearch needs {name}=={pinned} "
                "(the sweep relies on its behaviour): run `make setup` or "
                f"`pip install {name}=={pinned}`")
