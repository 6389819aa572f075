"""The user's own classes in a space file: ``model: {target: "pkg.mod:Class", ...}`` and
``data: {target: ...}``. The other keys of the section are the class's init arguments, checked
against its signature when the config is built (as LightningCLI checks its flags)."""

from __future__ import annotations

import functools
import importlib
import inspect
import os
import sys
from typing import Any, ClassVar

import pytorch_lightning as pl
from pydantic import BaseModel, ConfigDict, field_validator, model_validator

TARGET_KEY = "target"


@functools.cache
def import_target(target: str) -> type:
    """The class ``target`` names (``"package.module:Class"``); ``ValueError`` naming the
    problem when it does not import."""
    module_name, _, attr = target.partition(":")
    # As `python -m` does: the current directory is searched, so a user's package beside
    # their space file is found by the `hpsearch` command too.
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.append(os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # an ImportError, or any error raised while importing it
        raise ValueError(f"{target!r} does not import ({type(exc).__name__}: {exc}); is its "
                         "package installed, or its folder on PYTHONPATH?") from None
    try:
        found = functools.reduce(getattr, attr.split("."), module)
    except AttributeError:
        raise ValueError(f"{target!r}: module {module_name!r} has no {attr!r}") from None
    if not isinstance(found, type):
        raise ValueError(f"{target!r} is a {type(found).__name__}, not a class")
    return found


def init_arguments(cls: type) -> tuple[dict[str, inspect.Parameter], bool]:
    """The named init arguments of ``cls`` and whether it also takes ``**kwargs``."""
    params = list(inspect.signature(cls.__init__).parameters.values())[1:]  # without self
    named = {p.name: p for p in params
             if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    return named, any(p.kind is p.VAR_KEYWORD for p in params)


class TargetConfig(BaseModel):
    """A class given by its import path, and the keyword arguments it is built with."""

    # Extra keys are the init arguments; frozen like every config.
    model_config = ConfigDict(frozen=True, extra="allow")
    base: ClassVar[type] = object
    what: ClassVar[str] = "class"

    target: str

    @field_validator("target")
    @classmethod
    def _module_colon_class(cls, value: str) -> str:
        module, colon, attr = value.partition(":")
        if not (module and colon and attr):
            raise ValueError(f"expected 'package.module:Class', got {value!r}")
        return value

    @model_validator(mode="after")
    def _class_takes_the_arguments(self) -> TargetConfig:
        try:
            found = import_target(self.target)
        except ValueError as exc:
            raise ValueError(f"target: {exc}") from None
        if not issubclass(found, self.base):
            raise ValueError(f"target: {self.target!r} is not a {self.what} "
                             f"(its base class: {found.__mro__[1].__name__})")
        named, any_keyword = init_arguments(found)
        for key in self.kwargs:
            if key not in named and not any_keyword:
                raise ValueError(f"{key}: not an init argument of {self.target} "
                                 f"(its arguments: {', '.join(named) or 'none'})")
        for name, param in named.items():
            if param.default is param.empty and name not in self.kwargs:
                raise ValueError(f"{name}: missing (an init argument of {self.target} "
                                 "without a default)")
        return self

    @property
    def kwargs(self) -> dict[str, Any]:
        """The init arguments."""
        return dict(self.model_extra or {})

    def build(self) -> Any:
        return import_target(self.target)(**self.kwargs)


class UserModel(TargetConfig):
    """``model: {target: ...}``: any LightningModule that logs the objective."""

    base: ClassVar[type] = pl.LightningModule
    what: ClassVar[str] = "LightningModule"


class UserData(TargetConfig):
    """``data: {target: ...}``: any LightningDataModule."""

    base: ClassVar[type] = pl.LightningDataModule
    what: ClassVar[str] = "LightningDataModule"


def names_target(section: Any) -> bool:
    """Whether a config section (a mapping or a built config) is given by ``target``."""
    return isinstance(section, TargetConfig) or (isinstance(section, dict)
                                                  and TARGET_KEY in section)
