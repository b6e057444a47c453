"""qdev: QuantU-Net from BUSI training to a low-power FPGA, and its measurement there.

One import namespace over the repository's top-level folders (setuptools ``package-dir``):

* :mod:`qdev.core`     -- ``core/``, what all sides share (errors, bundles, link, preprocessing,
  masks, the integer model; numpy + stdlib),
* :mod:`qdev.device`   -- ``device/``, only what runs on the board (numpy + stdlib; no torch),
* :mod:`qdev.host`     -- ``host/``, the ``qdev`` command-line tool and its typed API,
* :mod:`qdev.training` -- ``training/``, data, Brevitas models, trainer, export, FINN compile.

Shipped data (the default model, its signed bundles, the development *public* key) is package
data, found with :mod:`qdev.assets`.
"""

from __future__ import annotations

__version__ = "0.2.0"

__all__ = ["__version__"]
