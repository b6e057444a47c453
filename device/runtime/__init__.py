"""The board-side service: bundle store + accelerator + power meter, served over serial/TCP."""

from __future__ import annotations

from qdev.device.runtime.service import DeviceRuntime, RuntimeConfig

__all__ = ["DeviceRuntime", "RuntimeConfig"]
