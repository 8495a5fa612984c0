"""Differential testing of the generated kernels against the numpy TFLite integer semantics.

Random layers (hypothesis strategies): conv (dense and the three filterlet formats), depthwise,
fully connected, average/max pool, add (with broadcast), mean and softmax, with random shapes
(kernel sizes, strides, padding, tiny and odd channel counts, square and non-square matrices),
random sparsity patterns (all kept, all pruned, single filterlets, whole zero filters with a
non-zero bias) and random quantization parameters across TFLite's ranges. Each case's PrimFunc
is built by ``dtmm_tvm.ops`` for a dtmm target, lowered to C by ``dtmm_tvm.codegen``, and its
expected output computed by ``dtmm_tvm.quant`` (pure numpy, itself tested against TFLM).

A batch of cases becomes one *differential artifact* -- the archive layout ``dtmm run`` takes:
the kernels' C, the micro-kernels, and a runner whose ``tvmgen_default_run`` calls every case on
its own constant inputs and writes all outputs back to back into its one output. The same
artifact is built on the host (gcc, the portable C paths) and run through ctypes, or built for a
board and run on QEMU (the DSP/MVE paths), so many cases cost one build.
"""

from __future__ import annotations

import ctypes
import json
import math
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from hypothesis import strategies as st

from dtmm_tvm.ops import add as add_op
from dtmm_tvm.ops import depthwise_conv2d as dw_op
from dtmm_tvm.ops import fully_connected as fc_op
from dtmm_tvm.ops.common import kernel_bias
from dtmm_tvm.ops.conv2d import conv2d_int8
from dtmm_tvm.ops.conv2d_filterlet import conv2d_filterlet_int8
from dtmm_tvm.ops.mean import mean_int8 as mean_kernel
from dtmm_tvm.ops.pooling import avg_pool2d_int8, max_pool2d_int8
from dtmm_tvm.ops.softmax import softmax_int8 as softmax_kernel
from dtmm_tvm.quant import add as qadd
from dtmm_tvm.quant import conv as qc
from dtmm_tvm.quant import mean as qmean
from dtmm_tvm.quant import pooling as qpool
from dtmm_tvm.quant import softmax as qsoftmax
from dtmm_tvm.sparsity.storage import fits, pack_filterlets_as

OPS = ("conv", "conv_filterlet", "depthwise", "fully_connected", "avg_pool", "max_pool", "add", "mean",
       "softmax")
SPARSITY = ("random", "all_kept", "all_pruned", "single_filterlet", "zero_filter_with_bias")


@dataclass
class Case:
    """One kernel call: ``make()`` builds its PrimFunc for the current target and returns it with
    its argument arrays (inputs and constants; the output is appended by the runner)."""

    op: str
    description: str
    make: object
    expected: np.ndarray


def _scale(draw, lo=1e-4, hi=1.0):
    return float(np.float32(math.exp(draw(st.floats(math.log(lo), math.log(hi))))))


def _activation(draw):
    lo = draw(st.integers(-128, 100))
    return lo, draw(st.integers(lo, 127))


def _weights(draw, rng, shape, pattern):
    cout, kh, kw, cin = shape
    w = rng.integers(-127, 128, size=shape).astype(np.int8)
    w[w == 0] = 1
    if pattern == "random":
        w[rng.random((cout, kh, kw)) < draw(st.floats(0.0, 1.0))] = 0
    elif pattern == "all_pruned":
        w[:] = 0
    elif pattern == "single_filterlet":
        keep = (draw(st.integers(0, cout - 1)), draw(st.integers(0, kh - 1)), draw(st.integers(0, kw - 1)))
        mask = np.zeros((cout, kh, kw), bool)
        mask[keep] = True
        w[~mask] = 0
    elif pattern == "zero_filter_with_bias":
        w[draw(st.integers(0, cout - 1))] = 0
    return w


def _conv_params(draw, depthwise=False):
    kh, kw = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    h, w = draw(st.integers(kh, kh + 6)), draw(st.integers(kw, kw + 6))
    cin = draw(st.sampled_from([1, 2, 3, 4, 5, 7, 8, 16]))
    mult = draw(st.integers(1, 2)) if depthwise else 1
    cout = cin * mult if depthwise else draw(st.sampled_from([1, 2, 3, 5, 8, 9]))
    if draw(st.booleans()):
        pad = qc.same_padding((h, w), (kh, kw), (sh, sw))
    else:
        pad = tuple(draw(st.integers(0, k - 1)) for k in (kh, kw, kh, kw))
    act = _activation(draw)
    weight_shape = (1, kh, kw, cout) if depthwise else (cout, kh, kw, cin)
    return qc.Conv2DParams((1, h, w, cin), weight_shape, (sh, sw), pad, (1, 1), draw(st.integers(-128, 127)),
                           draw(st.integers(-128, 127)), *act, depth_multiplier=mult, depthwise=depthwise)


