"""``hpsearch sweep SPACE --warm-start results/OTHER``: another experiment's best configs as
this sweep's start points (tried first) and so the prior of ``sampler: rung_tpe``.

The other study's best finished trials are mapped onto this space's parameters: a parameter
both spaces search keeps its value, clipped into this space's range (a choice must be one of
this space's values); a list keeps its elements, its length clipped to this space's. The
parameters the two spaces do not share are left out of the start points, so the sweep draws
them."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from optuna.study import StudyDirection
from optuna.trial import TrialState

from hpsearch.scripts.experiment_folder import ExperimentFolder
from hpsearch.search_spaces.distributions import ChoiceDist, ListDist, Param
from hpsearch.search_spaces.errors import ConfigError
from hpsearch.search_spaces.schema import SearchSpace

TOP_TRIALS = 3  # the other study's best finished trials carried over


def _fit(value: Any, dist: Any) -> Any:
    """``value`` in ``dist``: clipped into a range; None where a choice does not hold it."""
    if isinstance(dist, ChoiceDist):
        return value if value in dist.values else None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    clipped = min(max(value, dist.low), dist.high)
    if dist.type == "float":
        return float(clipped)
    on_grid = dist.low + round((clipped - dist.low) / dist.step) * dist.step  # Optuna's steps
    return int(min(on_grid, dist.high))


def _mapped(param: Param, flat: Mapping[str, Any]) -> Any:
    """The other trial's value for ``param`` (from Optuna's flat names), or None."""
    if not isinstance(param.dist, ListDist):
        return _fit(flat[param.path], param.dist) if param.path in flat else None
    length_key = f"{param.path}.length"
    if length_key not in flat:
        return None
    theirs = [flat[f"{param.path}.{i}"] for i in range(flat[length_key])]
    length = _fit(len(theirs), param.dist.length)
    elements = [_fit(theirs[min(i, len(theirs) - 1)], param.dist.each) for i in range(length)]
    return None if any(e is None for e in elements) else elements


def map_point(space: SearchSpace, flat: Mapping[str, Any]) -> dict[str, Any]:
    """One of the other study's trials (its flat parameters) as a start point of ``space``:
    the shared parameters only, and those only where active."""
    point: dict[str, Any] = {}
    for param in space.search:
        if not param.active(point):
            continue
        value = _mapped(param, flat)
        if value is not None:
            point[param.path] = value
    return point


def warm_start_points(space: SearchSpace, folder: str | Path,
                      top: int = TOP_TRIALS) -> tuple[tuple[dict[str, Any], ...], dict[str, Any]]:
    """The start points ``folder``'s study gives ``space``, and the record ``sweep.json``
    keeps of them. One-line :class:`ConfigError` for a folder without a study, a study
    without a finished trial, or spaces that share no parameter."""
    from hpsearch.scripts.study import load_study

    where = f"--warm-start {folder}"
    if not ExperimentFolder(Path(folder)).meta_file.is_file():
        raise ConfigError(f"{where}: not an experiment folder (no sweep.json): give the folder "
                          "of an earlier hpsearch sweep, e.g. results/mnist_cnn")
    try:
        study = load_study(Path(folder))
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    finished = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                if t.values and math.isfinite(t.values[0])]
    if not finished:
        raise ConfigError(f"{where}: its study has no finished trial to start from")
    theirs = sorted({name.rsplit(".", 1)[0] if name.rsplit(".", 1)[-1].isdigit()
                     or name.endswith(".length") else name
                     for t in finished for name in t.params})
    shared = [p.path for p in space.search if p.path in theirs]
    if not shared:
        raise ConfigError(f"{where}: its parameters ({', '.join(theirs)}) share none with "
                          f"{space.source}'s ({', '.join(space.param_names)})")
    maximize = study.directions[0] == StudyDirection.MAXIMIZE
    ranked = sorted(finished, key=lambda t: t.values[0], reverse=maximize)
    points: list[dict[str, Any]] = []
    trials: list[int] = []
    for trial in ranked:
        point = map_point(space, trial.params)
        if point and point not in points:
            points.append(point)
            trials.append(trial.number)
        if len(points) == top:
            break
    record = {"from": str(folder), "study": study.study_name, "trials": trials,
              "shared": shared, "start_points": points}
    return tuple(points), record
