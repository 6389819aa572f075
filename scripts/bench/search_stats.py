"""The search bench's statistics, figures and curves: from each run's trained epochs (its
validation accuracy at each, in order) to epochs to a target, final bests, paired per-seed
ratios with bootstrap 95% intervals, the judged targets, and the anytime curves."""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

# The methods' names the figures judge (scripts.bench.search.METHODS holds them all).
NEW, ASHA, RANDOM = "rung_tpe+asha", "random+asha", "random"
ALONE, START = "alone", "start"
# The targets, medians over seeds, without start points unless said: the new method
# reaches random search's final median best in at most a third of random's epochs; needs at
# most 0.67x the epochs of random + ASHA (the paired ratio's 95% interval below 1) on at
# least one space and no more on any; with the start points, fewer than random + ASHA's.
MAX_VS_RANDOM = 1 / 3
MAX_VS_ASHA = 0.67
BOOTSTRAP_SAMPLES = 10_000


@dataclass(frozen=True)
class Run:
    """One method's run for one seed and setting: ``events`` are (seconds since the command
    started, validation accuracy) of every trained epoch, in order."""

    space: str
    method: str
    setting: str  # "alone": no start points; "start": the space's start points tried first
    seed: int
    wall_s: float
    events: tuple[tuple[float, float], ...]
    trials: int
    stopped_early: int

    @property
    def final_best(self) -> float:
        return max((acc for _, acc in self.events), default=math.nan)


def best_by_epoch(run: Run, total: int) -> np.ndarray:
    """The best validation accuracy after 1, 2, ..., ``total`` trained epochs (the last
    value held where a run trained fewer)."""
    best = np.maximum.accumulate([acc for _, acc in run.events]) if run.events else np.zeros(1)
    return np.array([best[min(k, len(best) - 1)] for k in range(total)])


def to_target(run: Run, target: float) -> tuple[float, float]:
    """Epochs and seconds the run needed to reach ``target`` (infinite if it never did)."""
    best = -math.inf
    for epochs, (at, acc) in enumerate(run.events, start=1):
        best = max(best, acc)
        if best >= target:
            return float(epochs), at
    return math.inf, math.inf


