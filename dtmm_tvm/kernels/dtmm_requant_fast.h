/* dtmm_requant_fast.h - TFLM MultiplyByQuantizedMultiplier (double rounding) for the hot
 * requantization loops of the DSP / portable kernels, with the per-channel decisions hoisted.
 *
 * Exact for a TFLite record with multiplier in [0, 2^31) (callers keep their general path for
 * ONNX float32 records):
 *  - SaturatingRoundingDoublingHighMul(a, m) = (a*m + 2^30) >> 31 (floor) for every product
 *    when m >= 0 (the saturating case a = m = INT32_MIN cannot occur); |result| <= 2^31 - 2;
 *    for m >= 2^30 one SMMLAR (dtmm_rq_high).
 *  - RoundingDivideByPOT(h, e), e >= 1: with y = h - (h < 0), the result is (y >> e) plus bit
 *    e-1 of y (round half away from zero). On v7E-M: SUB (lsr #31), ASRS by register (the
 *    carry is the last bit shifted out), ADC #0: 3 instructions instead of TFLM's mask /
 *    threshold sequence.
 * dtmm_rq_store requantizes a channel's pixels with the per-channel decisions taken once; the
 * output is saturated with one SSAT and clamped further only for a narrower activation range.
 */
#ifndef DTMM_REQUANT_FAST_H_
#define DTMM_REQUANT_FAST_H_

#include <stdint.h>

#include "dtmm_kernels_isa.h"
#include "dtmm_kernels.h" /* dtmm_requantize */

#if defined(DTMM_ISA_DSP)
#include <arm_acle.h>
#endif

/* SaturatingRoundingDoublingHighMul(a, m) for m in [2^30, 2^31), given m2 = (int32)(2m):
 * (a*m + 2^30) >> 31 = (a*2m + 2^31) >> 32 = ((a*m2 + 2^31) >> 32) + a since 2m = m2 + 2^32:
 * one SMMLAR (a << 32 + a*m2, rounded high word) on v7E-M. */
static inline int32_t dtmm_rq_high(int32_t a, int32_t m2) {
#if defined(DTMM_ISA_DSP)
  int32_t h;
  __asm__("smmlar %0, %1, %2, %1" : "=r"(h) : "r"(a), "r"(m2));
  return h;
#else
  return (int32_t)(((int64_t)a * m2 + ((int64_t)a << 32) + 0x80000000LL) >> 32);
#endif
}

/* RoundingDivideByPOT(h, right), right >= 1 */
static inline int32_t dtmm_rq_rdbp(int32_t h, int32_t right) {
  int32_t y = h - (int32_t)((uint32_t)h >> 31);
#if defined(DTMM_ISA_DSP)
  __asm__("asrs %0, %0, %1\n\tadc %0, %0, #0" : "+r"(y) : "r"(right) : "cc");
  return y;
#else
  return (y >> right) + ((y >> (right - 1)) & 1);
#endif
}

/* Saturate to int8 (one SSAT on v7E-M). */
static inline int32_t dtmm_rq_sat8(int32_t v) {
#if defined(DTMM_ISA_DSP)
  return __ssat(v, 8);
#else
  return v < -128 ? -128 : (v > 127 ? 127 : v);
#endif
}

/* TFLM MultiplyByQuantizedMultiplier for mult in [2^30, 2^31) given as m2 = (int32)(2 * mult),
 * TFLite shift: right = -shift when shift < 0 (else 0), left = shift when shift > 0 (else 0). */
static inline int32_t dtmm_rq_one(int32_t acc, int32_t m2, int32_t left, int32_t right) {
  const int32_t h = dtmm_rq_high((int32_t)((uint32_t)acc << left), m2);
  return right > 0 ? dtmm_rq_rdbp(h, right) : h;
}

/* Requantize n accumulators of one channel (acc[s] -> out[s * ps]): multiplier mult in
 * [0, 2^31), TFLite shift, output offset, activation range [lo, hi] within [-128, 127].
 * Multipliers below 2^30 (not produced by TFLite's normalisation except 0) take the shared
 * dtmm_requantize. */
static inline __attribute__((always_inline)) void dtmm_rq_store(const int32_t *acc, int32_t n, int32_t mult,
                                                                int32_t shift, int8_t *out, int32_t ps,
                                                                int32_t out_offset, int32_t lo, int32_t hi) {
  if (mult < (1 << 30)) {
    for (int32_t s = 0; s < n; ++s, out += ps) {
      const int32_t v = dtmm_requantize(acc[s], mult, shift) + out_offset;
      *out = (int8_t)(v < lo ? lo : (v > hi ? hi : v));
    }
    return;
  }
  const int32_t m2 = (int32_t)((uint32_t)mult << 1);
  if (shift < 0 && lo == -128 && hi == 127) { /* the usual layer: scale < 1, no activation */
    const int32_t right = -shift;
    if (n == 4) {
      const int32_t v0 = dtmm_rq_rdbp(dtmm_rq_high(acc[0], m2), right);
      const int32_t v1 = dtmm_rq_rdbp(dtmm_rq_high(acc[1], m2), right);
      const int32_t v2 = dtmm_rq_rdbp(dtmm_rq_high(acc[2], m2), right);
      const int32_t v3 = dtmm_rq_rdbp(dtmm_rq_high(acc[3], m2), right);
      out[0] = (int8_t)dtmm_rq_sat8(v0 + out_offset);
      out[ps] = (int8_t)dtmm_rq_sat8(v1 + out_offset);
      out[2 * ps] = (int8_t)dtmm_rq_sat8(v2 + out_offset);
      out[3 * ps] = (int8_t)dtmm_rq_sat8(v3 + out_offset);
      return;
    }
    for (int32_t s = 0; s < n; ++s, out += ps)
      *out = (int8_t)dtmm_rq_sat8(dtmm_rq_rdbp(dtmm_rq_high(acc[s], m2), right) + out_offset);
    return;
  }
  const int32_t left = shift > 0 ? shift : 0, right = shift > 0 ? 0 : -shift;
  for (int32_t s = 0; s < n; ++s, out += ps) {
    int32_t v = dtmm_rq_sat8(dtmm_rq_one(acc[s], m2, left, right) + out_offset);
    v = v < lo ? lo : v;
    *out = (int8_t)(v > hi ? hi : v);
  }
}

#endif /* DTMM_REQUANT_FAST_H_ */
