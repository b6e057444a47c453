"""What travels on the link, coded so that a UART carries only what it must (protocol v2,
negotiated in HELLO; docs/PROTOCOL.md):

* **masks** (device -> host): ``bits`` (``np.packbits``, MSB first: h*w/8 bytes) or ``rle``: the
  row-major runs of the binary mask, alternating and starting with a run of 0s (possibly empty),
  each as an unsigned LEB128 varint. A lesion mask of 128x128 is a few dozen bytes instead of 2 KiB.
* **display frames** in ``device:`` mode (device -> host, for the viewer only): ``raw`` (h*w
  uint8) or ``jpeg`` at a quality the host asks for. Lossy is fine here: segmentation always ran
  on the raw pixels on the device.
* **input frames** (host -> device), lossless only (the device segments exactly these pixels):
  ``webp`` (WebP lossless through Pillow: its spatial prediction takes BUSI frames to ~0.6 of
  their size, where plain ``zlib`` manages ~0.9; see bench/uart.py), ``zlib``, or ``raw``. The
  host sends the first negotiated coding that is smaller than raw, per frame.

Every decoder is bounded by the size the meta declares: a hostile blob can neither make a decoder
allocate more than h*w bytes nor yield a mask of another size.
"""

from __future__ import annotations

import io
import zlib

import numpy as np

__all__ = [
    "MASK_CODECS",
    "DISPLAY_CODECS",
    "FRAME_CODECS",
    "CodecError",
    "encode_mask",
    "decode_mask",
    "encode_display",
    "decode_display",
    "fit_display",
    "encode_frame",
    "decode_frame",
    "rle_encode",
    "rle_decode",
    "negotiate",
    "HOST_OFFER",
    "offer_for",
]

MASK_CODECS = ("rle", "bits")
DISPLAY_CODECS = ("jpeg", "raw")
FRAME_CODECS = ("webp", "zlib", "raw")
HOST_OFFER = {
    "mask": list(MASK_CODECS),
    "display": list(DISPLAY_CODECS),
    "frame": list(FRAME_CODECS),
}
"""What this host accepts (masks, display frames) and may send (frames), in order of preference."""


class CodecError(ValueError):
    """A blob that does not decode to what its meta declares."""


def rle_encode(flat: np.ndarray) -> bytes:
    """Runs of a flat 0/1 array, alternating from a run of 0s, as LEB128 varints."""
    b = np.asarray(flat, dtype=bool).reshape(-1)
    edges = np.flatnonzero(b[1:] != b[:-1]) + 1
    bounds = np.concatenate(([0], edges, [b.size]))
    runs = np.diff(bounds).tolist()
    if b.size and b[0]:
        runs.insert(0, 0)
    out = bytearray()
    for r in runs:
        while True:
            byte = r & 0x7F
            r >>= 7
            if r:
                out.append(byte | 0x80)
            else:
                out.append(byte)
                break
    return bytes(out)


def rle_decode(data: bytes, n: int) -> np.ndarray:
    """The flat uint8 0/1 array of ``n`` elements; refuses runs that overshoot or fall short."""
    out = np.zeros(n, np.uint8)
    pos, val, run, shift = 0, 0, 0, 0
    for byte in data:
        run |= (byte & 0x7F) << shift
        if byte & 0x80:
            shift += 7
            if shift > 28:
                raise CodecError("RLE run too long")
            continue
        if pos + run > n:
            raise CodecError(f"RLE runs exceed the {n} pixels declared")
        if val:
            out[pos : pos + run] = 1
        pos += run
        val ^= 1
        run, shift = 0, 0
    if shift or pos != n:
        raise CodecError(f"RLE runs cover {pos} of the {n} pixels declared")
    return out


def encode_mask(mask: np.ndarray, codec: str) -> bytes:
    flat = np.asarray(mask).reshape(-1)
    return rle_encode(flat) if codec == "rle" else np.packbits(flat.astype(np.uint8)).tobytes()


def decode_mask(blob: bytes, codec: str, h: int, w: int) -> np.ndarray:
    if codec == "rle":
        return rle_decode(blob, h * w).reshape(h, w)
    nb = (h * w + 7) // 8
    if len(blob) < nb:
        raise CodecError(f"{len(blob)} mask bytes for {w}x{h}")
    return np.unpackbits(np.frombuffer(blob[:nb], np.uint8), count=h * w).reshape(h, w)


def fit_display(frame: np.ndarray, longest: int) -> np.ndarray:
    """The probe's own frame (uint8 luma [H, W]) for the link: kept at its size and aspect when its
    longer side is within ``longest``, else scaled down to it (area-averaged), aspect kept."""
    h, w = frame.shape[:2]
    if max(h, w) <= longest:
        return np.ascontiguousarray(frame, np.uint8)
    from PIL import Image

    s = longest / max(h, w)
    size = (max(1, round(w * s)), max(1, round(h * s)))
    return np.asarray(
        Image.fromarray(np.ascontiguousarray(frame, np.uint8), "L").resize(size, Image.BOX),
        np.uint8,
    )