def median(values: Sequence[float]) -> float:
    """The median, infinite values included (more than half infinite: infinite)."""
    ordered = sorted(values)
    n = len(ordered)
    if n == 0:
        return math.nan
    mid = ordered[(n - 1) // 2], ordered[n // 2]
    return mid[0] if mid[0] == mid[1] else (mid[0] + mid[1]) / 2


def bootstrap_ci(values: Sequence[float], stat: Callable[[Sequence[float]], float] = median,
                 seed: int = 0) -> tuple[float, float]:
    """The 95% percentile-bootstrap interval of ``stat`` over ``values``."""
    if len(values) < 2:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    data = np.asarray(values, dtype=float)
    draws = [stat(list(data[rng.integers(0, len(data), len(data))]))
             for _ in range(BOOTSTRAP_SAMPLES)]
    lo, hi = np.percentile(draws, [2.5, 97.5])
    return float(lo), float(hi)


def paired_ratios(mine: Sequence[float], theirs: Sequence[float], never: float) -> list[float]:
    """Per seed, ``mine / theirs`` epochs to the target; a run that never reached it counts
    as ``never`` epochs (twice the budget), so that it weighs against its method."""
    def cap(x: float) -> float:
        return never if math.isinf(x) else x
    return [cap(a) / cap(b) for a, b in zip(mine, theirs, strict=True)]


def search_target(runs: Sequence[Run], setting: str = ALONE) -> float:
    """The accuracy to reach in ``setting``: the median final best of random search without
    stopping in that setting (with the start points, random search after trying them)."""
    return median([r.final_best for r in runs if (r.method, r.setting) == (RANDOM, setting)])


def _by_seed(runs: Sequence[Run], method: str, setting: str) -> dict[int, Run]:
    return {r.seed: r for r in runs if (r.method, r.setting) == (method, setting)}


def space_figures(runs: Sequence[Run], methods: Sequence[str], total_epochs: int,
                  figure: Any, judged: bool) -> list[Any]:
    """The figures of one space: for each setting and method, the final best and the epochs
    to the target beside random + ASHA's, with the paired ratio and its interval; the new
    method's targets judged where ``judged``."""
    space = runs[0].space
    never = 2.0 * total_epochs
    figures = []
    for setting in (ALONE, START):
        target = search_target(runs, setting)
        base = _by_seed(runs, ASHA, setting)
        for method in methods:
            mine = _by_seed(runs, method, setting)
            seeds = sorted(set(mine) & set(base))
            if not seeds:
                continue
            where = f"{space} {setting}: {method}"
            finals = [mine[s].final_best for s in seeds]
            base_finals = [base[s].final_best for s in seeds]
            diffs = [a - b for a, b in zip(finals, base_finals, strict=True)]
            lo, hi = bootstrap_ci(diffs)
            met = median(finals) >= median(base_finals) if judged and method == NEW else None
            figures.append(figure(
                "search", f"{where}: final best val_acc in {total_epochs} epochs "
                f"(median of {len(seeds)})", median(finals), median(base_finals), "",
                "random+asha", target=">= random+asha" if met is not None else "", met=met,
                note=f"paired difference {median(diffs):+.4f}{_interval(lo, hi, '+.4f')}; "
                     f"{median([mine[s].trials for s in seeds]):g} trials"))
            epochs = [to_target(mine[s], target)[0] for s in seeds]
            base_epochs = [to_target(base[s], target)[0] for s in seeds]
            ratios = paired_ratios(epochs, base_epochs, never)
            lo, hi = bootstrap_ci(ratios)
            text, met = _epoch_target(runs, method, setting, epochs, base_epochs, ratios, hi,
                                      target, judged)
            figures.append(figure(
                "search", f"{where}: epochs to {target:.4f} (median of {len(seeds)})",
                median(epochs), median(base_epochs), "epochs", "random+asha", target=text,
                met=met, note=f"paired ratio {median(ratios):.2f}{_interval(lo, hi, '.2f')}; "
                              f"per seed: {', '.join(_short(e) for e in epochs)}"))
    return figures


def _epoch_target(runs: Sequence[Run], method: str, setting: str, epochs: list[float],
                  base_epochs: list[float], ratios: list[float], hi: float, target: float,
                  judged: bool) -> tuple[str, bool | None]:
    if not judged or method != NEW:
        return "", None
    if setting == START:
        return "< random+asha", median(epochs) < median(base_epochs)
    randoms = [to_target(r, target)[0] for r in _by_seed(runs, RANDOM, setting).values()]
    within_third = median(epochs) <= MAX_VS_RANDOM * median(randoms)
    faster = median(ratios) <= MAX_VS_ASHA and hi < 1.0
    return (f"<= 1/3 random ({median(randoms):g}); <= {MAX_VS_ASHA}x random+asha, CI < 1",
            within_third and faster)


def _interval(lo: float, hi: float, spec: str) -> str:
    """`` [lo, hi]``, the 95% interval; empty with too few seeds for one."""
    return "" if math.isnan(lo) else f" [{lo:{spec}}, {hi:{spec}}]"


def _short(value: float) -> str:
    return "never" if math.isinf(value) else f"{value:.4g}"


# ------------------------------------------------------------------------------- curves


def curves(runs: Sequence[Run], methods: Sequence[str], total: int) -> list[dict[str, Any]]:
    """The anytime curves' rows: per space, setting, method and epoch, the quartiles over
    seeds of the best validation accuracy so far."""
    rows = []
    for space in sorted({r.space for r in runs}):
        for setting in (ALONE, START):
            for method in methods:
                mine = [r for r in runs if (r.space, r.method, r.setting)
                        == (space, method, setting)]
                if not mine:
                    continue
                q = np.percentile(np.array([best_by_epoch(r, total) for r in mine]),
                                  [25, 50, 75], axis=0)
                rows += [{"space": space, "setting": setting, "method": method, "epochs": x,
                          "best_q25": q[0, x - 1], "best_median": q[1, x - 1],
                          "best_q75": q[2, x - 1], "seeds": len(mine)}
                         for x in range(1, total + 1)]
    return rows


def rows_csv(rows: Sequence[dict[str, Any]]) -> str:
    """A CSV with a column per key of the first row."""
    out = io.StringIO()
    if rows:
        writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return out.getvalue()


def write_rows_csv(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    """Write ``rows`` to ``path`` as a CSV, whole or not at all, and say where."""
    from hpsearch.datamodules.paths import atomic_write_text

    atomic_write_text(path, rows_csv(rows))
    print(f"Written to {path}")


def plot_curves(rows: Sequence[dict[str, Any]], targets: dict[str, float], path: Path,
                labels: dict[str, str]) -> None:
    """One space's anytime curves, without and with start points: the median best val_acc
    against cumulative training epochs (the band: quartiles over seeds)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(13, 4.8), sharey=True)
    for ax, setting, title in ((axes[0], ALONE, "search alone"),
                               (axes[1], START, "start points tried first")):
        for method, label in labels.items():
            mine = [r for r in rows if (r["method"], r["setting"]) == (method, setting)]
            if not mine:
                continue
            xs = [r["epochs"] for r in mine]
            line, = ax.plot(xs, [r["best_median"] for r in mine], label=label)
            ax.fill_between(xs, [r["best_q25"] for r in mine], [r["best_q75"] for r in mine],
                            color=line.get_color(), alpha=0.12)
        target = targets[setting]
        ax.axhline(target, color="k", linestyle=":", linewidth=1,
                   label=f"target {target:.4f}: random's median final best")
        ax.set_title(title)
        ax.set_xlabel("cumulative training epochs")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("best validation accuracy so far")
    lows = [r["best_q25"] for r in rows if r["epochs"] >= 16]  # past the first few trials
    if lows:
        axes[0].set_ylim(max(min(lows), min(targets.values()) - 0.03), None)
    axes[1].legend(loc="lower right", fontsize=8)
    space = rows[0]["space"] if rows else ""
    fig.suptitle(f"Search efficiency on {space} (median and quartiles over seeds)")
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)
