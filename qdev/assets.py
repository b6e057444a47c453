"""Where the shipped data lies, in a checkout and in an installed wheel alike.

The repository's ``models/``, ``bitstreams/`` and ``keys/dev/`` folders are installed as the
packages ``qdev.models``, ``qdev.bitstreams`` and ``qdev.devkeys`` (only the public key and its
README: signing keys never go into a wheel). :func:`importlib.resources.files` finds them in an
editable install (the checkout) and in a wheel.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

__all__ = [
    "shipped",
    "shipped_bundle",
    "shipped_model",
    "dev_public_keys",
    "split_file",
    "DEFAULT_MODEL",
]

DEFAULT_MODEL = "quantunet-w8"


def shipped(kind: str) -> Path:
    """The folder of one kind of shipped data: ``models``, ``bitstreams`` or ``devkeys``."""
    if kind not in ("models", "bitstreams", "devkeys"):
        raise ValueError(f"no shipped data of kind {kind!r}")
    # both an editable install and a wheel keep these as plain folders on disk
    return Path(str(resources.files(f"qdev.{kind}")))


def shipped_bundle(board: str = "KV260", model: str = DEFAULT_MODEL) -> Path:
    return shipped("bitstreams") / board / model


def shipped_model(model: str = DEFAULT_MODEL) -> Path:
    return shipped("models") / model


def dev_public_keys() -> list[Path]:
    return sorted(shipped("devkeys").glob("*.pub"))


def split_file(name: str) -> Path:
    """A committed split, e.g. ``busi-grouped-seed0.json`` (package data of qdev.training)."""
    return Path(str(resources.files("qdev.training") / "splits" / name))
