"""ONNX Runtime's integer semantics of QDQ int8 models in numpy (CPU provider, default optimizations).

``quantize_static(..., QuantFormat.QDQ)`` writes ``DequantizeLinear -> op -> QuantizeLinear``
chains; ORT's graph optimizer fuses them into QLinearConv, QGemm, QLinearGlobalAveragePool and
QLinearSoftmax (on x86 after converting int8 activations to uint8 with ``zero_point + 128``, which
changes no result). What those kernels compute, read from ORT's sources
(``providers/cpu/quantization/qlinearconv.cc``, ``contrib_ops/cpu/quantization/quant_gemm.cc``,
``qlinear_global_average_pool.cc``, ``qlinear_softmax.cc``, ``mlas/lib/quantize.cpp``,
``mlas/lib/qlgavgpool.cpp``):

- the int32 accumulator is exact: ``acc = sum((x - x_zp) * w) + bias`` (weights symmetric);
- requantization is float32 (``MlasRequantizeOutput``)::

      scale = float32(float32(x_scale * w_scale[c]) / y_scale)          # Conv, Gemm (alpha = 1)
      y = RoundHalfToEven(clamp(float32(acc) * scale, qmin - y_zp, qmax - y_zp)) + y_zp

- GlobalAveragePool: ``acc = sum(x) - x_zp * HW``,
  ``scale = float32(x_scale / float32(y_scale * float32(HW)))``, then the same requantization;
- QuantizeLinear: ``y = RoundHalfToEven(clamp(x / scale, qmin - zp, qmax - zp)) + zp`` (a float32
  division, not a multiply by the reciprocal); DequantizeLinear: ``float32(x - zp) * scale``;
- Softmax: a 256-entry float32 table ``exp((i - 255 + shift) * x_scale)`` (computed in double),
  float32 sums in element order and ``RoundHalfToEven(float32(table * floor(1 / y_scale)) / sum)``.

The C kernels implement the requantization with the FPU (:data:`REQUANT_F32_TAG`); these numpy
functions are the reference they are tested against, and are themselves tested against
onnxruntime.
"""

from __future__ import annotations

import math

import numpy as np

INT8_MIN, INT8_MAX = -128, 127

#: Requantization modes of the layer parameter dataclasses (``requantization`` field).
REQUANTIZATION_MODES = ("tflite", "onnx")

#: The shift value that tags a requantization record (``mult[c]``, ``shift[c]``) as ONNX's:
#: ``mult[c]`` then holds the bits of the float32 scale. TFLite shifts lie in [-31, 30].
#: Must equal ``DTMM_REQUANT_F32`` in ``dtmm_tvm/kernels/dtmm_kernels.h``.
REQUANT_F32_TAG = 127


def _f32(value) -> np.float32:
    return np.float32(np.asarray(value, dtype=np.float32).reshape(-1)[0])


def output_scales(x_scale, w_scales, y_scale) -> np.ndarray:
    """Per-channel float32 requantization scales of QLinearConv / QGemm: ``(x_scale * w) / y``,
    each operation rounded to float32 in that order."""
    x, y = _f32(x_scale), _f32(y_scale)
    w = np.asarray(w_scales, dtype=np.float32).reshape(-1)
    return ((x * w).astype(np.float32) / y).astype(np.float32)


def global_avg_pool_scale(x_scale, y_scale, image_size: int) -> np.float32:
    """MLAS ``CheckQLinearGlobalAveragePoolScaleAndSize``: ``x / (y * float(HW))`` in float32."""
    return np.float32(_f32(x_scale) / np.float32(_f32(y_scale) * np.float32(image_size)))


def requant_records(scales) -> tuple[np.ndarray, np.ndarray]:
    """int32 ``(mult, shift)`` records carrying float32 ``scales`` (see :data:`REQUANT_F32_TAG`)."""
    scales = np.ascontiguousarray(np.asarray(scales, dtype=np.float32).reshape(-1))
    return scales.view(np.int32).copy(), np.full(scales.size, REQUANT_F32_TAG, dtype=np.int32)


def is_f32_records(shift) -> bool:
    """True when the requantization records are ONNX float32 ones (every shift tagged)."""
    shift = np.asarray(shift).reshape(-1)
    tagged = shift == REQUANT_F32_TAG
    if tagged.any() and not tagged.all():
        raise ValueError("mixed TFLite and ONNX requantization records in one layer")
    return bool(tagged.all()) and shift.size > 0


