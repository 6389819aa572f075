"""What every part of ``hpsearch bench`` shares: how much work it does (:class:`Mode`), the
figures it hands back (:class:`Figure`), and their table and CSV."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from hpsearch.scripts.bench.search_stats import rows_csv


@dataclass(frozen=True)
class Mode:
    """How much work each part does."""

    name: str
    train_images: int | None  # None: the whole training split (50,000)
    val_images: int | None  # None: the whole validation split (10,000)
    epochs: int  # per run; the first is a warm-up and not timed
    repeats: int  # runs of train(), each with the reference loop interleaved
    # (see train_speed.InterleavedClock)
    sweep_trials: int
    # One bench sweep per value: seconds of training per trial that the sweep is sized to on
    # the machine at hand (see EpochModel), so that the figures are for the trial lengths the
    # targets are for whatever the machine's speed.
    sweep_trial_s: tuple[float, ...]
    sweep_epochs: int  # per trial, at least (more where a trial on all images is too short)
    hog_images: int
    hog_sample: int  # images the per-image skimage loop is timed on


QUICK = Mode("quick", train_images=4096, val_images=2048, epochs=3, repeats=1,
             sweep_trials=4, sweep_trial_s=(0.5,), sweep_epochs=2, hog_images=10_000,
             hog_sample=300)
FULL = Mode("full", train_images=None, val_images=None, epochs=5, repeats=2,
            sweep_trials=8, sweep_trial_s=(1.2, 1.5, 1.9), sweep_epochs=2,
            hog_images=70_000, hog_sample=5_000)


@dataclass(frozen=True)
class Figure:
    part: str
    item: str
    ours: float
    baseline: float
    unit: str
    baseline_name: str
    target: str = ""
    met: bool | None = None
    note: str = ""

    @property
    def ratio(self) -> float:
        return self.ours / self.baseline if self.baseline else float("nan")


def format_table(figures: Iterable[Figure]) -> str:
    from hpsearch.scripts.reports.format import render_table

    rows = [(f.part, f.item, f"{f.ours:.4g} {f.unit}".strip(),
             f"{f.baseline:.4g} {f.unit}".strip(), f"{f.ratio:.3g}", f.baseline_name, f.target,
             "" if f.met is None else ("yes" if f.met else "NO"), f.note) for f in figures]
    headers = ("part", "what", "hpsearch", "baseline", "ratio", "baseline is", "target", "met",
               "note")
    return render_table(headers, rows)


def format_csv(figures: Iterable[Figure], context: dict[str, Any]) -> str:
    """One row per figure, with its ratio and the run's ``context`` (mode, machine)."""
    return rows_csv([{**asdict(f), "ratio": f.ratio, **context} for f in figures])
