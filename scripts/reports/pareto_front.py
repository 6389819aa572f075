"""The Pareto front's picture of a multi-objective sweep, drawn from its leaderboard."""

from __future__ import annotations

import os
from pathlib import Path

from hpsearch.scripts.experiment_folder import ExperimentFolder
from hpsearch.scripts.sweep_record import SweepMeta


def write_pareto_plot(exp_dir: Path, meta: SweepMeta) -> Path | None:
    """``pareto_front.png`` beside the leaderboard of a sweep with several objectives: the
    first objective against the second (accuracy against parameters, say), the front
    highlighted. Written under a temporary name and renamed into place."""
    objs, folder = meta.objectives, ExperimentFolder(exp_dir)
    if len(objs) < 2 or not folder.leaderboard.is_file():
        return None
    from hpsearch.scripts.reports import plots  # matplotlib: only where a plot is drawn

    frame = folder.read_leaderboard()
    y, x = objs[0].metric, objs[1].metric
    frame = frame[frame[x].notna() & frame[y].notna()]
    ranks = frame["pareto_rank"].fillna(-1).astype(int)
    points = list(zip(frame[x].astype(float), frame[y].astype(float), ranks, strict=True))
    path = folder.pareto_plot
    tmp = exp_dir / f".{path.name}.tmp.png"
    plots.pareto_front(points, (x, y), tmp, meta.experiment)
    os.replace(tmp, path)
    return path
