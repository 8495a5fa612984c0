"""Structural validation of an untrusted model, before anything else looks at it.

TVM's importers, our passes and the kernel parameter computations all assume a model that makes
sense: tensor indices in range, constant buffers as large as their shapes, finite positive scales,
zero points in their type's range, one scale per channel of the quantized dimension, an acyclic
graph whose tensors are produced before they are used, positive strides and kernel sizes, no
zero-size or absurdly large tensors. A model file can break any of these (a converter bug, a
corrupted download, a hostile file). Each check here runs on the plain reading of the file
(:mod:`.tflite_reader`, or the ONNX protobuf) and raises one :class:`~dtmm_tvm.errors.ModelError`
naming the file, the operator or tensor and the broken rule, so TVM only ever sees a model that
makes sense, and no huge tensor is ever allocated.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import ModelError

#: The largest tensor any supported board could hold: the biggest board's flash plus RAM
#: (mps2-an386/an500: 4 MiB + 4 MiB; ``tests/fuzz/test_structure.py`` checks it against the
#: board table). A bigger tensor is refused before anything allocates it.
MAX_TENSOR_BYTES = 8 * 1024 * 1024
MAX_RANK = 6
#: A model with more operators or tensors than this is not a microcontroller model.
MAX_OPERATORS = 10_000
MAX_TENSORS = 50_000

ITEMSIZE = {"float32": 4, "float16": 2, "int32": 4, "uint8": 1, "int64": 8, "int16": 2, "int8": 1,
            "float64": 8, "bool": 1, "uint16": 2, "uint32": 4, "uint64": 8, "complex64": 8,
            "complex128": 16, "int4": 1}
#: Zero point range of each quantized type (TFLite: int32 biases have zero point 0).
ZERO_POINT_RANGE = {"int8": (-128, 127), "uint8": (0, 255), "int16": (0, 0), "int32": (0, 0),
                    "int4": (-8, 7)}

#: Fewest inputs (that are not the optional -1) and kind of each operator's options.
_MIN_INPUTS = {"CONV_2D": 2, "DEPTHWISE_CONV_2D": 2, "FULLY_CONNECTED": 2, "ADD": 2,
               "AVERAGE_POOL_2D": 1, "MAX_POOL_2D": 1, "MEAN": 2, "RESHAPE": 1, "SOFTMAX": 1}
_POSITIVE_OPTIONS = ("StrideH", "StrideW", "DilationHFactor", "DilationWFactor", "FilterHeight",
                     "FilterWidth", "DepthMultiplier")
#: Operators whose options are required by TVM's importer (a missing table is a broken model).
_NEEDS_OPTIONS = {"CONV_2D", "DEPTHWISE_CONV_2D", "AVERAGE_POOL_2D", "MAX_POOL_2D"}


def _display(name: str, limit: int = 80) -> str:
    """A name as it may appear in a one-line message: printable, quoted, bounded."""
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(name))
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _elements(shape, where: str) -> int:
    """Element count of ``shape``, refusing negative, zero-size and too large shapes."""
    if len(shape) > MAX_RANK:
        raise ModelError(f"{where} has rank {len(shape)}; at most {MAX_RANK} is supported")
    count = 1
    for d in shape:
        d = int(d)
        if d < 0:
            raise ModelError(f"{where} has a negative dimension in shape {list(map(int, shape))}")
        if d == 0:
            raise ModelError(f"{where} has a zero-size dimension in shape {list(map(int, shape))}")
        count *= d
        if count > MAX_TENSOR_BYTES:
            break
    return count


def check_tensor_size(shape, dtype: str, where: str) -> int:
    """Bytes of a tensor, or a ModelError when it is empty, negative or bigger than any board."""
    count = _elements(shape, where)
    nbytes = count * ITEMSIZE.get(dtype, 1)
    if nbytes > MAX_TENSOR_BYTES:
        raise ModelError(f"{where} declares shape {list(map(int, shape))} ({dtype}): more than "
                         f"{MAX_TENSOR_BYTES} bytes, bigger than any supported board's memory")
    return nbytes


def check_quantization(scale, zero_point, dtype: str, shape, quantized_dimension: int, where: str) -> None:
    """Scales finite and positive, zero points in range, one per channel of the quantized axis."""
    scale = np.asarray(scale, dtype=np.float64).reshape(-1)
    zero_point = None if zero_point is None else np.asarray(zero_point).reshape(-1)
    if scale.size == 0:
        return
    bad = ~np.isfinite(scale) | (scale <= 0) | (scale < np.finfo(np.float32).tiny)
    if bad.any():
        raise ModelError(f"{where} has quantization scale {float(scale[np.argmax(bad)])!r}; scales "
                         "must be finite, positive and normal float32 numbers")
    if zero_point is not None and zero_point.size not in (0, scale.size):
        raise ModelError(f"{where} has {scale.size} scales but {zero_point.size} zero points")
    if zero_point is not None and zero_point.size and dtype in ZERO_POINT_RANGE:
        lo, hi = ZERO_POINT_RANGE[dtype]
        if dtype == "int32":  # int32 biases: TFLite requires zero point 0
            lo, hi = 0, 0
        outside = (zero_point < lo) | (zero_point > hi)
        if outside.any():
            raise ModelError(f"{where} has zero point {int(zero_point[np.argmax(outside)])}, outside "
                             f"[{lo}, {hi}] for {dtype}")
    if scale.size > 1:
        if not 0 <= quantized_dimension < len(shape):
            raise ModelError(f"{where} is quantized per channel along dimension {quantized_dimension}, "
                             f"but has rank {len(shape)}")
        channels = int(shape[quantized_dimension])
        if scale.size != channels:
            raise ModelError(f"{where} has {scale.size} scales for {channels} channels along its "
                             f"quantized dimension {quantized_dimension}")


def check_tflite_structure(graph) -> None:
    """Check the structure of a :class:`~.tflite_reader.TFLiteGraph`.

    Raises
    ------
    ModelError
        Naming the file, the operator or tensor and the broken rule.
    """
    path = graph.path
    n = len(graph.tensors)
    if n > MAX_TENSORS or len(graph.operators) > MAX_OPERATORS:
        raise ModelError(f"{path}: {n} tensors and {len(graph.operators)} operators; at most "
                         f"{MAX_TENSORS} and {MAX_OPERATORS} are supported")
    for tensor in graph.tensors:
        where = f"{path}: tensor {tensor.index} {_display(tensor.name)}"
        if tensor.dtype not in ITEMSIZE:
            raise ModelError(f"{where} has an unknown or unsupported element type ({tensor.dtype})")
        nbytes = check_tensor_size(tensor.shape, tensor.dtype, where)
        if len(tensor.shape_signature) != len(tensor.shape):
            raise ModelError(f"{where}: shape {list(tensor.shape)} and shape signature "
                             f"{list(tensor.shape_signature)} differ in rank")
        buffer_bytes = getattr(tensor, "buffer_bytes", 0)
        if buffer_bytes and buffer_bytes != nbytes:
            raise ModelError(f"{where}: its constant buffer holds {buffer_bytes} bytes, but shape "
                             f"{list(tensor.shape)} of {tensor.dtype} needs {nbytes}")
        if tensor.scale is not None:
            check_quantization(tensor.scale, tensor.zero_point, tensor.dtype, tensor.shape,
                               tensor.quantized_dimension, where)

    def index_ok(index: int, what: str, optional: bool = False) -> None:
        if not (0 <= index < n or (optional and index == -1)):
            raise ModelError(f"{path}: {what} refers to tensor {index}, but the model has {n} tensors "
                             f"(0..{n - 1})")

    if not graph.inputs:
        raise ModelError(f"{path}: the model has no inputs")
    if not graph.outputs:
        raise ModelError(f"{path}: the model has no outputs")
    for k, index in enumerate(graph.inputs):
        index_ok(index, f"model input {k}")
    for k, index in enumerate(graph.outputs):
        index_ok(index, f"model output {k}")
    if len(set(graph.inputs)) != len(graph.inputs) or len(set(graph.outputs)) != len(graph.outputs):
        raise ModelError(f"{path}: a tensor is listed twice among the model's inputs or outputs")

    # Tensors are defined by the model inputs, constants, or exactly one earlier operator:
    # this also rules out cycles (an op reading an output of itself or of a later op).
    defined = set(graph.inputs)
    for index in graph.inputs:
        tensor = graph.tensors[index]
        if tensor.is_constant:
            raise ModelError(f"{path}: model input {_display(tensor.name)} has constant data")
    for op in graph.operators:
        where = f"{path}: operator {op.index} {op.opcode}"
        if not op.outputs:
            raise ModelError(f"{where} has no outputs")
        for k, index in enumerate(op.inputs):
            index_ok(index, f"operator {op.index} {op.opcode} input {k}", optional=True)
        for k, index in enumerate(op.outputs):
            index_ok(index, f"operator {op.index} {op.opcode} output {k}")
        data_inputs = [i for i in op.inputs if i != -1]
        needed = _MIN_INPUTS.get(op.opcode, 1)
        if len(data_inputs) < needed or not op.inputs or op.inputs[0] == -1:
            raise ModelError(f"{where} has {len(data_inputs)} inputs; it needs at least {needed}")
        for index in op.inputs:
            if index == -1 or graph.tensors[index].is_constant:
                continue
            if index not in defined:
                later = any(index in later_op.outputs for later_op in graph.operators[op.index:])
                raise ModelError(
                    f"{where} reads tensor {index} {_display(graph.tensors[index].name)} "
                    + ("before an operator produces it (the graph has a cycle or is out of order)"
                       if later else "which no operator produces and which is not a model input"))
        data = op.inputs[:2] if op.opcode == "ADD" else op.inputs[:1]
        if op.opcode in _MIN_INPUTS and all(i == -1 or graph.tensors[i].is_constant for i in data):
            # The whole op would be constant-folded at compile time, through a JIT that cannot
            # call our kernels (a segfault in TVM); no converter emits this, so refuse it.
            raise ModelError(f"{where}: its data input {_display(graph.tensors[op.inputs[0]].name)} is a "
                             "constant; operators on constants only are not supported")
        for index in op.outputs:
            tensor = graph.tensors[index]
            if index in defined or tensor.is_constant:
                raise ModelError(f"{where} writes tensor {index} {_display(tensor.name)}, which is "
                                 "already a model input, a constant or another operator's output")
            defined.add(index)
        if op.opcode in _NEEDS_OPTIONS and not op.options:
            raise ModelError(f"{where} has no options table")
        for option in _POSITIVE_OPTIONS:
            value = op.options.get(option)
            if value is not None and not 1 <= int(value) <= 65535:
                raise ModelError(f"{where} has {option} = {value}; it must be between 1 and 65535")
        if "Padding" in op.options and op.options["Padding"] not in ("SAME", "VALID"):
            raise ModelError(f"{where} has an unknown padding kind {op.options['Padding']}")
        beta = op.options.get("Beta")
        if beta is not None and not (math.isfinite(beta) and beta > 0):
            raise ModelError(f"{where} has softmax beta {beta}; it must be finite and positive")
    for index in graph.outputs:
        if index not in defined and not graph.tensors[index].is_constant:
            raise ModelError(f"{path}: model output {_display(graph.tensors[index].name)} is produced by no operator")


# ---------------------------------------------------------------------------------------------
# ONNX

_ONNX_DTYPES = {1: "float32", 2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 6: "int32", 7: "int64",
                9: "bool", 10: "float16", 11: "float64", 12: "uint32", 13: "uint64"}


def _onnx_array(init, where: str):
    """An initializer's values as numpy, after checking its size against its dims and type."""
    from onnx import numpy_helper

    dtype = _ONNX_DTYPES.get(init.data_type)
    if dtype is None:
        raise ModelError(f"{where} has an unsupported element type ({init.data_type})")
    nbytes = check_tensor_size(list(init.dims) or [1], dtype, where) if list(init.dims) else ITEMSIZE[dtype]
    if init.data_location == 1:  # EXTERNAL
        raise ModelError(f"{where} stores its data in an external file; only self-contained models are supported")
    if init.HasField("raw_data") and len(init.raw_data) != nbytes:
        raise ModelError(f"{where} holds {len(init.raw_data)} bytes, but dims {list(init.dims)} of "
                         f"{dtype} need {nbytes}")
    try:
        return numpy_helper.to_array(init)
    except Exception as err:  # numpy_helper raises anything on inconsistent data
        raise ModelError(f"{where}: its data does not match dims {list(init.dims)} ({type(err).__name__})") from None


