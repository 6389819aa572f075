"""The Pareto front's picture of a multi-objective sweep, drawn from its leaderboard."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hpsearch.scripts.leaderboard import LEADERBOARD, PARETO_PLOT, objectives, read_leaderboard


def write_pareto_plot(exp_dir: Path, meta: Mapping[str, Any]) -> Path | None:
    """``pareto_front.png`` beside the leaderboard of a sweep with several objectives: the
    first objective against the second (accuracy against parameters, say), the front
    highlighted. Written under a temporary name and renamed into place."""
    objs = objectives(meta)
    if len(objs) < 2 or not (exp_dir / LEADERBOARD).is_file():
        return None
    from hpsearch.scripts.reports import plots  # matplotlib: only where a plot is drawn

    frame = read_leaderboard(exp_dir)
    y, x = objs[0]["metric"], objs[1]["metric"]
    frame = frame[frame[x].notna() & frame[y].notna()]
    ranks = frame["pareto_rank"].fillna(-1).astype(int)
    points = list(zip(frame[x].astype(float), frame[y].astype(float), ranks, strict=True))
    path = exp_dir / PARETO_PLOT
    tmp = exp_dir / f".{PARETO_PLOT}.tmp.png"
    plots.pareto_front(points, (x, y), tmp, str(meta["experiment"]))
    os.replace(tmp, path)
    return path
