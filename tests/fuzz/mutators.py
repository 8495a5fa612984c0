"""Mutators for the front-door fuzzer: structure-aware (TFLite flatbuffer object tree, ONNX
protobuf) and plain byte mutations. Each takes a ``random.Random`` and the seed model's bytes and
returns ``(mutated bytes, description)``; everything is deterministic in the Random's state.

TFLite models are unpacked with the object API of the TFLite schema shipped in ``tflite-micro``
(``ModelT``), changed field by field (shapes, buffer and opcode indices, types, scales, zero points,
quantized dimensions, operator inputs -- dangling, cyclic, self-referencing --, options such as
strides and padding, names) and packed again, so the result is a well-formed flatbuffer with
nonsense inside, which is what reaches the deep stages; the byte mutators cover broken framing.
"""

from __future__ import annotations

import random

import numpy as np

INT32 = (-(2**31), 2**31 - 1)
INTERESTING_INTS = [0, 1, -1, 2, 3, 7, 8, 16, 255, 256, 65535, 65536, 2**31 - 1, -(2**31), 2**20, 46341]
INTERESTING_FLOATS = [0.0, -0.0, -1.0, float("nan"), float("inf"), float("-inf"), 1e-45, 1e-38,
                      3.4e38, 1e-10, 1e10, 0.5, 2.0]
HOSTILE_NAMES = ["../../etc/passwd", "a\"b'c", "$(touch /tmp/pwned)", "*/ int x; /*", "int", "NULL",
                 "output", "input", "r\u00e9seau\u2603", "nul\x00byte", "new\nline", "x" * 10000, "",
                 "a", "A", "__attribute__", "#define", "\\", "tvmgen_default_run"]


def _schema():
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

    return schema


def unpack_tflite(raw: bytes):
    schema = _schema()
    return schema.ModelT.InitFromPackedBuf(bytearray(raw), 0)


def pack_tflite(model) -> bytes:
    import flatbuffers

    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _int(rng: random.Random, around: int | None = None) -> int:
    if around is not None and rng.random() < 0.4:
        return max(INT32[0], min(INT32[1], around + rng.choice([-2, -1, 1, 2, 100])))
    return rng.choice(INTERESTING_INTS)


def _as_list(v):
    return [] if v is None else [x.item() if hasattr(x, "item") else x for x in list(v)]


def _mutate_vector(rng, values, around_max=None):
    values = _as_list(values)
    if values and rng.random() < 0.8:
        i = rng.randrange(len(values))
        values[i] = _int(rng, around_max if around_max is not None else values[i])
    elif values and rng.random() < 0.5:
        del values[rng.randrange(len(values))]
    else:
        values.append(_int(rng, around_max))
    return values


