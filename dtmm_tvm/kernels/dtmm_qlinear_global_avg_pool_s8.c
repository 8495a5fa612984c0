/* dtmm_qlinear_global_avg_pool_s8.c - ONNX GlobalAveragePool on int8 NHWC as onnxruntime's
 * QLinearGlobalAveragePool: per channel acc = sum(x) - x_zp * HW (int32, exact), then the float32
 * requantization of dtmm_requant_f32.h with scale = x_scale / (y_scale * HW) (computed at compile
 * time, dtmm_tvm/quant/onnx.py). scratch: dtmm_qlinear_global_avg_pool_s8_get_buffer_size(C)
 * bytes (the int32 channel sums), caller-provided. */
#include "dtmm_kernels.h"

int32_t dtmm_qlinear_global_avg_pool_s8_get_buffer_size(int32_t channels) { return channels * 4; }

void dtmm_qlinear_global_avg_pool_s8(int8_t *input, float *scale, int8_t *output, int32_t *scratch,
                                     int32_t batches, int32_t image_size, int32_t channels,
                                     int32_t input_zp, int32_t output_zp) {
  int32_t scale_bits;
  __builtin_memcpy(&scale_bits, scale, 4);
  for (int32_t n = 0; n < batches; ++n) {
    const int8_t *x = input + n * image_size * channels;
    for (int32_t c = 0; c < channels; ++c) scratch[c] = -input_zp * image_size;
    for (int32_t p = 0; p < image_size; ++p, x += channels)
      for (int32_t c = 0; c < channels; ++c) scratch[c] += x[c];
    for (int32_t c = 0; c < channels; ++c) {
      int32_t v = dtmm_requantize_f32(scratch[c], scale_bits) + output_zp;
      output[n * channels + c] = (int8_t)(v < -128 ? -128 : (v > 127 ? 127 : v));
    }
  }
}
