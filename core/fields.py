"""Config dataclass fields that describe their own command-line option.

A config dataclass (``TrainConfig``, ``AdaptConfig``, ``StreamConfig`` ...) declares each field with
:func:`opt` (help, choices, the option's name where it is not ``--field-name``) or with
:func:`no_option` (and the reason it is not one). The host's Click layer generates the options
from these (``host/cli/dcopts.py``), so a default, a choice or a help text lives in one place, and
a test checks that every field is either an option or says why not. Stdlib only: the board
runtime and the torch-free training modules import config classes too.
"""

from __future__ import annotations

from dataclasses import MISSING, Field, dataclass, field
from typing import Any

__all__ = ["Opt", "opt", "no_option", "option_of"]

_KEY = "qdev.option"


@dataclass(frozen=True)
class Opt:
    """How a config field appears on the command line.

    Attributes:
        help: the option's help text (the field's documentation).
        choices: the allowed values (a Click choice).
        decl: the option's declaration where it is not ``--field-name``, e.g. ``--lambda`` or a
            boolean pair ``--bn/--no-bn``.
        required: the command needs it although the dataclass has a default.
        path: ``file`` or ``dir``: an existing path of that kind (Click checks it); ``newdir`` /
            ``newfile``: a folder / file path that may not exist yet.
        metavar: what the help shows for the value.
        cli_default: the command's default where it differs from the library's, e.g. the live view
            opens a window for a user at the command line and none for a script.
        reason: set instead of the others by :func:`no_option`: why the field is no option.
        any_case: the choices are accepted in any case (board names); the value passed on is the
            choice as declared.
    """

    help: str = ""
    choices: tuple[str, ...] | None = None
    decl: str | None = None
    required: bool = False
    path: str | None = None
    metavar: str | None = None
    cli_default: str | None = None
    reason: str | None = None
    any_case: bool = False


def opt(
    default: Any = MISSING,
    *,
    help: str,
    choices: tuple[str, ...] | None = None,  # noqa: A002
    decl: str | None = None,
    required: bool = False,
    path: str | None = None,
    metavar: str | None = None,
    cli_default: str | None = None,
    default_factory: Any = MISSING,
    any_case: bool = False,
) -> Any:
    """A dataclass field that is a command-line option (see :class:`Opt`)."""
    values = default if isinstance(default, tuple) else (default,)  # a repeatable option: each
    if choices is not None and any(v not in (MISSING, None) and v not in choices for v in values):
        raise ValueError(f"default {default!r} is not one of {choices}")
    meta = {
        _KEY: Opt(
            help,
            tuple(choices) if choices else None,
            decl,
            required,
            path,
            metavar,
            cli_default,
            any_case=any_case,
        )
    }
    return field(default=default, default_factory=default_factory, metadata=meta)


def no_option(reason: str, default: Any = MISSING, *, default_factory: Any = MISSING) -> Any:
    """A dataclass field that is deliberately not a command-line option, and why."""
    return field(
        default=default, default_factory=default_factory, metadata={_KEY: Opt(reason=reason)}
    )


def option_of(f: Field) -> Opt | None:
    """The field's option description (None: the field was declared without one)."""
    return f.metadata.get(_KEY)
