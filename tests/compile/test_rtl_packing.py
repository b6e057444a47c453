"""The Verilator testbench's stream packing equals FINN's own rtlsim packing helpers, for narrow
and wide words, signed and unsigned elements (it replaces them only for speed)."""

from __future__ import annotations

import numpy as np
import pytest

from qdev.training.compile.verilate import pack_words, unpack_words


@pytest.mark.parametrize(
    ("dtype", "n"),
    [
        ("UINT8", 1),
        ("INT4", 3),
        ("UINT3", 8),
        ("INT7", 9),
        ("INT14", 5),
        ("UINT2", 40),
        ("INT24", 4),
        ("UINT32", 3),
    ],
)
def test_pack_and_unpack_match_finn(dtype, n):
    from finn.util.data_packing import npy_to_rtlsim_input, rtlsim_output_to_npy
    from qonnx.core.datatype import DataType

    dt = DataType[dtype]
    rng = np.random.default_rng(n)
    x = rng.integers(dt.min(), dt.max() + 1, size=(6, 7, n)).astype(np.float32)
    width = dt.bitwidth() * n
    padded = (width + 7) // 8 * 8
    finn_words = npy_to_rtlsim_input(x, dt, width)
    limbs = pack_words(x, dt.bitwidth(), padded)
    ours = [sum(int(w) << (32 * j) for j, w in enumerate(row)) for row in limbs]
    assert ours == finn_words
    back = unpack_words(limbs, n, dt.bitwidth(), dt.signed())
    ref = rtlsim_output_to_npy(finn_words, None, dt, x.shape, width, dt.bitwidth())
    assert np.array_equal(back.reshape(x.shape), ref) and np.array_equal(ref, x)
