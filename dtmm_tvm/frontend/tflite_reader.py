"""A plain reading of a .tflite flatbuffer: operators, tensors, quantization, constant data.

TVM's importer does the real import; this reader exists to validate a model *before* TVM sees it
(so a bad model gets an error naming the file, op and tensor instead of a TVM traceback) and to let
tests and reports look at weights and quantization parameters directly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import ModelError

_TFLITE_DTYPES = {
    0: "float32", 1: "float16", 2: "int32", 3: "uint8", 4: "int64", 5: "string", 6: "bool",
    7: "int16", 8: "complex64", 9: "int8", 10: "float64", 11: "complex128", 12: "uint64",
    13: "resource", 14: "variant", 15: "uint32", 16: "uint16", 17: "int4",
}


@dataclass
class TFLiteTensor:
    """One tensor of the model's main subgraph."""

    index: int
    name: str
    shape: tuple[int, ...]
    shape_signature: tuple[int, ...]
    dtype: str
    scale: np.ndarray | None = None  # float32 [1] or [channels]
    zero_point: np.ndarray | None = None  # int64, same length as scale
    quantized_dimension: int = 0
    data: np.ndarray | None = None  # constant contents, or None for activations
    buffer_bytes: int = 0  # size of the constant buffer in the file (checked against the shape)

    @property
    def is_constant(self) -> bool:
        return self.data is not None

    @property
    def is_dynamic(self) -> bool:
        return any(d < 0 for d in self.shape_signature)


@dataclass
class TFLiteOperator:
    """One operator: its builtin name, tensor indices and parsed options."""

    index: int
    opcode: str
    inputs: list[int]
    outputs: list[int]
    options: dict = field(default_factory=dict)


@dataclass
class TFLiteGraph:
    """The main subgraph of a .tflite model."""

    path: str
    tensors: list[TFLiteTensor]
    operators: list[TFLiteOperator]
    inputs: list[int]
    outputs: list[int]
    subgraph_count: int
    raw: bytes

    def tensor(self, index: int) -> TFLiteTensor:
        return self.tensors[index]

    def layer_name(self, op: TFLiteOperator) -> str:
        """A readable name for an operator: its first output tensor's name."""
        return self.tensors[op.outputs[0]].name if op.outputs else f"op{op.index}"


_ACTIVATIONS = {0: "NONE", 1: "RELU", 2: "RELU_N1_TO_1", 3: "RELU6", 4: "TANH", 5: "SIGN_BIT"}
_PADDING = {0: "SAME", 1: "VALID"}


def _options(tflite, op, opcode: str) -> dict:
    """Parse the builtin options of the ops whose options matter to lowering."""
    table = op.BuiltinOptions()
    if table is None:
        return {}
    spec = {
        "CONV_2D": ("Conv2DOptions", ["Padding", "StrideH", "StrideW", "DilationHFactor",
                                       "DilationWFactor", "FusedActivationFunction"]),
        "DEPTHWISE_CONV_2D": ("DepthwiseConv2DOptions", ["Padding", "StrideH", "StrideW",
                                                         "DepthMultiplier", "DilationHFactor",
                                                         "DilationWFactor", "FusedActivationFunction"]),
        "AVERAGE_POOL_2D": ("Pool2DOptions", ["Padding", "StrideH", "StrideW", "FilterHeight",
                                              "FilterWidth", "FusedActivationFunction"]),
        "MAX_POOL_2D": ("Pool2DOptions", ["Padding", "StrideH", "StrideW", "FilterHeight",
                                          "FilterWidth", "FusedActivationFunction"]),
        "FULLY_CONNECTED": ("FullyConnectedOptions", ["FusedActivationFunction", "KeepNumDims"]),
        "ADD": ("AddOptions", ["FusedActivationFunction"]),
        "SOFTMAX": ("SoftmaxOptions", ["Beta"]),
        "MEAN": ("ReducerOptions", ["KeepDims"]),
        "CONCATENATION": ("ConcatenationOptions", ["Axis", "FusedActivationFunction"]),
        "MUL": ("MulOptions", ["FusedActivationFunction"]),
        "SUB": ("SubOptions", ["FusedActivationFunction"]),
        "LEAKY_RELU": ("LeakyReluOptions", ["Alpha"]),
        "RESIZE_NEAREST_NEIGHBOR": ("ResizeNearestNeighborOptions", ["AlignCorners", "HalfPixelCenters"]),
        "STRIDED_SLICE": ("StridedSliceOptions", ["BeginMask", "EndMask", "EllipsisMask", "NewAxisMask",
                                                  "ShrinkAxisMask"]),
        "PACK": ("PackOptions", ["ValuesCount", "Axis"]),
        "UNPACK": ("UnpackOptions", ["Num", "Axis"]),
    }.get(opcode)
    if spec is None:
        return {}
    cls = getattr(tflite, spec[0])()
    cls.Init(table.Bytes, table.Pos)
    parsed = {}
    for attr in spec[1]:
        value = getattr(cls, attr)()
        if attr == "Padding":
            value = _PADDING.get(value, value)
        elif attr == "FusedActivationFunction":
            value = _ACTIVATIONS.get(value, value)
        parsed[attr] = value
    return parsed


