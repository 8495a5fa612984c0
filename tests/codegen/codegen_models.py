"""Small Relax models for the codegen tests, each in the straight-line form the lead's pipeline
produces (main = call_tir bindings), with a numpy expectation where it is simple."""

from __future__ import annotations

import json

import numpy as np
from tvm import relax
from tvm.script import tirx as T

from codegen_helpers import lead_pipeline

N = 64


@T.prim_func(s_tir=True)
def add_sat(a: T.Buffer((1, N), "int8"), b: T.Buffer((1, N), "int8"), c: T.Buffer((1, N), "int8")):
    T.func_attr({"dtmm.op": "add", "dtmm.layer": json.dumps({"name": "add_0", "op": "add"})})
    for i in range(N):
        with T.sblock("c"):
            vi = T.axis.spatial(N, i)
            c[0, vi] = T.Cast("int8", T.max(T.min(T.Cast("int32", a[0, vi]) + T.Cast("int32", b[0, vi]), 127), -128))


@T.prim_func(s_tir=True)
def scale_shift(a: T.Buffer((1, N), "int8"), m: T.Buffer((N,), "int32"), c: T.Buffer((1, N), "int8")):
    T.func_attr({"dtmm.op": "scale"})
    for i in range(N):
        with T.sblock("c"):
            vi = T.axis.spatial(N, i)
            c[0, vi] = T.Cast("int8", T.max(T.min((T.Cast("int32", a[0, vi]) * m[vi]) >> 5, 127), -128))


@T.prim_func(s_tir=True)
def relu_acc(a: T.Buffer((1, N), "int8"), c: T.Buffer((1, N), "int8")):
    # A scalar accumulator (1-element local buffer): must stay a C local, not arena scratch.
    T.func_attr({"op_pattern": 8, "dtmm.op": "relu"})
    for i in range(N):
        acc = T.int32(0)
        acc = acc + T.Cast("int32", a[0, i])
        c[0, i] = T.Cast("int8", T.max(acc, 0))


@T.prim_func(s_tir=True)
def relu_blk(a: T.Buffer((1, N), "int8"), c: T.Buffer((1, N), "int8")):
    for i in range(N):
        with T.sblock("c"):
            vi = T.axis.spatial(N, i)
            c[0, vi] = T.max(a[0, vi], T.int8(0))


def int8_chain():
    """x -> add(c1) -> scale(m) -> add(c1 again, separate object) -> relu; numpy expectation."""
    rng = np.random.default_rng(1)
    c1 = rng.integers(-60, 60, (1, N)).astype("int8")
    m = rng.integers(-40, 40, (N,)).astype("int32")
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((1, N), "int8"))
    ty = relax.TensorType((1, N), "int8")
    with bb.function("main", [x]):
        g_add = bb.add_func(add_sat, "add_sat")
        g_scale = bb.add_func(scale_shift, "scale_shift")
        g_relu = bb.add_func(relu_acc, "relu_acc")
        with bb.dataflow():
            lv0 = bb.emit(relax.call_tir(g_add, relax.Tuple([x, relax.const(c1)]), ty))
            lv1 = bb.emit(relax.call_tir(g_scale, relax.Tuple([lv0, relax.const(m)]), ty))
            lv2 = bb.emit(relax.call_tir(g_add, relax.Tuple([lv1, relax.const(c1.copy())]), ty))
            lv3 = bb.emit_output(relax.call_tir(g_relu, relax.Tuple([lv2]), ty))
        bb.emit_func_output(lv3)
    mod = bb.get()

    def expect(xin):
        sat = lambda v: np.clip(v, -128, 127)  # noqa: E731
        y = sat(xin.astype(np.int32) + c1)
        y = sat((y * m) >> 5)
        y = sat(y + c1)
        return np.maximum(y, 0).astype(np.int8)

    return mod, expect


