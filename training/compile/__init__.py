"""From QONNX to a FINN dataflow accelerator: steps, folding, estimates, integer model, bundles."""

from __future__ import annotations
