"""Regular int8 conv (dense and filterlet-sparse) as TIR + C micro-kernel calls.

Loop structure (set by :class:`dtmm_tvm.schedules.conv.ConvSchedule`)::

    bias_eff = dtmm_conv_bias_s8(fmt, weights, index, bias)  # once; MVE folds the input offset in
    for n, block in grid(N, ceil(OH*OW / P)):                 # P = pixels_per_block
        dtmm_conv_im2col_s8(&x[n], block pixels, group G)     # one call gathers the block
        for ob in range(ceil(Cout / OB)):                     # OB = channels_per_block
            dtmm_conv_block_s8(im2col, G, fmt, weights, index, channels ob*OB.., &out[...])

Small Cin (dense only, :func:`dtmm_tvm.schedules.conv.packed_patch`): the im2col call is
``dtmm_conv_im2col_packed_s8`` (the whole KH*KW*Cin patch as one run of chunks) and the block
call gets ``kk = 1, cin = KH*KW*Cin`` - one dense dot product per channel over the OHWI filter.

The im2col block and ``bias_eff`` are TIR allocations, so codegen places them in the arena.
The micro-kernels (``dtmm_tvm/kernels``) pick their MVE / DSP / portable path from the C
compiler's macros; the builder only needs the im2col layout sizes of the target
(:func:`dtmm_tvm.schedules.conv.group_width`, :func:`~dtmm_tvm.schedules.conv.row_bytes`).

Weight formats (``fmt``, see :mod:`dtmm_tvm.sparsity.storage`): ``"dense"`` (args
``x, w, bias, mult, shift, out``), ``"filterlet_csr"`` (``x, values, col_idx, row_ptr, ...``),
``"filterlet_u8"`` (``x, values, taps, counts, ...``), ``"filterlet_bitmask"``
(``x, values, mask, ...``), ``"filter_compact"`` (``x, w_kept, channels, fill, bias_kept,
mult_kept, shift_kept, out``: the dense kernel over the kept filters only, into a block of
scratch, then ``dtmm_expand_channels_s8`` writes the block's full output rows; see
:mod:`dtmm_tvm.ops.conv2d_compact`).
"""

from __future__ import annotations

from dataclasses import replace

from tvm import tirx
from tvm.script import tirx as T

from ..kernels import target_isa, with_c_kernels
from ..quant.conv import Conv2DParams
from ..sparsity.compact import COMPACT
from .common import with_attrs
from ..schedules.conv import ConvSchedule, block_tile_bytes, group_width, mve_fast_block, packed_patch, row_bytes

C_KERNELS = ["dtmm_conv_im2col_s8", "dtmm_conv_bias_s8", "dtmm_conv_block_s8"]  # + packed im2col / block (same files)


#: index format name -> DTMM_FMT_* code of dtmm_kernels.h
FORMAT_CODES = {"dense": 0, "filterlet_csr": 1, "filterlet_u8": 2, "filterlet_bitmask": 3}


