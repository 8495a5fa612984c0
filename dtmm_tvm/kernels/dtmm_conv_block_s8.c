/*
 * dtmm_conv_block_s8.c - the DTMM conv micro-kernel: a block of output pixels x a range of
 * output channels over filterlet-sparse (CSR over filterlets) or dense OHWI int8 weights.
 *
 * For each output channel, for each kept filterlet (contiguous kept filterlets merged into one
 * run, so a dense row is a single run), one dot product over the im2col rows of up to 4 pixels
 * at once: every weight load serves 4 pixels, a pruned filterlet costs nothing. Then bias,
 * per-channel requantization (TFLM double rounding), output offset, clamp.
 *
 *   MVE (Helium):  int8 rows, 16 lanes per VMLADAVA, tail-predicated (VCTP); the input offset
 *                  is folded into the bias (dtmm_conv_bias_s8); vector requantization of the
 *                  4 pixels of a channel (VQRDMULH + rounding shift, exact gemmlowp rounding).
 *   DSP:           q15 rows; SXTB16 widens 4 weights, SMLAD does two 16-bit MACs.
 *   portable:      plain C on the q15 rows.
 */
#include <string.h>
#include "dtmm_kernels.h"

#if defined(__ARM_FEATURE_MVE)
#include <arm_mve.h>
#elif defined(__ARM_FEATURE_DSP)
#include <arm_acle.h>
#endif

#if defined(__ARM_FEATURE_MVE)
/* ------------------------------------------------------------------------------------- MVE */
typedef int8_t dtmm_elem_t;

static inline __attribute__((always_inline)) void dot4(const int8_t *w, const int8_t *const *x, int32_t start, int32_t len,
                        int32_t *acc) {
  const int8_t *x0 = x[0] + start;
  const int8_t *x1 = x[1] + start;
  const int8_t *x2 = x[2] + start;
  const int8_t *x3 = x[3] + start;
  int32_t s0 = acc[0];
  int32_t s1 = acc[1];
  int32_t s2 = acc[2];
  int32_t s3 = acc[3];
  int32_t n = len >> 4;
  while (n-- > 0) {
    const int8x16_t vw = vldrbq_s8(w);
    w += 16;
    s0 = vmladavaq_s8(s0, vldrbq_s8(x0), vw);
    s1 = vmladavaq_s8(s1, vldrbq_s8(x1), vw);
    s2 = vmladavaq_s8(s2, vldrbq_s8(x2), vw);
    s3 = vmladavaq_s8(s3, vldrbq_s8(x3), vw);
    x0 += 16;
    x1 += 16;
    x2 += 16;
    x3 += 16;
  }
  const int32_t r = len & 15;
  if (r) {
    const mve_pred16_t p = vctp8q((uint32_t)r);
    const int8x16_t vw = vldrbq_z_s8(w, p);
    s0 = vmladavaq_s8(s0, vldrbq_z_s8(x0, p), vw);
    s1 = vmladavaq_s8(s1, vldrbq_z_s8(x1, p), vw);
    s2 = vmladavaq_s8(s2, vldrbq_z_s8(x2, p), vw);
    s3 = vmladavaq_s8(s3, vldrbq_z_s8(x3, p), vw);
  }
  acc[0] = s0;
  acc[1] = s1;
  acc[2] = s2;
  acc[3] = s3;
}
static inline __attribute__((always_inline)) void dot2(const int8_t *w, const int8_t *const *x, int32_t start, int32_t len,
                        int32_t *acc) {
  const int8_t *x0 = x[0] + start;
  const int8_t *x1 = x[1] + start;
  int32_t s0 = acc[0];
  int32_t s1 = acc[1];
  int32_t n = len >> 4;
  while (n-- > 0) {
    const int8x16_t vw = vldrbq_s8(w);
    w += 16;
    s0 = vmladavaq_s8(s0, vldrbq_s8(x0), vw);
    s1 = vmladavaq_s8(s1, vldrbq_s8(x1), vw);
    x0 += 16;
    x1 += 16;
  }
  const int32_t r = len & 15;
  if (r) {
    const mve_pred16_t p = vctp8q((uint32_t)r);
    const int8x16_t vw = vldrbq_z_s8(w, p);
    s0 = vmladavaq_s8(s0, vldrbq_z_s8(x0, p), vw);
    s1 = vmladavaq_s8(s1, vldrbq_z_s8(x1, p), vw);
  }
  acc[0] = s0;
  acc[1] = s1;
}
static inline __attribute__((always_inline)) void dot1(const int8_t *w, const int8_t *const *x, int32_t start, int32_t len,
                        int32_t *acc) {
  const int8_t *x0 = x[0] + start;
  int32_t s0 = acc[0];
  int32_t n = len >> 4;
  while (n-- > 0) {
    const int8x16_t vw = vldrbq_s8(w);
    w += 16;
    s0 = vmladavaq_s8(s0, vldrbq_s8(x0), vw);
    x0 += 16;
  }
  const int32_t r = len & 15;
  if (r) {
    const mve_pred16_t p = vctp8q((uint32_t)r);
    const int8x16_t vw = vldrbq_z_s8(w, p);
    s0 = vmladavaq_s8(s0, vldrbq_z_s8(x0, p), vw);
  }
  acc[0] = s0;
}