def _tflite_tree_mutation(rng: random.Random, model) -> str:
    """One structural change of the unpacked model; returns what it did."""
    graph = model.subgraphs[0]
    tensors, ops = graph.tensors or [], graph.operators or []
    n = len(tensors)
    kind = rng.choice(["shape", "type", "buffer", "scale", "zero_point", "qdim", "op_input",
                       "op_output", "cycle", "opcode_index", "builtin_code", "option", "buffer_data",
                       "graph_io", "name", "same_names", "drop_op", "signature", "const_input"])
    if kind == "shape" and tensors:
        t = rng.choice(tensors)
        t.shape = _mutate_vector(rng, t.shape)
        if rng.random() < 0.3:
            t.shape = [rng.choice([2**16, 2**31 - 1, 46341, 100000])] * rng.randint(1, 4)
        return f"shape of a tensor -> {t.shape[:6]}"
    if kind == "signature" and tensors:
        t = rng.choice(tensors)
        t.shapeSignature = [-1] + _as_list(t.shape)[1:] if rng.random() < 0.5 else _mutate_vector(rng, t.shape)
        return "shape signature"
    if kind == "type" and tensors:
        t = rng.choice(tensors)
        t.type = rng.randrange(0, 24)
        return f"tensor type -> {t.type}"
    if kind == "buffer" and tensors:
        t = rng.choice(tensors)
        t.buffer = _int(rng, len(model.buffers or []))
        if t.buffer < 0 or t.buffer > 2**31 - 1:
            t.buffer = len(model.buffers or []) + 5
        return f"tensor buffer index -> {t.buffer}"
    if kind in ("scale", "zero_point", "qdim") and tensors:
        quantized = [t for t in tensors if t.quantization is not None and t.quantization.scale is not None]
        t = rng.choice(quantized or tensors)
        schema = _schema()
        q = t.quantization or schema.QuantizationParametersT()
        t.quantization = q
        if kind == "scale":
            scale = [float(x) for x in _as_list(q.scale)] or [1.0]
            r = rng.random()
            if r < 0.6:
                scale[rng.randrange(len(scale))] = rng.choice(INTERESTING_FLOATS)
            elif r < 0.8:
                scale = scale + [0.1] * rng.randint(1, 3)
            else:
                scale = scale[:-1]
            q.scale = scale
            return f"scale -> {scale[:4]}"
        if kind == "zero_point":
            zp = _as_list(q.zeroPoint) or [0]
            zp[rng.randrange(len(zp))] = rng.choice([128, -129, 255, 300, -200, 2**40, -(2**40), 127, -128])
            q.zeroPoint = zp
            return f"zero point -> {zp[:4]}"
        q.quantizedDimension = rng.choice([-1, 1, 3, 4, 7, 2**31 - 1])
        return f"quantized dimension -> {q.quantizedDimension}"
    if kind in ("op_input", "op_output") and ops:
        op = rng.choice(ops)
        field = "inputs" if kind == "op_input" else "outputs"
        setattr(op, field, _mutate_vector(rng, getattr(op, field), around_max=n))
        return f"operator {field} -> {getattr(op, field)[:6]}"
    if kind == "cycle" and len(ops) >= 1:
        i = rng.randrange(len(ops))
        j = rng.randrange(i, len(ops))  # an op reading its own or a later op's output
        src = _as_list(ops[j].outputs)
        inputs = _as_list(ops[i].inputs)
        if src and inputs:
            inputs[0] = src[0]
            ops[i].inputs = inputs
        return f"operator {i} reads the output of operator {j}"
    if kind == "const_input" and ops:
        op = rng.choice(ops)
        consts = [k for k, t in enumerate(tensors) if t.buffer and model.buffers[t.buffer].data is not None
                  and len(model.buffers[t.buffer].data)] if model.buffers else []
        inputs = _as_list(op.inputs)
        if consts and inputs:
            inputs[0] = rng.choice(consts)
            op.inputs = inputs
        return "operator data input -> a constant"
    if kind == "opcode_index" and ops:
        op = rng.choice(ops)
        op.opcodeIndex = rng.choice([len(model.operatorCodes or []), 2**31 - 1, 0, 1, 2])
        return f"opcode index -> {op.opcodeIndex}"
    if kind == "builtin_code" and model.operatorCodes:
        code = rng.choice(model.operatorCodes)
        code.builtinCode = rng.randrange(0, 210)
        code.deprecatedBuiltinCode = min(code.builtinCode, 127)
        return f"builtin code -> {code.builtinCode}"
    if kind == "option" and ops:
        op = rng.choice(ops)
        opts = op.builtinOptions
        if opts is None:
            return "no options"
        fields = [f for f in vars(opts) if not f.startswith("_")]
        if not fields:
            return "empty options"
        field = rng.choice(fields)
        value = getattr(opts, field)
        if isinstance(value, float):
            setattr(opts, field, rng.choice(INTERESTING_FLOATS))
        elif isinstance(value, bool):
            setattr(opts, field, not value)
        elif isinstance(value, int):
            new = _int(rng, value)
            if field in ("padding", "fusedActivationFunction", "weightsFormat") or field.endswith("Type"):
                new = rng.randrange(0, 128)  # byte-sized enums
            setattr(opts, field, new)
        return f"option {field} -> {getattr(opts, field)!r}"
    if kind == "buffer_data" and model.buffers:
        with_data = [b for b in model.buffers if b.data is not None and len(b.data)]
        if with_data:
            b = rng.choice(with_data)
            data = np.asarray(b.data, dtype=np.uint8)
            r = rng.random()
            if r < 0.4:
                b.data = data[: rng.randrange(len(data))]
            elif r < 0.6:
                b.data = np.concatenate([data, np.zeros(rng.randint(1, 64), np.uint8)])
            else:
                data = data.copy()
                data[rng.randrange(len(data))] = rng.randrange(256)
                b.data = data
        return "buffer data"
    if kind == "graph_io":
        field = rng.choice(["inputs", "outputs"])
        setattr(graph, field, _mutate_vector(rng, getattr(graph, field), around_max=n))
        return f"subgraph {field} -> {getattr(graph, field)[:6]}"
    if kind == "name" and tensors:
        rng.choice(tensors).name = rng.choice(HOSTILE_NAMES).encode("utf-8")
        return "hostile tensor name"
    if kind == "same_names" and tensors:
        for t in tensors:
            t.name = b"x"
        return "all tensors share one name"
    if kind == "drop_op" and len(ops) > 1:
        del ops[rng.randrange(len(ops))]
        return "dropped an operator"
    return "no-op"


