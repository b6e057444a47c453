"""Live view and overlay video: the frame with the mask contour and FPS/latency/power text."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

__all__ = ["OverlayView"]

log = logging.getLogger(__name__)


class OverlayView:
    """``show(gray_frame, mask, text)``: an OpenCV window (``view``) and/or an mp4 (``save``)."""

    def __init__(self, view: bool, save: Path | None, fps: float = 20.0, scale: int = 3) -> None:
        import cv2

        self.cv2, self.scale, self.fps = cv2, scale, fps
        self.view = view and bool(os.environ.get("DISPLAY") or os.name == "nt")
        if view and not self.view:
            log.warning("no display: live view off (use --no-view to silence)")
        self.save = Path(save) if save else None
        self.writer = None
        self.frames = 0

    def render(self, px: np.ndarray, mask: np.ndarray, text: str) -> np.ndarray:
        cv2 = self.cv2
        s = self.scale
        img = cv2.resize(px, (px.shape[1] * s, px.shape[0] * s), interpolation=cv2.INTER_NEAREST)
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
        big = cv2.resize(mask.astype(np.uint8), (img.shape[1], img.shape[0]), interpolation=cv2.INTER_NEAREST)
        contours, _ = cv2.findContours(big, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(img, contours, -1, (0, 255, 0), 2)
        for i, line in enumerate(text.split("\n")):
            cv2.putText(img, line, (6, 18 + 18 * i), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 255, 255), 1, cv2.LINE_AA)
        return img

    def show(self, px: np.ndarray, mask: np.ndarray, text: str) -> bool:
        """Returns False when the user closed the window (q / Esc)."""
        if not self.view and self.save is None:
            return True
        img = self.render(px, mask, text)
        if self.save is not None:
            if self.writer is None:
                self.save.parent.mkdir(parents=True, exist_ok=True)
                self.writer = self.cv2.VideoWriter(str(self.save), self.cv2.VideoWriter_fourcc(*"mp4v"),
                                                   self.fps, (img.shape[1], img.shape[0]))
            self.writer.write(img)
            self.frames += 1
        if self.view:
            try:
                self.cv2.imshow("qdev stream", img)
                if self.cv2.waitKey(1) & 0xFF in (ord("q"), 27):
                    return False
            except self.cv2.error as exc:  # headless OpenCV build
                log.warning("live view unavailable (%s); continuing without it", str(exc).splitlines()[0])
                self.view = False
        return True

    def close(self) -> None:
        if self.writer is not None:
            self.writer.release()
        if self.view:
            self.cv2.destroyAllWindows()
