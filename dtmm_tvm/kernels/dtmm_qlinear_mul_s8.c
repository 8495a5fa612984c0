/* dtmm_qlinear_mul_s8.c - ONNX Mul of two int8 tensors of one shape as onnxruntime's QLinearMul
 * computes it on x86 (MlasQLinearMulKernel, SSE2, every element, tails included):
 *     y = saturate(RoundHalfToEven(float32(float32(p * ratio) + y_zp))),  p = (a - a_zp) * (b - b_zp)
 * with a, b and the zero points in the model's own activation type (uint8 models: x + 128,
 * offset = 128) and ratio = float32(float32(a_scale * b_scale) / y_scale), computed at compile
 * time (dtmm_tvm/quant/onnx.py, qlinear_mul_scale). The output zero point is added in float
 * before the rounding (so a tie rounds to even in the output's own type). p is exact in float32
 * (|p| <= 255 * 255); the clamp between the multiply and the add keeps -ffp-contract from fusing
 * them, and changes no result (saturation follows). No scratch. */
#include "dtmm_kernels.h"

int32_t dtmm_qlinear_mul_s8_get_buffer_size(void) { return 0; }

void dtmm_qlinear_mul_s8(int8_t *a, int8_t *b, float *ratio, int8_t *output, int32_t size, int32_t offset,
                         int32_t a_zp, int32_t b_zp, int32_t y_zp, int32_t act_min, int32_t act_max) {
  const float scale = ratio[0], zero_point = (float)y_zp;
  for (int32_t i = 0; i < size; ++i) {
    float t = (float)((a[i] + offset - a_zp) * (b[i] + offset - b_zp)) * scale;
    t = t < -65536.0f ? -65536.0f : (t > 65536.0f ? 65536.0f : t);
    int32_t v = dtmm_round_half_even_f32(t + zero_point);
    v = v < act_min ? act_min : (v > act_max ? act_max : v);
    output[i] = (int8_t)(v - offset);
  }
}