def check_onnx_structure(model, path) -> None:
    """Check the structure of an ONNX ModelProto (after ``onnx.checker``), before TVM's importer.

    Raises
    ------
    ModelError
        Naming the file, the node or tensor and the broken rule.
    """
    graph = model.graph
    if len(graph.node) > MAX_OPERATORS or len(graph.initializer) > MAX_TENSORS:
        raise ModelError(f"{path}: {len(graph.node)} nodes and {len(graph.initializer)} initializers; at most "
                         f"{MAX_OPERATORS} and {MAX_TENSORS} are supported")
    if len(graph.output) == 0:
        raise ModelError(f"{path}: the model has no outputs")
    values = {}
    for init in graph.initializer:
        where = f"{path}: initializer {_display(init.name)}"
        values[init.name] = _onnx_array(init, where)
    for value in list(graph.input) + list(graph.output) + list(graph.value_info):
        t = value.type.tensor_type
        dims = [d.dim_value for d in t.shape.dim if d.HasField("dim_value")]
        if len(dims) == len(t.shape.dim) and dims:
            check_tensor_size(dims, _ONNX_DTYPES.get(t.elem_type, "float32"),
                              f"{path}: tensor {_display(value.name)}")
    defined = {v.name for v in graph.input} | set(values)
    for index, node in enumerate(graph.node):
        where = f"{path}: node {index} {node.op_type} {_display(node.name or (node.output[0] if node.output else ''))}"
        for name in node.input:
            if name and name not in defined:
                raise ModelError(f"{where} reads {_display(name)}, which is not produced before it "
                                 "(undefined, or the graph has a cycle)")
        for name in node.output:
            if name in defined:
                raise ModelError(f"{where} writes {_display(name)}, which is already defined")
            defined.add(name)
        attrs = {a.name: a for a in node.attribute}
        for key in ("strides", "kernel_shape", "dilations"):
            if key in attrs and any(v < 1 or v > 65535 for v in attrs[key].ints):
                raise ModelError(f"{where} has {key} {list(attrs[key].ints)}; each must be between 1 and 65535")
        if "pads" in attrs and any(v < 0 or v > 65535 for v in attrs["pads"].ints):
            raise ModelError(f"{where} has pads {list(attrs['pads'].ints)}; each must be between 0 and 65535")
        if "group" in attrs and not 1 <= attrs["group"].i <= 65535:
            raise ModelError(f"{where} has group {attrs['group'].i}; it must be between 1 and 65535")
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            if len(node.input) < 2:
                raise ModelError(f"{where} has no scale input")
            scale = values.get(node.input[1])
            if scale is None:
                raise ModelError(f"{where}: its scale {_display(node.input[1])} is not a constant initializer")
            zero_point = values.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
            if len(node.input) > 2 and node.input[2] and zero_point is None:
                raise ModelError(f"{where}: its zero point {_display(node.input[2])} is not a constant initializer")
            dtype = str(zero_point.dtype) if zero_point is not None else "uint8"
            axis = attrs["axis"].i if "axis" in attrs else 1
            data = values.get(node.input[0])
            shape = data.shape if data is not None else (1,) * (axis + 1 if axis >= 0 else 1)
            if scale.size > 1 and data is not None and not -len(shape) <= axis < len(shape):
                raise ModelError(f"{where} has axis {axis} for a tensor of rank {len(shape)}")
            check_quantization(scale.astype(np.float64), zero_point, dtype, shape,
                               axis % len(shape) if scale.size > 1 and data is not None else 0, where)
    for value in graph.output:
        if value.name not in defined:
            raise ModelError(f"{path}: model output {_display(value.name)} is produced by no node")


