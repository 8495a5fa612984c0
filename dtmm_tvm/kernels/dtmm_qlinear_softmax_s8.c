/* dtmm_qlinear_softmax_s8.c - ONNX Softmax (last axis) on int8 as onnxruntime's QLinearSoftmax:
 * e_i = table[x_i - max(x) + 255] (a 256-entry float32 table of exp((i - 255 + shift) * x_scale),
 * computed at compile time like ORT does, dtmm_tvm/quant/onnx.py), sum = float32 sum in element
 * order, y_i = RoundHalfToEven((e_i * y_scale_inv) / sum) + y_zp with y_scale_inv =
 * floor(1 / y_scale), clamped to int8. Float32 on the FPU. No scratch. */
#include "dtmm_kernels.h"

void dtmm_qlinear_softmax_s8(int8_t *input, float *table, float *y_scale_inv, int8_t *output, int32_t rows,
                             int32_t depth, int32_t output_zp) {
  const float ys = y_scale_inv[0];
  for (int32_t r = 0; r < rows; ++r) {
    const int8_t *x = input + r * depth;
    int8_t *y = output + r * depth;
    int32_t xmax = x[0];
    for (int32_t i = 1; i < depth; ++i) xmax = x[i] > xmax ? x[i] : xmax;
    const float *t = table + 255 - xmax;
    float sum = 0.0f;
    for (int32_t i = 0; i < depth; ++i) sum += t[x[i]];
    for (int32_t i = 0; i < depth; ++i) {
      float q = (t[x[i]] * ys) / sum; /* 0 <= q <= ys < 2^22 */
      int32_t v = dtmm_round_half_even_f32(q) + output_zp;
      y[i] = (int8_t)(v > 127 ? 127 : (v < -128 ? -128 : v));
    }
  }
}
