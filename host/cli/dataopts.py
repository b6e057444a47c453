"""The options that say how to read a dataset that is not in BUSI's layout, shared by every
command that takes ``--data``."""

from __future__ import annotations

from collections.abc import Callable

import click

__all__ = ["dataset_options", "data_options_of"]


def dataset_options(f: Callable) -> Callable:
    """Add ``--mask-colours``, ``--patient-pattern`` and ``--site`` to a command."""
    f = click.option(
        "--site",
        default=None,
        help="A name for the dataset in reports (default: its folder's name).",
    )(f)
    f = click.option(
        "--patient-pattern",
        default=None,
        help="Regex whose first group in an image's file name is its patient, e.g. '^([A-Z]+)_' "
        "(patient-level splits and intervals).",
    )(f)
    f = click.option(
        "--mask-colours",
        default=None,
        help="Colour-coded masks: COLOUR=CLASS pairs, e.g. 'green=benign,red=malignant' "
        "(default: any non-black pixel is lesion).",
    )(f)
    return f


def data_options_of(mask_colours: str | None, patient_pattern: str | None, site: str | None):  # noqa: ANN201
    """The typed :class:`~qdev.training.data.DataOptions` of the three options (errors: one
    line)."""
    import re

    from qdev.core.errors import ConfigError
    from qdev.training.data import DataOptions, parse_colours

    if patient_pattern is not None:
        try:
            if re.compile(patient_pattern).groups < 1:
                raise ConfigError(
                    f"--patient-pattern {patient_pattern!r}: needs a group, e.g. '^([A-Z]+)_'"
                )
        except re.error as exc:
            raise ConfigError(
                f"--patient-pattern {patient_pattern!r}: not a regular expression ({exc})"
            ) from None
    return DataOptions(parse_colours(mask_colours), patient_pattern, site)