# ---------------------------------------------------------------------------------------------
# After the import: the shapes TVM inferred


def check_relax_shapes(mod, path) -> None:
    """Refuse an imported model in which an inferred tensor shape is empty, negative or too
    large -- e.g. a kernel or pooling window larger than its padded input. File-level checks
    cannot see these: the importer computes them from shapes, strides and padding."""
    from tvm import relax

    problems = []

    def shape_of(ty):
        if isinstance(ty, relax.TupleType):
            for field in ty.fields:
                shape_of(field)
            return
        shape = getattr(ty, "shape", None)
        values = getattr(shape, "values", None)
        if values is None:
            return
        dims = [int(v.value) if hasattr(v, "value") else None for v in values]
        if any(d is not None and d <= 0 for d in dims):
            problems.append(dims)
        elif all(d is not None for d in dims):
            count = math.prod(dims)
            if count > MAX_TENSOR_BYTES:
                problems.append(dims)

    def visit(expr):
        if isinstance(expr, relax.Var) and not problems:
            shape_of(expr.ty)

    for func in mod.functions.values():
        if isinstance(func, relax.Function):
            relax.analysis.post_order_visit(func, visit)
        if problems:
            raise ModelError(f"{path}: an operator's output shape {problems[0]} is empty, negative or "
                             f"larger than {MAX_TENSOR_BYTES} elements (a kernel or window larger than "
                             "its padded input, or inconsistent shapes)")
