"""What we can compile, checked before TVM's importer runs.

Each rule names the file, the operator (by index, opcode and its output tensor) and the limit, so
a user learns what to change in their model instead of reading a TVM traceback.
"""

from __future__ import annotations

import numpy as np

from ..errors import ModelError, UnsupportedOpError
from .tflite_reader import TFLiteGraph

# Operators with an integer lowering (int8) and a float path (float32).
SUPPORTED_TFLITE_OPS = {
    "CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "ADD", "AVERAGE_POOL_2D", "MAX_POOL_2D",
    "MEAN", "RESHAPE", "SOFTMAX",
} | {
    # Elementwise, binary and data-movement ops (relay_passes/_integer_ops.py).
    "PAD", "PADV2", "CONCATENATION", "MUL", "SUB", "LOGISTIC", "TANH", "HARD_SWISH", "LEAKY_RELU",
    "RELU", "RELU6", "QUANTIZE", "DEQUANTIZE", "STRIDED_SLICE", "SQUEEZE", "TRANSPOSE",
    "RESIZE_NEAREST_NEIGHBOR", "MAXIMUM", "MINIMUM", "SPLIT", "SPLIT_V", "PACK", "UNPACK", "EXPAND_DIMS",
}
SUPPORTED_ACTIVATIONS = {"NONE", "RELU", "RELU6"}
ACTIVATION_DTYPES = {"int8", "float32"}


def dynamic_axes(tensor) -> list[int]:
    """Axes of a tensor's ``shape_signature`` that are dynamic (-1) as TFLM reads the model.

    TFLM allocates from ``shape``, never the signature: a -1 batch (axis 0, which the Keras ->
    TFLiteConverter path writes for every model) is the batch of 1 stored in ``shape``. Any other
    -1 is a shape the model only knows at run time, which a static arena cannot hold.
    """
    return [axis for axis, size in enumerate(tensor.shape_signature)
            if size < 0 and not (axis == 0 and tensor.shape[:1] == (1,))]


def _dynamic_message(tensor) -> str:
    axes = dynamic_axes(tensor)
    return (f"has a dynamic shape {list(tensor.shape_signature)} (axis {', '.join(map(str, axes))}); only a "
            "dynamic batch (axis 0, run as batch 1) is supported; re-export the model with fixed dimensions")


def _fully_connected_shapes(graph: TFLiteGraph, op) -> None:
    """TFLM's FULLY_CONNECTED: the input flattened to [batches, K] with K from the weights [O, K],
    the output [batches, O] in the shape the model declares (keep_num_dims or not)."""
    x, w, out = (graph.tensor(i) for i in (op.inputs[0], op.inputs[1], op.outputs[0]))
    size = int(np.prod(x.shape)) if x.shape else 1
    if len(w.shape) != 2 or w.shape[1] <= 0 or size % w.shape[1] != 0:
        raise ModelError(f"{_where(graph, op)}: input {list(x.shape)} does not flatten to rows of the "
                         f"weights' depth (weights {list(w.shape)}, expected [units, depth])")
    batches = size // w.shape[1]
    if int(np.prod(out.shape)) != batches * w.shape[0]:
        raise ModelError(f"{_where(graph, op)}: output {list(out.shape)} is not [{batches}, {w.shape[0]}] "
                         f"(input {list(x.shape)} x weights {list(w.shape)})")


_REEXPORT_INT8 = ("re-export it full-integer int8 (converter.optimizations = [tf.lite.Optimize.DEFAULT] with a "
                  "representative_dataset, target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8], "
                  "inference_input_type = inference_output_type = tf.int8) or as float32 (no optimizations)")


def _refuse_other_quantization_schemes(graph: TFLiteGraph) -> None:
    """Name the converter's other quantization schemes before any per-op rule could blame an
    operator: hybrid (dynamic-range), float16 and int16x8 models, each with how to re-export."""
    for op in graph.operators:
        tensors = [graph.tensor(i) for i in op.inputs if i >= 0]
        data = [t for t in tensors if not t.is_constant]
        weights = [t for t in tensors if t.is_constant and t.dtype == "int8"]
        if weights and any(t.dtype == "float32" for t in data):
            raise ModelError(
                f"{_where(graph, op)}: a hybrid (dynamic-range quantized) model: float32 activations with "
                f"int8 weights '{weights[0].name}'; TFLM cannot run hybrid models either; {_REEXPORT_INT8}"
            )
    for tensor in graph.tensors:
        if tensor.dtype == "float16":
            raise ModelError(
                f"{graph.path}: a float16-quantized model (float16 weights '{tensor.name}', dequantized to float32 "
                f"at run time); drop target_spec.supported_types = [tf.float16] and {_REEXPORT_INT8}"
            )
        if tensor.dtype == "int16" and not tensor.is_constant:
            raise ModelError(
                f"{graph.path}: an int16x8 model (int16 activations '{tensor.name}', int8 weights); only int8 "
                "activations are supported; re-export with target_spec.supported_ops = "
                "[tf.lite.OpsSet.TFLITE_BUILTINS_INT8] and inference_input_type = inference_output_type = tf.int8"
            )


