"""Click options generated from a config dataclass (fields declared with :mod:`qdev.core.fields`).

``@config_options(TrainConfig)`` adds one option per field (a nested dataclass's fields too), with
the field's default, type, choices and help; ``build_config(TrainConfig, values)`` takes those
options' values back out of the command's keyword arguments and builds the config. A field
declared with ``no_option`` is skipped (its reason is kept for the test that checks every field is
one or the other: ``tests/host/test_config_options.py``).
"""

from __future__ import annotations

import dataclasses
import sys
import types
import typing
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import click

from qdev.core.fields import Opt, option_of

__all__ = ["config_options", "build_config", "config_fields", "ConfigField"]

T = TypeVar("T")
_SCALARS: dict[type, Any] = {int: int, float: float, str: str}


@dataclasses.dataclass(frozen=True)
class ConfigField:
    """One leaf field of a config dataclass (nested dataclasses flattened); ``type`` and
    ``default`` are evaluated only for option fields."""

    name: str
    type: Any
    default: Any
    opt: Opt | None
    owner: type


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def _nested(f: dataclasses.Field) -> type | None:
    """The config class of a field declared without option metadata whose default is a dataclass
    (``TrainConfig.model``): its fields are options of their own."""
    if option_of(f) is not None:
        return None
    default = _default(f)
    return type(default) if dataclasses.is_dataclass(default) else None


def _hint(cls: type, f: dataclasses.Field) -> Any:
    """A field's annotation, evaluated in its class's module (only option fields need one, so a
    ``no_option`` field may name a type its module imports only when type checking)."""
    if not isinstance(f.type, str):
        return f.type
    return eval(f.type, vars(sys.modules[cls.__module__]))  # noqa: S307 - our own annotations


def config_fields(cls: type) -> Iterator[ConfigField]:
    """Every leaf field of ``cls``: a nested config class gives its own fields."""
    for f in dataclasses.fields(cls):
        sub = _nested(f)
        if sub is not None:
            yield from config_fields(sub)
            continue
        o = option_of(f)
        if o is None or o.reason is not None:  # no option: neither type nor default is needed
            yield ConfigField(f.name, f.type, None, o, cls)
        else:
            yield ConfigField(f.name, _hint(cls, f), _default(f), o, cls)


def _base_type(t: Any) -> Any:
    """``X | None`` -> ``X``."""
    if typing.get_origin(t) not in (typing.Union, types.UnionType):
        return t
    args = [a for a in typing.get_args(t) if a is not type(None)]
    return args[0] if len(args) == 1 else t


def _click_type(cf: ConfigField) -> Any:
    o = cf.opt
    if o.choices:  # any_case: the value passed on is still the choice as declared
        return click.Choice(list(o.choices), case_sensitive=not o.any_case)
    base = _base_type(cf.type)
    if o.path is not None or base is Path:
        return click.Path(
            exists=o.path in ("file", "dir"),
            dir_okay=o.path not in ("file", "newfile"),
            file_okay=o.path not in ("dir", "newdir"),
            path_type=Path if base is Path else str,
        )
    if base not in _SCALARS:
        raise TypeError(
            f"{cf.owner.__name__}.{cf.name}: no option type for {cf.type!r}; declare it with "
            "no_option"
        )
    return _SCALARS[base]


def _option(cf: ConfigField) -> Callable:
    o = cf.opt
    decl = o.decl or "--" + cf.name.replace("_", "-")
    if _base_type(cf.type) is bool:
        if "/" not in decl:
            raise TypeError(
                f"{cf.owner.__name__}.{cf.name}: a boolean option needs a --yes/--no declaration"
            )
        return click.option(decl, cf.name, default=cf.default, show_default=True, help=o.help)
    kw: dict[str, Any] = {"type": _click_type(cf), "help": o.help, "metavar": o.metavar}
    if typing.get_origin(cf.type) is tuple:  # tuple[X, ...]: a repeatable option
        if not o.choices:
            raise TypeError(f"{cf.owner.__name__}.{cf.name}: a repeatable option needs choices")
        kw["multiple"] = True
    if o.required:
        kw["required"] = True
    else:
        kw["default"] = cf.default if o.cli_default is None else o.cli_default
        kw["show_default"] = kw["default"] not in (None, ())
    return click.option(decl, cf.name, **kw)


def config_options(*classes: type, exclude: tuple[str, ...] = ()) -> Callable[[Callable], Callable]:
    """Decorator: the options of every option field of ``classes`` (in field order), except the
    fields named in ``exclude`` (a command that sets them itself, e.g. from an argument)."""
    leaves = [
        cf
        for cls in classes
        for cf in config_fields(cls)
        if cf.opt is not None and cf.opt.reason is None and cf.name not in exclude
    ]

    def add(f: Callable) -> Callable:
        for cf in reversed(leaves):  # click applies the last decorator first: keep field order
            f = _option(cf)(f)
        return f

    return add


def build_config(cls: type[T], values: dict[str, Any], **fixed: Any) -> T:
    """Build ``cls`` from a command's keyword arguments: each field takes ``fixed[name]`` if given,
    else ``values[name]`` (popped, so what is left are the command's own parameters), else its
    default; nested dataclasses are built the same way."""
    kw: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        sub = _nested(f)
        if f.name in fixed:
            kw[f.name] = fixed[f.name]
        elif sub is not None:
            kw[f.name] = build_config(sub, values, **fixed)
        elif f.name in values:
            kw[f.name] = values.pop(f.name)
    return cls(**kw)
