"""The DTMM operator: a 2-D convolution over filterlet-pruned weights in CSR-over-filterlets form.

A filterlet is the ``Cin`` weights ``W[o, kh, kw, :]`` of one output filter at one kernel
position; in NHWC the input pixel it multiplies is also ``Cin`` contiguous values. The weights
arrive as :func:`dtmm_tvm.sparsity.storage.pack_filterlets` stores them:

- ``values``  ``[kept * Cin]``: the kept filterlets concatenated in (o, kh, kw) order;
- ``col_idx`` int16 ``[kept]``: filterlet ``j``'s offset ``(kh * KW + kw) * Cin`` in an im2col row;
- ``row_ptr`` int16 ``[Cout + 1]``: the filterlets of filter ``o`` are ``row_ptr[o]:row_ptr[o+1]``.

For each output pixel and output channel the kernel loops over that channel's kept filterlets only
(a data-dependent loop bounded by ``row_ptr``), decodes ``(kh, kw)`` from ``col_idx``, skips taps
that fall into the padding (TFLM adds nothing for them) and does one dense dot product of ``Cin``
contiguous bytes. A pruned filterlet costs nothing, a whole zero filter only its bias and
requantization. Because every tap that is skipped has zero weights, the int8 kernel equals the
dense :func:`dtmm_tvm.quant.conv.conv2d` on the unpacked weights bit for bit.
"""

from __future__ import annotations

from tvm import tirx
from tvm.script import tirx as T

from ..quant.conv import Conv2DParams
from ..schedules.conv import resolve
from ..schedules.records import lookup_schedule
from .common import requantize_macro, tap_in_bounds, with_attrs


def _check(params: Conv2DParams, kept_filterlets: int) -> None:
    if params.depthwise:
        raise ValueError("the filterlet kernel is for regular convs, not depthwise")
    cout, kh, kw, cin = params.weight_shape
    if not 0 <= kept_filterlets <= cout * kh * kw:
        raise ValueError(f"kept_filterlets={kept_filterlets} outside [0, {cout * kh * kw}] for weights {params.weight_shape}")
    if (kh * kw - 1) * cin > 2**15 - 1 or kept_filterlets > 2**15 - 1:
        raise ValueError(f"weights {params.weight_shape} overflow the int16 filterlet index")


def _accumulate_tap(params: Conv2DParams):
    """A TVMScript macro adding one kept filterlet's dot product to ``acc[0]``: the input pixel
    under kernel position ``tap = kh*KW + kw`` of output pixel ``(n, oh, ow)`` times the
    filterlet ``values[j*Cin : (j+1)*Cin]``; out-of-image taps add nothing (TFLM's padding)."""
    cin = params.input_shape[3]
    kw_size = params.kernel_size[1]
    sh, sw = params.strides
    dh, dw = params.dilation
    pad_top, pad_left = params.padding[0], params.padding[1]
    input_offset = -params.input_zero_point

    @T.macro
    def accumulate(acc, x, values, n, oh, ow, tap, j):
        ih: T.let = oh * sh - pad_top + T.truncdiv(tap, kw_size) * dh
        iw: T.let = ow * sw - pad_left + T.truncmod(tap, kw_size) * dw
        if tap_in_bounds(ih, iw, params):
            for ci in range(cin):
                acc[0] = acc[0] + (T.Cast("int32", x[n, ih, iw, ci]) + input_offset) * T.Cast(
                    "int32", values[j * cin + ci])

    return accumulate


