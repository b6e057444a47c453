"""The frames a report shows, chosen while the session streams (a session stores no frames):
the first frame, the median- and largest-mask frames, and, where ground truth exists, the best
and worst Dice. Each is the overlay the user saw (the probe frame at its own size, the mask mapped
back, the ground truth's outline in magenta where known), kept as a thumbnail of at most
:data:`THUMB_WIDTH` pixels.

The median needs every frame's mask area, which is known only at the end: a pool of at most
:data:`POOL` thumbnails, sampled with a stride that doubles whenever the pool fills, holds the
candidates; the one whose area is nearest the median of *all* frames' areas is shown.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["Gallery", "THUMB_WIDTH", "POOL"]

THUMB_WIDTH = 480
POOL = 48


@dataclass
class _Shot:
    frame_id: int
    area: int
    dice: float | None
    img: np.ndarray


@dataclass
class Gallery:
    folder: Path
    picks: dict[str, _Shot] = field(default_factory=dict)
    pool: list[_Shot] = field(default_factory=list)
    areas: list[int] = field(default_factory=list)
    stride: int = 1
    seen: int = 0

    def offer(
        self,
        frame_id: int,
        image: np.ndarray,
        mask: np.ndarray,
        dice: float | None,
        window: tuple[float, float] | None = None,
        truth: np.ndarray | None = None,
    ) -> None:
        area = int(np.count_nonzero(mask))
        self.areas.append(area)
        self.seen += 1
        want = []
        if "first" not in self.picks:
            want.append("first")
        if area > (self.picks["largest mask"].area if "largest mask" in self.picks else -1):
            want.append("largest mask")
        if dice is not None:
            if "best Dice" not in self.picks or dice > self.picks["best Dice"].dice:
                want.append("best Dice")
            if "worst Dice" not in self.picks or dice < self.picks["worst Dice"].dice:
                want.append("worst Dice")
        sample = (self.seen - 1) % self.stride == 0
        if not want and not sample:
            return
        shot = _Shot(frame_id, area, dice, _thumb(image, mask, window, truth))
        for k in want:
            self.picks[k] = shot
        if sample:
            self.pool.append(shot)
            if len(self.pool) >= POOL:
                self.pool = self.pool[::2]
                self.stride *= 2

    def write(self) -> list[dict]:
        """Writes ``folder/<kind>.png`` and ``folder/gallery.json``; returns the entries."""
        if not self.areas:
            return []
        picks = dict(self.picks)
        med = float(np.median(self.areas))
        if self.pool:
            picks["median mask"] = min(self.pool, key=lambda s: abs(s.area - med))
        order = ["first", "median mask", "largest mask", "best Dice", "worst Dice"]
        self.folder.mkdir(parents=True, exist_ok=True)
        from PIL import Image

        entries = []
        for kind in order:
            s = picks.get(kind)
            if s is None:
                continue
            name = kind.replace(" ", "_") + ".png"
            Image.fromarray(s.img[..., ::-1]).save(self.folder / name)
            entries.append(
                {
                    "kind": kind,
                    "file": name,
                    "frame_id": s.frame_id,
                    "mask_area": s.area,
                    "dice": s.dice,
                }
            )
        doc = {
            "entries": entries,
            "frames": self.seen,
            "median_area": med,
            "note": f"median chosen among {len(self.pool)} sampled frames (every {self.stride})",
        }
        (self.folder / "gallery.json").write_text(json.dumps(doc, indent=1))
        return entries


def _thumb(
    image: np.ndarray,
    mask: np.ndarray,
    window: tuple[float, float] | None,
    truth: np.ndarray | None,
) -> np.ndarray:
    import cv2

    from qdev.host.view import compose

    img = compose(image, mask, None, True, window, truth=truth)
    h, w = img.shape[:2]
    if w > THUMB_WIDTH:
        img = cv2.resize(
            img, (THUMB_WIDTH, max(1, round(h * THUMB_WIDTH / w))), interpolation=cv2.INTER_AREA
        )
    return img