@st.composite
def cases(draw, ops=OPS) -> Case:
    """A random kernel case."""
    op = draw(st.sampled_from(ops))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if op in ("conv", "conv_filterlet", "depthwise", "fully_connected"):
        if op == "fully_connected":
            n, k, o = draw(st.integers(1, 3)), draw(st.integers(1, 64)), draw(st.integers(1, 33))
            params = qc.FullyConnectedParams((n, k), (o, k), draw(st.integers(-128, 127)),
                                             draw(st.integers(-128, 127)), *_activation(draw))
            channels, wshape = o, (o, 1, 1, k)
        else:
            params = _conv_params(draw, depthwise=op == "depthwise")
            channels, wshape = params.weight_shape[-1] if op == "depthwise" else params.weight_shape[0], None
            wshape = params.weight_shape if op != "depthwise" else (channels, *params.weight_shape[1:3], 1)
        pattern = draw(st.sampled_from(SPARSITY))
        w = _weights(draw, rng, wshape, pattern)
        if op == "depthwise":
            w = np.ascontiguousarray(w[..., 0].transpose(1, 2, 0)[None])  # (1, KH, KW, C)
        elif op == "fully_connected":
            w = np.ascontiguousarray(w.reshape(wshape[0], wshape[-1]))
        bias = rng.integers(-30000, 30000, size=channels).astype(np.int32)
        if pattern == "zero_filter_with_bias":
            bias[bias == 0] = 17
        in_scale, out_scale = _scale(draw), _scale(draw, 1e-3, 1.0)
        per_channel = draw(st.booleans())
        weight_scales = np.array([_scale(draw, 1e-5, 0.5)] * (1 if not per_channel else 1), np.float32)
        if per_channel:
            weight_scales = np.exp(rng.uniform(np.log(1e-5), np.log(0.5), size=channels)).astype(np.float32)
        mult, shift = qc.conv_output_multipliers(np.float32(in_scale), weight_scales, np.float32(out_scale))
        mult = np.broadcast_to(mult, (channels,)).astype(np.int32).copy()
        shift = np.broadcast_to(shift, (channels,)).astype(np.int32).copy()
        x = rng.integers(-128, 128, size=params.input_shape).astype(np.int8)
        if op == "fully_connected":
            expected = qc.fully_connected(x, w, bias, mult, shift, params)

            def make():
                func = fc_op.fully_connected_int8(params)
                return func, [x, w, kernel_bias(func, bias, lambda: fc_op.fold_bias(params, w, bias)), mult, shift]
        elif op == "depthwise":
            expected = qc.depthwise_conv2d(x, w, bias, mult, shift, params)

            def make():
                func = dw_op.depthwise_conv2d_int8(params)
                return func, [x, w, kernel_bias(func, bias, lambda: dw_op.fold_bias(params, w, bias)), mult, shift]
        elif op == "conv":
            expected = qc.conv2d(x, w, bias, mult, shift, params)

            def make():
                return conv2d_int8(params), [x, w, bias, mult, shift]
        else:
            formats = [f for f in ("filterlet_csr", "filterlet_u8", "filterlet_bitmask") if fits(f, w.shape)]
            fmt = draw(st.sampled_from(formats))
            packed = pack_filterlets_as(w, fmt)
            expected = qc.conv2d(x, w, bias, mult, shift, params)
            pattern += f", {fmt}, {packed.kept_filterlets} kept"

            def make():
                if packed.kept_filterlets == 0:  # the rewrite keeps at least one filterlet; dense kernel
                    return conv2d_int8(params), [x, w, bias, mult, shift]
                return (conv2d_filterlet_int8(params, packed.kept_filterlets, fmt=fmt),
                        [x, packed.values, *packed.index_arrays, bias, mult, shift])
        description = f"{op} {params} sparsity {pattern}"
    elif op in ("avg_pool", "max_pool"):
        fh, fw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
        h, w_ = draw(st.integers(fh, fh + 6)), draw(st.integers(fw, fw + 6))
        c = draw(st.sampled_from([1, 2, 3, 8, 17]))
        out_scale, out_zp = _scale(draw), draw(st.integers(-128, 127))
        params = qpool.pool2d_params((1, h, w_, c), (fh, fw), (draw(st.integers(1, 3)), draw(st.integers(1, 3))),
                                     draw(st.sampled_from(["SAME", "VALID"])), out_scale, out_zp,
                                     draw(st.sampled_from(["NONE", "RELU", "RELU6"])))
        x = rng.integers(-128, 128, size=params.input_shape).astype(np.int8)
        if op == "avg_pool":
            expected = qpool.avg_pool2d_int8(x, params)

            def make():
                return avg_pool2d_int8(params), [x]
        else:
            expected = qpool.max_pool2d_int8(x, params)

            def make():
                return max_pool2d_int8(params), [x]
        description = f"{op} {params}"
    elif op == "add":
        shape = (1, draw(st.integers(1, 6)), draw(st.integers(1, 6)), draw(st.sampled_from([1, 2, 3, 8, 16])))
        other = tuple(d if draw(st.booleans()) else 1 for d in shape) if draw(st.booleans()) else shape
        act = _activation(draw)
        params = qadd.add_params(_scale(draw), draw(st.integers(-128, 127)), _scale(draw), draw(st.integers(-128, 127)),
                                 _scale(draw, 1e-3, 2.0), draw(st.integers(-128, 127)), *act)
        a = rng.integers(-128, 128, size=shape).astype(np.int8)
        b = rng.integers(-128, 128, size=other).astype(np.int8)
        expected = qadd.add_int8(a, b, params)

        def make():
            return add_op.add_int8(shape, other, params), [a, b]
        description = f"add {shape} + {other} {params}"
    elif op == "mean":
        shape = (1, draw(st.integers(1, 8)), draw(st.integers(1, 8)), draw(st.sampled_from([1, 2, 3, 8, 16])))
        params = qmean.mean_params(shape, draw(st.booleans()), _scale(draw), draw(st.integers(-128, 127)),
                                   _scale(draw), draw(st.integers(-128, 127)))
        x = rng.integers(-128, 128, size=shape).astype(np.int8)
        expected = qmean.mean_int8(x, params)

        def make():
            return mean_kernel(params), [x]
        description = f"mean {params}"
    else:
        shape = (draw(st.integers(1, 3)), draw(st.integers(1, 40)))
        beta = draw(st.sampled_from([1.0, 0.5, 2.0, 0.1]))
        params = qsoftmax.softmax_params(beta, _scale(draw, 1e-3, 0.5))
        x = rng.integers(-128, 128, size=shape).astype(np.int8)
        expected = qsoftmax.softmax_int8(x, params)

        def make():
            return softmax_kernel(shape, params), [x]
        description = f"softmax {shape} beta {beta} {params}"
    return Case(op, description, make, np.asarray(expected, np.int8))