#elif defined(__ARM_FEATURE_DSP)
/* ------------------------------------------------------------------------------------- DSP */
typedef int16_t dtmm_elem_t;

static inline uint32_t sxtb16_ror8(uint32_t v) {
  uint32_t r;
  __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(v));
  return r;
}
static inline uint32_t rd32(const void *p) {
  uint32_t v;
  __builtin_memcpy(&v, p, 4);
  return v;
}
/* 4 int8 weights -> (w0,w1) and (w2,w3) as q15 pairs (CMSIS-NN read_and_pad). */
#define DTMM_LOAD_W(wp, wa, wb)                                                             \
  do {                                                                                      \
    const uint32_t wv_ = rd32(wp);                                                          \
    const uint32_t w02_ = __sxtb16(wv_);                                                    \
    const uint32_t w13_ = sxtb16_ror8(wv_);                                                 \
    __asm__("pkhbt %0, %1, %2, lsl #16" : "=r"(wa) : "r"(w02_), "r"(w13_));               \
    __asm__("pkhtb %0, %1, %2, asr #16" : "=r"(wb) : "r"(w13_), "r"(w02_));               \
  } while (0)

static inline __attribute__((always_inline)) void dot4(const int8_t *w, const int16_t *const *x, int32_t start, int32_t len,
                        int32_t *acc) {
  const int16_t *x0 = x[0] + start;
  const int16_t *x1 = x[1] + start;
  const int16_t *x2 = x[2] + start;
  const int16_t *x3 = x[3] + start;
  int32_t s0 = acc[0];
  int32_t s1 = acc[1];
  int32_t s2 = acc[2];
  int32_t s3 = acc[3];
  int32_t n = len >> 2;
  while (n-- > 0) {
    uint32_t wa, wb;
    DTMM_LOAD_W(w, wa, wb);
    w += 4;
    s0 = __smlad(wa, rd32(x0), s0);
    s0 = __smlad(wb, rd32(x0 + 2), s0);
    x0 += 4;
    s1 = __smlad(wa, rd32(x1), s1);
    s1 = __smlad(wb, rd32(x1 + 2), s1);
    x1 += 4;
    s2 = __smlad(wa, rd32(x2), s2);
    s2 = __smlad(wb, rd32(x2 + 2), s2);
    x2 += 4;
    s3 = __smlad(wa, rd32(x3), s3);
    s3 = __smlad(wb, rd32(x3 + 2), s3);
    x3 += 4;
  }
  for (n = len & 3; n > 0; --n) {
    const int32_t wk = *w++;
    s0 += wk * *x0++;
    s1 += wk * *x1++;
    s2 += wk * *x2++;
    s3 += wk * *x3++;
  }
  acc[0] = s0;
  acc[1] = s1;
  acc[2] = s2;
  acc[3] = s3;
}
static inline __attribute__((always_inline)) void dot2(const int8_t *w, const int16_t *const *x, int32_t start, int32_t len,
                        int32_t *acc) {
  const int16_t *x0 = x[0] + start;
  const int16_t *x1 = x[1] + start;
  int32_t s0 = acc[0];
  int32_t s1 = acc[1];
  int32_t n = len >> 2;
  while (n-- > 0) {
    uint32_t wa, wb;
    DTMM_LOAD_W(w, wa, wb);
    w += 4;
    s0 = __smlad(wa, rd32(x0), s0);
    s0 = __smlad(wb, rd32(x0 + 2), s0);
    x0 += 4;
    s1 = __smlad(wa, rd32(x1), s1);
    s1 = __smlad(wb, rd32(x1 + 2), s1);
    x1 += 4;
  }
  for (n = len & 3; n > 0; --n) {
    const int32_t wk = *w++;
    s0 += wk * *x0++;
    s1 += wk * *x1++;
  }
  acc[0] = s0;
  acc[1] = s1;
}
static inline __attribute__((always_inline)) void dot1(const int8_t *w, const int16_t *const *x, int32_t start, int32_t len,
                        int32_t *acc) {
  const int16_t *x0 = x[0] + start;
  int32_t s0 = acc[0];
  int32_t n = len >> 2;
  while (n-- > 0) {
    uint32_t wa, wb;
    DTMM_LOAD_W(w, wa, wb);
    w += 4;
    s0 = __smlad(wa, rd32(x0), s0);
    s0 = __smlad(wb, rd32(x0 + 2), s0);
    x0 += 4;
  }
  for (n = len & 3; n > 0; --n) {
    const int32_t wk = *w++;
    s0 += wk * *x0++;
  }
  acc[0] = s0;
}

