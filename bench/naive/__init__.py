"""Column (c) of the microbenchmarks: a naive C loop nest with TFLM's integer arithmetic.

:func:`build_naive_artifact` turns a one-operator int8 .tflite model (CONV_2D,
DEPTHWISE_CONV_2D or FULLY_CONNECTED) into a model artifact with the same layout and
``tvmgen_default.h`` interface as the compiler's (docs/architecture.md), so
:func:`dtmm_tvm.micro.run_artifact` builds it with the same project template and gcc flags
and measures it the same way. The kernels (``*_s8.c`` next to this file) are TFLM's reference
integer kernels as plain C: runtime layer parameters, no im2col, no SIMD.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import time
from pathlib import Path

import numpy as np

from dtmm_tvm.codegen.aot import TensorInfo, _constants_c, _header
from dtmm_tvm.errors import UnsupportedOpError
from dtmm_tvm.frontend.tflite_reader import read_tflite
from dtmm_tvm.quant.conv import conv_layer_from_tflite

HERE = Path(__file__).resolve().parent

_KERNELS = {
    "CONV_2D": ("conv_s8.c", "naive_conv_s8", "conv2d"),
    "DEPTHWISE_CONV_2D": ("depthwise_conv_s8.c", "naive_depthwise_conv_s8", "depthwise_conv2d"),
    "FULLY_CONNECTED": ("fully_connected_s8.c", "naive_fully_connected_s8", "fully_connected"),
}
_PARAM_FIELDS = ("in_h", "in_w", "in_c", "out_h", "out_w", "out_c", "k_h", "k_w", "stride_h",
                 "stride_w", "dilation_h", "dilation_w", "pad_top", "pad_left", "depth_multiplier",
                 "input_offset", "filter_offset", "output_offset", "act_min", "act_max")


def _layer(model_path: Path):
    graph = read_tflite(model_path)
    ops = [op for op in graph.operators if op.opcode not in ("QUANTIZE", "DEQUANTIZE", "RESHAPE")]
    if len(ops) != 1 or ops[0].opcode not in _KERNELS:
        raise UnsupportedOpError(f"{model_path}: the naive baseline takes a model of exactly one "
                                 f"CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED, got "
                                 f"{[op.opcode for op in graph.operators]}")
    op = ops[0]
    return graph, op, conv_layer_from_tflite(graph, op)


def _params(layer) -> tuple[dict, dict]:
    p = layer.params
    if layer.op == "FULLY_CONNECTED":
        n, k = p.input_shape
        o = p.weight_shape[0]
        values = dict(in_h=n, in_w=1, in_c=k, out_h=n, out_w=1, out_c=o, k_h=1, k_w=1,
                      stride_h=1, stride_w=1, dilation_h=1, dilation_w=1, pad_top=0, pad_left=0,
                      depth_multiplier=1, input_offset=-p.input_zero_point,
                      filter_offset=-p.weight_zero_point, output_offset=p.output_zero_point,
                      act_min=p.act_min, act_max=p.act_max)
        macs = n * o * k
        info = {"op": "fully_connected", "input_shape": list(p.input_shape),
                "output_shape": list(p.output_shape), "macs": macs}
    else:
        _, h, w, c = p.input_shape
        _, oh, ow, oc = p.output_shape
        kh, kw = p.kernel_size
        values = dict(in_h=h, in_w=w, in_c=c, out_h=oh, out_w=ow, out_c=oc, k_h=kh, k_w=kw,
                      stride_h=p.strides[0], stride_w=p.strides[1], dilation_h=p.dilation[0],
                      dilation_w=p.dilation[1], pad_top=p.padding[0], pad_left=p.padding[1],
                      depth_multiplier=p.depth_multiplier, input_offset=-p.input_zero_point,
                      filter_offset=0, output_offset=p.output_zero_point, act_min=p.act_min,
                      act_max=p.act_max)
        info = {"op": "depthwise_conv2d" if p.depthwise else "conv2d",
                "input_shape": list(p.input_shape), "output_shape": list(p.output_shape),
                "kernel": [kh, kw], "strides": list(p.strides), "macs": p.macs}
    return values, info


def build_naive_artifact(model_path: str | Path, out_tar: str | Path) -> dict:
    """Write the naive-loop artifact of a one-operator int8 model; return its metadata."""
    model_path = Path(model_path)
    graph, op, layer = _layer(model_path)
    src_file, symbol, _ = _KERNELS[layer.op]
    values, info = _params(layer)
    x_t = graph.tensor(graph.inputs[0])
    y_t = graph.tensor(graph.outputs[0])
    if x_t.dtype != "int8" or y_t.dtype != "int8":
        raise UnsupportedOpError(f"{model_path}: the naive baseline needs int8 input and output")
    x = TensorInfo(x_t.name, "input", tuple(x_t.shape), "int8", int(np.prod(x_t.shape)))
    y = TensorInfo(y_t.name, "output", tuple(y_t.shape), "int8", int(np.prod(y_t.shape)))

    consts = {"naive_weights": np.ascontiguousarray(layer.weight, dtype=np.int8),
              "naive_bias": layer.bias.astype(np.int32),
              "naive_multiplier": layer.multiplier.astype(np.int32),
              "naive_shift": layer.shift.astype(np.int32)}
    runner = [
        "/* Naive baseline runner: one call of a TFLM-style reference loop nest. */",
        "#include <stdint.h>",
        '#include "tvmgen_default.h"',
        '#include "naive_common.h"',
        "",
    ]
    for name, arr in consts.items():
        ctype = "int8_t" if arr.dtype == np.int8 else "int32_t"
        runner.append(f"extern const {ctype} {name}[{max(1, arr.size)}];")
    runner += [
        f"void {symbol}(const naive_params_t* p, const int8_t* input, const int8_t* filter,",
        "    const int32_t* bias, const int32_t* multiplier, const int32_t* shift, int8_t* output);",
        "",
        "static const naive_params_t naive_params = {",
        *[f"  .{k} = {int(values[k])}," for k in _PARAM_FIELDS],
        "};",
        "",
        "int32_t tvmgen_default_run(struct tvmgen_default_inputs* inputs,",
        "                           struct tvmgen_default_outputs* outputs) {",
        f"  {symbol}(&naive_params, (const int8_t*)inputs->input, naive_weights,",
        f"      {'naive_bias' if layer.has_bias else '0'}, naive_multiplier, naive_shift,",
        "      (int8_t*)outputs->output);",
        "  return 0;",
        "}",
        "",
    ]
    files = {
        "codegen/host/include/tvmgen_default.h": _header([x], [y]),
        "codegen/host/include/naive_common.h": (HERE / "naive_common.h").read_text(),
        "codegen/host/src/default_lib0.c": (HERE / src_file).read_text(),
        "codegen/host/src/default_lib1.c": _constants_c(consts),
        "codegen/host/src/default_lib2.c": "\n".join(runner),
    }
    weight_bytes = int(layer.weight.nbytes)
    raw = model_path.read_bytes()
    metadata = {
        "schema": "dtmm-mlf/1",
        "model": {"name": model_path.stem, "source": model_path.name,
                  "sha256": hashlib.sha256(raw).hexdigest(), "format": "tflite",
                  "arithmetic": "int8"},
        "target": "naive-c", "mode": "naive",
        "inputs": [{**x.to_json(), "quantization": {"scale": float(x_t.scale[0]),
                                                    "zero_point": int(x_t.zero_point[0])}}],
        "outputs": [{**y.to_json(), "quantization": {"scale": float(y_t.scale[0]),
                                                     "zero_point": int(y_t.zero_point[0])}}],
        "arena": {"bytes": 0, "buffers": []},
        "constants_bytes": int(sum(a.nbytes for a in consts.values())),
        "functions": [{"name": symbol, "c_name": symbol, "calls": 1, "scratch_bytes": 0}],
        "layers": [{**info, "name": f"{info['op']}_0", "function": symbol, "format": "dense",
                    "dense_weight_bytes": weight_bytes, "stored_weight_bytes": weight_bytes,
                    "kept_macs": info["macs"]}],
        "entry": "tvmgen_default_run",
    }
    members = {"metadata.json": json.dumps(metadata, indent=2) + "\n", **files}
    out_tar = Path(out_tar)
    out_tar.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(out_tar, "w") as tar:
        now = int(time.time())
        for path, text in members.items():
            data = text.encode()
            ti = tarfile.TarInfo(path)
            ti.size, ti.mtime, ti.mode = len(data), now, 0o644
            tar.addfile(ti, io.BytesIO(data))
    return metadata
