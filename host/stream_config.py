"""``StreamConfig``: the settings of one streaming session, apart from the streaming code so that
the command line (which generates ``qdev stream``'s options from it) does not load numpy, the
client and the session writer to start."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from qdev.core.errors import ConfigError
from qdev.core.fields import no_option, opt

__all__ = ["StreamConfig"]


@dataclass
class StreamConfig:
    """Settings of one streaming session (each field's help says what it is)."""

    fps: float | None = opt(
        None, help="Pace frames at this rate (default: the probe's rate if live; files unpaced)."
    )
    window: int = opt(4, help="Frames in flight.")
    max_frames: int | None = opt(
        None,
        decl="--frames",
        help="Stop after N frames (default: until the source ends or Ctrl-C).",
    )
    timeout: float = opt(10.0, help="Seconds before a frame counts as lost.")
    view: str = opt(
        "none",
        cli_default="window",
        metavar="window|web[:PORT]|window,web[:PORT]|none",
        help="Live overlay: a desktop window, a browser view on 127.0.0.1:PORT (default 8765), "
        "both, or none.",
    )
    save: Path | None = opt(None, path="newfile", help="Write the overlay video (mp4).")
    out: Path | None = opt(
        None, path="newdir", help="Session folder (default sessions/<time>); must not exist yet."
    )
    port: str = no_option(
        "how the device was reached (the group's --port), recorded in the session manifest", "local"
    )
    igtl: str | None = opt(
        None,
        metavar="[HOST:]PORT",
        help="Serve frames, masks (labelmap) and per-frame info over OpenIGTLink, e.g. to 3D "
        "Slicer (18944 is the usual port; loopback unless HOST is given).",
    )
    igtl_wait: float = opt(
        0.0,
        metavar="SECONDS",
        help="Wait this long for a first OpenIGTLink client (e.g. Slicer) before streaming.",
    )

    def check(self) -> None:
        """Refuse settings that cannot stream (one-line errors naming the option)."""
        if self.window < 1:
            raise ConfigError(f"--window {self.window}: must be >= 1")
        if self.fps is not None and not (self.fps > 0 and math.isfinite(self.fps)):
            raise ConfigError(f"--fps {self.fps}: must be a positive number")
        if not (self.timeout > 0 and math.isfinite(self.timeout)):
            raise ConfigError(f"--timeout {self.timeout}: must be a positive number of seconds")
        if self.max_frames is not None and self.max_frames < 1:
            raise ConfigError(f"--frames {self.max_frames}: must be >= 1")
        from qdev.host.view import parse_view

        parse_view(self.view)
        if self.igtl is not None:
            from qdev.host.igtl_out import parse_igtl_address

            parse_igtl_address(self.igtl)
        if not (0 <= self.igtl_wait <= 3600):
            raise ConfigError(f"--igtl-wait {self.igtl_wait}: must be 0-3600 seconds")
