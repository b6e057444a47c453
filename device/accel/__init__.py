"""Accelerator backends and the integer dataflow model they execute (numpy only)."""

from __future__ import annotations
