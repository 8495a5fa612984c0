"""TFLM's int8 MEAN over the spatial axes of NHWC: parameters and a bit-exact numpy reference.

TFLM (``EvalMeanHelper`` -> ``EvalIntegerMean`` -> ``reference_ops::QuantizedMeanOrSumExtraArgs``)
runs one integer path for every int8 MEAN, whether or not the input and output quantization are
equal: sum the int8 inputs in int32, subtract ``input_zero_point * count``, and requantize with
``MultiplyByQuantizedMultiplier`` using ``QuantizeMultiplier(input_scale / output_scale)`` with the
``1 / count`` folded in: ``shift = min(floor(log2(count)), 32, 31 + output_shift)``,
``multiplier = (multiplier << shift) // count``, ``output_shift -= shift``. (Older TFLM releases had
a float path for unequal scales and a truncating division for equal ones; the ``tflite-micro``
package this project checks against uses the integer path for both, which the tests confirm.)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .fixed_point import multiply_by_quantized_multiplier, quantize_multiplier


@dataclass(frozen=True)
class MeanParams:
    """Integer parameters of an int8 MEAN over axes 1 and 2 of an NHWC tensor."""

    input_shape: tuple[int, int, int, int]  # N, H, W, C
    keep_dims: bool
    count: int  # H * W, the number of averaged elements
    input_zero_point: int
    output_zero_point: int
    multiplier: int  # Q31, already divided by ``count``
    shift: int  # MultiplyByQuantizedMultiplier shift (negative: right)

    @property
    def output_shape(self) -> tuple[int, ...]:
        n, _, _, c = self.input_shape
        return (n, 1, 1, c) if self.keep_dims else (n, c)


def mean_params(input_shape, keep_dims: bool, in_scale: float, in_zp: int, out_scale: float, out_zp: int) -> MeanParams:
    """Compute :class:`MeanParams` like TFLM's ``PrepareMeanOrSumHelper`` plus the per-Eval rescale.

    Parameters
    ----------
    input_shape
        ``(N, H, W, C)``; the reduction is over H and W (axes 1, 2).
    keep_dims
        ``ReducerOptions.keep_dims``: output ``(N, 1, 1, C)`` or ``(N, C)``.
    in_scale, in_zp, out_scale, out_zp
        TFLite quantization of input and output (scales are float32 in the model).
    """
    n, h, w, c = (int(d) for d in input_shape)
    count = h * w
    real = float(np.float32(in_scale)) / float(np.float32(out_scale))
    multiplier, shift = quantize_multiplier(real)
    # Fold 1/count into the multiplier exactly as QuantizedMeanOrSum does (int64 truncating divide).
    extra = min(count.bit_length() - 1, 32, 31 + shift)
    multiplier = (multiplier << extra) // count
    return MeanParams(
        input_shape=(n, h, w, c),
        keep_dims=bool(keep_dims),
        count=count,
        input_zero_point=int(in_zp),
        output_zero_point=int(out_zp),
        multiplier=int(multiplier),
        shift=int(shift - extra),
    )


def mean_int8(x: np.ndarray, params: MeanParams) -> np.ndarray:
    """TFLM's integer ``QuantizedMeanOrSum`` (mean) over axes 1, 2 of an int8 NHWC array."""
    p = params
    total = np.asarray(x, dtype=np.int64).reshape(p.input_shape).sum(axis=(1, 2))
    shifted = total - p.input_zero_point * p.count
    out = multiply_by_quantized_multiplier(shifted, p.multiplier, p.shift) + p.output_zero_point
    return np.clip(out, -128, 127).astype(np.int8).reshape(p.output_shape)
