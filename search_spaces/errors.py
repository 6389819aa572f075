"""The one error type for settings that cannot work, shown to the user as one line, and the
one place pydantic's ``ValidationError`` becomes one (:func:`config_error`; :func:`validated`
and :func:`replaced` are the validate-and-convert helpers built on it)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, TypeAdapter, ValidationError

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)


class ConfigError(ValueError):
    """A configuration value that cannot work; the message names the file, the key and the
    problem."""


# A validator message that already starts with its key ("cells_per_block: ..."), so the key
# is joined to the location with a dot rather than shown as a second "where: ".
_KEYED = re.compile(r"^[A-Za-z_][\w.\[\]]*: ")
# What a discriminator's tag names, for "unknown dataset 'cifar'" rather than "unknown name".
_TAG_NOUNS = {"family": "model family", "data": "dataset"}


def _path(loc: tuple[Any, ...], data: Any, absent_key: bool) -> str:
    """``loc`` as ``a.b[0].c``, without pydantic's union-tag and validator-name entries.

    With the validated input at hand, a string entry that is not a key of the mapping at that
    point is a union tag (unless it is the last one of a missing/unknown-key error,
    ``absent_key``); without the input, only tags in "<...>" form and validator names (with
    brackets or dashes) are recognised.
    """
    parts: list[str] = []
    node = data
    for i, part in enumerate(loc):
        last = i == len(loc) - 1
        if isinstance(part, int) and not isinstance(part, bool):
            parts.append(f"[{part}]")
            node = node[part] if isinstance(node, (list, tuple)) and part < len(node) else None
            continue
        part = str(part)
        if part.startswith("<") or "[" in part or "-" in part:
            continue
        if node is not None:
            if isinstance(node, Mapping) and part in node:
                node = node[part]
            elif not (last and absent_key):
                continue  # a union tag (e.g. the family 'mlp') between two keys
            else:
                node = None
        parts.append(f".{part}" if parts else part)
    return "".join(parts)


def _bound(word: str, limit: Any) -> str:
    if isinstance(limit, float) and limit.is_integer():
        limit = int(limit)  # "must be < 1", not "< 1.0"
    if word == ">" and limit == 0:
        return "must be positive"
    if word == ">=" and limit == 1:
        return "must be at least 1"
    return f"must be {word} {limit}"


def _message(err: Mapping[str, Any], owner: str) -> str:
    kind, ctx = err["type"], err.get("ctx") or {}
    value = err.get("input")
    got = "" if isinstance(value, Mapping) else f", got {value!r}"
    if kind == "value_error":
        return str(ctx.get("error", err["msg"]))
    if kind == "missing":
        return "missing"
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "union_tag_invalid":
        noun = _TAG_NOUNS.get(ctx["discriminator"].strip("'")) or _TAG_NOUNS.get(owner, owner)
        known = str(ctx["expected_tags"]).replace("'", "")
        return f"unknown {noun} {ctx['tag']!r} (known: {known})"
    if kind == "union_tag_not_found":
        return "missing"
    simple = {
        "int_type": "expected an integer",
        "float_type": "expected a number",
        "bool_type": "expected true or false",
        "string_type": "expected a string",
        "tuple_type": "expected a list",
        "list_type": "expected a list",
        "dict_type": "expected a mapping",
        "model_type": "expected a mapping",
        "model_attributes_type": "expected a mapping",
    }
    if kind in simple:
        return simple[kind] + got
    if kind == "literal_error":
        return f"must be one of {ctx['expected']}{got}"
    bounds = {"greater_than": ("gt", ">"), "greater_than_equal": ("ge", ">="),
              "less_than": ("lt", "<"), "less_than_equal": ("le", "<=")}
    if kind in bounds:
        name, word = bounds[kind]
        return _bound(word, ctx[name]) + got
    if kind == "too_short":
        return f"must have at least {ctx['min_length']} item(s){got}"
    return err["msg"] + got


def config_error(exc: ValidationError, where: str = "", data: Any = None) -> ConfigError:
    """One-line :class:`ConfigError` for pydantic's ``exc``: its first error as
    ``where.key.path: problem``.

    ``where`` is the key path of the validated object (``"model"``; file names are prefixed
    by the caller with ``": "``); ``data`` is the input that was validated, used to tell
    union tags from keys in the error's location.
    """
    err = exc.errors()[0]
    absent_key = err["type"] in ("missing", "extra_forbidden")
    key = ".".join(p for p in (where, _path(tuple(err["loc"]), data, absent_key)) if p)
    owner = key.rsplit(".", 1)[-1]
    if err["type"] in ("union_tag_invalid", "union_tag_not_found"):
        # Name the discriminating key itself: "data.name: unknown dataset 'cifar'".
        key = ".".join(p for p in (key, str(err["ctx"]["discriminator"]).strip("'")) if p)
    message = _message(err, owner or "value")
    if err["type"] == "value_error" and _KEYED.match(message):
        return ConfigError(f"{key}.{message}" if key else message)
    return ConfigError(f"{key}: {message}" if key else message)


def validated(cls: type[T] | TypeAdapter[T], raw: Any, where: str = "") -> T:
    """``raw`` validated as model class (or type adapter) ``cls``, with pydantic's error turned
    into a one-line :class:`ConfigError` whose key path starts at ``where``."""
    try:
        if isinstance(cls, TypeAdapter):
            return cls.validate_python(raw)
        return cls.model_validate(raw)
    except ValidationError as exc:
        raise config_error(exc, where, raw) from None


def replaced(cfg: M, where: str = "", **changes: Any) -> M:
    """A copy of pydantic config ``cfg`` with ``changes``, validated again (unlike
    ``model_copy(update=...)``, which skips validation)."""
    return validated(type(cfg), {**dict(cfg), **changes}, where)