def int8_conv():
    """Two int8 NHWC convs (int32 accumulate, bias, shift, clip, cast) and a flatten, legalized by
    TVM (TOPI) and fused: each fused kernel carries a padding buffer and an int32 intermediate."""
    rng = np.random.default_rng(2)
    w1 = rng.integers(-8, 8, (3, 3, 4, 8)).astype("int8")
    b1 = rng.integers(-50, 50, (8,)).astype("int32")
    w2 = rng.integers(-8, 8, (3, 3, 8, 8)).astype("int8")
    b2 = rng.integers(-50, 50, (8,)).astype("int32")
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((1, 8, 8, 4), "int8"))

    def conv(v, w, b):
        y = bb.emit(relax.op.nn.conv2d(v, relax.const(w), padding=1, data_layout="NHWC",
                                       kernel_layout="HWIO", out_dtype="int32"))
        y = bb.emit(relax.op.add(y, relax.const(b)))
        y = bb.emit(relax.op.right_shift(y, relax.const(np.int32(5))))
        y = bb.emit(relax.op.clip(y, -128, 127))
        return bb.emit(relax.op.astype(y, "int8"))

    with bb.function("main", [x]):
        with bb.dataflow():
            y = conv(x, w1, b1)
            y = conv(y, w2, b2)
            y = bb.emit(relax.op.reshape(y, (1, 512)))
            z = bb.emit_output(y)
        bb.emit_func_output(z)
    return lead_pipeline(bb.get())


def float_cnn():
    """float32 relax.nn model: conv2d, relu, max_pool2d, flatten, matmul, add, softmax."""
    rng = np.random.default_rng(3)
    w = rng.standard_normal((3, 3, 3, 6)).astype("float32") * 0.3
    fc = rng.standard_normal((6 * 4 * 4, 10)).astype("float32") * 0.1
    bias = rng.standard_normal((1, 10)).astype("float32")
    bb = relax.BlockBuilder()
    x = relax.Var("image", relax.TensorType((1, 8, 8, 3), "float32"))
    with bb.function("main", [x]):
        with bb.dataflow():
            y = bb.emit(relax.op.nn.conv2d(x, relax.const(w), padding=1, data_layout="NHWC", kernel_layout="HWIO"))
            y = bb.emit(relax.op.nn.relu(y))
            y = bb.emit(relax.op.nn.max_pool2d(y, pool_size=(2, 2), strides=(2, 2), layout="NHWC"))
            y = bb.emit(relax.op.reshape(y, (1, 96)))
            y = bb.emit(relax.op.matmul(y, relax.const(fc)))
            y = bb.emit(relax.op.add(y, relax.const(bias)))
            y = bb.emit(relax.op.nn.softmax(y, axis=-1))
            z = bb.emit_output(y)
        bb.emit_func_output(z)
    return lead_pipeline(bb.get())


def tuple_outputs():
    """main returns (relu result, the input itself, a constant, a view of the relu result):
    one output is written in place, three need copies; expand_dims stays a relax op (a view)."""
    rng = np.random.default_rng(4)
    c1 = rng.integers(-60, 60, (1, N)).astype("int8")
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((1, N), "int8"))
    ty = relax.TensorType((1, N), "int8")
    with bb.function("main", [x]):
        g_add = bb.add_func(add_sat, "add_sat")
        g_relu = bb.add_func(relu_blk, "relu_blk")
        with bb.dataflow():
            lv0 = bb.emit(relax.call_tir(g_add, relax.Tuple([x, relax.const(c1)]), ty))
            lv1 = bb.emit(relax.call_tir(g_relu, relax.Tuple([lv0]), ty))
            lv2 = bb.emit(relax.op.expand_dims(lv1, axis=0))
            out = bb.emit_output(relax.Tuple([lv1, x, relax.const(c1), lv2]))
        bb.emit_func_output(out)
    mod = bb.get()

    def expect(xin):
        y = np.maximum(np.clip(xin.astype(np.int32) + c1, -128, 127), 0).astype(np.int8)
        return [y, xin, c1, y.reshape(1, 1, N)]

    return mod, expect


def unlegalized():
    """A relax op left in main (no LegalizeOps): codegen must name it."""
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((1, 8, 8, 4), "float32"))
    with bb.function("main", [x]):
        with bb.dataflow():
            y = bb.emit(relax.op.nn.conv2d(x, relax.const(np.ones((3, 3, 4, 4), "float32")),
                                           data_layout="NHWC", kernel_layout="HWIO"))
            z = bb.emit_output(y)
        bb.emit_func_output(z)
    return bb.get()

