"""Regular int8 conv over element-sparse (unstructured-pruned) weights, CSR over single weights.

The weights arrive as :class:`dtmm_tvm.sparsity.storage.PackedUnstructured` stores them:
``values`` int8 ``[nnz]`` (the non-zero weights in (o, kh, kw, ci) order), ``col_idx`` int16
``[nnz]`` = ``(kh * KW + kw) * Cin + ci``, ``row_ptr`` int32 ``[Cout + 1]``.

On a C target the PrimFunc is one call per image of the micro-kernel ``dtmm_conv_csr_s8``
(``dtmm_tvm/kernels/dtmm_conv_csr_s8.c``) with its scratch allocated in TIR (the arena);
otherwise a plain TIR loop nest over the same CSR rows (the reference path). Only non-zero
weights are multiplied and every skipped product has a zero weight, so both equal the dense
:func:`dtmm_tvm.quant.conv.conv2d` on the unpacked weights bit for bit.
"""

from __future__ import annotations

from tvm import tirx
from tvm.script import tirx as T

from ..kernels import target_isa, with_c_kernels
from ..quant.conv import Conv2DParams
from ..schedules.conv import unstructured_scratch_bytes
from .common import requantize_macro, tap_in_bounds, with_attrs

C_KERNEL = "dtmm_conv_csr_s8"
OP_NAME = "conv2d_unstructured"


def scratch_bytes(params: Conv2DParams, isa: str) -> int:
    """Mirror of ``dtmm_conv_csr_s8_get_buffer_size`` (the schedules' one formula)."""
    return unstructured_scratch_bytes(params, isa)


def conv2d_unstructured_int8(params: Conv2DParams, nonzero_weights: int, *, target=None) -> tirx.PrimFunc:
    """Build the int8 conv of one layer over CSR element-sparse weights.

    Parameters
    ----------
    params
        The layer (regular conv, OHWI ``weight_shape`` of the dense weights).
    nonzero_weights
        ``nnz``, the number of stored weights; fixes the buffer sizes only (the loop bounds come
        from ``row_ptr`` at run time).
    target
        A C target (default ``Target.current()``) gets the micro-kernel call; otherwise the
        plain TIR loop nest.

    Returns
    -------
    tvm.tirx.PrimFunc
        ``main(x, values, col_idx, row_ptr, bias, mult, shift, out)``. Attributes
        ``{"dtmm.op": "conv2d_unstructured", "op_pattern": 8}`` (+ ``"dtmm.c_kernels"``).
    """
    import tvm

    if params.depthwise:
        raise ValueError("the unstructured conv kernel is for regular convs, not depthwise")
    cout, kh_size, kw_size, cin = params.weight_shape
    if kh_size * kw_size * cin - 1 > 2**15 - 1:
        raise ValueError(f"weights {params.weight_shape} overflow the int16 column index")
    if not 0 <= nonzero_weights <= cout * kh_size * kw_size * cin:
        raise ValueError(f"nonzero_weights={nonzero_weights} outside [0, {cout * kh_size * kw_size * cin}]")
    if target is None:
        target = tvm.target.Target.current(allow_none=True)
    if target is not None and str(target.kind.name) == "c":
        return _micro(params, nonzero_weights, target_isa(target))
    return _plain(params, nonzero_weights)


def _micro(params: Conv2DParams, nnz: int, isa: str) -> tirx.PrimFunc:
    n_size, height, width, cin = params.input_shape
    _, oh_size, ow_size, cout = params.output_shape
    kh_size, kw_size = params.kernel_size
    sh, sw = params.strides
    dh, dw = params.dilation
    pad_top, pad_left = params.padding[0], params.padding[1]
    input_offset = -params.input_zero_point
    out_zp, act_min, act_max = params.output_zero_point, params.act_min, params.act_max
    x_shape, o_shape = params.input_shape, params.output_shape
    nnz_n = max(int(nnz), 1)  # a buffer of 0 elements is not allowed; the kernel reads none
    scratch = scratch_bytes(params, isa)

    @T.prim_func
    def conv2d_unstructured(
        x: T.Buffer(x_shape, "int8"),
        values: T.Buffer((nnz_n,), "int8"),
        col_idx: T.Buffer((nnz_n,), "int16"),
        row_ptr: T.Buffer((cout + 1,), "int32"),
        bias: T.Buffer((cout,), "int32"),
        mult: T.Buffer((cout,), "int32"),
        shift: T.Buffer((cout,), "int32"),
        out: T.Buffer(o_shape, "int8"),
    ):
        buf = T.decl_buffer((scratch,), "int8", scope="global")
        for n in range(n_size):
            T.evaluate(T.call_extern(
                "void", "dtmm_conv_csr_s8", T.address_of(x[n, 0, 0, 0]), height, width, cin, oh_size, ow_size,
                kh_size, kw_size, sh, sw, dh, dw, pad_top, pad_left, input_offset,
                T.address_of(values[0]), T.address_of(col_idx[0]), T.address_of(row_ptr[0]), cout,
                T.address_of(bias[0]), T.address_of(mult[0]), T.address_of(shift[0]),
                T.address_of(out[n, 0, 0, 0]), out_zp, act_min, act_max, buf.access_ptr("rw")))

    func = with_attrs(conv2d_unstructured, OP_NAME)
    return with_c_kernels(func, [C_KERNEL])


def _plain(params: Conv2DParams, nnz: int) -> tirx.PrimFunc:
    n_size, _, _, cin = params.input_shape
    _, oh_size, ow_size, cout = params.output_shape
    kw_size = params.kernel_size[1]
    sh, sw = params.strides
    dh, dw = params.dilation
    pad_top, pad_left = params.padding[0], params.padding[1]
    input_offset = -params.input_zero_point
    out_zp, act_min, act_max = params.output_zero_point, params.act_min, params.act_max
    x_shape, o_shape = params.input_shape, params.output_shape
    nnz_n = max(int(nnz), 1)
    requantize_store_of_layer = requantize_macro(params)  # TFLite or ONNX records

    @T.prim_func
    def conv2d_unstructured(
        x: T.Buffer(x_shape, "int8"),
        values: T.Buffer((nnz_n,), "int8"),
        col_idx: T.Buffer((nnz_n,), "int16"),
        row_ptr: T.Buffer((cout + 1,), "int32"),
        bias: T.Buffer((cout,), "int32"),
        mult: T.Buffer((cout,), "int32"),
        shift: T.Buffer((cout,), "int32"),
        out: T.Buffer(o_shape, "int8"),
    ):
        acc = T.decl_buffer((1,), "int32", scope="global")
        for n, oh, ow, o in T.grid(n_size, oh_size, ow_size, cout):
            acc[0] = 0
            for j in range(row_ptr[o], row_ptr[o + 1]):
                # col = (kh*KW + kw)*Cin + ci >= 0: truncating division is exact
                col: T.let = T.Cast("int32", col_idx[j])
                tap: T.let = T.truncdiv(col, cin)
                ih: T.let = oh * sh - pad_top + T.truncdiv(tap, kw_size) * dh
                iw: T.let = ow * sw - pad_left + T.truncmod(tap, kw_size) * dw
                if tap_in_bounds(ih, iw, params):
                    acc[0] = acc[0] + (T.Cast("int32", x[n, ih, iw, T.truncmod(col, cin)]) + input_offset) * \
                        T.Cast("int32", values[j])
            requantize_store_of_layer(out, (n, oh, ow, o), acc[0] + bias[o], mult[o], shift[o], out_zp,
                                      act_min, act_max)

    return with_attrs(conv2d_unstructured, OP_NAME)