def conv2d_filterlet_int8(params: Conv2DParams, kept_filterlets: int, *, target=None,
                          schedule=None, fmt: str = "filterlet_csr") -> tirx.PrimFunc:
    """Build the int8 filterlet-sparse conv kernel of one layer.

    Parameters
    ----------
    params
        The layer (regular conv, OHWI ``weight_shape`` of the dense weights).
    kept_filterlets
        Number of kept filterlets (``PackedFilterlets.kept_filterlets``); fixes the buffer
        sizes only, the loop bounds come from ``row_ptr`` at run time.
    target, schedule
        As for :func:`dtmm_tvm.ops.conv2d.conv2d_int8`: a C target (default
        ``Target.current()``) gets the micro-kernel version, which loops over the same
        ``row_ptr``/``col_idx`` inside ``dtmm_conv_block_s8``; otherwise the TIR loop nest below.
    fmt
        Index format (:data:`dtmm_tvm.sparsity.storage.FORMATS`): ``"filterlet_csr"`` (the
        arguments below), ``"filterlet_u8"`` (``col_idx``/``row_ptr`` replaced by uint8
        ``taps[kept]`` and uint8 ``counts[Cout]``) or ``"filterlet_bitmask"`` (one uint8
        ``mask`` buffer instead of both); see :mod:`dtmm_tvm.sparsity.storage`.

    Returns
    -------
    tvm.tirx.PrimFunc
        ``main(x, values, col_idx, row_ptr, bias, mult, shift, out)``: ``x`` int8
        ``params.input_shape`` (NHWC), ``values`` int8 ``[kept * Cin]``, ``col_idx`` int16
        ``[kept]``, ``row_ptr`` int16 ``[Cout + 1]``, ``bias`` / ``mult`` / ``shift`` int32
        ``[Cout]``, ``out`` int8 ``params.output_shape``.
        Attributes ``{"dtmm.op": "conv2d_filterlet", "op_pattern": 8}``.
    """
    from ..sparsity.storage import FORMATS, fits

    if fmt not in FORMATS:
        raise ValueError(f"unknown filterlet format {fmt!r}; known: {FORMATS}")
    if fmt == "filterlet_csr":
        _check(params, kept_filterlets)
    elif params.depthwise or not fits(fmt, params.weight_shape):
        raise ValueError(f"weights {params.weight_shape} do not fit the {fmt} format")
    if schedule is None:  # tuning records (dtmm_tvm.schedules.apply_records) first, then the default
        schedule = lookup_schedule("conv2d_filterlet", params, target, kept_filterlets=kept_filterlets)
    target, schedule = resolve(params, target, schedule)
    if schedule.micro_kernel:
        from .conv2d_micro import build_conv_micro

        return build_conv_micro(params, kept_filterlets, target, schedule, "conv2d_filterlet", fmt)
    if fmt != "filterlet_csr":
        return _plain_indexed(params, kept_filterlets, fmt)
    n_size, _, _, cin = params.input_shape
    _, oh_size, ow_size, cout = params.output_shape
    out_zp, act_min, act_max = params.output_zero_point, params.act_min, params.act_max
    x_shape, o_shape = params.input_shape, params.output_shape
    kept = kept_filterlets
    accumulate = _accumulate_tap(params)

    requantize_store_of_layer = requantize_macro(params)  # TFLite or ONNX records
    @T.prim_func
    def conv2d_filterlet(
        x: T.Buffer(x_shape, "int8"),
        values: T.Buffer((kept * cin,), "int8"),
        col_idx: T.Buffer((kept,), "int16"),
        row_ptr: T.Buffer((cout + 1,), "int16"),
        bias: T.Buffer((cout,), "int32"),
        mult: T.Buffer((cout,), "int32"),
        shift: T.Buffer((cout,), "int32"),
        out: T.Buffer(o_shape, "int8"),
    ):
        acc = T.decl_buffer((1,), "int32", scope="global")
        for n, oh, ow, o in T.grid(n_size, oh_size, ow_size, cout):
            acc[0] = 0
            # Only this filter's kept filterlets: the data-dependent loop that makes pruning pay.
            for j in range(T.Cast("int32", row_ptr[o]), T.Cast("int32", row_ptr[o + 1])):
                # col_idx = (kh*KW + kw)*Cin >= 0, so truncating division is exact and cheap in C.
                accumulate(acc, x, values, n, oh, ow, T.truncdiv(T.Cast("int32", col_idx[j]), cin), j)
            requantize_store_of_layer(out, (n, oh, ow, o), acc[0] + bias[o], mult[o], shift[o], out_zp, act_min, act_max)

    return with_attrs(conv2d_filterlet, "conv2d_filterlet")


