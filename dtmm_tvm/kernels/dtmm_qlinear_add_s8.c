/* dtmm_qlinear_add_s8.c - ONNX Add of two int8 tensors of one shape as onnxruntime's QLinearAdd
 * computes it on x86 with AVX2 (MlasQLinearAddKernelAvx2Helper, every element, tails included):
 *     t = fma(a, ratio_a, fma(b, ratio_b, fixed)),  y = saturate(RoundHalfToEven(t))
 * with a, b in the model's own activation type (uint8 models: x + 128, offset = 128) and
 * ratio_a = a_scale / y_scale, ratio_b = b_scale / y_scale, fixed = y_zp - (ratio_a * a_zp +
 * ratio_b * b_zp), all float32 and computed at compile time (dtmm_tvm/quant/onnx.py,
 * qlinear_add_params). The fused multiply-adds are single-rounding (VFMA.F32 on an FPv4/FPv5 FPU,
 * fmaf elsewhere); the rounding is that of dtmm_requant_f32.h. No scratch. */
#include "dtmm_kernels.h"

int32_t dtmm_qlinear_add_s8_get_buffer_size(void) { return 0; }

void dtmm_qlinear_add_s8(int8_t *a, int8_t *b, float *params, int8_t *output, int32_t size,
                         int32_t offset, int32_t act_min, int32_t act_max) {
  const float ratio_a = params[0], ratio_b = params[1], fixed = params[2];
  for (int32_t i = 0; i < size; ++i) {
    float t = __builtin_fmaf((float)(b[i] + offset), ratio_b, fixed);
    t = __builtin_fmaf((float)(a[i] + offset), ratio_a, t);
    t = t < -65536.0f ? -65536.0f : (t > 65536.0f ? 65536.0f : t);
    int32_t v = dtmm_round_half_even_f32(t);
    v = v < act_min ? act_min : (v > act_max ? act_max : v);
    output[i] = (int8_t)(v - offset);
  }
}
