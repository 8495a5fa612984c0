"""Structural validation before TVM (dtmm_tvm/frontend/structure.py): each broken rule is one
clear ModelError naming the file and the rule, raised before anything large is allocated and
before TVM's importer runs (so none of its warnings follow our line)."""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import mutators  # noqa: E402

from dtmm_tvm.errors import DTMMError, ModelError  # noqa: E402
from dtmm_tvm.frontend.loader import load_model  # noqa: E402
from dtmm_tvm.frontend.structure import MAX_TENSOR_BYTES  # noqa: E402

FIXTURES = HERE.parent / "fixtures"
CONV = FIXTURES / "ops" / "conv_3x3_same_s2_relu6.tflite"
ADD = FIXTURES / "ops" / "misc_add.tflite"
FC = FIXTURES / "ops" / "conv_fc_per_tensor_relu6.tflite"


def edited(tmp_path, seed: Path, edit) -> Path:
    model = mutators.unpack_tflite(seed.read_bytes())
    edit(model, model.subgraphs[0])
    path = tmp_path / f"edited{seed.suffix}"
    path.write_bytes(mutators.pack_tflite(model))
    return path


def first_quantized(graph, constant=False):
    return next(t for t in graph.tensors if t.quantization is not None and t.quantization.scale is not None
                and len(t.quantization.scale) >= 1)


def weights(model, graph):
    op = graph.operators[0]
    return graph.tensors[op.inputs[1]]


CASES = {
    "huge tensor": (CONV, lambda m, g: setattr(g.tensors[g.inputs[0]], "shape", [1, 46341, 46341, 1]),
                    "bigger than any supported board"),
    "2^31 elements": (CONV, lambda m, g: setattr(g.tensors[g.operators[0].outputs[0]], "shape", [2**31 - 1]),
                      "bigger than any supported board"),
    "zero-size dim": (CONV, lambda m, g: setattr(g.tensors[g.inputs[0]], "shape", [1, 0, 4, 1]), "zero-size"),
    "negative dim": (CONV, lambda m, g: setattr(g.tensors[g.inputs[0]], "shape", [1, -3, 4, 1]), "negative"),
    "nan scale": (CONV, lambda m, g: setattr(first_quantized(g).quantization, "scale", [float("nan")]),
                  "finite, positive"),
    "negative scale": (CONV, lambda m, g: setattr(first_quantized(g).quantization, "scale", [-0.5]),
                       "finite, positive"),
    "zero scale": (CONV, lambda m, g: setattr(first_quantized(g).quantization, "scale", [0.0]), "finite, positive"),
    "zero point out of range": (CONV, lambda m, g: setattr(first_quantized(g).quantization, "zeroPoint", [300]),
                                "outside"),
    "per-channel count": (CONV, lambda m, g: (setattr(weights(m, g).quantization, "scale",
                                                      list(weights(m, g).quantization.scale) + [0.1]),
                                              setattr(weights(m, g).quantization, "zeroPoint",
                                                      list(weights(m, g).quantization.zeroPoint) + [0])),
                          "scales for"),
    "dangling input": (CONV, lambda m, g: setattr(g.operators[0], "inputs", [999, *g.operators[0].inputs[1:]]),
                       "refers to tensor 999"),
    "dangling model output": (CONV, lambda m, g: setattr(g, "outputs", [len(g.tensors) + 3]), "refers to tensor"),
    "cycle": (ADD, lambda m, g: setattr(g.operators[0], "inputs", [g.operators[0].outputs[0],
                                                                   *g.operators[0].inputs[1:]]),
              "before an operator produces it"),
    "buffer size": (CONV, lambda m, g: setattr(m.buffers[weights(m, g).buffer], "data",
                                               np.asarray(m.buffers[weights(m, g).buffer].data)[:-3]),
                    "constant buffer holds"),
    "buffer index": (CONV, lambda m, g: setattr(g.tensors[0], "buffer", len(m.buffers) + 7), "buffers"),
    "opcode index": (CONV, lambda m, g: setattr(g.operators[0], "opcodeIndex", 57), "operator code 57"),
    "zero stride": (CONV, lambda m, g: setattr(g.operators[0].builtinOptions, "strideH", 0), "StrideH"),
    "negative stride": (CONV, lambda m, g: setattr(g.operators[0].builtinOptions, "strideW", -2), "StrideW"),
    "constant data input (TVM JIT segfault)": (
        FC, lambda m, g: setattr(g.operators[-1], "inputs", [g.operators[-1].inputs[1], *g.operators[-1].inputs[1:]]),
        "is a constant"),
    "tensor written twice": (ADD, lambda m, g: setattr(g.operators[0], "outputs", [g.inputs[0]]), "writes tensor"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_broken_structure_is_one_clear_error(tmp_path, capfd, case):
    seed, edit, message = CASES[case]
    path = edited(tmp_path, seed, edit)
    started = time.monotonic()
    with pytest.raises(ModelError) as info:
        load_model(path)
    assert time.monotonic() - started < 10
    text = str(info.value)
    assert message in text and str(path) in text and "\n" not in text, text
    # Refused before TVM's importer: none of its warnings follow our line.
    assert "Warning" not in capfd.readouterr().err


def test_limit_is_the_biggest_boards_memory():
    from dtmm_tvm.micro.boards import BOARDS

    assert MAX_TENSOR_BYTES == max(b.flash_bytes + b.ram_bytes for b in BOARDS.values())


def test_onnx_broken_structure(tmp_path):
    import onnx

    seed = FIXTURES / "models" / "onnx_conv_qdq.onnx"
    model = onnx.load(seed)
    scale = next(n for n in model.graph.node if n.op_type == "DequantizeLinear").input[1]
    init = next(i for i in model.graph.initializer if i.name == scale)
    from onnx import numpy_helper

    arr = numpy_helper.to_array(init).copy()
    arr.reshape(-1)[0] = -math.inf
    init.CopyFrom(numpy_helper.from_array(arr, scale))
    path = tmp_path / "bad.onnx"
    path.write_bytes(model.SerializeToString())
    with pytest.raises(DTMMError, match="finite, positive"):
        load_model(path)
    model = onnx.load(seed)
    conv = next(n for n in model.graph.node if n.op_type == "Conv")
    for attr in list(conv.attribute):
        if attr.name == "strides":
            conv.attribute.remove(attr)
    conv.attribute.append(onnx.helper.make_attribute("strides", [0, 1]))
    path.write_bytes(model.SerializeToString())
    with pytest.raises(DTMMError, match="strides"):
        load_model(path)
