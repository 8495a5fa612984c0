"""Load a .tflite or .onnx model into Relax, after validating it.

TVM's importers assume well-formed, supported models and fail deep inside TVM otherwise; every
check that can be made first is made first (see :mod:`.validate`), and whatever the importer still
raises is reported as a :class:`~dtmm_tvm.errors.ModelError` naming the file.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tvm

from ..errors import ModelError, UnsupportedOpError
from .renaming import generated_names, rename_onnx_values, renamed_tflite_model
from .structure import check_onnx_structure, check_relax_shapes, check_tflite_structure
from .tflite_reader import TFLiteGraph, read_tflite
from .validate import validate_tflite


@dataclass
class TensorSpec:
    """A model input or output as the user sees it."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    scale: float | None = None
    zero_point: int | None = None

    def to_json(self) -> dict:
        quant = None if self.scale is None else {"scale": self.scale, "zero_point": self.zero_point}
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype, "quantization": quant}


@dataclass
class LoadedModel:
    """A validated model and its Relax import."""

    path: Path
    format: str  # "tflite" or "onnx"
    arithmetic: str  # "int8" or "float32"
    mod: tvm.IRModule
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    raw: bytes
    tflite: TFLiteGraph | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.path.stem

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.raw).hexdigest()


def load_model(path: str | Path) -> LoadedModel:
    """Validate and import ``path`` (``.tflite`` or ``.onnx``, told apart by content, not name)."""
    path = Path(path)
    if not path.exists():
        raise ModelError(f"{path}: no such file")
    if path.is_dir():
        raise ModelError(f"{path}: is a directory, expected a .tflite or .onnx model file")
    raw = path.read_bytes()
    if len(raw) >= 8 and raw[4:8] == b"TFL3":
        return _load_tflite(path, raw)
    if path.suffix.lower() == ".onnx" or raw[:1] == b"\x08":
        return _load_onnx(path, raw)
    raise ModelError(f"{path}: not a TFLite flatbuffer (no 'TFL3' identifier) and not an ONNX model")


def _importer_error(path: Path, err: Exception) -> ModelError:
    from .tflite_import import release_block_builders

    release_block_builders(err)  # else TVM logs a warning after our message
    first_line = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
    return ModelError(f"{path}: TVM's importer rejected the model: {first_line[:300]}")


def _load_tflite(path: Path, raw: bytes) -> LoadedModel:
    graph = read_tflite(raw, name=str(path))
    check_tflite_structure(graph)
    from .shape_folding import fold_batch_shapes

    folded = fold_batch_shapes(graph)  # Keras 3's batch-shape arithmetic, as constants
    arithmetic = validate_tflite(graph, skip_ops=folded.ops)
    try:
        from .tflite_import import import_tflite

        # Tensors renamed by position: TVM's importer looks tensors up by name.
        mod = import_tflite(renamed_tflite_model(raw, generated_names([t.name for t in graph.tensors])), folded)
    except Exception as err:  # TVM raises many types; the user gets one clear message
        raise _importer_error(path, err) from None
    check_relax_shapes(mod, path)
    # TVM's importer drops SOFTMAX's beta; keep it for the integer lowering (in op order).
    betas = [float(op.options.get("Beta", 1.0)) for op in graph.operators if op.opcode == "SOFTMAX"]
    mod = mod.with_attr("dtmm.softmax_betas", json.dumps(betas))

    def spec(index: int) -> TensorSpec:
        tensor = graph.tensor(index)
        scale = zero_point = None
        if tensor.dtype == "int8" and tensor.scale is not None:
            scale, zero_point = float(tensor.scale[0]), int(tensor.zero_point[0])
        return TensorSpec(tensor.name, tuple(tensor.shape), tensor.dtype, scale, zero_point)

    return LoadedModel(path, "tflite", arithmetic, mod, [spec(i) for i in graph.inputs],
                       [spec(i) for i in graph.outputs], raw, graph)


SUPPORTED_ONNX_OPS = {
    "Conv", "Relu", "Clip", "Add", "Mul", "MaxPool", "AveragePool", "GlobalAveragePool", "Gemm", "MatMul",
    "Flatten", "Reshape", "Softmax", "QuantizeLinear", "DequantizeLinear", "BatchNormalization",
    "Transpose", "ReduceMean", "Squeeze", "Identity",
}


