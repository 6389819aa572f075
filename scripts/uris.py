"""Storage locations given as a local path or a URI (``s3://bucket/prefix?query``)."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit


def join_uri(base: str, *parts: str) -> str:
    """``base`` (a path, or a URI whose query configures its file system) with ``parts``
    appended to its path, the query kept at the end."""
    if "://" not in base:
        return "/".join([base.rstrip("/") or "/", *parts]).replace("//", "/")
    split = urlsplit(base)
    path = "/".join([split.path.rstrip("/"), *parts])
    return urlunsplit(split._replace(path=path))