# -- the differential artifact -------------------------------------------------------------------
_C_TYPES = {"int8": "int8_t", "int16": "int16_t", "int32": "int32_t", "uint8": "uint8_t", "uint16": "uint16_t",
            "uint32": "uint32_t", "int64": "int64_t"}


def _c_array(name: str, array: np.ndarray) -> str:
    ctype = _C_TYPES[str(array.dtype)]
    flat = array.reshape(-1)
    values = ", ".join(str(int(v)) for v in flat) or "0"
    return f"static {ctype} {name}[{max(1, flat.size)}] __attribute__((aligned(16))) = {{{values}}};"


def write_artifact(batch: list, directory: Path, target: str = "dtmm/cortex-m4") -> int:
    """Write the differential artifact of ``batch`` into ``directory``; returns the output bytes."""
    from dtmm_tvm.codegen.c_source import build_c_kernels
    from dtmm_tvm.kernels import header_files, kernel_source
    from dtmm_tvm.target import resolve_target

    with resolve_target(target):  # the builders pick micro-kernels and schedules for the target
        built = [c.make() for c in batch]
    src = build_c_kernels({f"case{i}": func for i, (func, _) in enumerate(built)}, prefix="diff_")
    (directory / "codegen/host/src").mkdir(parents=True)
    (directory / "codegen/host/include").mkdir(parents=True)
    (directory / "codegen/host/src/default_lib0.c").write_text(src.code)
    for name in src.c_kernels:
        (directory / f"codegen/host/src/{name}.c").write_text(kernel_source(name))
    for name, text in header_files().items():
        (directory / f"codegen/host/include/{name}").write_text(text)
    total = sum(c.expected.size for c in batch)
    lines = ['#include <stdint.h>', '#include <string.h>', '#include "tvmgen_default.h"', ""]
    calls = []
    offset = 0
    for i, case in enumerate(batch):
        kernel = src.kernels[f"case{i}"]
        lines.append(kernel.prototype)
        names = []
        for k, arg in enumerate(built[i][1]):
            arg = np.ascontiguousarray(arg)
            lines.append(_c_array(f"c{i}_a{k}", arg))
            names.append(f"c{i}_a{k}")
        names.append(f"(int8_t*)outputs->output + {offset}")
        for k, scratch in enumerate(kernel.scratch):
            # Twice the size: the depthwise micro-kernel keeps a table of tap pointers in its
            # scratch, sized for the targets' 4-byte pointers; the host has 8-byte pointers.
            lines.append(f"static uint8_t c{i}_s{k}[{2 * scratch.bytes + 16}] __attribute__((aligned(16)));")
            names.append(f"(void*)c{i}_s{k}")
        calls.append(f"  {kernel.symbol}({', '.join(names)});")
        offset += case.expected.size
    lines += ["", "int32_t tvmgen_default_run(struct tvmgen_default_inputs* inputs, "
              "struct tvmgen_default_outputs* outputs) {", "  (void)inputs;", *calls, "  return 0;", "}"]
    (directory / "codegen/host/src/default_lib2.c").write_text("\n".join(lines) + "\n")
    (directory / "codegen/host/include/tvmgen_default.h").write_text(
        "#ifndef TVMGEN_DEFAULT_H_\n#define TVMGEN_DEFAULT_H_\n#include <stdint.h>\n"
        "#define TVMGEN_DEFAULT_INPUT_SIZE 4\n"
        f"#define TVMGEN_DEFAULT_OUTPUT_SIZE {total}\n"
        "struct tvmgen_default_inputs { void* input; };\nstruct tvmgen_default_outputs { void* output; };\n"
        "int32_t tvmgen_default_run(struct tvmgen_default_inputs* inputs, struct tvmgen_default_outputs* outputs);\n"
        "#endif\n")
    meta = {"schema": "dtmm-mlf/1", "model": {"name": "differential", "source": "tests/hardening", "sha256": "0"},
            "target": target, "mode": "dense",
            "inputs": [{"name": "input", "c_name": "input", "shape": [4], "dtype": "int8", "bytes": 4}],
            "outputs": [{"name": "output", "c_name": "output", "shape": [total], "dtype": "int8", "bytes": total}],
            "arena": {"bytes": 0, "buffers": []}, "constants_bytes": 0, "functions": [], "layers": [],
            "entry": "tvmgen_default_run"}
    (directory / "metadata.json").write_text(json.dumps(meta))
    return total


