"""The one exception type for data that is missing, malformed or inconsistent."""

from __future__ import annotations


class DataError(ValueError):
    """A dataset file or folder cannot be used; the one-line message names the path and the problem.

    It subclasses ``ValueError`` so callers that already handle bad input keep working, and is
    distinct from ``ConfigError`` (a bad setting) so ``hpsearch data check`` can report broken or
    missing data per dataset without hiding programming errors.
    """


def one_line(exc: BaseException) -> str:
    """An exception's message on one line (its type's name when it has none)."""
    return " ".join(str(exc).split()) or type(exc).__name__
