"""DeviceClient: the host's typed API to a qdev device over any link (serial, pty, TCP).

Every request waits for the reply that names its sequence number (``meta["re"]``); replies to
older requests (after a timeout) are skipped, an ERROR reply raises :class:`DeviceError`.
Streaming keeps ``window`` frames in flight; a reply whose mask does not match its CRC is never
accepted (the frame CRC already guards it; the mask CRC guards the device's own packing).
"""

from __future__ import annotations

import hashlib
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from qdev.core import codecs
from qdev.core.bundle import MANIFEST, SIGNATURE, pack_bundle, verify_bundle
from qdev.core.errors import QdevError
from qdev.core.link import Channel, Link, LinkError, LinkTimeout, Message, open_link
from qdev.core.messages import REQUESTS
from qdev.core.protocol import VERSION, MsgType

__all__ = ["DeviceClient", "DeviceError", "StreamReply", "connect", "live_frame"]

CHUNK = 64 << 10


class DeviceError(QdevError):
    """The device answered a request with an error; ``code`` is its ERROR code."""

    code = "error"

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class DeviceRequestError(DeviceError):
    """The request itself was wrong (``bad_request``, ``no_hello``, ``protocol_version``)."""


class DeviceForbidden(DeviceError):
    """This host may not do that (``forbidden``: a viewer; ``unpaired``, ``unauthenticated``)."""


class DeviceRefused(DeviceError):
    """The device refused the request on its merits: a bundle's signature, board, size, version,
    self-test (``StoreError``, ``BundleError``, ``QdevError``, ...)."""


class DeviceStorageError(DeviceError):
    """The device's disk failed (``storage``)."""


class DeviceInternalError(DeviceError):
    """A bug in the device runtime (``internal``); its traceback is in the device log."""


#: ERROR code -> the exception the host raises (docs/PROTOCOL.md lists the codes)
ERROR_CODES: dict[str, type[DeviceError]] = {
    "bad_request": DeviceRequestError,
    "no_hello": DeviceRequestError,
    "protocol_version": DeviceRequestError,
    "forbidden": DeviceForbidden,
    "unpaired": DeviceForbidden,
    "unauthenticated": DeviceForbidden,
    "storage": DeviceStorageError,
    "internal": DeviceInternalError,
}


def device_error(meta: dict) -> DeviceError:
    """The typed exception of an ERROR reply (an unknown code is a refusal)."""
    code = str(meta.get("code", "error"))
    return ERROR_CODES.get(code, DeviceRefused)(f"device: {meta.get('message', 'error')}", code)


@dataclass
class StreamReply:
    frame_id: int
    meta: dict
    mask: np.ndarray | None  # uint8 [H, W]; None when the frame failed
    t_sent: float
    t_received: float
    error: str | None = None


def _send_more(
    send: Callable[[int, np.ndarray, float], int],
    it: Iterator,
    inflight: dict,
    order: list[int],
    window: int,
) -> bool:
    """Send frames until ``window`` are in flight; False once the frames are exhausted."""
    while len(inflight) < window:
        try:
            fid, px = next(it)
        except StopIteration:
            return False
        t = time.time()
        seq = send(fid, px, t)
        inflight[seq] = (fid, t)
        order.append(seq)
    return True


def _drop(order: list[int], inflight: dict, until: int | None = None) -> Iterator[StreamReply]:
    """The frames in flight before sequence number ``until`` (all of them: None), lost."""
    while order and order[0] != until:
        fid, t_sent = inflight.pop(order.pop(0))
        yield StreamReply(fid, {}, None, t_sent, time.time(), error="lost")


def _answer(msg: Message, fid: int, t_sent: float) -> StreamReply:
    """The reply to a frame: its result, or the device's error about it."""
    if msg.type == MsgType.ERROR:
        error = str(msg.meta.get("message"))
        return StreamReply(fid, msg.meta, None, t_sent, time.time(), error=error)
    try:
        return _reply(msg, t_sent, time.time())
    except DeviceError as exc:
        return StreamReply(fid, msg.meta, None, t_sent, time.time(), error=str(exc))