#else
/* -------------------------------------------------------------------------------- portable */
typedef int16_t dtmm_elem_t;

static inline __attribute__((always_inline)) void dot4(const int8_t *w, const int16_t *const *x, int32_t start, int32_t len,
                        int32_t *acc) {
  const int16_t *x0 = x[0] + start;
  const int16_t *x1 = x[1] + start;
  const int16_t *x2 = x[2] + start;
  const int16_t *x3 = x[3] + start;
  int32_t s0 = acc[0];
  int32_t s1 = acc[1];
  int32_t s2 = acc[2];
  int32_t s3 = acc[3];
  for (int32_t k = 0; k < len; ++k) {
    const int32_t wk = w[k];
    s0 += wk * x0[k];
    s1 += wk * x1[k];
    s2 += wk * x2[k];
    s3 += wk * x3[k];
  }
  acc[0] = s0;
  acc[1] = s1;
  acc[2] = s2;
  acc[3] = s3;
}
static inline __attribute__((always_inline)) void dot2(const int8_t *w, const int16_t *const *x, int32_t start, int32_t len,
                        int32_t *acc) {
  const int16_t *x0 = x[0] + start;
  const int16_t *x1 = x[1] + start;
  int32_t s0 = acc[0];
  int32_t s1 = acc[1];
  for (int32_t k = 0; k < len; ++k) {
    const int32_t wk = w[k];
    s0 += wk * x0[k];
    s1 += wk * x1[k];
  }
  acc[0] = s0;
  acc[1] = s1;
}
static inline __attribute__((always_inline)) void dot1(const int8_t *w, const int16_t *const *x, int32_t start, int32_t len,
                        int32_t *acc) {
  const int16_t *x0 = x[0] + start;
  int32_t s0 = acc[0];
  for (int32_t k = 0; k < len; ++k) {
    const int32_t wk = w[k];
    s0 += wk * x0[k];
  }
  acc[0] = s0;
}
#endif

static inline int8_t clamp_out(int32_t v, int32_t lo, int32_t hi) {
  return (int8_t)(v < lo ? lo : (v > hi ? hi : v));
}

#define DTMM_BLOCK(NP)                                                                      \
  static void block##NP(const dtmm_elem_t *const *rows, const int8_t *values,               \
                        const int16_t *col_idx, const int16_t *row_ptr, int32_t row_len,    \
                        int32_t cin, int32_t o_begin, int32_t o_end, const int32_t *bias,   \
                        const int32_t *mult, const int32_t *shift, int8_t *out,             \
                        int32_t ps, int32_t out_offset, int32_t act_min, int32_t act_max) { \
    for (int32_t o = o_begin; o < o_end; ++o) {                                             \
      int32_t acc[NP];                                                                      \
      for (int i = 0; i < NP; ++i) acc[i] = bias[o];                                        \
      if (col_idx == 0) {                                                                   \
        dot##NP(values + o * row_len, rows, 0, row_len, acc);                               \
      } else {                                                                              \
        const int32_t end = row_ptr[o + 1];                                                 \
        for (int32_t j = row_ptr[o]; j < end; ++j) {                                        \
          const int32_t start = col_idx[j];                                                 \
          const int8_t *w = values + j * cin;                                               \
          int32_t len = cin;                                                                \
          while (j + 1 < end && col_idx[j + 1] == start + len) { len += cin; ++j; }         \
          dot##NP(w, rows, start, len, acc);                                                \
        }                                                                                   \
      }                                                                                     \
      REQUANT_STORE(NP)                                                                     \
    }                                                                                       \
  }

