"""The core both sides agree on: what the board runtime (:mod:`qdev.device`), the host tool
(:mod:`qdev.host`) and training (:mod:`qdev.training`) all use.

Errors, the bundle format and its signed manifest, the link (framing, protocol, TLS pairing,
TLS over serial, codings, request validation), the one preprocessing, masks and the mask
rule, the integer model with its reference and fast software executors, probe sources, atomic
file writes and thread pinning. numpy + stdlib (Pillow, cryptography, pyserial where used);
never torch, FINN, QONNX, Click, :mod:`qdev.host`, :mod:`qdev.training` or :mod:`qdev.device`.
"""

from __future__ import annotations

from qdev.core.errors import QdevError

__all__ = ["QdevError"]