def round_half_even_f32(value) -> np.ndarray:
    """float32 -> nearest integer, ties to even (``nearbyintf`` in the default rounding mode)."""
    return np.rint(np.asarray(value, dtype=np.float32)).astype(np.int64)


def requantize_f32(acc, scales, zero_point: int, act_min: int = INT8_MIN, act_max: int = INT8_MAX) -> np.ndarray:
    """``MlasRequantizeOutput``: int32 ``acc`` (channels last) -> int8 with float32 ``scales``."""
    scaled = np.asarray(acc, dtype=np.int64).astype(np.int32).astype(np.float32) * np.asarray(scales, np.float32)
    scaled = np.clip(scaled.astype(np.float32), np.float32(act_min - zero_point), np.float32(act_max - zero_point))
    return (round_half_even_f32(scaled) + int(zero_point)).astype(np.int8)


def requantize_records(acc, mult, shift, zero_point: int, act_min: int = INT8_MIN, act_max: int = INT8_MAX) -> np.ndarray:
    """Requantize with per-channel records of either mode (TFLite fixed point or ONNX float32)."""
    if is_f32_records(shift):
        scales = np.asarray(mult, dtype=np.int32).view(np.float32)
        return requantize_f32(acc, scales, zero_point, act_min, act_max)
    from .fixed_point import requantize

    return requantize(acc, mult, shift, zero_point, act_min, act_max)


def quantize_linear(x, scale, zero_point: int) -> np.ndarray:
    """ONNX QuantizeLinear to int8 as MLAS computes it (float32 division, round half to even)."""
    s = _f32(scale)
    value = np.asarray(x, dtype=np.float32) / s
    value = np.clip(value, np.float32(INT8_MIN - zero_point), np.float32(INT8_MAX - zero_point))
    return (round_half_even_f32(value) + int(zero_point)).astype(np.int8)


def dequantize_linear(q, scale, zero_point: int) -> np.ndarray:
    """ONNX DequantizeLinear of int8: ``float32(q - zero_point) * scale``."""
    return ((np.asarray(q, np.int32) - int(zero_point)).astype(np.float32) * _f32(scale)).astype(np.float32)


def global_avg_pool(x_nhwc, x_scale, x_zp: int, y_scale, y_zp: int) -> np.ndarray:
    """QLinearGlobalAveragePool on int8 NHWC: ``(N, 1, 1, C)`` int8."""
    x = np.asarray(x_nhwc, dtype=np.int64)
    n, h, w, c = x.shape
    acc = x.sum(axis=(1, 2)) - int(x_zp) * h * w
    out = requantize_f32(acc, global_avg_pool_scale(x_scale, y_scale, h * w), y_zp)
    return out.reshape(n, 1, 1, c)


def softmax_table(x_scale, depth: int) -> np.ndarray:
    """QLinearSoftmax's 256-entry float32 table, indexed by ``x - max(x) + 255`` (uint8 view)."""
    x_scale = float(_f32(x_scale))
    bit_shift = math.log(float(np.finfo(np.float32).max) / depth)
    bit_shift = max(0.0, bit_shift - 5.0) / x_scale
    return np.array([math.exp((i - 255 + bit_shift) * x_scale) for i in range(256)], dtype=np.float32)


def softmax_y_scale(y_scale) -> np.float32:
    """``floor(1.0f / y_scale)`` as float32 (QLinearSoftmax multiplies by it)."""
    return np.float32(np.floor(np.float32(1.0) / _f32(y_scale)))


def softmax(x, x_scale, y_scale, y_zp: int) -> np.ndarray:
    """QLinearSoftmax over the last axis of int8 ``x``."""
    x = np.asarray(x, dtype=np.int32)
    rows = x.reshape(-1, x.shape[-1])
    table = softmax_table(x_scale, rows.shape[1])
    ys = softmax_y_scale(y_scale)
    out = np.empty(rows.shape, np.int8)
    for r, row in enumerate(rows):
        values = table[row - row.max() + 255]
        total = np.float32(0.0)
        for v in values:  # float32, element order
            total = np.float32(total + v)
        q = round_half_even_f32((values * ys).astype(np.float32) / total) + int(y_zp)
        out[r] = np.clip(q, INT8_MIN, INT8_MAX).astype(np.int8)
    return out.reshape(x.shape)