def _load_onnx(path: Path, raw: bytes) -> LoadedModel:
    import onnx

    try:
        model = onnx.load_from_string(raw)
        onnx.checker.check_model(model)
    except Exception as err:
        raise ModelError(f"{path}: not a valid ONNX model ({str(err).strip().splitlines()[0][:200]})") from None
    graph = model.graph
    for index, node in enumerate(graph.node):
        if node.op_type not in SUPPORTED_ONNX_OPS:
            raise UnsupportedOpError(
                f"{path}: node {index} '{node.name or node.output[0]}' op {node.op_type} is not supported; "
                f"supported: {', '.join(sorted(SUPPORTED_ONNX_OPS))}"
            )
        if node.op_type in ("QLinearConv", "QLinearMatMul"):
            raise UnsupportedOpError(f"{path}: QOperator models are not supported; quantize with QuantFormat.QDQ")
    check_onnx_structure(model, path)
    initializers = {init.name for init in graph.initializer}
    dtype_names = {1: "float32", 3: "int8", 2: "uint8", 10: "float16", 5: "int16", 6: "int32", 7: "int64"}

    def spec(value) -> TensorSpec:
        t = value.type.tensor_type
        dims = []
        for axis, d in enumerate(t.shape.dim):
            if d.HasField("dim_value") and d.dim_value > 0:
                dims.append(int(d.dim_value))
            elif axis == 0:
                dims.append(1)  # an unknown or symbolic batch ('N', 'batch_size') runs as batch 1
            else:
                raise ModelError(
                    f"{path}: tensor '{value.name}' has a dynamic dimension "
                    f"('{d.dim_param or '?'}', axis {axis}); only the batch (axis 0) may be dynamic; "
                    "export the model with fixed shapes"
                )
        dtype = dtype_names.get(t.elem_type, f"onnx-type{t.elem_type}")
        if dtype not in ("float32", "int8"):
            raise ModelError(f"{path}: tensor '{value.name}' is {dtype}; supported are float32 and int8")
        return TensorSpec(value.name, tuple(dims), dtype)

    inputs = [spec(v) for v in graph.input if v.name not in initializers]
    outputs = [spec(v) for v in graph.output]
    quantized = any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in graph.node)
    renamed = rename_onnx_values(model)  # originals stay in inputs/outputs (TensorSpec)
    try:
        from tvm.relax.frontend.onnx import from_onnx

        mod = from_onnx(model, shape_dict={renamed[s.name]: list(s.shape) for s in inputs}, keep_params_in_input=False)
    except Exception as err:
        raise _importer_error(path, err) from None
    check_relax_shapes(mod, path)
    # A QDQ model computes in int8 with onnxruntime's float32 requantization (see
    # relay_passes/lower_onnx_qdq_to_integer.py); its inputs and outputs stay float.
    loaded = LoadedModel(path, "onnx", "int8" if quantized else "float32", mod, inputs, outputs, raw)
    if quantized:
        loaded.notes.append("ONNX QDQ model: int8 kernels with onnxruntime's requantization (float32 scale, "
                            "round half to even); float input quantized and output dequantized as onnxruntime does")
    return loaded


def stack_inputs(model: LoadedModel, array: np.ndarray, source: str = "inputs") -> np.ndarray:
    """Normalize user inputs to ``(N, *input_shape)``.

    Accepts ``(N, *shape)`` and, for models with a batch dimension of 1, ``(N, *shape[1:])``.
    """
    spec = model.inputs[0]
    shape = tuple(spec.shape)
    array = np.asarray(array)
    if array.dtype != np.dtype(spec.dtype):
        raise ModelError(f"{source}: dtype {array.dtype} does not match the model input '{spec.name}' ({spec.dtype})")
    if array.shape[1:] == shape:
        return array
    if shape and shape[0] == 1 and array.shape[1:] == shape[1:]:
        return array.reshape((array.shape[0],) + shape)
    raise ModelError(
        f"{source}: shape {list(array.shape)} does not stack inputs of shape {list(shape)}; expected "
        f"(N, {', '.join(map(str, shape))})" + (f" or (N, {', '.join(map(str, shape[1:]))})" if shape and shape[0] == 1 else "")
    )
