"""``hpsearch report``: pictures of the search, drawn by Optuna from the sweep's study."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState
from optuna.visualization import matplotlib as optuna_plots

from scripts.leaderboard import atomic_write_text, objectives, read_meta
from scripts.provenance import code_version
from scripts.reports import plots
from scripts.study import load_study
from search_spaces.errors import ConfigError

SEARCH_REPORT = "search.md"
SEARCH_PLOTS = "search"  # the PNGs' folder, beside search.md


def _plots(study: optuna.Study, metric: str) -> dict[str, tuple[str, Callable[[], Any]]]:
    """Name -> (caption, the Optuna call that draws it) for this study."""
    several = len(study.directions) > 1
    first = {"target": (lambda t: t.values[0]), "target_name": metric} if several else {
        "target_name": metric}
    drawn = {
        "optimization_history": ("Optimisation history: each trial's value and the best so far",
                                 lambda: optuna_plots.plot_optimization_history(study, **first)),
        "parallel_coordinate": ("Parallel coordinates: every trial's parameters and value",
                                lambda: optuna_plots.plot_parallel_coordinate(study, **first)),
        "param_importances": ("Parameter importances (Optuna's default evaluator)",
                              lambda: optuna_plots.plot_param_importances(study, **first)),
    }
    if several:
        drawn["pareto_front"] = ("Pareto front of the objectives", lambda: (
            optuna_plots.plot_pareto_front(study, target_names=None)))
    else:
        drawn["intermediate_values"] = (
            "Intermediate values: the objective after each epoch; a line that ends early is a "
            "trial the scheduler stopped at that rung",
            lambda: optuna_plots.plot_intermediate_values(study))
    return drawn


def write_search_report(exp_dir: Path) -> Path:
    """``results/<exp>/search.md`` and its PNGs in ``search/``; returns the report's path."""
    meta = read_meta(exp_dir)
    study = load_study(exp_dir)
    told = [t for t in study.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    if not any(t.state == TrialState.COMPLETE for t in told):
        raise ConfigError(f"{exp_dir}: no trial has completed yet, nothing to draw")
    metric = objectives(meta)[0]["metric"]
    out = exp_dir / SEARCH_PLOTS
    out.mkdir(exist_ok=True)
    lines = [f"# Search: {meta['experiment']}", "",
             f"{len(told)} trials told to Optuna ({sum(t.state == TrialState.PRUNED for t in told)}"
             f" stopped early) of study `{study.study_name}`; objective {metric}. "
             f"Drawn by `hpsearch report` (code `{code_version()}`) with "
             f"`optuna.visualization.matplotlib`.", ""]
    for name, (caption, draw) in _plots(study, metric).items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            # Optuna's notes on few trials per value and matplotlib's on flat axes: not ours.
            warnings.simplefilter("ignore", UserWarning)
            try:
                axes = draw()
            except (ValueError, RuntimeError) as exc:  # e.g. importances of one parameter
                lines += [f"## {caption}", "", f"Not drawn: {exc}", ""]
                continue
        figure = (axes.flat[0] if hasattr(axes, "flat") else axes).get_figure()
        figure.set_size_inches(9, 5.5)
        plots.save(figure, out / f"{name}.png")
        lines += [f"## {caption}", "", f"![{name}]({SEARCH_PLOTS}/{name}.png)", ""]
    report = exp_dir / SEARCH_REPORT
    atomic_write_text(report, "\n".join(lines))
    return report
