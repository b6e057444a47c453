"""One declaration per request of the link protocol (docs/PROTOCOL.md): the fields its meta must
carry, the least role that may send it, the reply it gets, the device's handler and the host's
client method, and whether the host may send it again after a broken TLS connection.

Both sides read this table and nothing else: the device's dispatch, role check and field checks
(``device/runtime/server.py``) and the host's client (``host/client.py``: the reply type it
expects, what it resends). ``tests/device/test_messages.py`` checks that every declared handler
and client method exists, and that the device handles and the host sends nothing undeclared.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from qdev.core.bundle import MAX_MANIFEST_BYTES, MAX_SIGNATURE_BYTES
from qdev.core.protocol import MsgType
from qdev.core.tls import ROLES
from qdev.core.validate import Field

__all__ = ["Request", "REQUESTS", "ROLES", "MAX_BUNDLE_BYTES", "MAX_CHUNK", "MAX_SIDE", "allowed"]

#: the largest bundle a device takes (bytes), and the largest upload chunk
MAX_BUNDLE_BYTES = 256 << 20
MAX_CHUNK = 1 << 20
#: the largest frame side a request may declare (pixels)
MAX_SIDE = 4096

_HEX64, _HEX16 = r"[0-9a-f]{64}", r"[0-9a-f]{16}"
_FRAME = {
    "h": Field("int", 1, MAX_SIDE),
    "w": Field("int", 1, MAX_SIDE),
    "frame_id": Field("int", 0, 2**63 - 1, required=False),
    "enc": Field("str", hi=8, required=False, pattern="raw|zlib|webp"),
}


@dataclass(frozen=True)
class Request:
    """One request type.

    Attributes:
        type: its message type.
        reply: the reply's type when it succeeds (a failure is an ERROR).
        handler: the device's :class:`~qdev.device.runtime.server.Session` method.
        client: the host's :class:`~qdev.host.client.DeviceClient` method that sends it.
        role: the least role that may send it.
        fields: what its meta must carry (others are ignored).
        resend: may be sent once more after a broken TLS connection: running it twice is harmless
            (a ROLLBACK is not: it may have run, and its reply was what broke).
    """

    type: MsgType
    reply: MsgType
    handler: str
    client: str
    role: str = "viewer"
    fields: Mapping[str, Field] = field(default_factory=dict)
    resend: bool = True


REQUESTS: dict[MsgType, Request] = {
    r.type: r
    for r in (
        Request(
            MsgType.HELLO,
            MsgType.HELLO_ACK,
            "_on_hello",
            "handshake",
            resend=False,
            fields={
                "client": Field("str", hi=64, required=False),
                "protocol": Field("int", 1, 255, required=False),
            },
        ),
        Request(MsgType.INFO, MsgType.INFO_REPLY, "_on_info", "info"),
        Request(MsgType.ECHO, MsgType.ECHO_REPLY, "_on_echo", "echo_throughput"),
        Request(MsgType.INFER, MsgType.INFER_REPLY, "_on_frame", "infer", fields=_FRAME),
        Request(MsgType.STREAM_FRAME, MsgType.STREAM_RESULT, "_on_frame", "stream", fields=_FRAME),
        Request(
            MsgType.FLASH_BEGIN,
            MsgType.FLASH_STATUS,
            "_on_flash_begin",
            "flash",
            "operator",
            {
                "sha256": Field("str", hi=64, pattern=_HEX64),
                "size": Field("int", 1, MAX_BUNDLE_BYTES),
                "manifest": Field("str", hi=MAX_MANIFEST_BYTES),
                "signature": Field("str", hi=MAX_SIGNATURE_BYTES),
                "allow_downgrade": Field("bool", required=False),
            },
        ),
        Request(
            MsgType.FLASH_CHUNK,
            MsgType.FLASH_STATUS,
            "_on_flash_chunk",
            "flash",
            "operator",
            {"offset": Field("int", 0, MAX_BUNDLE_BYTES), "crc": Field("int", 0, 2**32 - 1)},
        ),
        Request(MsgType.FLASH_END, MsgType.FLASH_STATUS, "_on_flash_end", "flash", "operator"),
        Request(
            MsgType.ACTIVATE,
            MsgType.FLASH_STATUS,
            "_on_activate",
            "activate",
            "operator",
            {
                "bundle_id": Field("str", hi=16, pattern=_HEX16),
                "allow_downgrade": Field("bool", required=False),
            },
        ),
        Request(
            MsgType.ROLLBACK,
            MsgType.FLASH_STATUS,
            "_on_rollback",
            "rollback",
            "operator",
            resend=False,
        ),
        Request(MsgType.STATS, MsgType.STATS, "_on_stats", "stats"),
        Request(MsgType.POWER, MsgType.POWER, "_on_power", "power"),
        Request(
            MsgType.WATCH,
            MsgType.WATCH,
            "_on_watch",
            "watch",
            fields={
                "jpeg_quality": Field("int", 10, 95, required=False),
                "display_max": Field("int", 0, 4096, required=False),
            },
        ),
    )
}


def allowed(mtype: MsgType, role: str) -> bool:
    """Whether a peer of ``role`` may send ``mtype`` (a declared request)."""
    return ROLES.index(role) >= ROLES.index(REQUESTS[mtype].role)
