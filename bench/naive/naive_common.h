/* The naive baseline: TensorFlow Lite Micro's reference integer arithmetic, written as a
 * plain C loop nest (no SIMD, no im2col, runtime layer parameters as in TFLM).
 * Requantization is TFLM's default double rounding MultiplyByQuantizedMultiplier. */
#ifndef NAIVE_COMMON_H_
#define NAIVE_COMMON_H_
#include <stdint.h>

typedef struct {
  int32_t in_h, in_w, in_c;       /* input NHWC (batch 1) */
  int32_t out_h, out_w, out_c;    /* output NHWC */
  int32_t k_h, k_w;               /* kernel */
  int32_t stride_h, stride_w;
  int32_t dilation_h, dilation_w;
  int32_t pad_top, pad_left;
  int32_t depth_multiplier;       /* depthwise only */
  int32_t input_offset;           /* -input zero point */
  int32_t filter_offset;          /* -weight zero point (0 for int8 TFLite) */
  int32_t output_offset;          /* output zero point */
  int32_t act_min, act_max;
} naive_params_t;

static inline int32_t naive_srdhm(int32_t a, int32_t b) {
  int overflow = (a == b) && (a == INT32_MIN);
  int64_t ab = (int64_t)a * (int64_t)b;
  int32_t nudge = ab >= 0 ? (1 << 30) : (1 - (1 << 30));
  int32_t high = (int32_t)((ab + nudge) / (1ll << 31));
  return overflow ? INT32_MAX : high;
}

static inline int32_t naive_rdbpot(int32_t x, int exponent) {
  const int32_t mask = (int32_t)((1ll << exponent) - 1);
  const int32_t remainder = x & mask;
  const int32_t threshold = (mask >> 1) + ((x < 0) ? 1 : 0);
  return (x >> exponent) + ((remainder > threshold) ? 1 : 0);
}

static inline int32_t naive_requant(int32_t x, int32_t multiplier, int32_t shift) {
  int left_shift = shift > 0 ? shift : 0;
  int right_shift = shift > 0 ? 0 : -shift;
  return naive_rdbpot(naive_srdhm((int32_t)((uint32_t)x << left_shift), multiplier), right_shift);
}

#endif /* NAIVE_COMMON_H_ */
