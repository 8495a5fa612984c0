/*
 * dtmm_conv_bias_s8.c - per-channel effective bias for dtmm_conv_block_s8.
 *
 * MVE: the int8 im2col rows hold raw input values, so sum((x + off) * w) is computed as
 * sum(x * w) + off * sum(w); sum(w) over the kept weights of a channel is folded into the bias
 * here, once per layer call (padding holds -off, so padded taps still contribute 0).
 * DSP/portable: the q15 rows already include the offset; the bias is copied.
 */
#include "dtmm_kernels.h"

#if defined(__ARM_FEATURE_MVE)
#include <arm_mve.h>
#endif

void dtmm_conv_bias_s8(const int8_t *values, const int16_t *row_ptr, int32_t row_len,
                       int32_t cout, const int32_t *bias, int32_t input_offset,
                       int32_t *bias_out) {
#if defined(__ARM_FEATURE_MVE)
  for (int32_t o = 0; o < cout; ++o) {
    int32_t begin = row_ptr ? (int32_t)row_ptr[o] * row_len : o * row_len;
    int32_t end = row_ptr ? (int32_t)row_ptr[o + 1] * row_len : (o + 1) * row_len;
    /* sparse: row_len is Cin (one filterlet) */
    const int8_t *w = values + begin;
    int32_t n = end - begin;
    int32_t sum = 0;
    while (n > 0) {
      const mve_pred16_t p = vctp8q((uint32_t)n);
      sum = vaddvaq_s8(sum, vldrbq_z_s8(w, p));
      w += 16;
      n -= 16;
    }
    bias_out[o] = bias[o] + input_offset * sum;
  }
#else
  (void)values;
  (void)row_ptr;
  (void)row_len;
  (void)input_offset;
  for (int32_t o = 0; o < cout; ++o) bias_out[o] = bias[o];
#endif
}
