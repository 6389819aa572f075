"""A search space in Optuna's terms: the define-by-run function, its flat parameter names,
and the typed config of one drawn trial. No Ray here, so the leaderboard can use it too."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hpsearch.search_spaces.distributions import ListDist, Param
from hpsearch.search_spaces.rungs import cycle_ends
from hpsearch.search_spaces.schema import SECTIONS, SearchSpace
from hpsearch.search_spaces.train_config import TrainConfig, train_config_from_sections


def _suggest_scalar(trial: Any, name: str, dist: Any) -> Any:
    if dist.type == "int":
        return trial.suggest_int(name, dist.low, dist.high, step=dist.step, log=dist.log)
    if dist.type == "float":
        return trial.suggest_float(name, dist.low, dist.high, log=dist.log)
    return trial.suggest_categorical(name, list(dist.values))


def define_by_run(trial: Any, space: SearchSpace) -> None:
    """Optuna define-by-run space. Module-level so the searcher pickles for ``--resume``.

    A list parameter draws its length as ``PATH.length`` and then ``PATH.0``, ``PATH.1``...
    """
    drawn: dict[str, Any] = {}
    for param in space.search:
        if not param.active(drawn):
            continue
        if isinstance(param.dist, ListDist):
            n = _suggest_scalar(trial, f"{param.path}.length", param.dist.length)
            drawn[param.path] = [
                _suggest_scalar(trial, f"{param.path}.{i}", param.dist.each) for i in range(n)
            ]
        else:
            drawn[param.path] = _suggest_scalar(trial, param.path, param.dist)


def sampled_params(space: SearchSpace, flat: Mapping[str, Any]) -> dict[str, Any]:
    """Regroup Optuna's flat names into one value per searched parameter (lists whole)."""
    out: dict[str, Any] = {}
    for param in space.search:
        if isinstance(param.dist, ListDist):
            length_key = f"{param.path}.length"
            if length_key in flat:
                out[param.path] = [flat[f"{param.path}.{i}"] for i in range(flat[length_key])]
        elif param.path in flat:
            out[param.path] = flat[param.path]
    return out


def flat_point(space: SearchSpace, point: Mapping[str, Any]) -> dict[str, Any]:
    """A start point in Optuna's flat parameter names (lists as length + elements)."""
    flat: dict[str, Any] = {}
    for param in space.search:
        if param.path not in point:
            continue
        value = point[param.path]
        if isinstance(param.dist, ListDist):
            flat[f"{param.path}.length"] = len(value)
            flat.update({f"{param.path}.{i}": v for i, v in enumerate(value)})
        else:
            flat[param.path] = value
    return flat


def _apply(sections: dict[str, dict[str, Any]], param: Param, value: Any) -> None:
    sections[param.section][param.key] = value


def trial_config(space: SearchSpace, params: Mapping[str, Any]) -> TrainConfig:
    """The typed config of one trial: the file's fixed settings plus the drawn values (with
    ``budget.fair_rungs``, a decaying schedule's cycles end at the rungs)."""
    sections = {s: space.fixed(s) for s in SECTIONS}
    for param in space.search:
        if param.path in params:
            _apply(sections, param, params[param.path])
    ends = cycle_ends(space)
    if ends and sections["optimizer"].get("schedule", "none") != "none":
        sections["optimizer"]["cycle_ends"] = list(ends)
    return train_config_from_sections(sections, max_epochs=space.budget.max_epochs, seed=space.seed)
