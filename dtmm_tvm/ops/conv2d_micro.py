"""Regular int8 conv (dense and filterlet-sparse) as TIR + C micro-kernel calls.

Loop structure (set by :class:`dtmm_tvm.ops.conv_schedule.ConvSchedule`)::

    bias_eff = dtmm_conv_bias_s8(weights, bias)            # once; MVE folds the input offset in
    for n, block in grid(N, ceil(OH*OW / P)):              # P = pixels_per_block
        for p in range(P):                                 # im2col of the block, tap by tap
            for kh, kw: dtmm_conv_im2col_s8(&x[n, ih, iw, 0], row p, tap * Cin)  (or _pad_s8)
        for ob in range(ceil(Cout / OB)):                  # OB = channels_per_block
            dtmm_conv_block_s8(rows, weights, [col_idx, row_ptr], channels ob*OB.., &out[...])

The im2col block and ``bias_eff`` are TIR allocations, so codegen places them in the arena.
The micro-kernels (``dtmm_tvm/kernels``) pick their MVE / DSP / portable path from the C
compiler's macros; the builder only needs the element size of the im2col rows for the target.
"""

from __future__ import annotations

import tvm
from tvm import tirx
from tvm.script import tirx as T

from ..kernels import target_isa, with_c_kernels
from ..quant.conv import Conv2DParams
from .common import with_attrs
from .conv_schedule import ConvSchedule, row_stride_bytes

C_KERNELS = ["dtmm_conv_im2col_s8", "dtmm_conv_bias_s8", "dtmm_conv_block_s8"]



