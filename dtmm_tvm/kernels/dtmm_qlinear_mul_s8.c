/* dtmm_qlinear_mul_s8.c - ONNX Mul of two int8 tensors of one shape as onnxruntime's QLinearMul
 * computes it on x86 (MlasQLinearMulKernel, SSE2, every element, tails included):
 *     y = saturate(RoundHalfToEven(float((a - a_zp) * (b - b_zp)) * ratio) + y_zp)
 * with a, b and the zero points in the model's own activation type (uint8 models: x + 128,
 * offset = 128) and ratio = float32(float32(a_scale * b_scale) / y_scale), computed at compile
 * time (dtmm_tvm/quant/onnx.py, qlinear_mul_scale). The integer product is exact in float32
 * (|p| <= 255 * 255); the rounding is that of dtmm_requant_f32.h. No scratch. */
#include "dtmm_kernels.h"

int32_t dtmm_qlinear_mul_s8_get_buffer_size(void) { return 0; }

void dtmm_qlinear_mul_s8(int8_t *a, int8_t *b, float *ratio, int8_t *output, int32_t size,
                         int32_t offset, int32_t a_zp, int32_t b_zp, int32_t y_zp, int32_t act_min,
                         int32_t act_max) {
  int32_t ratio_bits;
  __builtin_memcpy(&ratio_bits, ratio, 4);
  for (int32_t i = 0; i < size; ++i) {
    const int32_t product = (a[i] + offset - a_zp) * (b[i] + offset - b_zp);
    int32_t v = dtmm_requantize_f32(product, ratio_bits) + y_zp;
    v = v < act_min ? act_min : (v > act_max ? act_max : v);
    output[i] = (int8_t)(v - offset);
  }
}
