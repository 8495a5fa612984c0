/* dtmm_quantize_linear_s8.c - ONNX QuantizeLinear float32 -> int8, as onnxruntime (MLAS) does it:
 *     y = RoundHalfToEven(clamp(x / scale, -128 - zp, 127 - zp)) + zp
 * (a float32 division, not a multiply by 1/scale; see dtmm_requant_f32.h for the rounding). Scalar
 * on every ISA (the model input, once per inference). A NaN input gives zp. No scratch. */
#include "dtmm_kernels.h"

void dtmm_quantize_linear_s8(float *input, float *scale, int8_t *output, int32_t size, int32_t zero_point) {
  const float s = scale[0];
  const float lo = (float)(-128 - zero_point), hi = (float)(127 - zero_point);
  for (int32_t i = 0; i < size; ++i) {
    float v = input[i] / s;
    v = v > lo ? v : lo; /* also maps NaN to lo; then clamped below */
    v = v < hi ? v : hi;
    output[i] = (int8_t)(dtmm_round_half_even_f32(v) + zero_point);
  }
}
