"""qdev's custom FINN build steps for the U-Net (each ``step(model, cfg) -> model``).

What the U-Net needs beyond FINN's default steps (see ../shared/docs/TOOLCHAIN-FACTS.md):

* ``qdev_pixel_input`` -- the graph input becomes raw 8-bit pixels (UINT8): a Mul(1/255) is put
  in front of the input quantizer; streamlining absorbs it into that quantizer's thresholds,
  which then are the identity on integers and are removed in ``qdev_strip_io``.
* ``qdev_streamline_unet`` -- ``StreamlinePlus`` (plain ``Streamline`` stops at the skip forks),
  then ``MoveScalarMulPastConvTranspose`` and ``StreamlinePlus`` again: every scale ends up in a
  MultiThreshold; only the output scale remains.
* ``qdev_lower_unet`` -- transposed convs to pixel padding + conv (``InferPixelPaddingDeconv``),
  convs to Im2Col + MatMul, NHWC max-pool, and only the transpose-moving passes iterated (a full
  ``StreamlinePlus`` there did not finish in 10 minutes).
* ``qdev_strip_io`` -- with one input and one output channel the NCHW<->NHWC transposes at the
  graph edges move no byte, so they are dropped (the accelerator takes and returns NHWC, which
  for C=1 is the same memory); the identity input threshold is dropped; the final float Mul
  (the output scale) is removed and stored as metadata: the device's mask is ``code > 0``.
* ``qdev_convert_to_hw`` -- pools, sliding windows, MVAUs, thresholds, concats, duplicated
  streams to FINN HW layers, in an order that leaves no Im2Col behind.
"""

from __future__ import annotations

import json
import logging

import numpy as np
import qonnx.core.data_layout as DataLayout
from onnx import TensorProto, helper
from qonnx.core.datatype import DataType
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.custom_op.registry import getCustomOp
from qonnx.transformation.general import (
    GiveReadableTensorNames,
    GiveUniqueNodeNames,
    RemoveUnusedTensors,
    SortGraph,
)
from qonnx.transformation.infer_data_layouts import InferDataLayouts
from qonnx.transformation.infer_datatypes import InferDataTypes
from qonnx.transformation.infer_shapes import InferShapes

from qdev.core.errors import QdevError

__all__ = ["GRAPH_STEPS", "META_INPUT", "META_OUTPUT", "META_OUTPUT_SCALE"]

log = logging.getLogger(__name__)

META_INPUT = "qdev_input"  # "float01" (QONNX) -> "uint8_nchw" -> "uint8_nhwc"
META_OUTPUT = "qdev_output"  # "float" -> "int_codes_nhwc"
META_OUTPUT_SCALE = "qdev_output_scale"


def _tidy(model: ModelWrapper) -> ModelWrapper:
    for t in (
        InferShapes(),
        InferDataTypes(),
        InferDataLayouts(),
        GiveUniqueNodeNames(),
        GiveReadableTensorNames(),
        RemoveUnusedTensors(),
        SortGraph(),
    ):
        model = model.transform(t)
    return model


def qdev_pixel_input(model: ModelWrapper, cfg) -> ModelWrapper:  # noqa: ANN001
    g = model.graph
    inp = g.input[0].name
    scaled = inp + "_scaled"
    scale = model.make_new_valueinfo_name()
    model.set_initializer(scale, np.asarray(1.0 / 255.0, dtype=np.float32))
    for n in g.node:
        for i, name in enumerate(n.input):
            if name == inp:
                n.input[i] = scaled
    g.node.insert(0, helper.make_node("Mul", [inp, scale], [scaled], name="qdev_pixel_scale"))
    model.set_tensor_shape(scaled, model.get_tensor_shape(inp))
    model.set_tensor_datatype(inp, DataType["UINT8"])
    model.set_metadata_prop(META_INPUT, "uint8_nchw")
    return _tidy(model)