# ---------------------------------------------------------------------------------------------
# QLinearAdd / QLinearMul (elementwise, both inputs of one shape), as ORT computes them on x86
# (read from MLAS qladd_avx2.cpp / qlmul.cpp, each step confirmed against onnxruntime).
# Values and zero points are in the model's own activation type (uint8 for quantize_static's
# default QUInt8: the int8 tensors of the compiled model plus 128), ``qmin``/``qmax`` its range.
# ---------------------------------------------------------------------------------------------
def fma_f32(a, b, c) -> np.ndarray:
    """float32 ``a * b + c`` with one rounding (C ``fmaf``): the product of two float32 is exact in
    float64, the float64 sum's own error is recovered (TwoSum) to round a float32 tie correctly."""
    a, b, c = (np.asarray(v, np.float32).astype(np.float64) for v in (a, b, c))
    p = a * b
    s = p + c
    bp = s - c
    err = (p - bp) + (c - (s - bp))  # s + err == p + c exactly
    r = s.astype(np.float32)
    # float64 -> float32 rounding of s alone is wrong only when s sits exactly on a float32 tie
    # and err says which side the exact sum is on.
    r64 = r.astype(np.float64)
    up = np.nextafter(r, np.float32(np.inf)).astype(np.float64)
    down = np.nextafter(r, np.float32(-np.inf)).astype(np.float64)
    tie_up = (s - r64 == (up - r64) / 2) & (err < 0)     # rounded up from a tie, exact sum below it
    tie_down = (r64 - s == (r64 - down) / 2) & (err > 0)  # rounded down from a tie, exact sum above
    r = np.where(tie_up, down.astype(np.float32), r)
    return np.where(tie_down, up.astype(np.float32), r).astype(np.float32)


def qlinear_add_params(a_scale, a_zp: int, b_scale, b_zp: int, y_scale, y_zp: int) -> np.ndarray:
    """``[ratio_a, ratio_b, fixed]`` float32 of MLAS's AVX2 QLinearAdd: ``ratio = x_scale / y_scale``
    and ``fixed = y_zp - (ratio_a * a_zp + ratio_b * b_zp)`` in float32, where the compiler of ORT's
    wheel contracted ``ratio_a * a_zp + (ratio_b * b_zp)`` into one fused multiply-add (measured:
    the only one of the three orders that matches onnxruntime on every case where they differ)."""
    y = _f32(y_scale)
    ratio_a, ratio_b = np.float32(_f32(a_scale) / y), np.float32(_f32(b_scale) / y)
    zero_part = fma_f32(ratio_a, np.float32(a_zp), np.float32(ratio_b * np.float32(b_zp)))
    return np.array([ratio_a, ratio_b, np.float32(np.float32(y_zp) - zero_part)], np.float32)


def qlinear_add(a, b, params, qmin: int, qmax: int) -> np.ndarray:
    """QLinearAdd (AVX2 kernel): ``saturate(RoundHalfToEven(fma(a, ra, fma(b, rb, fixed))))``."""
    ratio_a, ratio_b, fixed = (np.float32(v) for v in np.asarray(params, np.float32))
    t = fma_f32(np.asarray(b, np.float32), ratio_b, fixed)
    t = fma_f32(np.asarray(a, np.float32), ratio_a, t)
    return np.clip(round_half_even_f32(t), qmin, qmax)


def qlinear_mul_scale(a_scale, b_scale, y_scale) -> np.float32:
    """MLAS QLinearMul's ``ScaleA * ScaleB / ScaleC`` in float32, left to right."""
    return np.float32(np.float32(_f32(a_scale) * _f32(b_scale)) / _f32(y_scale))


def qlinear_mul(a, b, a_zp: int, b_zp: int, ratio, y_zp: int, qmin: int, qmax: int) -> np.ndarray:
    """QLinearMul (SSE2 kernel): ``saturate(RoundHalfToEven(float32(p * ratio) + float32(y_zp)))``
    with ``p = (a - a_zp) * (b - b_zp)``: the zero point is added in float32 before the rounding
    (measured: rounding first, then adding it, differs from onnxruntime at ties)."""
    product = (np.asarray(a, np.int32) - a_zp) * (np.asarray(b, np.int32) - b_zp)
    scaled = (product.astype(np.float32) * np.float32(ratio)).astype(np.float32)
    return np.clip(round_half_even_f32((scaled + np.float32(y_zp)).astype(np.float32)), qmin, qmax)