def expected_bytes(batch: list) -> np.ndarray:
    return np.concatenate([c.expected.reshape(-1) for c in batch])


def run_on_host(batch: list, directory: Path, target: str = "dtmm/cortex-m4") -> np.ndarray:
    """Build the artifact with host gcc (portable C paths, -Wall -Werror) and run it."""
    total = write_artifact(batch, directory, target)
    cc = shutil.which("gcc") or shutil.which("cc")
    lib = directory / "libdiff.so"
    sources = sorted((directory / "codegen/host/src").glob("*.c"))
    proc = subprocess.run([cc, "-std=gnu11", "-O2", "-Wall", "-Werror", "-Wno-unused-function", "-shared", "-fPIC",
                           "-I", str(directory / "codegen/host/include"), *map(str, sources), "-o", str(lib)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise AssertionError(proc.stderr[-4000:])
    so = ctypes.CDLL(str(lib))
    out = np.zeros(total, np.int8)
    x = np.zeros(4, np.int8)

    class S(ctypes.Structure):
        _fields_ = [("p", ctypes.c_void_p)]

    assert so.tvmgen_default_run(ctypes.byref(S(x.ctypes.data)), ctypes.byref(S(out.ctypes.data))) == 0
    return out


def run_on_board(batch: list, directory: Path, board: str, target: str) -> np.ndarray:
    """Build the artifact for ``board`` and run it on QEMU (the ISA-specific C paths)."""
    from dtmm_tvm.micro import run_artifact

    write_artifact(batch, directory, target)
    result = run_artifact(directory, board, np.zeros((1, 4), np.int8))
    return np.asarray(result.outputs).reshape(-1)


def first_mismatch(batch: list, got: np.ndarray) -> str | None:
    offset = 0
    for case in batch:
        n = case.expected.size
        if not np.array_equal(got[offset:offset + n], case.expected.reshape(-1)):
            return case.description
        offset += n
    return None


def explain(batch: list, got: np.ndarray, directory: Path, target: str = "dtmm/cortex-m4") -> str | None:
    """None when ``got`` is bit-exact; otherwise which cases fail when run alone on the host (or
    that the first mismatching case only fails next to others: an output overrun)."""
    first = first_mismatch(batch, got)
    if first is None:
        return None
    alone = []
    for k, case in enumerate(batch):
        out = run_on_host([case], directory / f"alone{k}", target)
        if not np.array_equal(out, case.expected.reshape(-1)):
            alone.append(f"{case.description}: got {out[:16].tolist()}, expected {case.expected.reshape(-1)[:16].tolist()}")
    if alone:
        return "; ".join(alone)
    return f"{first} differs only inside the batch (another case writes outside its output?)"
