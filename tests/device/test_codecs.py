"""Link codings of protocol v2 (core/codecs.py): exact round trips, bounded decoders against
hostile blobs, negotiation, and a live device refusing frames that do not decode as declared."""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from qdev.core import codecs

pytestmark = pytest.mark.device_env


@pytest.mark.parametrize("seed", range(20))
def test_rle_round_trip_on_random_and_edge_masks(seed):
    rng = np.random.default_rng(seed)
    h, w = int(rng.integers(1, 70)), int(rng.integers(1, 70))
    kind = seed % 4
    m = [
        rng.random((h, w)) < 0.5,
        np.zeros((h, w), bool),
        np.ones((h, w), bool),
        rng.random((h, w)) < 0.02,
    ][kind]
    blob = codecs.encode_mask(m, "rle")
    assert np.array_equal(codecs.decode_mask(blob, "rle", h, w), m.astype(np.uint8))
    assert np.array_equal(
        codecs.decode_mask(codecs.encode_mask(m, "bits"), "bits", h, w), m.astype(np.uint8)
    )


def test_rle_of_a_lesion_mask_is_tiny():
    yy, xx = np.mgrid[:128, :128]
    m = (yy - 60) ** 2 + (xx - 70) ** 2 < 25**2
    assert len(codecs.encode_mask(m, "rle")) < 120 < 2048 == len(codecs.encode_mask(m, "bits"))


@pytest.mark.parametrize(
    "blob, why",
    [
        (bytes([200, 1]), "exceed"),  # one run of 328 > 100 pixels
        (bytes([10, 10]), "cover 20"),  # stops short
        (bytes([0x80] * 6 + [1]), "too long"),  # a varint that never ends in time
        (bytes([50, 0x80]), "cover"),  # ends inside a varint
    ],
)
def test_rle_decoder_refuses_what_does_not_fit(blob, why):
    with pytest.raises(codecs.CodecError, match=why):
        codecs.rle_decode(blob, 100)


def test_zlib_frames_are_lossless_and_a_bomb_is_refused_without_inflating_it():
    px = (np.arange(128 * 128) % 7).astype(np.uint8).reshape(128, 128)
    enc, blob = codecs.encode_frame(px, ["zlib", "raw"])
    assert codecs.encode_frame(px, ["webp", "zlib"])[0] == "webp"
    assert (
        enc == "zlib"
        and len(blob) < px.size
        and np.array_equal(codecs.decode_frame(blob, enc, 128, 128), px)
    )
    noise = np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8)
    assert codecs.encode_frame(noise, ["zlib", "raw"])[0] == "raw"  # never larger than raw
    bomb = zlib.compress(bytes(1 << 30 >> 4), 9)  # 64 MiB of zeros in ~64 KB
    with pytest.raises(codecs.CodecError, match="more than"):
        codecs.decode_frame(bomb, "zlib", 128, 128)
    with pytest.raises(codecs.CodecError, match="does not inflate"):
        codecs.decode_frame(b"not zlib", "zlib", 8, 8)
    with pytest.raises(codecs.CodecError, match="unknown"):
        codecs.decode_frame(b"", "lz4", 8, 8)


def test_display_jpeg_is_smaller_close_and_size_checked():
    yy, xx = np.mgrid[:128, :128]
    px = (128 + 60 * np.sin(xx / 9.0) * np.cos(yy / 13.0)).astype(np.uint8)
    j = codecs.encode_display(px, "jpeg", 60)
    back = codecs.decode_display(j, "jpeg", 128, 128)
    assert len(j) < px.size / 3 and np.abs(back.astype(int) - px).mean() < 4
    with pytest.raises(codecs.CodecError, match="declared 64x128"):
        codecs.decode_display(j, "jpeg", 128, 64)
    with pytest.raises(codecs.CodecError, match="not a JPEG"):
        codecs.decode_display(b"\xff\xd8garbage", "jpeg", 128, 128)


@pytest.mark.parametrize(
    "offer",
    [None, "rle", {"mask": "rle"}, {"mask": [1, {}], "frame": "zlib"}, {"display": ["gif"]}],
)
def test_negotiation_falls_back_to_the_uncoded_forms(offer):
    assert codecs.negotiate(offer) == {"mask": "bits", "display": "raw", "frame": ["raw"]}