def qdev_streamline_unet(model: ModelWrapper, cfg) -> ModelWrapper:  # noqa: ANN001
    from finn.transformation.streamline.reorder import MoveScalarMulPastConvTranspose
    from finn.transformation.streamline.streamline_plus import StreamlinePlus

    model = model.transform(StreamlinePlus())
    model = model.transform(MoveScalarMulPastConvTranspose())
    model = model.transform(StreamlinePlus())
    return _tidy(model)


def _op_counts(model: ModelWrapper) -> dict[str, int]:
    out: dict[str, int] = {}
    for n in model.graph.node:
        out[n.op_type] = out.get(n.op_type, 0) + 1
    return out


def qdev_lower_unet(model: ModelWrapper, cfg) -> ModelWrapper:  # noqa: ANN001
    from finn.transformation.fpgadataflow.infer_pixel_padding_deconv import InferPixelPaddingDeconv
    from finn.transformation.streamline.absorb import (
        AbsorbConsecutiveTransposes,
        AbsorbTransposeIntoMultiThreshold,
    )
    from finn.transformation.streamline.collapse_repeated import CollapseRepeatedTranspose
    from finn.transformation.streamline.remove import RemoveIdentityTranspose
    from finn.transformation.streamline.reorder import (
        MakeMaxPoolNHWC,
        MoveTransposePastFork,
        MoveTransposePastJoinConcat,
    )
    from qonnx.transformation.lower_convs_to_matmul import LowerConvsToMatMul

    model = model.transform(InferPixelPaddingDeconv())
    model = model.transform(LowerConvsToMatMul())
    model = model.transform(MakeMaxPoolNHWC())
    for _ in range(20):
        before = _op_counts(model)
        for t in (
            MoveTransposePastFork(),
            MoveTransposePastJoinConcat(),
            AbsorbTransposeIntoMultiThreshold(),
            AbsorbConsecutiveTransposes(),
            CollapseRepeatedTranspose(),
            RemoveIdentityTranspose(),
        ):
            model = model.transform(t)
        model = model.transform(InferDataLayouts())
        model = model.transform(InferShapes())
        if _op_counts(model) == before:
            break
    return _tidy(model)


def _is_identity_threshold(model: ModelWrapper, node) -> bool:  # noqa: ANN001
    if node.op_type != "MultiThreshold":
        return False
    inst = getCustomOp(node)
    if inst.get_nodeattr("out_bias") != 0 or inst.get_nodeattr("out_scale") != 1.0:
        return False
    if model.get_tensor_datatype(node.input[0]) != DataType["UINT8"]:
        return False
    thr = model.get_initializer(node.input[1])
    if thr is None or inst.get_nodeattr("out_dtype") != "UINT8":
        return False
    want = np.arange(1, 256, dtype=np.float32)  # y = #{k: x >= k} = x on 0..255
    return bool(np.all(np.ceil(thr) == want[None, :]))


def qdev_strip_io(model: ModelWrapper, cfg) -> ModelWrapper:  # noqa: ANN001
    g = model.graph
    # 1. identity input threshold (pixel -> pixel)
    first = model.find_consumer(g.input[0].name)
    if first is not None and _is_identity_threshold(model, first):
        for c in model.find_consumers(first.output[0]) or []:
            for i, name in enumerate(c.input):
                if name == first.output[0]:
                    c.input[i] = g.input[0].name
        g.node.remove(first)
    # 2. NCHW -> NHWC transpose right after the input, C = 1
    first = model.find_consumer(g.input[0].name)
    shape = model.get_tensor_shape(g.input[0].name)
    if first is not None and first.op_type == "Transpose" and shape[1] == 1:
        nhwc = [shape[0], shape[2], shape[3], 1]
        out = first.output[0]
        g.node.remove(first)
        for c in model.find_consumers(out) or []:
            for i, name in enumerate(c.input):
                if name == out:
                    c.input[i] = g.input[0].name
        model.set_tensor_shape(g.input[0].name, nhwc)
        model.set_tensor_layout(g.input[0].name, DataLayout.NHWC)
        model.set_metadata_prop(META_INPUT, "uint8_nhwc")
    # 3. final output scale (float Mul), then NHWC -> NCHW transpose, C = 1
    changed = True
    while changed:
        changed = False
        last = model.find_producer(g.output[0].name)
        if last is None:
            break
        if last.op_type == "Mul" and model.get_initializer(last.input[1]) is not None:
            s = model.get_initializer(last.input[1])
            if s.size != 1:
                raise QdevError("output scale is not a scalar: cannot strip it")
            prev = float(model.get_metadata_prop(META_OUTPUT_SCALE) or 1.0)
            model.set_metadata_prop(META_OUTPUT_SCALE, repr(prev * float(s.ravel()[0])))
            _bypass_to_output(model, last)
            changed = True
        elif last.op_type == "Transpose" and model.get_tensor_shape(last.input[0])[-1] == 1:
            _bypass_to_output(model, last)
            changed = True
    model.set_metadata_prop(META_OUTPUT, "int_codes_nhwc")
    return _tidy(model)


