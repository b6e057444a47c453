"""What the user watches: the probe's own frame, at its own resolution and aspect ratio, with the
mask contour (and a translucent fill) mapped back from the model's input size, and a head-up
display of FPS, round trip, device latency, power and energy (with their measured/estimated
label), drops and the bundle. One composed image feeds the desktop window (OpenCV's highgui),
the browser view (:mod:`qdev.host.webview`) and ``--save`` (mp4)."""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from qdev.core.errors import ConfigError
from qdev.core.preprocess import mask_to_model

__all__ = ["Hud", "ViewSpec", "parse_view", "display_bgr", "compose", "OverlayView", "WINDOW_TITLE"]

log = logging.getLogger(__name__)
WINDOW_TITLE = "qdev live"
CONTOUR_BGR = (0, 255, 0)
FILL_BGR = (0, 200, 255)
TRUTH_BGR = (255, 0, 255)
MIN_WINDOW_WIDTH = 640


@dataclass
class Hud:
    """The figures shown beside the frame (one live frame's worth)."""

    frame_id: int
    fps: float
    rtt_ms: float | None
    device_ms: float | None
    power_w: float | None
    energy_mj: float | None
    energy_kind: str | None  # "measured" / "estimated" (the device says which)
    dropped: int
    lost: int
    bundle_id: str | None
    mask_area: int
    source: str = ""

    @classmethod
    def of(
        cls,
        meta: dict,
        frame_id: int,
        fps: float,
        rtt_ms: float | None,
        dropped: int,
        lost: int,
        bundle_id: str | None,
        source: str,
    ) -> Hud:
        """The HUD of one frame: the device's figures from its answer ``meta``, the rest as the
        host counts them."""
        return cls(
            frame_id,
            fps,
            rtt_ms,
            meta.get("device_ms"),
            meta.get("power_w"),
            meta.get("energy_mj"),
            meta.get("energy_kind"),
            dropped,
            lost,
            bundle_id,
            int(meta.get("mask_area") or 0),
            source,
        )

    def lines(self) -> list[str]:
        def f(v: float | None, fmt: str) -> str:
            return "-" if v is None else format(v, fmt)

        kind = self.energy_kind or "?"
        return [
            f"frame {self.frame_id}  {self.fps:.1f} fps  drops {self.dropped}  lost {self.lost}",
            f"rtt {f(self.rtt_ms, '.0f')} ms  device {f(self.device_ms, '.1f')} ms",
            f"{f(self.power_w, '.2f')} W  {f(self.energy_mj, '.1f')} mJ/frame ({kind})",
            f"bundle {self.bundle_id or '-'}  mask {self.mask_area} px",
        ]

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class ViewSpec:
    window: bool = False
    web_port: int | None = None  # serve the browser view on 127.0.0.1:web_port (0: any free port)


def parse_view(spec: str | bool | None) -> ViewSpec:
    """``window`` | ``web`` | ``web:PORT`` | ``window,web:PORT`` | ``none`` (also True/False)."""
    if spec is True:
        return ViewSpec(window=True)
    if spec in (None, False, "", "none"):
        return ViewSpec()
    window, port = False, None
    for part in str(spec).split(","):
        part = part.strip()
        if part == "window":
            window = True
        elif part == "web":
            port = 8765
        elif part.startswith("web:") and part[4:].isdigit() and int(part[4:]) < 65536:
            port = int(part[4:])
        else:
            raise ConfigError(f"--view {spec}: expected window, web, web:PORT or none")
    return ViewSpec(window, port)


