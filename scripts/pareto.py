"""Pareto ranks of trials over several objectives (non-dominated sorting)."""

from __future__ import annotations

from collections.abc import Sequence


def _dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """``a`` is at least as good as ``b`` in every objective and better in one (all
    objectives turned into maximizations)."""
    return all(x >= y for x, y in zip(a, b, strict=True)) and any(
        x > y for x, y in zip(a, b, strict=True))


def pareto_ranks(points: Sequence[Sequence[float]], modes: Sequence[str]) -> list[int]:
    """Each point's Pareto rank: 0 on the front, 1 on the front of the rest, and so on.
    ``modes``: ``max`` or ``min`` per objective."""
    signs = [1.0 if mode == "max" else -1.0 for mode in modes]
    gains = [[s * v for s, v in zip(signs, point, strict=True)] for point in points]
    ranks = [-1] * len(gains)
    remaining, level = set(range(len(gains))), 0
    while remaining:
        front = {i for i in remaining
                 if not any(_dominates(gains[j], gains[i]) for j in remaining if j != i)}
        for i in front:
            ranks[i] = level
        remaining -= front
        level += 1
    return ranks