def _bypass_to_output(model: ModelWrapper, node) -> None:  # noqa: ANN001
    g = model.graph
    src = node.input[0]
    out = g.output[0]
    shape = model.get_tensor_shape(src)
    dt = model.get_tensor_datatype(src)
    g.node.remove(node)
    # rename the producer's output to the graph output name
    prod = model.find_producer(src)
    for i, name in enumerate(prod.output):
        if name == src:
            prod.output[i] = out.name
    for c in model.find_consumers(src) or []:
        for i, name in enumerate(c.input):
            if name == src:
                c.input[i] = out.name
    g.output.remove(out)
    g.output.append(helper.make_tensor_value_info(out.name, TensorProto.FLOAT, shape))
    model.set_tensor_datatype(out.name, dt)


def qdev_convert_to_hw(model: ModelWrapper, cfg) -> ModelWrapper:  # noqa: ANN001
    from finn.transformation.fpgadataflow.convert_to_hw.concat import InferConcatLayer
    from finn.transformation.fpgadataflow.convert_to_hw.conv_inp_gen import InferConvInpGen
    from finn.transformation.fpgadataflow.convert_to_hw.duplicate_streams import (
        InferDuplicateStreamsLayer,
    )
    from finn.transformation.fpgadataflow.convert_to_hw.pool import InferPool
    from finn.transformation.fpgadataflow.convert_to_hw.quantized_matrix_vector_activation import (
        InferQuantizedMatrixVectorActivation,
    )
    from finn.transformation.fpgadataflow.convert_to_hw.thresholding import InferThresholdingLayer

    standalone = bool(getattr(cfg, "standalone_thresholds", False))
    passes = [InferPool(), InferConvInpGen()]
    if standalone:  # as FINN's step_convert_to_hw: thresholds become their own layers
        passes.append(InferThresholdingLayer())
    passes += [
        InferQuantizedMatrixVectorActivation(),
        InferThresholdingLayer(),
        InferConcatLayer(),
        InferDuplicateStreamsLayer(),
    ]
    for t in passes:
        model = model.transform(t)
        model = model.transform(InferShapes())
        model = model.transform(InferDataTypes())
    model = _tidy(model)
    left = [
        n.op_type
        for n in model.graph.node
        if not n.domain.startswith("finn.custom_op.fpgadataflow")
    ]
    model.set_metadata_prop("qdev_non_hw_nodes", json.dumps(left))
    if left:
        raise QdevError(
            f"nodes left outside the dataflow accelerator: {', '.join(sorted(set(left)))}"
        )
    return model


GRAPH_STEPS = {
    "qdev_pixel_input": qdev_pixel_input,
    "qdev_streamline_unet": qdev_streamline_unet,
    "qdev_lower_unet": qdev_lower_unet,
    "qdev_strip_io": qdev_strip_io,
    "qdev_convert_to_hw": qdev_convert_to_hw,
}