def display_bgr(image: np.ndarray, window: tuple[float, float] | None = None) -> np.ndarray:
    """A source frame as a user expects to see it, uint8 BGR at its own size: RGB in colour,
    grayscale as is, deeper data (16-bit DICOM) through its window centre/width when it has one
    (DICOM's linear VOI function), else its full range."""
    a = np.asarray(image)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    if a.dtype != np.uint8:
        a = a.astype(np.float64)
        if window is not None and window[1] > 1:
            c, w = window
            a = np.clip(((a - (c - 0.5)) / (w - 1) + 0.5) * 255.0, 0, 255)
        else:
            lo, hi = float(a.min()), float(a.max())
            a = np.zeros_like(a) if hi <= lo else (a - lo) * (255.0 / (hi - lo))
        a = a.round().astype(np.uint8)
    if a.ndim == 2:
        return np.repeat(a[..., None], 3, axis=2)
    return np.ascontiguousarray(a[..., 2::-1])  # RGB(A) -> BGR


def compose(
    image: np.ndarray,
    mask: np.ndarray,
    hud: Hud | None,
    fill: bool = True,
    window: tuple[float, float] | None = None,
    scale: int = 1,
    truth: np.ndarray | None = None,
) -> np.ndarray:
    """The frame (source size, or magnified by a whole ``scale``) with the model-size mask mapped
    back onto it, and the HUD. The contour and text are drawn at the output resolution."""
    import cv2

    img = display_bgr(image, window)
    if scale > 1:
        img = cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
    h, w = img.shape[:2]
    big = mask_to_model(mask, h, w).astype(np.uint8)  # the same resampling rule as the ground truth
    if fill and big.any():
        tint = img.copy()
        tint[big > 0] = FILL_BGR
        img = cv2.addWeighted(tint, 0.25, img, 0.75, 0)
    contours, _ = cv2.findContours(big, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    thick = max(1, round(min(h, w) / 200))
    if truth is not None:  # the ground truth, where known, as a thin magenta line under the mask's
        t = mask_to_model(truth, h, w).astype(np.uint8)
        tc, _ = cv2.findContours(t, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(img, tc, -1, TRUTH_BGR, thick)
    cv2.drawContours(img, contours, -1, CONTOUR_BGR, thick)
    if hud is not None:
        img = with_hud(img, hud.lines())
    return img


def _wrap(cv2, lines: list[str], width: int, scale: float) -> list[str]:  # noqa: ANN001
    """Lines that fit ``width`` pixels, broken at the HUD's double spaces (then at single ones)."""
    out = []
    for line in lines:
        rest = line
        while rest:
            if cv2.getTextSize(rest, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)[0][0] <= width:
                out.append(rest)
                break
            cut = None
            for sep in ("  ", " "):
                for i in range(len(rest) - 1, 0, -1):
                    if (
                        rest[i : i + len(sep)] == sep
                        and cv2.getTextSize(rest[:i], cv2.FONT_HERSHEY_SIMPLEX, scale, 1)[0][0]
                        <= width
                    ):
                        cut = (i, len(sep))
                        break
                if cut:
                    break
            if cut is None:
                out.append(rest)
                break
            out.append(rest[: cut[0]])
            rest = rest[cut[0] + cut[1] :].lstrip()
    return out


def with_hud(img: np.ndarray, lines: list[str]) -> np.ndarray:
    """The frame with the HUD in a band **below** it: nothing is drawn over the scan (lesions near
    the skin lie in its top rows), and no line is cut off (long ones wrap)."""
    import cv2

    h, w = img.shape[:2]
    scale = max(0.35, min(0.7, w / 900))
    step = int(26 * scale + 6)
    lines = _wrap(cv2, lines, w - 12, scale)
    band = np.full((step * len(lines) + 10, w, 3), 24, np.uint8)
    for i, line in enumerate(lines):
        cv2.putText(
            band,
            line,
            (6, step * (i + 1) - 2),
            cv2.FONT_HERSHEY_SIMPLEX,
            scale,
            (255, 255, 255),
            1,
            cv2.LINE_AA,
        )
    return np.vstack([img, band])


class OverlayView:
    """``show(image, mask, hud)`` to every output asked for: the desktop window, the browser view,
    the mp4. ``show`` returns False once the user closed the window (q / Esc, or its close box)."""

    def __init__(
        self, spec: ViewSpec | bool, save: Path | None, fps: float = 20.0, fill: bool = True
    ) -> None:
        import cv2

        self.cv2, self.fps, self.fill = cv2, fps, fill
        spec = parse_view(spec) if not isinstance(spec, ViewSpec) else spec
        self.window = spec.window and self._gui_ok()
        self.web = None
        if spec.web_port is not None:
            from qdev.host.webview import WebView

            self.web = WebView(port=spec.web_port)
        self.save = Path(save) if save else None
        self.writer = None
        self.frames = 0
        self._opened = False

    def _gui_ok(self) -> bool:
        if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY") or os.name == "nt"):
            log.warning("no display ($DISPLAY unset): no window; use --view web for a browser view")
            return False
        info = self.cv2.getBuildInformation()
        gui = next(
            (
                ln.split(":", 1)[1].strip()
                for ln in info.splitlines()
                if ln.strip().startswith("GUI:")
            ),
            "",
        )
        if not gui or gui.upper() == "NONE":
            log.warning(
                "this OpenCV build has no GUI (opencv-python-headless?): no window; install "
                "opencv-python instead, or use --view web"
            )
            return False
        fonts = "/usr/share/fonts/truetype/dejavu"
        if os.path.isdir(fonts):
            os.environ.setdefault("QT_QPA_FONTDIR", fonts)  # OpenCV's Qt ships no fonts
        return True

    def show(
        self,
        image: np.ndarray,
        mask: np.ndarray,
        hud: Hud | None,
        window: tuple[float, float] | None = None,
    ) -> bool:
        if not (self.window or self.web or self.save):
            return True
        plain = compose(image, mask, None, self.fill, window)
        if self.web is not None:  # the page shows the figures beside the frame, not on it
            self.web.publish(plain, hud.as_dict() if hud else {})
        if self.save is not None:  # at the source's own size
            img = with_hud(plain, hud.lines()) if hud is not None else plain
            if (
                self.writer is not None and img.shape[:2] != self._video_hw
            ):  # a HUD that wrapped differently
                hh, ww = self._video_hw
                img = np.vstack([img, np.full((max(0, hh - img.shape[0]), ww, 3), 24, np.uint8)])[
                    :hh
                ]
            if self.writer is None:
                self._video_hw = img.shape[:2]
                self.save.parent.mkdir(parents=True, exist_ok=True)
                self.writer = self.cv2.VideoWriter(
                    str(self.save),
                    self.cv2.VideoWriter_fourcc(*"mp4v"),
                    self.fps,
                    (img.shape[1], img.shape[0]),
                )
            self.writer.write(img)
            self.frames += 1
        if self.window:
            # small frames (a 128- or 256-pixel phantom) magnified by a whole factor, readable
            # at arm's length; the contour and the HUD drawn at screen resolution
            k = max(1, min(4, MIN_WINDOW_WIDTH // max(1, plain.shape[1])))
            return self._show_window(compose(image, mask, hud, self.fill, window, k))
        return True

    def _show_window(self, img: np.ndarray) -> bool:
        cv2 = self.cv2
        try:
            if not self._opened:
                cv2.namedWindow(
                    WINDOW_TITLE, cv2.WINDOW_AUTOSIZE | cv2.WINDOW_GUI_NORMAL
                )  # no toolbar
                self._opened = True
            elif cv2.getWindowProperty(WINDOW_TITLE, cv2.WND_PROP_VISIBLE) < 1:
                return False  # closed with its close box
            cv2.imshow(WINDOW_TITLE, img)
            return (cv2.waitKey(1) & 0xFF) not in (ord("q"), 27)
        except cv2.error as exc:
            log.warning("live window failed (%s); continuing without it", str(exc).splitlines()[0])
            self.window = False
            return True

    def close(self) -> None:
        if self.writer is not None:
            self.writer.release()
            self.writer = None
        if self._opened:
            try:
                self.cv2.destroyWindow(WINDOW_TITLE)
                self.cv2.waitKey(1)
            except self.cv2.error:
                pass
            self._opened = False
        if self.web is not None:
            self.web.close()
            self.web = None
