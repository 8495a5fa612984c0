/* dtmm_dequantize_linear_s8.c - ONNX DequantizeLinear int8 -> float32: y = (float)(x - zp) * scale,
 * one float32 multiply (onnxruntime's DequantizeLinear). No scratch. */
#include "dtmm_kernels.h"

void dtmm_dequantize_linear_s8(int8_t *input, float *scale, float *output, int32_t size, int32_t zero_point) {
  const float s = scale[0];
  for (int32_t i = 0; i < size; ++i) output[i] = (float)((int32_t)input[i] - zero_point) * s;
}
