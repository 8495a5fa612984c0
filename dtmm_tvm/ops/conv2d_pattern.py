"""The pattern-pruning baseline's operator: an int8 conv over PatDNN-style pattern weights.

The weights arrive as :func:`dtmm_tvm.sparsity.pattern.pack_patterns` stores them (values, a
per-kernel ``pattern * Cin + channel`` index, per-filter counts and the pattern table); the
whole layer is one call per image of the C micro-kernel ``dtmm_conv_pattern_s8``
(``dtmm_tvm/kernels``), which gathers each block of output pixels once per pattern and then
does one 4-tap dot product per kept kernel. Bias, requantization (TFLM double rounding or
ONNX float32 records), output offset and clamp are the same arithmetic as every other conv of
the project, so the result equals :func:`dtmm_tvm.quant.conv.conv2d` on the unpacked weights.
"""

from __future__ import annotations

from tvm import tirx
from tvm.script import tirx as T

from ..kernels import target_isa, with_c_kernels
from ..quant.conv import Conv2DParams
from .common import with_attrs

C_KERNELS = ["dtmm_conv_pattern_s8"]
#: Bytes per (pattern, channel) chunk of the kernel's pattern im2col (CHUNK of the C file).
CHUNK = 32


def scratch_bytes(patterns: int, cin: int, cout: int) -> int:
    """``dtmm_conv_pattern_s8_get_buffer_size`` (effective bias, padding row, one pixel block's
    pattern im2col, 16 bytes of alignment slack)."""
    return 16 + 4 * cout + ((cin + 15) & ~15) + patterns * cin * CHUNK


def conv2d_pattern_int8(params: Conv2DParams, kept_kernels: int, patterns: int, *, target=None) -> tirx.PrimFunc:
    """Build the int8 pattern conv of one layer.

    Parameters
    ----------
    params
        The layer (regular conv, OHWI ``weight_shape`` of the dense weights).
    kept_kernels, patterns
        ``PackedPatterns.kept_kernels`` / ``.patterns``: they fix the constant buffers' sizes.
    target
        A C target (default ``Target.current()``); the micro-kernel takes its MVE / DSP /
        portable path from it.

    Returns
    -------
    tvm.tirx.PrimFunc
        ``main(x, values, kidx, counts, taps, bias, mult, shift, out)``: ``x`` int8 NHWC,
        ``values`` int8 ``[4 * kept]``, ``kidx`` int16 ``[kept]``, ``counts`` int16 ``[Cout]``,
        ``taps`` uint8 ``[4 * patterns]``, ``bias`` / ``mult`` / ``shift`` int32 ``[Cout]``,
        ``out`` int8. Attributes ``{"dtmm.op": "conv2d_pattern", "op_pattern": 8}`` and
        ``"dtmm.c_kernels"``.
    """
    import tvm

    from ..sparsity.pattern import MAX_PATTERNS

    if target is None:
        target = tvm.target.Target.current(allow_none=True)
    if target is None or str(target.kind.name) != "c":
        raise ValueError("the pattern conv is a C micro-kernel: it needs a C target (kind 'c')")
    if params.depthwise:
        raise ValueError("the pattern kernel is for regular convs, not depthwise")
    cout, kh_size, kw_size, cin = params.weight_shape
    if not 1 <= patterns <= MAX_PATTERNS:
        raise ValueError(f"{patterns} patterns outside [1, {MAX_PATTERNS}]")
    if not 1 <= kept_kernels <= cout * cin:
        raise ValueError(f"kept_kernels={kept_kernels} outside [1, {cout * cin}]")
    if kh_size * kw_size > 255 or patterns * cin > 2**15 - 1:
        raise ValueError(f"weights {params.weight_shape} overflow the pattern index")
    target_isa(target)  # the archive's ISA picks the C path; sizes below are ISA-independent
    n_size, height, width, _ = params.input_shape
    _, oh_size, ow_size, _ = params.output_shape
    sh, sw = params.strides
    dh, dw = params.dilation
    pad_top, pad_left = params.padding[0], params.padding[1]
    input_offset = -params.input_zero_point
    out_zp, act_min, act_max = params.output_zero_point, params.act_min, params.act_max
    x_shape, o_shape = params.input_shape, params.output_shape
    kept, npat = kept_kernels, patterns
    scratch = scratch_bytes(npat, cin, cout)

    @T.prim_func
    def conv2d_pattern(
        x: T.Buffer(x_shape, "int8"),
        values: T.Buffer((4 * kept,), "int8"),
        kidx: T.Buffer((kept,), "int16"),
        counts: T.Buffer((cout,), "int16"),
        taps: T.Buffer((4 * npat,), "uint8"),
        bias: T.Buffer((cout,), "int32"),
        mult: T.Buffer((cout,), "int32"),
        shift: T.Buffer((cout,), "int32"),
        out: T.Buffer(o_shape, "int8"),
    ):
        buf = T.decl_buffer((scratch,), "int8", scope="global")
        for n in range(n_size):
            T.evaluate(T.call_extern(
                "void", "dtmm_conv_pattern_s8", T.address_of(x[n, 0, 0, 0]), height, width, cin, oh_size,
                ow_size, kw_size, sh, sw, dh, dw, pad_top, pad_left, input_offset, npat,
                T.address_of(taps[0]), T.address_of(values[0]), T.address_of(kidx[0]),
                T.address_of(counts[0]), cout, T.address_of(bias[0]), T.address_of(mult[0]),
                T.address_of(shift[0]), out_zp, act_min, act_max, T.address_of(out[n, 0, 0, 0]),
                buf.access_ptr("rw")))

    return with_c_kernels(with_attrs(conv2d_pattern, "conv2d_pattern"), C_KERNELS)