def encode_display(px: np.ndarray, codec: str, quality: int = 70) -> bytes:
    if codec != "jpeg":
        return np.ascontiguousarray(px, np.uint8).tobytes()
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(px, np.uint8), "L").save(buf, "JPEG", quality=int(quality))
    return buf.getvalue()


def decode_display(blob: bytes, codec: str, h: int, w: int) -> np.ndarray:
    if codec != "jpeg":
        if len(blob) != h * w:
            raise CodecError(f"{len(blob)} display bytes for {w}x{h}")
        return np.frombuffer(blob, np.uint8).reshape(h, w)
    from PIL import Image

    try:
        im = Image.open(io.BytesIO(blob))
        if im.size != (w, h):
            raise CodecError(f"display JPEG is {im.size[0]}x{im.size[1]}, declared {w}x{h}")
        return np.asarray(im.convert("L"), np.uint8)
    except (OSError, SyntaxError) as exc:
        raise CodecError(f"display frame is not a JPEG ({exc})") from exc


def _webp(px: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(px, "L").save(buf, "WEBP", lossless=True, quality=100, method=4)
    return buf.getvalue()


_FRAME_ENCODERS = {"webp": _webp, "zlib": lambda px: zlib.compress(px.tobytes(), 6)}


def encode_frame(px: np.ndarray, allowed: list[str] | tuple[str, ...]) -> tuple[str, bytes]:
    """(codec, bytes) of a model-input frame: the first allowed lossless coding that is smaller
    than the raw pixels, else raw."""
    px = np.ascontiguousarray(px, np.uint8)
    raw = px.tobytes()
    for codec in allowed:
        enc = _FRAME_ENCODERS.get(codec)
        if enc is not None:
            blob = enc(px)
            if len(blob) < len(raw):
                return codec, blob
            break
    return "raw", raw


def decode_frame(blob: bytes, codec: str, h: int, w: int) -> np.ndarray:
    n = h * w
    if codec == "zlib":
        d = zlib.decompressobj()
        try:
            raw = d.decompress(blob, n + 1)  # never more than one byte beyond what is declared
        except zlib.error as exc:
            raise CodecError(f"frame does not inflate ({exc})") from exc
        if len(raw) != n or not d.eof:
            raise CodecError(
                f"frame inflates to {'more than ' if len(raw) > n else ''}{len(raw)} bytes, "
                f"declared {w}x{h}"
            )
    elif codec == "webp":
        return _decode_webp(blob, h, w)
    elif codec == "raw":
        raw = blob
        if len(raw) != n:
            raise CodecError(f"{len(raw)} bytes for {w}x{h} pixels")
    else:
        raise CodecError(f"unknown frame coding {codec!r}")
    return np.frombuffer(raw, np.uint8).reshape(h, w)


def _decode_webp(blob: bytes, h: int, w: int) -> np.ndarray:
    from PIL import Image

    try:
        im = Image.open(io.BytesIO(blob), formats=["WEBP"])  # reads the header only
        if im.size != (w, h):
            raise CodecError(f"WebP frame is {im.size[0]}x{im.size[1]}, declared {w}x{h}")
        a = np.asarray(im.convert("L"), np.uint8)  # lossless WebP of gray holds R = G = B: exact
    except (
        Image.DecompressionBombError
    ) as exc:  # a header declaring a huge image: not ours to decode
        raise CodecError(f"WebP frame declares an image far larger than {w}x{h} ({exc})") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise CodecError(f"frame is not a WebP image ({exc})") from exc
    return a


def offer_for(serial: bool) -> dict:
    """What a host offers on its link: everything on a serial link (bytes are scarce: a 921600-baud
    UART carries 92 KB/s); on a socket raw input frames, since compressing a frame (WebP, ~4 ms
    for 128x128 here) costs more time than sending its 16 KiB over any network."""
    return HOST_OFFER if serial else {**HOST_OFFER, "frame": ["raw"]}


def negotiate(offer: object) -> dict:
    """The device's choice from a host's HELLO ``codecs`` offer (absent: the uncoded v1 forms)."""
    offer = offer if isinstance(offer, dict) else {}

    def pick(key: str, ours: tuple[str, ...], fallback: str) -> str:
        theirs = offer.get(key)
        if isinstance(theirs, list):
            for c in theirs:
                if c in ours:
                    return c
        return fallback

    frames = offer.get("frame")
    return {
        "mask": pick("mask", MASK_CODECS, "bits"),
        "display": pick("display", DISPLAY_CODECS, "raw"),
        "frame": [c for c in FRAME_CODECS if isinstance(frames, list) and c in frames] or ["raw"],
    }