def mutate_tflite(rng: random.Random, raw: bytes) -> tuple[bytes, str]:
    if rng.random() < 0.25:
        return mutate_bytes(rng, raw)
    model = unpack_tflite(raw)
    done = [_tflite_tree_mutation(rng, model) for _ in range(rng.choice([1, 1, 1, 2, 3]))]
    try:
        return pack_tflite(model), "; ".join(done)
    except Exception:  # a value the builder cannot encode (e.g. out of range): mutate bytes instead
        return mutate_bytes(rng, raw)


def mutate_bytes(rng: random.Random, raw: bytes) -> tuple[bytes, str]:
    data = bytearray(raw)
    kind = rng.choice(["flip", "byte", "truncate", "int32", "splice", "zero"])
    if kind == "flip":
        for _ in range(rng.randint(1, 8)):
            i = rng.randrange(len(data))
            data[i] ^= 1 << rng.randrange(8)
    elif kind == "byte":
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] = rng.choice([0, 0xFF, 0x7F, 0x80, rng.randrange(256)])
    elif kind == "truncate":
        data = data[: rng.randrange(len(data))]
    elif kind == "int32" and len(data) > 8:
        i = rng.randrange(0, len(data) - 4) & ~3
        data[i:i + 4] = int(rng.choice(INTERESTING_INTS) & 0xFFFFFFFF).to_bytes(4, "little")
    elif kind == "splice" and len(data) > 16:
        i, j = sorted(rng.sample(range(len(data)), 2))
        k = rng.randrange(len(data) - (j - i)) if len(data) > j - i else 0
        data[k:k + (j - i)] = raw[i:j]
    else:
        i = rng.randrange(len(data))
        data[i:i + rng.randint(1, 64)] = bytes(min(64, len(data) - i))
    return bytes(data), f"bytes: {kind}"