def _where(graph: TFLiteGraph, op) -> str:
    return f"{graph.path}: operator {op.index} {op.opcode} (output '{graph.layer_name(op)}')"


def _signature(graph: TFLiteGraph, op) -> str:
    """The op's tensors and options, e.g. ``int8[1, 4, 4, 2] -> int8[1, 4, 4, 2], Alpha=0.2``."""
    def tensor(i):
        t = graph.tensor(i)
        return f"{t.dtype}{list(t.shape)}"

    ins = ", ".join(tensor(i) for i in op.inputs if i >= 0 and not graph.tensor(i).is_constant)
    outs = ", ".join(tensor(i) for i in op.outputs)
    return f"{ins} -> {outs}" + "".join(f", {k}={v}" for k, v in op.options.items())


def validate_tflite(graph: TFLiteGraph, skip_ops=()) -> str:
    """Check a TFLite model is one we compile; return its arithmetic, ``"int8"`` or ``"float32"``.
    ``skip_ops``: indices of operators folded to constants (:mod:`.shape_folding`), not checked.

    Raises
    ------
    ModelError, UnsupportedOpError
        Naming the file, operator and the rule it breaks.
    """
    if graph.subgraph_count != 1:
        raise ModelError(f"{graph.path}: {graph.subgraph_count} subgraphs; only single-subgraph models are supported")
    if not graph.operators:
        raise ModelError(f"{graph.path}: the model has no operators")
    _refuse_other_quantization_schemes(graph)
    for index in list(graph.inputs) + list(graph.outputs):
        tensor = graph.tensor(index)
        if dynamic_axes(tensor):
            raise ModelError(f"{graph.path}: tensor '{tensor.name}' {_dynamic_message(tensor)}")
        if tensor.dtype not in ACTIVATION_DTYPES:
            raise ModelError(
                f"{graph.path}: model {'input' if index in graph.inputs else 'output'} '{tensor.name}' is "
                f"{tensor.dtype}; supported are int8 (full-integer quantization) and float32"
            )
    kinds = set()
    for op in graph.operators:
        if op.index in skip_ops:
            continue
        # Types first: a float16 or int16 model is best told so, not that DEQUANTIZE is unsupported.
        for index in op.inputs + op.outputs:
            if index < 0:
                continue
            tensor = graph.tensor(index)
            if dynamic_axes(tensor) and not tensor.is_constant:
                raise ModelError(f"{_where(graph, op)}: tensor '{tensor.name}' {_dynamic_message(tensor)}")
            if tensor.dtype in ("float16", "int16", "uint8", "int4", "float64"):
                raise ModelError(
                    f"{_where(graph, op)}: tensor '{tensor.name}' is {tensor.dtype}; supported models are "
                    "full-integer int8 (int32 biases) or float32"
                )
        if op.opcode == "SHAPE" and op.opcode not in SUPPORTED_TFLITE_OPS:
            raise UnsupportedOpError(
                f"{_where(graph, op)}: the model computes a shape at run time (what Keras 3 writes for "
                "Flatten/Reshape when the batch is dynamic); export it with a fixed batch of 1, e.g. "
                "model.export(dir, input_signature=[tf.TensorSpec((1, ...), tf.float32)]) then "
                "TFLiteConverter.from_saved_model(dir)"
            )
        if op.opcode not in SUPPORTED_TFLITE_OPS:
            raise UnsupportedOpError(
                f"{_where(graph, op)} [{_signature(graph, op)}] is not supported; supported operators: "
                f"{', '.join(sorted(SUPPORTED_TFLITE_OPS))}"
            )
        activation = op.options.get("FusedActivationFunction", "NONE")
        if activation not in SUPPORTED_ACTIVATIONS:
            raise UnsupportedOpError(f"{_where(graph, op)} has fused activation {activation}; supported: NONE, RELU, RELU6")
        if op.opcode == "FULLY_CONNECTED":
            _fully_connected_shapes(graph, op)
        data_dtype = graph.tensor(op.inputs[0]).dtype
        # QUANTIZE of a float input and DEQUANTIZE to a float output frame an int8 model.
        if data_dtype in ACTIVATION_DTYPES and op.opcode not in ("QUANTIZE", "DEQUANTIZE"):
            kinds.add(data_dtype)
        _check_boundary_op(graph, op)
        if data_dtype == "int8":
            _check_int8_quantization(graph, op)
        if op.opcode in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED") and data_dtype == "int8":
            weight = graph.tensor(op.inputs[1])
            if not weight.is_constant:
                raise UnsupportedOpError(f"{_where(graph, op)}: weights '{weight.name}' are not a constant")
            if weight.scale is None:
                raise ModelError(f"{_where(graph, op)}: int8 weights '{weight.name}' carry no quantization scale")
            if weight.zero_point is not None and (weight.zero_point != 0).any():
                raise UnsupportedOpError(
                    f"{_where(graph, op)}: weights '{weight.name}' have non-zero zero points; TFLite int8 "
                    "weights must be symmetric"
                )
        if op.opcode == "SOFTMAX" and data_dtype == "float32" and op.options.get("Beta", 1.0) != 1.0:
            raise UnsupportedOpError(
                f"{_where(graph, op)} has beta {op.options['Beta']}; TVM's float softmax ignores beta, so "
                "only beta 1.0 compiles exactly for float models (int8 models support any beta)"
            )
    if not kinds:
        kinds.add("int8")
    if len(kinds) > 1:
        raise ModelError(f"{graph.path}: mixes int8 and float32 operators; quantize the whole model (full-integer) or none")
    return kinds.pop()


