/* dtmm_qlinear_avg_pool_s8.c - ONNX AveragePool on int8 NHWC as onnxruntime's QLinearAveragePool
 * computes it (contrib_ops/cpu/quantization/qlinear_pool.cc) when the window is not the whole
 * image (that case is QLinearGlobalAveragePool, dtmm_qlinear_global_avg_pool_s8.c):
 *   every input value is dequantized to float32 (table[x + 128] = x_scale * (x - x_zp), built at
 *   compile time), each window summed in float32 row by row (rows top to bottom, columns left to
 *   right, padding skipped), divided by the element count (the window's area with
 *   count_include_pad, else its taps inside the image), then y = RoundHalfToEven(sum / y_scale +
 *   y_zp) saturated, in the model's own activation type (uint8 models: offset 128).
 * Every float step is one operation in ORT's order (no contraction possible: add, divide, add).
 * scratch: dtmm_qlinear_avg_pool_s8_get_buffer_size(C) bytes (float32 channel sums). */
#include "dtmm_kernels.h"

int32_t dtmm_qlinear_avg_pool_s8_get_buffer_size(int32_t channels) { return channels * 4; }

void dtmm_qlinear_avg_pool_s8(int8_t *input, float *table, float *y_scale, int8_t *output, float *scratch,
                              int32_t batches, int32_t height, int32_t width, int32_t channels,
                              int32_t out_height, int32_t out_width, int32_t kernel_h, int32_t kernel_w,
                              int32_t stride_h, int32_t stride_w, int32_t pad_top, int32_t pad_left,
                              int32_t count_include_pad, int32_t offset, int32_t output_zp, int32_t act_min,
                              int32_t act_max) {
  const float scale = y_scale[0], zero_point = (float)output_zp;
  for (int32_t n = 0; n < batches; ++n) {
    const int8_t *x = input + n * height * width * channels;
    for (int32_t oy = 0; oy < out_height; ++oy) {
      int32_t h0 = oy * stride_h - pad_top;
      const int32_t h1 = h0 + kernel_h < height ? h0 + kernel_h : height;
      h0 = h0 > 0 ? h0 : 0;
      for (int32_t ox = 0; ox < out_width; ++ox) {
        int32_t w0 = ox * stride_w - pad_left;
        const int32_t w1 = w0 + kernel_w < width ? w0 + kernel_w : width;
        w0 = w0 > 0 ? w0 : 0;
        for (int32_t c = 0; c < channels; ++c) scratch[c] = 0.0f;
        for (int32_t h = h0; h < h1; ++h)
          for (int32_t w = w0; w < w1; ++w) {
            const int8_t *px = x + (h * width + w) * channels;
            for (int32_t c = 0; c < channels; ++c) scratch[c] += table[px[c] + 128];
          }
        const float count = (float)(count_include_pad ? kernel_h * kernel_w : (h1 - h0) * (w1 - w0));
        int8_t *out = output + ((n * out_height + oy) * out_width + ox) * channels;
        for (int32_t c = 0; c < channels; ++c) {
          float v = scratch[c] / count / scale;
          v = v < -65536.0f ? -65536.0f : (v > 65536.0f ? 65536.0f : v);
          int32_t q = dtmm_round_half_even_f32(v + zero_point);
          q = q < act_min ? act_min : (q > act_max ? act_max : q);
          out[c] = (int8_t)(q - offset);
        }
      }
    }
  }
}