#if defined(__ARM_FEATURE_MVE)
/* gemmlowp RoundingDivideByPOT on 4 lanes (CMSIS-NN arm_divide_by_power_of_two_mve). */
static inline int32x4_t rdbp_mve(int32x4_t x, int32_t exponent) {
  const int32x4_t shift = vdupq_n_s32(-exponent);
  const int32x4_t fixup = vshrq_n_s32(vandq_s32(x, shift), 31);
  return vrshlq_s32(vqaddq_s32(x, fixup), shift);
}
#define REQUANT_STORE(NP)                                                                   \
  if (NP == 4) {                                                                            \
    int32x4_t v = vdupq_n_s32(acc[0]);                                                      \
    v = vsetq_lane_s32(acc[1], v, 1);                                                       \
    v = vsetq_lane_s32(acc[2], v, 2);                                                       \
    v = vsetq_lane_s32(acc[3 % NP], v, 3);                                                  \
    const int32_t sh = shift[o];                                                            \
    v = vshlq_r_s32(v, sh > 0 ? sh : 0);                                                    \
    v = vqrdmulhq_n_s32(v, mult[o]);                                                        \
    v = rdbp_mve(v, sh > 0 ? 0 : -sh);                                                      \
    v = vaddq_n_s32(v, out_offset);                                                         \
    v = vmaxq_s32(vminq_s32(v, vdupq_n_s32(act_max)), vdupq_n_s32(act_min));                \
    const uint32x4_t offs = vmulq_n_u32(vidupq_n_u32(0, 1), (uint32_t)ps);                  \
    vstrbq_scatter_offset_s32(out + o, offs, v);                                            \
  } else {                                                                                  \
    for (int i = 0; i < NP; ++i)                                                            \
      out[i * ps + o] = clamp_out(dtmm_requantize(acc[i], mult[o], shift[o]) + out_offset,  \
                                  act_min, act_max);                                        \
  }
#else
#define REQUANT_STORE(NP)                                                                   \
  for (int i = 0; i < NP; ++i)                                                              \
    out[i * ps + o] = clamp_out(dtmm_requantize(acc[i], mult[o], shift[o]) + out_offset,    \
                                act_min, act_max);
#endif

DTMM_BLOCK(4)
DTMM_BLOCK(2)
DTMM_BLOCK(1)

void dtmm_conv_block_s8(const int8_t *buf, int32_t row_stride, int32_t npix,
                        const int8_t *values, const int16_t *col_idx, const int16_t *row_ptr,
                        int32_t row_len, int32_t cin, int32_t o_begin, int32_t o_end,
                        const int32_t *bias, const int32_t *mult, const int32_t *shift,
                        int8_t *out, int32_t out_pixel_stride, int32_t out_offset,
                        int32_t act_min, int32_t act_max) {
  int32_t p = 0;
  while (p < npix) {
    const int32_t left = npix - p;
    const int32_t g = left >= 4 ? 4 : (left >= 2 ? 2 : 1);
    const dtmm_elem_t *rows[4];
    for (int32_t i = 0; i < g; ++i)
      rows[i] = (const dtmm_elem_t *)(const void *)(buf + (p + i) * row_stride);
    int8_t *o = out + p * out_pixel_stride;
    if (g == 4)
      block4(rows, values, col_idx, row_ptr, row_len, cin, o_begin, o_end, bias, mult, shift, o,
             out_pixel_stride, out_offset, act_min, act_max);
    else if (g == 2)
      block2(rows, values, col_idx, row_ptr, row_len, cin, o_begin, o_end, bias, mult, shift, o,
             out_pixel_stride, out_offset, act_min, act_max);
    else
      block1(rows, values, col_idx, row_ptr, row_len, cin, o_begin, o_end, bias, mult, shift, o,
             out_pixel_stride, out_offset, act_min, act_max);
    p += g;
  }
}