def build_conv_micro(params: Conv2DParams, kept: int | None, target, schedule: ConvSchedule,
                     op_name: str) -> tirx.PrimFunc:
    """Dense (``kept is None``: args ``x, w, bias, mult, shift, out``) or filterlet-sparse
    (args ``x, values, col_idx, row_ptr, bias, mult, shift, out``) micro-kernel conv."""
    isa = target_isa(target)
    n_size, height, width, cin = params.input_shape
    _, oh_size, ow_size, cout = params.output_shape
    kh_size, kw_size = params.kernel_size
    sh, sw = params.strides
    dh, dw = params.dilation
    pad_top, pad_left = params.padding[0], params.padding[1]
    input_offset = -params.input_zero_point
    out_zp, act_min, act_max = params.output_zero_point, params.act_min, params.act_max
    x_shape, w_shape, o_shape = params.input_shape, params.weight_shape, params.output_shape
    row_len = kh_size * kw_size * cin
    pixels = oh_size * ow_size
    ppb = min(schedule.pixels_per_block, pixels)
    nblocks = (pixels + ppb - 1) // ppb
    tail = pixels % ppb != 0
    stride = row_stride_bytes(params, isa)
    ob = schedule.channels_per_block or cout
    ob = min(ob, cout)
    nob = (cout + ob - 1) // ob
    sparse = kept is not None
    kept_n = kept if sparse else 1
    # Bounds checks only where the padding or the last window can reach past an edge.
    last_row = (oh_size - 1) * sh - pad_top + (kh_size - 1) * dh
    last_col = (ow_size - 1) * sw - pad_left + (kw_size - 1) * dw
    chk_top, chk_bottom = pad_top > 0, last_row >= height
    chk_left, chk_right = pad_left > 0, last_col >= width
    any_check = chk_top or chk_bottom or chk_left or chk_right
    tap_loop = T.unroll if schedule.unroll_taps else T.serial

    def in_bounds(ih, iw):
        zero = tirx.const(0, "int32")
        conds = []
        if chk_top:
            conds.append(zero <= ih)
        if chk_bottom:
            conds.append(ih < height)
        if chk_left:
            conds.append(zero <= iw)
        if chk_right:
            conds.append(iw < width)
        return tirx.all(*conds) if conds else True

    def pix_ok(pix):
        return pix < pixels if tail else True

    null = tirx.call_intrin("handle", "tirx.reinterpret", tirx.const(0, "uint64"))

    @T.prim_func
    def dense(
        x: T.Buffer(x_shape, "int8"),
        w: T.Buffer(w_shape, "int8"),
        bias: T.Buffer((cout,), "int32"),
        mult: T.Buffer((cout,), "int32"),
        shift: T.Buffer((cout,), "int32"),
        out: T.Buffer(o_shape, "int8"),
    ):
        im2col = T.decl_buffer((ppb * stride,), "int8", scope="global")
        bias_eff = T.decl_buffer((cout,), "int32", scope="global")
        T.evaluate(T.call_extern("void", "dtmm_conv_bias_s8", T.address_of(w[0, 0, 0, 0]), null, row_len,
                                 cout, T.address_of(bias[0]), input_offset, bias_eff.access_ptr("rw")))
        for n, blk in T.grid(n_size, nblocks):
            for p in range(ppb):
                pix: T.let = blk * ppb + p
                if pix_ok(pix):
                    oh: T.let = pix // ow_size
                    ow: T.let = pix % ow_size
                    for kh in tap_loop(kh_size):
                        for kw in tap_loop(kw_size):
                            ih: T.let = oh * sh - pad_top + kh * dh
                            iw: T.let = ow * sw - pad_left + kw * dw
                            if in_bounds(ih, iw):
                                T.evaluate(T.call_extern(
                                    "void", "dtmm_conv_im2col_s8", T.address_of(x[n, ih, iw, 0]),
                                    im2col.access_ptr("rw", offset=p * stride), (kh * kw_size + kw) * cin, cin,
                                    input_offset))
                            else:
                                T.evaluate(T.call_extern(
                                    "void", "dtmm_conv_pad_s8", im2col.access_ptr("rw", offset=p * stride),
                                    (kh * kw_size + kw) * cin, cin, input_offset))
            pix0: T.let = blk * ppb
            npix: T.let = T.min(ppb, pixels - pix0)
            for c in range(nob):
                T.evaluate(T.call_extern(
                    "void", "dtmm_conv_block_s8", im2col.access_ptr("r"), stride, npix,
                    T.address_of(w[0, 0, 0, 0]), null, null, row_len, cin, c * ob, T.min(c * ob + ob, cout),
                    bias_eff.access_ptr("rw"), T.address_of(mult[0]), T.address_of(shift[0]),
                    T.address_of(out[n, pix0 // ow_size, pix0 % ow_size, 0]), cout, out_zp, act_min, act_max))

    @T.prim_func
    def sparse_fn(
        x: T.Buffer(x_shape, "int8"),
        values: T.Buffer((kept_n * cin,), "int8"),
        col_idx: T.Buffer((kept_n,), "int16"),
        row_ptr: T.Buffer((cout + 1,), "int16"),
        bias: T.Buffer((cout,), "int32"),
        mult: T.Buffer((cout,), "int32"),
        shift: T.Buffer((cout,), "int32"),
        out: T.Buffer(o_shape, "int8"),
    ):
        im2col = T.decl_buffer((ppb * stride,), "int8", scope="global")
        bias_eff = T.decl_buffer((cout,), "int32", scope="global")
        T.evaluate(T.call_extern("void", "dtmm_conv_bias_s8", T.address_of(values[0]), T.address_of(row_ptr[0]),
                                 cin, cout, T.address_of(bias[0]), input_offset, bias_eff.access_ptr("rw")))
        for n, blk in T.grid(n_size, nblocks):
            for p in range(ppb):
                pix: T.let = blk * ppb + p
                if pix_ok(pix):
                    oh: T.let = pix // ow_size
                    ow: T.let = pix % ow_size
                    for kh in tap_loop(kh_size):
                        for kw in tap_loop(kw_size):
                            ih: T.let = oh * sh - pad_top + kh * dh
                            iw: T.let = ow * sw - pad_left + kw * dw
                            if in_bounds(ih, iw):
                                T.evaluate(T.call_extern(
                                    "void", "dtmm_conv_im2col_s8", T.address_of(x[n, ih, iw, 0]),
                                    im2col.access_ptr("rw", offset=p * stride), (kh * kw_size + kw) * cin, cin,
                                    input_offset))
                            else:
                                T.evaluate(T.call_extern(
                                    "void", "dtmm_conv_pad_s8", im2col.access_ptr("rw", offset=p * stride),
                                    (kh * kw_size + kw) * cin, cin, input_offset))
            pix0: T.let = blk * ppb
            npix: T.let = T.min(ppb, pixels - pix0)
            for c in range(nob):
                T.evaluate(T.call_extern(
                    "void", "dtmm_conv_block_s8", im2col.access_ptr("r"), stride, npix,
                    T.address_of(values[0]), T.address_of(col_idx[0]), T.address_of(row_ptr[0]), row_len, cin,
                    c * ob, T.min(c * ob + ob, cout),
                    bias_eff.access_ptr("rw"), T.address_of(mult[0]), T.address_of(shift[0]),
                    T.address_of(out[n, pix0 // ow_size, pix0 % ow_size, 0]), cout, out_zp, act_min, act_max))

    func = sparse_fn if sparse else dense
    func = with_attrs(func, op_name)
    return with_c_kernels(func, C_KERNELS)
