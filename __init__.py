"""hpsearch: hyperparameter search for image classifiers, on Ray Tune and Optuna.

The Python API (see README, "Python API")::

    import hpsearch
    result = hpsearch.sweep("search_spaces/quickstart.yaml", name="try-1")
    result.leaderboard.head()
    hpsearch.retrain(result.folder, seeds=3)

The functions are imported on first use, so ``import hpsearch`` stays quick.
"""

from __future__ import annotations

from typing import Any

__all__ = ["load", "retrain", "sweep"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from hpsearch.scripts import api

        return getattr(api, name)
    raise AttributeError(f"module 'hpsearch' has no attribute {name!r}")
