"""``hpsearch report``: pictures of the search, drawn by Optuna from the sweep's study."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState
from optuna.visualization import matplotlib as optuna_plots

from hpsearch.datamodules.paths import atomic_write_text
from hpsearch.scripts.experiment_folder import ExperimentFolder
from hpsearch.scripts.provenance import code_version
from hpsearch.scripts.reports import plots
from hpsearch.scripts.study import load_study
from hpsearch.search_spaces.errors import ConfigError

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


# Plots whose y-axis is the objective, clipped to the band where the search decided.
FOCUSED = ("optimization_history", "intermediate_values")


@dataclass(frozen=True)
class Focus:
    """A y-range that leaves out the far outliers (a diverged trial at 0.1 beside a search
    deciding between 0.97 and 0.99), and what it leaves out."""

    low: float
    high: float
    left_out: int  # trials with a value outside the range
    worst: float | None  # the farthest value left out

    def note(self, metric: str) -> str:
        if not self.left_out:
            return ""
        return (f" The y-axis shows {metric} from {self.low:.4g} to {self.high:.4g}; "
                f"{self.left_out} trial(s) had values far outside it (as far as "
                f"{self.worst:.4g}) and leave the plot there.")


FENCE = 3.0  # far outliers: beyond 3 interquartile ranges from the quartiles (Tukey)
ZOOM = 10.0  # ... left out only where they stretch the axis tenfold or more


def plotted_values(trials: list[optuna.trial.FrozenTrial], plot: str) -> list[list[float]]:
    """Per trial, the values ``plot`` draws: every epoch's for the intermediate values, the
    final value of each completed trial for the history (Optuna leaves pruned ones out)."""
    if plot == "optimization_history":
        return [[t.value] for t in trials if t.state == TrialState.COMPLETE]
    return [list(t.intermediate_values.values()) for t in trials]


def focus_range(curves: list[list[float]]) -> Focus | None:
    """The y-range of :class:`Focus` for the trials' ``curves`` of values: every value but
    the far outliers, with a margin. None where leaving them out would not zoom in at least
    :data:`ZOOM` times (or with fewer than 8 values): then Optuna's own range stands."""
    import numpy as np

    values = np.array([v for c in curves for v in c], dtype=float)
    values = values[np.isfinite(values)]
    if len(values) < 8:
        return None
    q1, q3 = np.percentile(values, [25, 75])
    fence_low, fence_high = q1 - FENCE * (q3 - q1), q3 + FENCE * (q3 - q1)
    kept = values[(values >= fence_low) & (values <= fence_high)]
    span, kept_span = values.max() - values.min(), kept.max() - kept.min()
    if len(kept) == len(values) or span < ZOOM * kept_span:
        return None  # nothing left out, or too little gained by leaving it out
    pad = 0.05 * (kept.max() - kept.min() or abs(kept.max()) or 1.0)
    low, high = float(kept.min() - pad), float(kept.max() + pad)
    outside = [v for c in curves for v in c if not low <= v <= high]
    left_out = sum(any(not low <= v <= high for v in c) for c in curves)
    worst = max(outside, key=lambda v: max(low - v, v - high))
    return Focus(low, high, left_out, float(worst))


def write_search_report(exp_dir: Path) -> Path:
    """``results/<exp>/search.md`` and its PNGs in ``search/``; returns the report's path."""
    meta = ExperimentFolder(exp_dir).read_meta()
    study = load_study(exp_dir)
    told = [t for t in study.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    if not any(t.state == TrialState.COMPLETE for t in told):
        raise ConfigError(f"{exp_dir}: no trial has completed yet, nothing to draw")
    metric = meta.objective.metric
    out = exp_dir / SEARCH_PLOTS
    out.mkdir(exist_ok=True)
    lines = [f"# Search: {meta.experiment}", "",
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
        axis = axes.flat[0] if hasattr(axes, "flat") else axes
        note = ""
        focus = focus_range(plotted_values(told, name)) if (
            name in FOCUSED and len(study.directions) == 1) else None
        if focus is not None:
            axis.set_ylim(focus.low, focus.high)
            note = focus.note(metric)
            if note:
                axis.set_title(f"{axis.get_title()} ({focus.left_out} trial(s) off the "
                               "axis: see search.md)", fontsize=10)
        figure = axis.get_figure()
        figure.set_size_inches(9, 5.5)
        plots.save(figure, out / f"{name}.png")
        lines += [f"## {caption}", "", f"![{name}]({SEARCH_PLOTS}/{name}.png)", ""]
        if note:
            lines[-1:-1] = ["", note.strip()]
    report = exp_dir / SEARCH_REPORT
    atomic_write_text(report, "\n".join(lines))
    return report