def _plain_indexed(params: Conv2DParams, kept: int, fmt: str) -> tirx.PrimFunc:
    """The plain TIR loop nest for the byte (``filterlet_u8``) and bitmask index formats."""
    n_size, _, _, cin = params.input_shape
    _, oh_size, ow_size, cout = params.output_shape
    kh_size, kw_size = params.kernel_size
    kk = kh_size * kw_size
    out_zp, act_min, act_max = params.output_zero_point, params.act_min, params.act_max
    x_shape, o_shape = params.input_shape, params.output_shape
    # exact buffer sizes, zero when every filterlet is pruned (the loops then never read them)
    mask_bytes = (cout * kk + 7) // 8 + 3
    accumulate = _accumulate_tap(params)

    requantize_store_of_layer = requantize_macro(params)  # TFLite or ONNX records
    # Only the chosen format's function is parsed (TVMScript parses where it is defined).
    if fmt == "filterlet_u8":
        @T.prim_func
        def conv2d_filterlet_u8(
            x: T.Buffer(x_shape, "int8"),
            values: T.Buffer((kept * cin,), "int8"),
            taps: T.Buffer((kept,), "uint8"),
            counts: T.Buffer((cout,), "uint8"),
            bias: T.Buffer((cout,), "int32"),
            mult: T.Buffer((cout,), "int32"),
            shift: T.Buffer((cout,), "int32"),
            out: T.Buffer(o_shape, "int8"),
        ):
            acc = T.decl_buffer((1,), "int32", scope="global")
            start = T.decl_buffer((1,), "int32", scope="global")
            for n, oh, ow in T.grid(n_size, oh_size, ow_size):
                start[0] = 0
                for o in range(cout):
                    acc[0] = 0
                    for jj in range(T.Cast("int32", counts[o])):
                        j: T.let = start[0] + jj
                        accumulate(acc, x, values, n, oh, ow, T.Cast("int32", taps[j]), j)
                    start[0] = start[0] + T.Cast("int32", counts[o])
                    requantize_store_of_layer(out, (n, oh, ow, o), acc[0] + bias[o], mult[o], shift[o], out_zp, act_min, act_max)
        func = conv2d_filterlet_u8
    else:
        @T.prim_func
        def conv2d_filterlet_bitmask(
            x: T.Buffer(x_shape, "int8"),
            values: T.Buffer((kept * cin,), "int8"),
            mask: T.Buffer((mask_bytes,), "uint8"),
            bias: T.Buffer((cout,), "int32"),
            mult: T.Buffer((cout,), "int32"),
            shift: T.Buffer((cout,), "int32"),
            out: T.Buffer(o_shape, "int8"),
        ):
            acc = T.decl_buffer((1,), "int32", scope="global")
            j = T.decl_buffer((1,), "int32", scope="global")
            for n, oh, ow in T.grid(n_size, oh_size, ow_size):
                j[0] = 0
                for o in range(cout):
                    acc[0] = 0
                    for tap in range(kk):
                        bit: T.let = o * kk + tap
                        if T.bitwise_and(T.shift_right(T.Cast("int32", mask[T.shift_right(bit, 3)]),
                                                       T.bitwise_and(bit, 7)), 1) != 0:
                            accumulate(acc, x, values, n, oh, ow, tap, j[0])
                            j[0] = j[0] + 1
                    requantize_store_of_layer(out, (n, oh, ow, o), acc[0] + bias[o], mult[o], shift[o], out_zp, act_min, act_max)
        func = conv2d_filterlet_bitmask
    return with_attrs(func, "conv2d_filterlet")


def conv2d_filterlet_float32(params: Conv2DParams, kept_filterlets: int) -> tirx.PrimFunc:
    """Build the float32 filterlet-sparse conv kernel (for float models; no bias, no requant).

    The graph keeps its own bias add. Kept filterlets are visited in (kh, kw) order and each in
    ``ci`` order, so the float sum has the same order as a dense conv over (kh, kw, ci) that
    skips zero filterlets (see :func:`dtmm_tvm.quant.conv.conv2d_float32`).

    Parameters
    ----------
    params
        The layer; zero points and the activation range are ignored.
    kept_filterlets
        Number of kept filterlets.

    Returns
    -------
    tvm.tirx.PrimFunc
        ``main(x, values, col_idx, row_ptr, out)``: ``x`` float32 NHWC, ``values`` float32
        ``[kept * Cin]``, ``col_idx`` int16 ``[kept]``, ``row_ptr`` int16 ``[Cout + 1]``, ``out``
        float32 ``params.output_shape``. Attributes
        ``{"dtmm.op": "conv2d_filterlet_float32", "op_pattern": 8}``.
    """
    _check(params, kept_filterlets)
    n_size, _, _, cin = params.input_shape
    _, oh_size, ow_size, cout = params.output_shape
    _, kw_size = params.kernel_size
    sh, sw = params.strides
    dh, dw = params.dilation
    pad_top, pad_left = params.padding[0], params.padding[1]
    x_shape, o_shape = params.input_shape, params.output_shape
    kept = kept_filterlets

    @T.prim_func
    def conv2d_filterlet_float32(
        x: T.Buffer(x_shape, "float32"),
        values: T.Buffer((kept * cin,), "float32"),
        col_idx: T.Buffer((kept,), "int16"),
        row_ptr: T.Buffer((cout + 1,), "int16"),
        out: T.Buffer(o_shape, "float32"),
    ):
        acc = T.decl_buffer((1,), "float32", scope="global")
        for n, oh, ow, o in T.grid(n_size, oh_size, ow_size, cout):
            acc[0] = T.float32(0)
            for j in range(T.Cast("int32", row_ptr[o]), T.Cast("int32", row_ptr[o + 1])):
                tap: T.let = T.truncdiv(T.Cast("int32", col_idx[j]), cin)
                kh: T.let = T.truncdiv(tap, kw_size)
                kw: T.let = T.truncmod(tap, kw_size)
                ih: T.let = oh * sh - pad_top + kh * dh
                iw: T.let = ow * sw - pad_left + kw * dw
                if tap_in_bounds(ih, iw, params):
                    for ci in range(cin):
                        acc[0] = acc[0] + x[n, ih, iw, ci] * values[j * cin + ci]
            out[n, oh, ow, o] = acc[0]

    return with_attrs(conv2d_filterlet_float32, "conv2d_filterlet_float32")