class DeviceClient:
    RECOVER_TRIES = 5  # new TLS connections tried after one broke (serial)

    def __init__(self, link: Link, timeout: float = 10.0) -> None:
        self.ch = Channel(link)
        self.timeout = timeout
        self.hello: dict | None = None
        self.device_name: str | None = (
            None  # the pinned device the link's TLS authenticated (serial)
        )
        self.codecs: dict = codecs.negotiate(
            None
        )  # what the device chose from our offer (HELLO_ACK)
        self.coding = (
            True  # offer the link codings in HELLO (off: the uncoded forms, for comparison)
        )
        self.watch_end: dict | None = (
            None  # the device's end-of-source message, once watch() got it
        )

    # ------------------------------------------------------------- plumbing
    def _wait(self, seq: int, timeout: float | None = None) -> Message:
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise LinkTimeout(
                    f"{self.ch.link.name}: no reply within {timeout or self.timeout:g} s"
                )
            msg = self.ch.recv(left)
            if msg.version != VERSION:
                raise LinkError(
                    f"{self.ch.link.name}: the device speaks qdev protocol {msg.version}; this "
                    "host "
                    f"speaks {VERSION}: update the device runtime (qdev-device)"
                )
            if msg.bad is not None:
                continue  # unusable or unauthenticated: never acted on
            if msg.meta.get("re") != seq:
                continue  # a late reply to an abandoned request, or a LIVE push
            if msg.type == MsgType.ERROR:
                raise device_error(msg.meta)
            del msg.meta["re"]  # matched: callers get the reply's own fields only
            return msg

    def request(
        self,
        mtype: MsgType,
        meta: dict | None = None,
        blob: bytes = b"",
        timeout: float | None = None,
    ) -> Message:
        """One request, one reply. On a serial link whose TLS connection broke (a lost or forged
        record), a new connection is made and the request sent once more, unless it is one
        that must not run twice (``resend`` of its declaration,
        :data:`qdev.core.messages.REQUESTS`).
        A reply of another type than the declared one is refused."""
        decl = REQUESTS[mtype]
        try:
            msg = self._wait(self.ch.send(mtype, meta, blob), timeout)
        except LinkTimeout:
            raise
        except LinkError:
            if not decl.resend or getattr(self.ch.link, "reconnect", None) is None:
                raise
            self.recover()
            msg = self._wait(self.ch.send(mtype, meta, blob), timeout)
        if msg.type != decl.reply:
            raise DeviceError(
                f"{mtype.name}: the device answered {msg.name}, not {decl.reply.name}"
            )
        return msg

    def handshake(self, timeout: float | None = None) -> dict:
        """Host-first HELLO; retried, since a serial port may drop what was sent before it opened.
        The link's own security (TLS on TCP and serial) has run before; HELLO_ACK says the role
        this host is paired with."""
        serial = bool(getattr(self.ch.link, "serial", False))
        self.device_name = getattr(self.ch.link, "device", None)
        tries, last = 3, None
        for _ in range(tries):
            meta: dict = {"client": "qdev", "protocol": VERSION}
            if self.coding:
                meta["codecs"] = codecs.offer_for(serial=serial)
            try:
                reply = self.request(MsgType.HELLO, meta, timeout=(timeout or self.timeout) / tries)
            except LinkTimeout as exc:
                last = exc
                continue
            self.hello = reply.meta
            self.codecs = reply.meta.get("codecs") or codecs.negotiate(None)
            return self.hello
        raise LinkTimeout(f"{self.ch.link.name}: no qdev device answered the handshake") from last

    def recover(self) -> None:
        """After the link's TLS broke (serial: a lost or forged record ends a TLS connection):
        a new connection over the same port and a new HELLO. Other links cannot: the error stays.

        Raises:
            LinkError: the link cannot reconnect, or the device does not answer.
        """
        reconnect = getattr(self.ch.link, "reconnect", None)
        if reconnect is None:
            raise LinkError(f"{self.ch.link.name}: the link broke")
        for attempt in range(self.RECOVER_TRIES):  # a noisy line may break the new connection too
            try:
                reconnect(self.timeout)
                self.ch = Channel(self.ch.link)
                self.handshake()
                return
            except LinkError:
                if attempt == self.RECOVER_TRIES - 1:
                    raise

    def close(self) -> None:
        self.ch.close()

    def __enter__(self) -> DeviceClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------- commands
    def echo_throughput(self, payload: int, count: int, window: int = 4) -> dict:
        """Pipelined ECHO of ``count`` blobs of ``payload`` bytes: the protocol's own round-trip
        throughput through the device's serve loop (no accelerator in the path)."""
        blob = bytes(range(256)) * (payload // 256) + bytes(payload % 256)
        t0 = time.perf_counter()
        pending: list[int] = []
        sent = done = 0
        while done < count:
            while sent < count and len(pending) < window:
                pending.append(self.ch.send(MsgType.ECHO, {}, blob))
                sent += 1
            msg = self.ch.recv(self.timeout)
            if msg.meta.get("re") != pending[0]:
                continue
            if msg.blob != blob:
                raise DeviceError("echo came back different")
            pending.pop(0)
            done += 1
        secs = time.perf_counter() - t0
        return {
            "payload": payload,
            "count": count,
            "seconds": secs,
            "bytes_per_s": payload * count / secs,
        }

    def info(self) -> dict:
        return self.request(MsgType.INFO).meta

    def stats(self) -> dict:
        return self.request(MsgType.STATS).meta

    def power(self) -> dict:
        return self.request(MsgType.POWER).meta

    def rollback(self) -> dict:
        return self.request(MsgType.ROLLBACK, timeout=max(self.timeout, 60)).meta

    def activate(self, bundle_id: str, allow_downgrade: bool = False) -> dict:
        return self.request(
            MsgType.ACTIVATE,
            {"bundle_id": bundle_id, "allow_downgrade": allow_downgrade},
            timeout=max(self.timeout, 60),
        ).meta

    def flash(
        self,
        bundle_dir: Path,
        trusted: list,
        progress: Callable[[int, int], None] | None = None,
        chunk: int = CHUNK,
        retries: int = 3,
        allow_downgrade: bool = False,
    ) -> dict:
        """Verify locally, send the signed manifest (the device checks it before accepting a
        byte), upload the rest (resuming where the device stopped) unless the device has that
        bundle already, install, return its report."""
        verify_bundle(bundle_dir, trusted)  # refuse before sending anything
        data = pack_bundle(bundle_dir)
        sha = hashlib.sha256(data).hexdigest()
        size = len(data)
        begin = {
            "sha256": sha,
            "size": size,
            "manifest": (Path(bundle_dir) / MANIFEST).read_text(),
            "signature": (Path(bundle_dir) / SIGNATURE).read_text(),
            "allow_downgrade": allow_downgrade,
        }
        attempt = 0
        while True:
            try:
                status = self.request(MsgType.FLASH_BEGIN, begin).meta
                if "installed" in status:  # nothing to upload: activate what is there
                    if progress:
                        progress(size, size)
                    res = self.activate(status["installed"], allow_downgrade)
                    res["uploaded"] = False
                    return res
                off = int(status["offset"])
                if progress:
                    progress(off, size)
                while off < size:
                    piece = data[off : off + chunk]
                    off = int(
                        self.request(
                            MsgType.FLASH_CHUNK, {"offset": off, "crc": zlib.crc32(piece)}, piece
                        ).meta["offset"]
                    )
                    if progress:
                        progress(off, size)
                return self.request(MsgType.FLASH_END, timeout=max(self.timeout, 120)).meta
            except LinkError as exc:
                attempt += 1
                if attempt > retries:
                    raise
                # the session may have been reset (timeout) or its TLS broken (serial noise): start
                # over from the device's offset
                self.handshake() if isinstance(exc, LinkTimeout) else self.recover()

    def infer(self, frame_id: int, pixels: np.ndarray) -> StreamReply:
        t0 = time.time()
        msg = self.request(MsgType.INFER, *self._frame(frame_id, pixels, t0))
        return _reply(msg, t0, time.time())

    def stream(
        self,
        frames: Iterable[tuple[int, np.ndarray]],
        window: int = 4,
        timeout: float | None = None,
    ) -> Iterator[StreamReply]:
        """Send frames with up to ``window`` in flight; yield replies in order. A frame whose
        reply does not come within ``timeout`` is yielded with ``error`` set (counted lost)."""
        timeout = timeout or self.timeout
        inflight: dict[int, tuple[int, float]] = {}  # seq -> (frame_id, t_sent)
        order: list[int] = []
        it = iter(frames)
        more = True
        # frames are sent from here, the method REQUESTS declares for STREAM_FRAME
        send = lambda fid, px, t: self.ch.send(MsgType.STREAM_FRAME, *self._frame(fid, px, t))  # noqa: E731
        while True:
            if more:
                more = _send_more(send, it, inflight, order, window)
            if not order:
                return
            head = order[0]
            fid, t_sent = inflight[head]
            left = t_sent + timeout - time.time()
            try:
                if left <= 0:
                    raise LinkTimeout("frame timed out")
                msg = self.ch.recv(left)
            except LinkTimeout:
                order.pop(0)
                inflight.pop(head)
                yield StreamReply(fid, {}, None, t_sent, time.time(), error="timeout")
                continue
            except LinkError:  # the link's TLS broke (serial noise): what was in flight is lost
                yield from _drop(order, inflight)
                self.recover()
                continue
            re = msg.meta.get("re")
            if re not in inflight:
                continue
            yield from _drop(order, inflight, re)  # replies come in order: those before were lost
            order.pop(0)
            fid, t_sent = inflight.pop(re)
            yield _answer(msg, fid, t_sent)

    def _frame(self, fid: int, px: np.ndarray, t: float) -> tuple[dict, bytes]:
        meta = _frame_meta(fid, px, t)
        enc, blob = codecs.encode_frame(px, self.codecs.get("frame", ["raw"]))
        if enc != "raw":
            meta["enc"] = enc
        return meta, blob

    def watch(
        self, jpeg_quality: int | None = None, display_max: int | None = None
    ) -> Iterator[Message]:
        """Attach to the device's on-board probe: yields LIVE messages until the device's source
        ends (its end message is kept in ``watch_end``) or the link closes (:func:`live_frame`
        decodes one). ``jpeg_quality``: of the display frames, when the
        device sends JPEG (negotiated)."""
        req = {"jpeg_quality": int(jpeg_quality)} if jpeg_quality else {}
        if (
            display_max is not None
        ):  # the probe's own frame, longer side at most this (0: the model input)
            req["display_max"] = int(display_max)
        self.request(MsgType.WATCH, req)
        while True:
            try:
                msg = self.ch.recv(self.timeout)
            except LinkTimeout:
                continue
            if msg.type == MsgType.LIVE:
                if msg.meta.get("end"):  # the device's source ended: so does the watch
                    self.watch_end = dict(msg.meta)
                    return
                yield msg


def _frame_meta(fid: int, px: np.ndarray, t: float) -> dict:
    if px.dtype != np.uint8 or px.ndim != 2:
        raise QdevError("frames must be uint8 [H, W] (grayscale model input)")
    return {"frame_id": int(fid), "h": int(px.shape[0]), "w": int(px.shape[1]), "t_sent": t}


def _mask(blob: bytes, m: dict) -> np.ndarray:
    """A reply's mask, decoded as the meta says and checked against the CRC of its packed bits."""
    h, w = int(m["h"]), int(m["w"])
    try:
        mask = codecs.decode_mask(blob, str(m.get("mask_enc", "bits")), h, w)
    except codecs.CodecError as exc:
        raise DeviceError(f"frame {m.get('frame_id')}: {exc}") from exc
    if zlib.crc32(np.packbits(mask.reshape(-1)).tobytes()) != m.get("mask_crc"):
        raise DeviceError(f"frame {m.get('frame_id')}: mask CRC mismatch")
    return mask


def _reply(msg: Message, t_sent: float, t_recv: float) -> StreamReply:
    return StreamReply(
        int(msg.meta["frame_id"]), msg.meta, _mask(msg.blob, msg.meta), t_sent, t_recv
    )


def live_frame(msg: Message) -> tuple[np.ndarray, np.ndarray]:
    """(mask, display pixels) of a LIVE push, decoded as its meta says.

    Raises:
        DeviceError: the push does not decode to what it declares.
    """
    m = msg.meta
    h, w = int(m["h"]), int(m["w"])
    if "mask_len" in m:
        nb = int(m["mask_len"])
    else:  # uncoded: packed bits, then raw pixels
        nb = (h * w + 7) // 8
    mask = _mask(msg.blob[:nb], m)
    try:
        dh, dw = (
            int(m.get("dh", h)),
            int(m.get("dw", w)),
        )  # the display frame: its own size where stated
        if not (0 < dh <= 8192 and 0 < dw <= 8192):
            raise DeviceError(f"LIVE display size {dw}x{dh} out of range")
        px = codecs.decode_display(msg.blob[nb:], str(m.get("display_enc", "raw")), dh, dw)
    except codecs.CodecError as exc:
        raise DeviceError(f"live frame {m.get('frame_id')}: {exc}") from exc
    return mask, px


def connect(port: str, baudrate: int = 921600, timeout: float = 10.0) -> DeviceClient:
    """Open a link and complete the handshake.

    Raises:
        LinkError: cannot open the port or no qdev device answers.
    """
    link = open_link(port, baudrate, timeout=timeout)
    client = DeviceClient(link, timeout)
    try:
        client.handshake()
    except (LinkError, DeviceError):
        client.close()
        raise
    return client