def test_negotiation_takes_the_hosts_preference_among_what_the_device_has():
    got = codecs.negotiate(
        {"mask": ["huffman", "rle"], "display": ["jpeg"], "frame": ["zlib", "raw"]}
    )
    assert got == {"mask": "rle", "display": "jpeg", "frame": ["zlib", "raw"]}


def test_webp_frames_are_bit_exact_and_smaller_on_ultrasound():
    from tests.device.helpers import SHIPPED

    gold = np.load(SHIPPED["KV260"] / "golden_pixels.npy").reshape(-1, 128, 128)
    rng = np.random.default_rng(1)
    for px in [
        *gold,
        rng.integers(0, 256, (128, 128), dtype=np.uint8),
        np.zeros((37, 91), np.uint8),
    ]:
        blob = codecs._webp(px)
        assert np.array_equal(codecs.decode_frame(blob, "webp", *px.shape), px)
    assert all(
        codecs.encode_frame(p, ["webp"])[0] == "webp"
        and len(codecs.encode_frame(p, ["webp"])[1]) < 0.7 * p.size
        for p in gold
    )
    with pytest.raises(codecs.CodecError, match="declared 64x128"):
        codecs.decode_frame(codecs._webp(gold[0]), "webp", 128, 64)
    with pytest.raises(codecs.CodecError, match="not a WebP"):
        codecs.decode_frame(zlib.compress(gold[0].tobytes()), "webp", 128, 128)


def test_a_live_device_refuses_frames_that_do_not_decode_as_declared(tmp_path):
    from qdev.core.link import Channel, open_link
    from qdev.core.protocol import MsgType
    from qdev.host.client import connect
    from qdev.host.local import LocalDevice
    from tests.device.helpers import DEV_PUB, SHIPPED, golden_masks

    with LocalDevice(tmp_path / "store", trusted=[DEV_PUB]) as dev:
        c = connect(dev.port)
        assert c.flash(SHIPPED["KV260"], [DEV_PUB])["activated"]
        px = np.load(SHIPPED["KV260"] / "golden_pixels.npy").reshape(-1, 128, 128)[0]
        rep = c.infer(0, px)  # coded: zlib frame if smaller, RLE mask back
        assert rep.meta["mask_enc"] == "rle" and c.codecs["mask"] == "rle"
        want = golden_masks(SHIPPED["KV260"])[0].astype(bool)
        assert np.array_equal(rep.mask.astype(bool), want)
        c.close()
        ch = Channel(open_link(dev.port))
        try:
            ch.send(MsgType.HELLO, {"client": "t", "protocol": 2})  # no codecs offered: uncoded
            assert ch.recv(5).meta["codecs"] == {"mask": "bits", "display": "raw", "frame": ["raw"]}
            ch.send(MsgType.INFER, {"h": 128, "w": 128, "enc": "zlib"}, zlib.compress(px.tobytes()))
            r = ch.recv(5)
            assert r.meta["code"] == "bad_request" and "enc" in r.meta["message"]
            ch.send(MsgType.HELLO, {"client": "t", "protocol": 2, "codecs": codecs.HOST_OFFER})
            ch.recv(5)
            ch.send(
                MsgType.INFER, {"h": 128, "w": 128, "enc": "zlib"}, zlib.compress(bytes(1 << 24))
            )
            r = ch.recv(5)
            assert r.type == MsgType.ERROR and "more than" in r.meta["message"]
            ch.send(MsgType.INFO, {})
            assert ch.recv(5).type == MsgType.INFO_REPLY  # the session goes on
        finally:
            ch.close()


def test_a_webp_declaring_a_huge_image_is_a_codec_error_not_an_internal_one():
    """A lossless WebP whose header declares 16383 x 16383 made Pillow raise its decompression-bomb
    error, which reached the host as ERROR internal with a traceback per frame."""
    import io as _io
    import struct

    from PIL import Image

    b = _io.BytesIO()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(b, "WEBP", lossless=True)
    d = bytearray(b.getvalue())
    bits = struct.unpack("<I", d[21:25])[0]
    d[21:25] = struct.pack(
        "<I", (bits & ~((1 << 28) - 1)) | 16382 | (16382 << 14)
    )  # VP8L: width-1, height-1
    with pytest.raises(codecs.CodecError, match="far larger than 128x128"):
        codecs.decode_frame(bytes(d), "webp", 128, 128)