def mutate_onnx(rng: random.Random, raw: bytes) -> tuple[bytes, str]:
    """Protobuf-aware changes of an ONNX model: dims, initializer data and types, scales and
    zero points, attributes (strides, pads, kernel_shape, group, axis), dangling and cyclic node
    inputs, element types, names."""
    if rng.random() < 0.25:
        return mutate_bytes(rng, raw)
    import onnx
    from onnx import numpy_helper

    model = onnx.load_from_string(raw)
    graph = model.graph
    kind = rng.choice(["dims", "init_data", "init_type", "scale", "zero_point", "attr", "dangling",
                       "cycle", "elem_type", "io_dims", "name", "drop_node"])
    inits = list(graph.initializer)
    nodes = list(graph.node)
    if kind == "dims" and inits:
        init = rng.choice(inits)
        dims = list(init.dims) or [1]
        dims[rng.randrange(len(dims))] = rng.choice([0, -1, 2**31 - 1, 2**40, 3, 65536])
        del init.dims[:]
        init.dims.extend(dims)
        return model.SerializeToString(), f"initializer dims -> {dims}"
    if kind == "init_data" and inits:
        init = rng.choice(inits)
        if init.raw_data:
            init.raw_data = init.raw_data[: rng.randrange(len(init.raw_data))]
        return model.SerializeToString(), "initializer data truncated"
    if kind == "init_type" and inits:
        rng.choice(inits).data_type = rng.choice([0, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 16, 99])
        return model.SerializeToString(), "initializer type"
    if kind in ("scale", "zero_point"):
        qnodes = [n for n in nodes if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
        if qnodes:
            node = rng.choice(qnodes)
            slot = 1 if kind == "scale" else 2
            if len(node.input) > slot:
                target = [i for i in inits if i.name == node.input[slot]]
                if target:
                    arr = numpy_helper.to_array(target[0]).copy()
                    flat = arr.reshape(-1)
                    if flat.size:
                        if kind == "scale":
                            flat[rng.randrange(flat.size)] = rng.choice(INTERESTING_FLOATS)
                        else:
                            info = np.iinfo(arr.dtype)
                            flat[rng.randrange(flat.size)] = rng.choice([info.min, info.max, 0, 1])
                    if rng.random() < 0.2:
                        arr = np.concatenate([arr.reshape(-1), arr.reshape(-1)])
                    target[0].CopyFrom(numpy_helper.from_array(arr, target[0].name))
        return model.SerializeToString(), kind
    if kind == "attr" and nodes:
        node = rng.choice(nodes)
        if node.attribute:
            attr = rng.choice(list(node.attribute))
            if attr.ints:
                attr.ints[rng.randrange(len(attr.ints))] = rng.choice([0, -1, -5, 2**31 - 1, 100000, 7])
            elif attr.type == onnx.AttributeProto.INT:
                attr.i = rng.choice([0, -1, 2**31 - 1, 5, -7])
            elif attr.type == onnx.AttributeProto.FLOAT:
                attr.f = rng.choice(INTERESTING_FLOATS)
            return model.SerializeToString(), f"attribute {attr.name}"
    if kind == "dangling" and nodes:
        node = rng.choice(nodes)
        if node.input:
            node.input[rng.randrange(len(node.input))] = rng.choice(["nowhere", "", "x" * 300])
        return model.SerializeToString(), "dangling node input"
    if kind == "cycle" and len(nodes) > 1:
        i = rng.randrange(len(nodes) - 1)
        j = rng.randrange(i, len(nodes))
        if nodes[i].input and nodes[j].output:
            nodes[i].input[0] = nodes[j].output[0]
        return model.SerializeToString(), f"node {i} reads node {j}'s output"
    if kind == "elem_type":
        value = rng.choice(list(graph.input) + list(graph.output))
        value.type.tensor_type.elem_type = rng.choice([0, 2, 3, 5, 6, 7, 10, 11, 16])
        return model.SerializeToString(), "graph I/O element type"
    if kind == "io_dims":
        value = rng.choice(list(graph.input) + list(graph.output))
        dims = value.type.tensor_type.shape.dim
        if dims:
            dims[rng.randrange(len(dims))].dim_value = rng.choice([0, 2**31 - 1, 2**40, 5, 1])
        return model.SerializeToString(), "graph I/O dims"
    if kind == "name":
        value = rng.choice(list(graph.input) + list(graph.output))
        old, new = value.name, rng.choice(HOSTILE_NAMES).replace("\x00", "")
        for node in nodes:
            for k, name in enumerate(node.input):
                if name == old:
                    node.input[k] = new
            for k, name in enumerate(node.output):
                if name == old:
                    node.output[k] = new
        value.name = new
        return model.SerializeToString(), "hostile value name"
    if kind == "drop_node" and len(nodes) > 1:
        del graph.node[rng.randrange(len(nodes))]
        return model.SerializeToString(), "dropped a node"
    return mutate_bytes(rng, raw)
