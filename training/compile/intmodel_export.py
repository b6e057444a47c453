"""From FINN's HW-layer graph to the device's integer model (:mod:`qdev.core.intmodel`):
layer order, shapes, data types, weights, integer thresholds and folding, plus the io spec of
the accelerator's DMA streams (normal, folded and packed shapes, FINN's packing rule)."""

from __future__ import annotations

import numpy as np
from qonnx.core.modelwrapper import ModelWrapper

from qdev.core.intmodel import IntLayer, IntModel, base_op
from qdev.core.errors import QdevError

__all__ = ["extract_intmodel", "io_spec"]


_KEEP = {
    "FMPadding": ("Padding", "ImgDim", "NumChannels"),
    "FMPadding_Pixel": ("Stride", "ImgDim", "NumChannels"),
    "ConvolutionInputGenerator": (
        "ConvKernelDim",
        "Stride",
        "Dilation",
        "IFMDim",
        "OFMDim",
        "IFMChannels",
    ),
    "MVAU": ("MW", "MH", "noActivation", "ActVal", "PE", "SIMD"),
    "Thresholding": ("NumChannels", "ActVal", "PE"),
    "Pool": ("Channels", "KernelSize", "Function"),
    "StreamingConcat": ("ChannelsPerStream",),
    "DuplicateStreams": ("NumOutputStreams", "NumChannels"),
}


def _int_thresholds(t: np.ndarray) -> np.ndarray:
    """Integer thresholds: for integer inputs x >= t  <=>  x >= ceil(t), so ceil is exact."""
    return np.ceil(np.asarray(t, dtype=np.float64)).astype(np.int64)


def extract_intmodel(model: ModelWrapper, out_scale: float, meta: dict) -> IntModel:
    """The integer model of a (specialised or not) FINN dataflow graph."""
    from onnx import helper

    layers = []
    for n in model.graph.node:
        op = base_op(n.op_type)
        if op not in _KEEP:
            raise QdevError(f"cannot describe {n.op_type} ({n.name}) in the integer model")
        raw = {a.name: helper.get_attribute_value(a) for a in n.attribute}
        attrs = {}
        for k in _KEEP[op]:
            if k in raw:
                v = raw[k]
                attrs[k] = (
                    v.decode()
                    if isinstance(v, bytes)
                    else (list(v) if isinstance(v, (list, tuple)) else v)
                )
        for k in (
            "inputDataType",
            "outputDataType",
            "weightDataType",
            "InputDataType",
            "OutputDataType",
        ):
            if k in raw:
                attrs[k] = raw[k].decode() if isinstance(raw[k], bytes) else str(raw[k])
        attrs["out_dtype"] = str(model.get_tensor_datatype(n.output[0]).name)
        params = {}
        if op == "MVAU":
            w = model.get_initializer(n.input[1])
            params["weights"] = w.astype(np.int8 if np.abs(w).max() < 128 else np.int32)
            if not raw.get("noActivation", 0):
                params["thresholds"] = _int_thresholds(model.get_initializer(n.input[2]))
        if op == "Thresholding":
            params["thresholds"] = _int_thresholds(model.get_initializer(n.input[1]))
        data_inputs = [i for i in n.input if model.get_initializer(i) is None]
        layers.append(IntLayer(n.name, op, data_inputs, list(n.output), attrs, params))
    gi, go = model.graph.input[0], model.graph.output[0]
    return IntModel(
        input={
            "name": gi.name,
            "shape": model.get_tensor_shape(gi.name),
            "dtype": model.get_tensor_datatype(gi.name).name,
            "layout": "NHWC",
        },
        output={
            "name": go.name,
            "shape": model.get_tensor_shape(go.name),
            "dtype": model.get_tensor_datatype(go.name).name,
            "layout": "NHWC",
            "mask_rule": "code > 0",
        },
        output_scale=out_scale,
        layers=layers,
        meta=meta,
    )


def io_spec(model: ModelWrapper) -> dict:
    """Input/output shapes (normal, folded, packed) and data types as FINN's driver uses them.

    Packing rule (finn-plus-driver): the folded array's innermost dimension is packed into whole
    bytes, little-endian, element 0 in the lowest bits; the packed innermost size is
    ceil(fold * bits / 8).
    """
    from finn.util.basic import getHWCustomOp

    first, last = getHWCustomOp(model.graph.node[0]), getHWCustomOp(model.graph.node[-1])

    def packed(folded: list[int], bits: int) -> list[int]:
        return list(folded[:-1]) + [-(-folded[-1] * bits // 8)]

    idt, odt = first.get_input_datatype(0), last.get_output_datatype(0)
    ifold, ofold = list(first.get_folded_input_shape(0)), list(last.get_folded_output_shape(0))
    return {
        "idt": idt.name,
        "odt": odt.name,
        "ishape_normal": list(first.get_normal_input_shape(0)),
        "ishape_folded": ifold,
        "ishape_packed": packed(ifold, idt.bitwidth()),
        "oshape_normal": list(last.get_normal_output_shape(0)),
        "oshape_folded": ofold,
        "oshape_packed": packed(ofold, odt.bitwidth()),
        "packing": "innermost folded dim packed to whole bytes, little-endian, element 0 in the "
        "lowest bits",
        "layout": "NHWC",
    }
