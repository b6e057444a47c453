"""The integer model: a compact, versioned, numpy-only description of a compiled FINN dataflow
graph (layer order, shapes, data types, weights, thresholds), and its reference executor.

File format (``intmodel.npz``, loaded with ``allow_pickle=False``):

* ``graph.json`` -- a uint8 array holding UTF-8 JSON::

      {"format": "qdev-intmodel", "version": 1,
       "input": {"name", "shape" (NHWC), "dtype"}, "output": {...}, "output_scale": float,
       "layers": [{"name", "op", "inputs": [...], "outputs": [...], "attrs": {...},
                   "params": {"weights": key, "thresholds": key}}, ...]}

* one array per parameter, keyed ``<layer>.weights`` (int8/int16, [MW, MH] as FINN's MVAU) and
  ``<layer>.thresholds`` (int64, [channels or 1, steps]).

Ops and their FINN semantics (NHWC, batch first):

* ``FMPadding``: zero padding ``[top, left, bottom, right]``.
* ``FMPadding_Pixel``: ``stride - 1`` zeros between pixels (transposed-conv lowering).
* ``ConvolutionInputGenerator``: sliding windows; each output pixel is the window flattened
  in (kh, kw, c) order, channel fastest.
* ``MVAU``: ``acc = x @ W`` then, unless ``noActivation``, ``y = #{k: acc >= T[c, k]} + ActVal``.
* ``Thresholding``: ``y = #{k: x >= T[c, k]} + ActVal``.
* ``Pool`` (MaxPool): max over each window of a preceding ConvolutionInputGenerator.
* ``StreamingConcat``: channel concatenation; ``DuplicateStreams``: fan-out.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from qdev.core.errors import QdevError

__all__ = [
    "IntModel",
    "IntLayer",
    "FORMAT",
    "VERSION",
    "run_reference",
    "run_layer",
    "dtype_range",
    "REFERENCE_OPS",
    "base_op",
]

FORMAT = "qdev-intmodel"
VERSION = 1
OPS = (
    "FMPadding",
    "FMPadding_Pixel",
    "ConvolutionInputGenerator",
    "MVAU",
    "Thresholding",
    "Pool",
    "StreamingConcat",
    "DuplicateStreams",
)


def base_op(op_type: str) -> str:
    """A FINN node type without its backend suffix (``MVAU_hls`` -> ``MVAU``): the integer
    model's op names, and the token model's."""
    for suf in ("_hls", "_rtl"):
        if op_type.endswith(suf):
            return op_type[: -len(suf)]
    return op_type


def dtype_range(name: str) -> tuple[int, int]:
    """(min, max) of a FINN integer data type name such as UINT4, INT8, BIPOLAR."""
    if name == "BIPOLAR":
        return -1, 1
    if name == "BINARY":
        return 0, 1
    if name.startswith("UINT"):
        return 0, 2 ** int(name[4:]) - 1
    if name.startswith("INT"):
        b = int(name[3:])
        return -(2 ** (b - 1)), 2 ** (b - 1) - 1
    raise QdevError(f"unsupported data type {name!r} in integer model")


@dataclass
class IntLayer:
    name: str
    op: str
    inputs: list[str]
    outputs: list[str]
    attrs: dict
    params: dict[str, np.ndarray]


@dataclass
class IntModel:
    """A loaded integer model."""

    input: dict
    output: dict
    output_scale: float
    layers: list[IntLayer]
    meta: dict

    @staticmethod
    def load(path: Path | str) -> IntModel:
        try:
            with np.load(path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except (OSError, ValueError) as exc:
            raise QdevError(f"{path}: unreadable integer model ({exc})") from exc
        return IntModel.from_arrays(arrays, str(path))

    @staticmethod
    def from_arrays(arrays: dict[str, np.ndarray], where: str = "integer model") -> IntModel:
        if "graph.json" not in arrays:
            raise QdevError(f"{where}: not a qdev integer model (no graph.json)")
        doc = json.loads(arrays["graph.json"].tobytes().decode())
        if doc.get("format") != FORMAT or doc.get("version") != VERSION:
            raise QdevError(
                f"{where}: integer model format {doc.get('format')} v{doc.get('version')} "
                f"is not {FORMAT} v{VERSION}"
            )
        layers = []
        for ld in doc["layers"]:
            if ld["op"] not in OPS:
                raise QdevError(f"{where}: unsupported op {ld['op']} in layer {ld['name']}")
            params = {k: arrays[v] for k, v in ld.get("params", {}).items()}
            layers.append(
                IntLayer(ld["name"], ld["op"], ld["inputs"], ld["outputs"], ld["attrs"], params)
            )
        return IntModel(
            doc["input"], doc["output"], float(doc["output_scale"]), layers, doc.get("meta", {})
        )

    def frames_nhwc(self, pixels: np.ndarray) -> np.ndarray:
        """Frames [N, H, W] or [N, H, W, C] as NHWC, refused unless they match the input shape."""
        x = np.asarray(pixels)
        if x.ndim == 3:
            x = x[..., None]
        shape = self.input["shape"]
        if list(x.shape[1:]) != list(shape[1:]):
            raise QdevError(
                f"frame shape {list(x.shape[1:])} does not match the model input {shape[1:]}"
            )
        return x

    def to_bytes(self) -> bytes:
        doc = {
            "format": FORMAT,
            "version": VERSION,
            "input": self.input,
            "output": self.output,
            "output_scale": self.output_scale,
            "meta": self.meta,
            "layers": [
                {
                    "name": ly.name,
                    "op": ly.op,
                    "inputs": ly.inputs,
                    "outputs": ly.outputs,
                    "attrs": ly.attrs,
                    "params": {k: f"{ly.name}.{k}" for k in ly.params},
                }
                for ly in self.layers
            ],
        }
        arrays = {"graph.json": np.frombuffer(json.dumps(doc).encode(), dtype=np.uint8)}
        for ly in self.layers:
            for k, v in ly.params.items():
                arrays[f"{ly.name}.{k}"] = v
        buf = io.BytesIO()
        np.savez_compressed(buf, **arrays)
        return buf.getvalue()


def _thresholds(x: np.ndarray, t: np.ndarray, act_val: int) -> np.ndarray:
    """``#{k: x >= T[c,k]} + act_val`` per channel (last axis); T is [C or 1, steps]."""
    c = x.shape[-1]
    t = np.broadcast_to(t, (c, t.shape[-1]))
    out = np.zeros(x.shape, dtype=np.int64)
    for k in range(t.shape[1]):
        out += x >= t[:, k]
    return out + act_val


