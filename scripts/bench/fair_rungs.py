"""Do fair rungs change ASHA's first judgement? A controlled measurement on a finished sweep:
every trial whose learning-rate schedule decays (cosine, one-cycle) is trained again to the
first rung with ``budget.fair_rungs`` (its cycle ending there), the same config and seed,
and the first rung is judged again with those values beside the others' recorded ones.

    python -m hpsearch.scripts.bench.fair_rungs results/fashion_cnn [--out results/X.csv]

The judgement is successive halving's at the first rung (the best ``1/reduction_factor`` of
the trials go on), applied alike before and after; ASHA's asynchronous decisions in the
sweep itself also depended on the order trials arrived in.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hpsearch.scripts.bench.search_stats import write_rows_csv
from hpsearch.scripts.experiment_folder import ExperimentFolder
from hpsearch.scripts.study import load_study
from hpsearch.scripts.train import EpochHistory, train
from hpsearch.scripts.tune.options import space_from_meta
from hpsearch.search_spaces.rungs import cycle_ends, decision_epochs
from hpsearch.search_spaces.train_config import TrainConfig

DECAYING = ("cosine", "onecycle")


def first_rung_values(folder: Path) -> tuple[list[dict[str, Any]], Any]:
    """Each finished trial of the sweep: its schedule, config and value at the first rung."""
    meta = ExperimentFolder(folder).read_meta()
    space = space_from_meta(meta)
    rung = min(decision_epochs(space))
    trials = []
    for trial in load_study(folder).trials:
        value = trial.intermediate_values.get(rung)
        ray_id = trial.user_attrs.get("ray_trial_id")
        if value is None or ray_id is None:
            continue
        trials.append({"trial": trial.number, "ray_trial_id": ray_id,
                       "schedule": trial.params.get("optimizer.schedule",
                                                    space.optimizer.get("schedule", "none")),
                       "before": float(value)})
    return trials, space


def passes(values: Sequence[float], mine: float, reduction_factor: int, maximize: bool) -> bool:
    """Whether ``mine`` is among the best ``ceil(n / reduction_factor)`` of ``values``."""
    keep = math.ceil(len(values) / reduction_factor)
    ordered = sorted(values, reverse=maximize)
    return (mine >= ordered[keep - 1]) if maximize else (mine <= ordered[keep - 1])


def measure(folder: Path, data_dir: str | None) -> list[dict[str, Any]]:
    """Train each decaying trial to the first rung with fair rungs; judge both ways."""
    trials, space = first_rung_values(folder)
    board = ExperimentFolder(folder).read_leaderboard().set_index("trial_id")
    fair = dataclasses.replace(space, budget=space.budget.model_copy(update={"fair_rungs": True}))
    rung = min(decision_epochs(space))
    ends = cycle_ends(fair)
    for trial in trials:
        trial["after"] = trial["before"]
        if trial["schedule"] not in DECAYING:
            continue
        raw = json.loads(board.loc[trial["ray_trial_id"], "config"])
        raw["optimizer"] = {**raw["optimizer"], "cycle_ends": list(ends)}
        result = train(TrainConfig.from_dict(raw), data_dir=data_dir, stop_after=rung,
                       history=EpochHistory(space.objective.metric, space.objective.mode))
        trial["after"] = float(result.best_value)
        print(f"  trial {trial['trial']} ({trial['schedule']}): {trial['before']:.4f} at epoch "
              f"{rung} -> {trial['after']:.4f} with fair rungs", flush=True)
    maximize = space.objective.mode == "max"
    for when in ("before", "after"):
        values = [t[when] for t in trials]
        for trial in trials:
            trial[f"passes_{when}"] = passes(values, trial[when],
                                             space.budget.reduction_factor, maximize)
    return trials


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hpsearch.scripts.bench.fair_rungs",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("folder", help="a finished sweep's experiment folder")
    parser.add_argument("--out", help="CSV to write (default: results/fair-rungs-NAME.csv)")
    parser.add_argument("--data-dir", default=None, help="folder holding the datasets")
    args = parser.parse_args(argv)
    folder = Path(args.folder)
    trials = measure(folder, args.data_dir)
    for schedule in sorted({t["schedule"] for t in trials}):
        mine = [t for t in trials if t["schedule"] == schedule]
        print(f"{schedule}: {sum(t['passes_before'] for t in mine)} of {len(mine)} pass the "
              f"first rung before, {sum(t['passes_after'] for t in mine)} with fair rungs")
    write_rows_csv(Path(args.out or f"results/fair-rungs-{folder.name}.csv"), trials)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
