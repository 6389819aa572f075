"""The Python API (``import hpsearch``): ``sweep``, ``load`` and ``retrain``, the same code
paths as the command line, which is a thin layer over them. Bad input raises the exception
whose one-line message the command line prints."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from hpsearch.scripts.experiment_folder import ExperimentFolder
from hpsearch.search_spaces.errors import ConfigError
from hpsearch.search_spaces.schema import SearchSpace, load_yaml_mapping, parse_space


@dataclass(frozen=True)
class Best:
    """The best trial: its id, its full training config and its leaderboard metrics."""

    trial_id: str
    config: dict[str, Any]
    metrics: dict[str, Any]


@dataclass(frozen=True)
class SweepResult:
    """A sweep's experiment folder, read when asked (a running sweep's grows)."""

    folder: Path
    interrupted: bool = False
    wall_time_s: float | None = None

    @property
    def leaderboard(self) -> pd.DataFrame:
        """The leaderboard, best first (``leaderboard.csv``)."""
        return ExperimentFolder(self.folder).read_leaderboard()

    @property
    def best(self) -> Best | None:
        """The top row's trial, or None before any trial reported the objective."""
        board = self.leaderboard
        metric = ExperimentFolder(self.folder).read_meta().objective.metric
        rows = board[board[metric].notna()] if metric in board else board.iloc[0:0]
        if rows.empty:
            return None
        row = rows.iloc[0]
        skip = {"rank", "trial_id", "config", "checkpoint", "error"}
        metrics = {k: v.item() if hasattr(v, "item") else v for k, v in row.items()
                   if k not in skip and "." not in k and not pd.isna(v)}
        return Best(str(row["trial_id"]), json.loads(row["config"]), metrics)

    @property
    def study(self) -> Any:
        """The sweep's Optuna study (``optuna.Study``)."""
        from hpsearch.scripts.study import load_study

        return load_study(self.folder)


def _space_and_raw(space: str | Path | Mapping[str, Any] | SearchSpace
                   ) -> tuple[SearchSpace, dict[str, Any]]:
    """The parsed space and the mapping it came from (kept in sweep.json)."""
    if isinstance(space, SearchSpace):
        if not Path(space.source).is_file():
            raise ConfigError("sweep(): a parsed SearchSpace must come from a file "
                              "(load_space); pass a dict instead")
        space = space.source
    if isinstance(space, (str, Path)):
        raw = load_yaml_mapping(space)
        return parse_space(raw, source=str(space)), raw
    if isinstance(space, Mapping):
        raw = dict(space)
        return parse_space(raw, source="<dict>"), raw
    raise ConfigError(f"sweep(): space must be a path, a dict or a SearchSpace, got "
                      f"{type(space).__name__}")


def sweep_options(**options: Any) -> Any:
    """The ``SweepOptions`` of the command line's flags, named as keyword arguments
    (``num_samples=8``, ``time_budget="3m"``, ``results_dir="results"``)."""
    from hpsearch.scripts.tune.options import SweepOptions

    known = {f.name: f for f in dataclasses.fields(SweepOptions)}
    for name in options:
        if name not in known:
            raise ConfigError(f"sweep(): unknown option {name!r} (known: {', '.join(known)})")
    if isinstance(options.get("time_budget"), str):
        from hpsearch.scripts.tune.options import parse_duration

        try:
            options["time_budget"] = parse_duration(options["time_budget"])
        except ValueError as exc:
            raise ConfigError(f"sweep(): time_budget: {exc}") from None
    if options.get("results_dir") is not None:
        options["results_dir"] = Path(options["results_dir"])
    if options.get("data_dir") is not None:
        options["data_dir"] = str(options["data_dir"])
    return SweepOptions(**options)


def run(space: SearchSpace, raw: Mapping[str, Any], opts: Any) -> Any:
    """Run (or resume) a sweep: the one path of ``sweep()`` and ``hpsearch sweep``."""
    from hpsearch.scripts.tune.driver import run_sweep

    if opts.data_dir:  # the trials read it from the environment too
        os.environ["HPSEARCH_DATA_DIR"] = str(Path(opts.data_dir).resolve())
    return run_sweep(space, raw, opts)


def sweep(space: str | Path | Mapping[str, Any] | SearchSpace, **options: Any) -> SweepResult:
    """Run a sweep (``resume=True`` continues one) and return its result.

    ``space``: a search-space file, a dict of the same form, or a space read from a file.
    ``options``: the command line's flags, as keyword arguments.
    """
    parsed, raw = _space_and_raw(space)
    outcome = run(parsed, raw, sweep_options(**options))
    if outcome.stopped_because:
        raise OSError(f"{outcome.stopped_because}: the sweep stopped with its state saved; "
                      "free some space, then resume it (resume=True)")
    return SweepResult(outcome.exp_dir, outcome.interrupted, outcome.wall_time_s)


def load(folder: str | Path) -> SweepResult:
    """The result of the sweep in ``folder``, finished or running."""
    folder = Path(folder)
    ExperimentFolder(folder).read_meta()  # a clear error for a folder that holds no sweep
    return SweepResult(folder)


def retrain(folder: str | Path, seeds: int = 1, **options: Any) -> dict[str, Any]:
    """Re-train the best trial of ``folder`` (or ``rank=``/``trial_id=``) once per seed, test
    it and write ``folder/best/``; returns its ``metrics.json`` (``["test"]``,
    ``["summary"]`` over the seeds). ``options``: ``hpsearch retrain``'s flags."""
    from hpsearch.scripts.reports.retrain import RetrainOptions
    from hpsearch.scripts.reports.retrain import retrain as retrain_folder

    known = {f.name for f in dataclasses.fields(RetrainOptions)}
    for name in options:
        if name not in known:
            raise ConfigError(f"retrain(): unknown option {name!r} (known: {', '.join(known)})")
    report = retrain_folder(Path(folder), RetrainOptions(seeds=seeds, **options))
    return json.loads((report.parent / "metrics.json").read_text())