def _printable_name(raw: bytes | None, limit: int = 200) -> str:
    """A tensor name as messages and metadata.json may carry it: control characters escaped,
    at most ``limit`` characters (names never reach C: tensors are renamed by position)."""
    text = (raw or b"").decode("utf-8", "replace")
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return text if len(text) <= limit else text[:limit] + "..."


def read_tflite(source: str | Path | bytes, name: str | None = None) -> TFLiteGraph:
    """Read a .tflite file (path or bytes) into a :class:`TFLiteGraph`.

    ``name`` is the file name errors use when ``source`` is bytes.

    Raises
    ------
    ModelError
        When the file is missing, not a TFLite flatbuffer, or truncated.
    """
    import tflite  # the flatbuffer bindings TVM's importer also uses

    if isinstance(source, (bytes, bytearray)):
        path, raw = name or "<bytes>", bytes(source)
    else:
        path = str(source)
        try:
            raw = Path(source).read_bytes()
        except OSError as err:
            raise ModelError(f"{path}: cannot read the model file ({err.strerror})") from None
    if len(raw) < 8 or raw[4:8] != b"TFL3":
        raise ModelError(f"{path}: not a TFLite model (no 'TFL3' flatbuffer identifier)")
    try:
        model = tflite.Model.GetRootAsModel(raw, 0)
        if model.SubgraphsLength() < 1:
            raise ModelError(f"{path}: the model has no subgraph")
        graph = model.Subgraphs(0)
        tensors = []
        for i in range(graph.TensorsLength()):
            t = graph.Tensors(i)
            shape = tuple(int(d) for d in (t.ShapeAsNumpy() if t.ShapeLength() else []))
            signature = tuple(int(d) for d in t.ShapeSignatureAsNumpy()) if t.ShapeSignatureLength() else shape
            dtype = _TFLITE_DTYPES.get(t.Type(), f"type{t.Type()}")
            tensor = TFLiteTensor(i, _printable_name(t.Name()), shape, signature, dtype)
            quant = t.Quantization()
            if quant is not None and quant.ScaleLength():
                tensor.scale = quant.ScaleAsNumpy().astype(np.float32)
                tensor.zero_point = quant.ZeroPointAsNumpy().astype(np.int64)
                tensor.quantized_dimension = int(quant.QuantizedDimension())
            if not 0 <= t.Buffer() < model.BuffersLength():
                raise ModelError(f"{path}: tensor {i} refers to buffer {t.Buffer()}, but the model has "
                                 f"{model.BuffersLength()} buffers")
            buffer = model.Buffers(t.Buffer())
            if buffer is not None and buffer.DataLength():
                data = buffer.DataAsNumpy()
                tensor.buffer_bytes = int(data.size)
                count = int(np.prod(shape, dtype=object)) if all(d > 0 for d in shape) else -1
                if dtype in ("float32", "float16", "int32", "uint8", "int64", "int16", "int8", "float64") \
                        and count * np.dtype(dtype).itemsize == data.size:
                    tensor.data = np.frombuffer(data.tobytes(), dtype=dtype).reshape(shape)
                else:  # a size mismatch is reported by structure.check_tflite_structure
                    tensor.data = np.zeros(0, dtype=np.uint8)
            tensors.append(tensor)
        operators = []
        for i in range(graph.OperatorsLength()):
            op = graph.Operators(i)
            if not 0 <= op.OpcodeIndex() < model.OperatorCodesLength():
                raise ModelError(f"{path}: operator {i} refers to operator code {op.OpcodeIndex()}, but the "
                                 f"model has {model.OperatorCodesLength()}")
            code = model.OperatorCodes(op.OpcodeIndex())
            builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
            name = tflite.utils.opcode2name(builtin)
            if name == "CUSTOM":
                name = "CUSTOM:" + (code.CustomCode() or b"?").decode("utf-8", "replace")
            operators.append(
                TFLiteOperator(
                    i,
                    name,
                    [int(x) for x in op.InputsAsNumpy()] if op.InputsLength() else [],
                    [int(x) for x in op.OutputsAsNumpy()] if op.OutputsLength() else [],
                    _options(tflite, op, name),
                )
            )
        inputs = [int(x) for x in graph.InputsAsNumpy()]
        outputs = [int(x) for x in graph.OutputsAsNumpy()]
    except ModelError:
        raise
    except Exception as err:  # the flatbuffer bindings raise anything on corrupt data
        raise ModelError(f"{path}: corrupt or truncated TFLite flatbuffer ({type(err).__name__}: {err})") from None
    return TFLiteGraph(path, tensors, operators, inputs, outputs, model.SubgraphsLength(), raw)