def build_conv_micro(params: Conv2DParams, kept: int | None, target, schedule: ConvSchedule,
                     op_name: str, fmt: str | None = None) -> tirx.PrimFunc:
    """Dense (``kept is None``) or filterlet-sparse micro-kernel conv in index format ``fmt``
    (default ``"filterlet_csr"`` when sparse); ``fmt="filter_compact"``: ``kept`` is the number
    of kept filters, ``params`` the whole layer's."""
    isa = target_isa(target)
    if fmt is None:
        fmt = "dense" if kept is None else "filterlet_csr"
    full_shape = tuple(params.output_shape)
    full_cout = full_shape[3]
    compact = fmt == COMPACT
    if compact:
        # Everything below builds the dense conv of the kept filters; only where its output goes
        # (block scratch, then the expansion) differs.
        cout_k, kh_k, kw_k, cin_k = params.weight_shape
        if not 0 < kept < cout_k:
            raise ValueError(f"filter_compact needs 0 < kept filters < {cout_k}, got {kept}")
        params = replace(params, weight_shape=(kept, kh_k, kw_k, cin_k))
        fmt = "dense"
    if fmt not in FORMAT_CODES:
        raise ValueError(f"unknown weight format {fmt!r}; known: {sorted(FORMAT_CODES)} and {COMPACT!r}")
    code = FORMAT_CODES[fmt]
    n_size, height, width, cin = params.input_shape
    _, oh_size, ow_size, cout = params.output_shape
    kh_size, kw_size = params.kernel_size
    kk = kh_size * kw_size
    sh, sw = params.strides
    dh, dw = params.dilation
    pad_top, pad_left = params.padding[0], params.padding[1]
    input_offset = -params.input_zero_point
    out_zp, act_min, act_max = params.output_zero_point, params.act_min, params.act_max
    x_shape, w_shape, o_shape = params.input_shape, params.weight_shape, params.output_shape
    pixels = oh_size * ow_size
    ppb = min(schedule.pixels_per_block, pixels)
    group = group_width(ppb, isa)
    nblocks = (pixels + ppb - 1) // ppb
    # Small-Cin fast path (dense only): the whole KH*KW*Cin patch is one dot product, i.e. the
    # block kernel runs as a 1x1 conv with Cin' = KH*KW*Cin over the same OHWI weights.
    packed = packed_patch(params, isa, fmt)
    im2col_fn = "dtmm_conv_im2col_packed_s8" if packed else "dtmm_conv_im2col_s8"
    # MVE fast paths (same file and arguments): the packed patch's filters or a sparse Cin-16/32/64
    # channel's accumulators stay in registers
    block_fn = "dtmm_conv_block_mve_s8" if mve_fast_block(params, isa, fmt, group) else "dtmm_conv_block_s8"
    blk_kk, blk_cin = (1, kk * cin) if packed else (kk, cin)
    scratch = ppb * row_bytes(params, isa, packed)
    ob = schedule.channels_per_block or cout
    ob = min(ob, cout)
    nob = (cout + ob - 1) // ob
    kept_n = max(int(kept or 0), 1)
    mask_bytes = (cout * kk + 7) // 8 + 3
    null = tirx.call_intrin("handle", "tirx.reinterpret", tirx.const(0, "uint64"))
    tile_words = block_tile_bytes(isa) // 4  # the block kernel's MVE accumulator tile (0: none)

    @T.macro
    def block_calls(im2col, bias_eff, weights, index0, index1, mult, shift, npix, dest):
        # every channel block of one pixel block; output pixels `cout` bytes apart from dest
        for c in range(nob):
            T.evaluate(T.call_extern(
                "void", block_fn, im2col.access_ptr("r"), npix, group, code,
                weights, index0, index1, blk_kk, blk_cin, c * ob, T.min(c * ob + ob, cout),
                bias_eff.access_ptr("rw"), T.address_of(mult[0]), T.address_of(shift[0]),
                dest, cout, out_zp, act_min, act_max, T.address_of(bias_eff[cout])))

    @T.macro
    def conv_body(x, weights, index0, index1, bias, mult, shift, out, channels=None, fill=None):
        # The same three micro-kernel calls for every format; only the weight/index pointers differ.
        im2col = T.decl_buffer((scratch,), "int8", scope="global")
        # the effective bias, then the block kernel's accumulator tile (MVE; none elsewhere)
        bias_eff = T.decl_buffer((cout + tile_words,), "int32", scope="global")
        T.evaluate(T.call_extern("void", "dtmm_conv_bias_s8", code, weights, index0, index1, kk, cin, cout,
                                 T.address_of(bias[0]), input_offset, bias_eff.access_ptr("rw")))
        for n, blk in T.grid(n_size, nblocks):
            pix0: T.let = blk * ppb
            npix: T.let = T.min(ppb, pixels - pix0)
            T.evaluate(T.call_extern("void", im2col_fn, T.address_of(x[n, 0, 0, 0]), height, width, cin,
                                     ow_size, pix0, npix, group, kh_size, kw_size, sh, sw, dh, dw, pad_top, pad_left,
                                     input_offset, im2col.access_ptr("rw")))
            if compact:  # the kept channels into block scratch (rows of `cout` = kept), then expanded
                kept_rows = T.decl_buffer((ppb * cout,), "int8", scope="global")
                block_calls(im2col, bias_eff, weights, index0, index1, mult, shift, npix, kept_rows.access_ptr("w"))
                T.evaluate(T.call_extern("void", "dtmm_expand_channels_s8", kept_rows.access_ptr("r"), npix, cout,
                                         channels, fill, T.address_of(out[n, pix0 // ow_size, pix0 % ow_size, 0]),
                                         full_cout))
            else:
                block_calls(im2col, bias_eff, weights, index0, index1, mult, shift, npix,
                            T.address_of(out[n, pix0 // ow_size, pix0 % ow_size, 0]))

    # Only the chosen format's function is parsed: TVMScript parses a prim_func where it is
    # defined, and parsing is most of the time a conv takes to build.
    if compact:
        full_o_shape = full_shape

        @T.prim_func
        def filter_compact(
            x: T.Buffer(x_shape, "int8"),
            w: T.Buffer(w_shape, "int8"),
            channels: T.Buffer((cout,), "uint16"),
            fill: T.Buffer((full_cout,), "int8"),
            bias: T.Buffer((cout,), "int32"),
            mult: T.Buffer((cout,), "int32"),
            shift: T.Buffer((cout,), "int32"),
            out: T.Buffer(full_o_shape, "int8"),
        ):
            conv_body(x, T.address_of(w[0, 0, 0, 0]), null, null, bias, mult, shift, out,
                      T.address_of(channels[0]), T.address_of(fill[0]))
        func = filter_compact
    elif fmt == "dense":
        @T.prim_func
        def dense(
            x: T.Buffer(x_shape, "int8"),
            w: T.Buffer(w_shape, "int8"),
            bias: T.Buffer((cout,), "int32"),
            mult: T.Buffer((cout,), "int32"),
            shift: T.Buffer((cout,), "int32"),
            out: T.Buffer(o_shape, "int8"),
        ):
            conv_body(x, T.address_of(w[0, 0, 0, 0]), null, null, bias, mult, shift, out)
        func = dense
    elif fmt == "filterlet_csr":
        @T.prim_func
        def csr(
            x: T.Buffer(x_shape, "int8"),
            values: T.Buffer((kept_n * cin,), "int8"),
            col_idx: T.Buffer((kept_n,), "int16"),
            row_ptr: T.Buffer((cout + 1,), "int16"),
            bias: T.Buffer((cout,), "int32"),
            mult: T.Buffer((cout,), "int32"),
            shift: T.Buffer((cout,), "int32"),
            out: T.Buffer(o_shape, "int8"),
        ):
            conv_body(x, T.address_of(values[0]), T.address_of(col_idx[0]), T.address_of(row_ptr[0]),
                      bias, mult, shift, out)
        func = csr
    elif fmt == "filterlet_u8":
        @T.prim_func
        def u8(
            x: T.Buffer(x_shape, "int8"),
            values: T.Buffer((kept_n * cin,), "int8"),
            taps: T.Buffer((kept_n,), "uint8"),
            counts: T.Buffer((cout,), "uint8"),
            bias: T.Buffer((cout,), "int32"),
            mult: T.Buffer((cout,), "int32"),
            shift: T.Buffer((cout,), "int32"),
            out: T.Buffer(o_shape, "int8"),
        ):
            conv_body(x, T.address_of(values[0]), T.address_of(taps[0]), T.address_of(counts[0]),
                      bias, mult, shift, out)
        func = u8
    elif fmt == "filterlet_bitmask":
        @T.prim_func
        def bitmask(
            x: T.Buffer(x_shape, "int8"),
            values: T.Buffer((kept_n * cin,), "int8"),
            mask: T.Buffer((mask_bytes,), "uint8"),
            bias: T.Buffer((cout,), "int32"),
            mult: T.Buffer((cout,), "int32"),
            shift: T.Buffer((cout,), "int32"),
            out: T.Buffer(o_shape, "int8"),
        ):
            conv_body(x, T.address_of(values[0]), T.address_of(mask[0]), null, bias, mult, shift, out)
        func = bitmask

    func = with_attrs(func, op_name)
    return with_c_kernels(func, C_KERNELS + (["dtmm_expand_channels_s8"] if compact else []))