def _check_boundary_op(graph: TFLiteGraph, op) -> None:
    """QUANTIZE from float32 must read a model input, DEQUANTIZE to float32 must write a model
    output: anywhere else the model computes in float between int8 layers (not compiled)."""
    if op.opcode == "QUANTIZE" and graph.tensor(op.inputs[0]).dtype == "float32" and op.inputs[0] not in graph.inputs:
        raise UnsupportedOpError(f"{_where(graph, op)} quantizes a float tensor computed inside the model; "
                                 "only model inputs may be float in an int8 model")
    if op.opcode == "DEQUANTIZE" and op.outputs[0] not in graph.outputs:
        raise UnsupportedOpError(f"{_where(graph, op)} dequantizes to a float tensor used inside the model; "
                                 "only model outputs may be float in an int8 model")


#: int8 output quantization TFLM's kernels assume (the converter writes exactly these).
_FIXED_OUTPUT_QUANTIZATION = {"LOGISTIC": (1.0 / 256, -128), "TANH": (1.0 / 128, 0)}


def _check_int8_quantization(graph: TFLiteGraph, op) -> None:
    """Quantization that TFLM's int8 kernels refuse (their Prepare fails): refused here too."""
    out = graph.tensor(op.outputs[0]) if op.outputs else None
    if out is None or out.scale is None:
        return
    if op.opcode == "CONCATENATION":
        for i in op.inputs:
            t = graph.tensor(i)
            if t.scale is not None and (t.scale[0] != out.scale[0] or t.zero_point[0] != out.zero_point[0]):
                raise UnsupportedOpError(
                    f"{_where(graph, op)}: input '{t.name}' has scale {t.scale[0]:.6g}, zero point {t.zero_point[0]} "
                    f"but the output {out.scale[0]:.6g}, {out.zero_point[0]}; TFLM's int8 CONCATENATION requires "
                    "equal quantization (re-export the model)"
                )
    expected = _FIXED_OUTPUT_QUANTIZATION.get(op.opcode)
    if expected is not None and (abs(float(out.scale[0]) - expected[0]) > 1e-9 or int(out.zero_point[0]) != expected[1]):
        raise UnsupportedOpError(
            f"{_where(graph, op)}: int8 output scale {out.scale[0]:.6g}, zero point {out.zero_point[0]}; TFLM's "
            f"kernel requires scale {expected[0]:.6g} and zero point {expected[1]}"
        )