def _im2col(
    x: np.ndarray,
    k: tuple[int, int],
    s: tuple[int, int],
    d: tuple[int, int],
    out_hw: tuple[int, int],
) -> np.ndarray:
    n, _, _, c = x.shape
    oh, ow = out_hw
    cols = np.empty((n, oh, ow, k[0], k[1], c), dtype=x.dtype)
    for i in range(k[0]):
        for j in range(k[1]):
            y0, x0 = i * d[0], j * d[1]
            cols[:, :, :, i, j, :] = x[:, y0 : y0 + s[0] * oh : s[0], x0 : x0 + s[1] * ow : s[1], :]
    return cols.reshape(n, oh, ow, k[0] * k[1] * c)


def _ref_pad(ly: IntLayer, xs: list[np.ndarray]) -> list[np.ndarray]:
    t, left, b, r = ly.attrs["Padding"]
    return [np.pad(xs[0], ((0, 0), (t, b), (left, r), (0, 0)))]


def _ref_pixel_pad(ly: IntLayer, xs: list[np.ndarray]) -> list[np.ndarray]:
    sy, sx = ly.attrs["Stride"]
    x = xs[0]
    n, h, w, c = x.shape
    out = np.zeros((n, (h - 1) * sy + 1, (w - 1) * sx + 1, c), dtype=x.dtype)
    out[:, ::sy, ::sx, :] = x
    return [out]


def _ref_windows(ly: IntLayer, xs: list[np.ndarray]) -> list[np.ndarray]:
    a = ly.attrs
    return [
        _im2col(
            xs[0],
            tuple(a["ConvKernelDim"]),
            tuple(a["Stride"]),
            tuple(a["Dilation"]),
            tuple(a["OFMDim"]),
        )
    ]


def _ref_mvau(ly: IntLayer, xs: list[np.ndarray]) -> list[np.ndarray]:
    acc = xs[0].astype(np.int64) @ ly.params["weights"].astype(np.int64)
    if ly.attrs.get("noActivation", 0):
        return [acc]
    return [_thresholds(acc, ly.params["thresholds"], int(ly.attrs.get("ActVal", 0)))]


def _ref_thresholding(ly: IntLayer, xs: list[np.ndarray]) -> list[np.ndarray]:
    return [
        _thresholds(xs[0].astype(np.int64), ly.params["thresholds"], int(ly.attrs.get("ActVal", 0)))
    ]


def _ref_pool(ly: IntLayer, xs: list[np.ndarray]) -> list[np.ndarray]:
    c = ly.attrs["Channels"]
    n, oh, ow, kc = xs[0].shape
    return [xs[0].reshape(n, oh, ow, kc // c, c).max(axis=3)]


#: The definition of every op of the integer model (exact, int64). The fast executors run the
#: execution plan of :mod:`qdev.core.intplan`, whose fused steps are checked against these.
REFERENCE_OPS = {
    "FMPadding": _ref_pad,
    "FMPadding_Pixel": _ref_pixel_pad,
    "ConvolutionInputGenerator": _ref_windows,
    "MVAU": _ref_mvau,
    "Thresholding": _ref_thresholding,
    "Pool": _ref_pool,
    "StreamingConcat": lambda ly, xs: [np.concatenate(xs, axis=-1)],
    "DuplicateStreams": lambda ly, xs: [xs[0]] * int(ly.attrs["NumOutputStreams"]),
}


def run_layer(ly: IntLayer, xs: list[np.ndarray]) -> list[np.ndarray]:
    """Execute one layer exactly (int64 arithmetic)."""
    fn = REFERENCE_OPS.get(ly.op)
    if fn is None:
        raise QdevError(f"unsupported op {ly.op}")
    return fn(ly, xs)


def run_reference(model: IntModel, pixels: np.ndarray) -> np.ndarray:
    """Reference execution: uint8 pixels [N, H, W] (or NHWC with C=1) -> int output codes NHWC."""
    x = model.frames_nhwc(pixels)
    lo, hi = dtype_range(model.input["dtype"])
    if x.min() < lo or x.max() > hi:
        raise QdevError(f"input values outside {model.input['dtype']}")
    env = {model.input["name"]: x.astype(np.int64)}
    for ly in model.layers:
        outs = run_layer(ly, [env[i] for i in ly.inputs])
        for name, val in zip(ly.outputs, outs):
            env[name] = val
    return env[model.output["name"]]
