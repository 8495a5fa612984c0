/*
 * dtmm_conv_pattern_s8.c - PatDNN-style pattern-pruned int8 conv (the pattern-pruning baseline
 * DTMM is compared with), NHWC activations.
 *
 * Weights: every (out, in) 2-D kernel is either connectivity-pruned (absent) or has its
 * non-zeros inside one of `npat` patterns of 4 taps (a tap = kh*KW + kw; a pattern of fewer
 * taps is padded with zero weights). Per kept kernel j (filters in order, within a filter
 * sorted by pattern then input channel: PatDNN's kernel reorder) the format stores
 *   values[4j .. 4j+3]  int8, the weights at the pattern's 4 taps (pattern-table order);
 *   kidx[j]             int16, p * Cin + c (pattern id and input channel in one index);
 * plus counts[Cout] int16 kept kernels per filter and taps[4 * npat] uint8 (the pattern table).
 *
 * Why this shape on NHWC: a kernel's 4 taps are Cin bytes apart in the input, so per block of
 * G output pixels the input is first gathered once per pattern ("pattern im2col"): chunk
 * k = p*Cin + c holds, for every pixel of the block, the 4 input values under pattern p's taps
 * in channel c. A kept kernel is then ONE chunk (32 bytes at buf + 32*k) dotted with ONE weight
 * word: the inner loop has no per-pattern branch and no tap decode, whatever the pattern.
 * The input offset is folded into an effective bias (the gather copies raw int8, padding taps
 * read the input zero point), requantization is the project's dtmm_requantize (TFLM double
 * rounding, or ONNX float32 records).
 *
 *   DSP:      G = 4 pixels; chunk = 4 words (x_t0, x_t2) q15 pairs then 4 words (x_t1, x_t3);
 *             per kept kernel: LDRH + LDR + 2 SXTB16 + 2 x LDM(4) + 8 SMLAD (16 MACs).
 *   MVE:      G = 8 pixels; chunk = 8 words of the 4 raw taps; per 4 kept kernels of a filter:
 *             one widening index load, one weight vector, then per pixel one gather load
 *             (VLDRW gather base + immediate) + VMLADAVA (16 MACs): 22 instructions, 128 MACs.
 *   portable: the DSP layout in plain C.
 *
 * Scratch (caller's, dtmm_conv_pattern_s8_get_buffer_size): effective bias, a row of padding
 * values and the pattern im2col of one pixel block (npat * Cin * 32 bytes), 16-byte aligned
 * inside the buffer.
 */
#include <string.h>
#include "dtmm_kernels.h"

#if defined(DTMM_ISA_MVE)
#include <arm_mve.h>
#define PG 8 /* pixels per block */
#elif defined(DTMM_ISA_DSP)
#include <arm_acle.h>
#define PG 4
static inline uint32_t sxtb16_ror8(uint32_t v) {
  uint32_t r;
  __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(v));
  return r;
}
/* (low half of lo, low half of hi) and (high half of lo, high half of hi) as q15 pairs */
static inline uint32_t pack_low(uint32_t lo, uint32_t hi) {
  uint32_t r;
  __asm__("pkhbt %0, %1, %2, lsl #16" : "=r"(r) : "r"(lo), "r"(hi));
  return r;
}
static inline uint32_t pack_high(uint32_t lo, uint32_t hi) {
  uint32_t r;
  __asm__("pkhtb %0, %1, %2, asr #16" : "=r"(r) : "r"(hi), "r"(lo));
  return r;
}
#else
#define PG 4
#endif
#define DTMM_PATTERN_MAX 16 /* patterns per layer (dtmm_tvm/sparsity/pattern.py MAX_PATTERNS) */
#define CHUNK 32 /* bytes per (pattern, channel) chunk: 4 taps x PG pixels x (2 B q15 | 1 B int8) */

static inline uintptr_t align16(uintptr_t v) { return (v + 15u) & ~(uintptr_t)15u; }

int32_t dtmm_conv_pattern_s8_get_buffer_size(int32_t npat, int32_t cin, int32_t cout) {
  return 16 + 4 * cout + ((cin + 15) & ~15) + npat * cin * CHUNK;
}

static inline uint32_t rd32(const void *p) {
  uint32_t v;
  __builtin_memcpy(&v, p, 4);
  return v;
}
static inline void wr32(void *p, uint32_t v) { __builtin_memcpy(p, &v, 4); }

/* Pattern im2col of output pixels [pix0, pix0 + npix): chunk k = p*cin + c at buf + CHUNK*k. */
/* The layer's distinct taps (ntap of them, input row / column offsets kh * dh, kw * dw) and, per
 * pattern tap, its slot among them: a pixel's tap pointers are computed once, not per pattern. */
static void gather_block(const int8_t *x, int32_t in_h, int32_t in_w, int32_t cin, int32_t out_w,
                         int32_t sh, int32_t sw, int32_t pad_top, int32_t pad_left, int32_t npat,
                         int32_t ntap, const int16_t *tap_dy, const int16_t *tap_dx, const uint8_t *slot,
                         const int8_t *padrow, int32_t pix0, int32_t npix, int8_t *buf) {
  for (int32_t s = 0; s < npix; ++s) {
    const int32_t pix = pix0 + s;
    const int32_t ih0 = (pix / out_w) * sh - pad_top;
    const int32_t iw0 = (pix % out_w) * sw - pad_left;
    const int8_t *tp[4 * DTMM_PATTERN_MAX];
    for (int32_t u = 0; u < ntap; ++u) {
      const int32_t ih = ih0 + tap_dy[u], iw = iw0 + tap_dx[u];
      tp[u] = ((uint32_t)ih < (uint32_t)in_h && (uint32_t)iw < (uint32_t)in_w) ? x + (ih * in_w + iw) * cin
                                                                               : padrow;
    }
    for (int32_t p = 0; p < npat; ++p) {
      const int8_t *src[4] = {tp[slot[4 * p]], tp[slot[4 * p + 1]], tp[slot[4 * p + 2]], tp[slot[4 * p + 3]]};
      int8_t *dst = buf + p * cin * CHUNK;
#if defined(DTMM_ISA_MVE)
      /* chunk: PG words (t0, t1, t2, t3) per pixel; 16 channels of the 4 taps per VST4 into a
       * stack tile, then 4 scatter stores put each channel's word into its chunk */
      int32_t c = 0;
      int8_t tile[64] __attribute__((aligned(16)));
      const uint32x4_t offs = vmulq_n_u32(vidupq_n_u32(0, 1), CHUNK);
      for (; c + 16 <= cin; c += 16) {
        int8x16x4_t v;
        v.val[0] = vldrbq_s8(src[0] + c);
        v.val[1] = vldrbq_s8(src[1] + c);
        v.val[2] = vldrbq_s8(src[2] + c);
        v.val[3] = vldrbq_s8(src[3] + c);
        vst4q_s8(tile, v);
        int8_t *d = dst + c * CHUNK + 4 * s;
        vstrwq_scatter_offset_s32((int32_t *)(void *)d, offs, vldrwq_s32((const int32_t *)(const void *)tile));
        vstrwq_scatter_offset_s32((int32_t *)(void *)(d + 4 * CHUNK), offs,
                                  vldrwq_s32((const int32_t *)(const void *)(tile + 16)));
        vstrwq_scatter_offset_s32((int32_t *)(void *)(d + 8 * CHUNK), offs,
                                  vldrwq_s32((const int32_t *)(const void *)(tile + 32)));
        vstrwq_scatter_offset_s32((int32_t *)(void *)(d + 12 * CHUNK), offs,
                                  vldrwq_s32((const int32_t *)(const void *)(tile + 48)));
      }
      for (; c < cin; ++c) {
        int8_t *d = dst + c * CHUNK + 4 * s;
        d[0] = src[0][c]; d[1] = src[1][c]; d[2] = src[2][c]; d[3] = src[3][c];
      }
#else
      /* chunk: PG words (x_t0, x_t2) then PG words (x_t1, x_t3), q15 pairs (SMLAD order) */
      int32_t c = 0;
#if defined(DTMM_ISA_DSP)
      /* 4 channels per step: SXTB16 splits a tap's word into channel pairs (c0,c2)/(c1,c3),
       * PKHBT/PKHTB regroup them per channel as (tap a, tap b) pairs */
      {
        const int8_t *s0 = src[0], *s1 = src[1], *s2 = src[2], *s3 = src[3];
        uint32_t *d = (uint32_t *)(void *)(dst + 4 * s);
        for (; c + 4 <= cin; c += 4) {
          const uint32_t a = rd32(s0 + c), b = rd32(s2 + c); /* taps 0, 2: words 0..PG-1 */
          const uint32_t a02 = __sxtb16(a), b02 = __sxtb16(b), a13 = sxtb16_ror8(a), b13 = sxtb16_ror8(b);
          const uint32_t e = rd32(s1 + c), f = rd32(s3 + c); /* taps 1, 3: words PG.. */
          const uint32_t e02 = __sxtb16(e), f02 = __sxtb16(f), e13 = sxtb16_ror8(e), f13 = sxtb16_ror8(f);
          d[0] = pack_low(a02, b02);
          d[PG] = pack_low(e02, f02);
          d[CHUNK / 4] = pack_low(a13, b13);
          d[CHUNK / 4 + PG] = pack_low(e13, f13);
          d[2 * CHUNK / 4] = pack_high(a02, b02);
          d[2 * CHUNK / 4 + PG] = pack_high(e02, f02);
          d[3 * CHUNK / 4] = pack_high(a13, b13);
          d[3 * CHUNK / 4 + PG] = pack_high(e13, f13);
          d += CHUNK;
        }
      }
#endif
      for (; c < cin; ++c) {
        int16_t *e = (int16_t *)(void *)(dst + c * CHUNK) + 2 * s;
        e[0] = src[0][c];
        e[1] = src[2][c];
        e[2 * PG] = src[1][c];
        e[2 * PG + 1] = src[3][c];
      }
#endif
    }
  }
}

static inline int8_t clamp_out(int32_t v, int32_t lo, int32_t hi) {
  return (int8_t)(v < lo ? lo : (v > hi ? hi : v));
}

/* acc[s] (s < PG) = bias_o + sum over the filter's n kept kernels of w . chunk(kidx[j], s). */
static inline void filter_block(const int8_t *buf, const int8_t *w, const int16_t *kidx, int32_t n,
                                int32_t *acc) {
#if defined(DTMM_ISA_MVE)
  /* VMLADAVA needs even accumulator registers: pin the 8 to r0..r12 evens and lr (as
   * dtmm_conv_block_s8.c's dot_g does); the loop is hand-scheduled so nothing spills. */
  register int32_t s0 __asm__("r0") = acc[0];
  register int32_t s1 __asm__("r2") = acc[1];
  register int32_t s2 __asm__("r4") = acc[2];
  register int32_t s3 __asm__("r6") = acc[3];
  register int32_t s4 __asm__("r8") = acc[4];
  register int32_t s5 __asm__("r10") = acc[5];
  register int32_t s6 __asm__("r12") = acc[6];
  register int32_t s7 __asm__("lr") = acc[7];
  const uint32_t base = (uint32_t)(uintptr_t)buf;
  int32_t groups = n >> 2;
  if (groups > 0) {
    /* (the widening VLDRH needs a low base register: "l") per 4 kept kernels: widening index load, chunk addresses (k * 32 + buf), 16 weights, then
     * per pixel one gather (base + 4 * pixel) and one VMLADAVA: 22 instructions, 128 MACs */
    __asm__ volatile(
        "1:\n\t"
        "vldrh.s32 q2, [%[k]], #8\n\t"
        "vshl.i32 q2, q2, #5\n\t"
        "vadd.i32 q2, q2, %[base]\n\t"
        "vldrb.8 q1, [%[w]], #16\n\t"
        "vldrw.u32 q0, [q2]\n\t"
        "vldrw.u32 q3, [q2, #4]\n\t"
        "vmladava.s8 %[s0], q0, q1\n\t"
        "vldrw.u32 q0, [q2, #8]\n\t"
        "vmladava.s8 %[s1], q3, q1\n\t"
        "vldrw.u32 q3, [q2, #12]\n\t"
        "vmladava.s8 %[s2], q0, q1\n\t"
        "vldrw.u32 q0, [q2, #16]\n\t"
        "vmladava.s8 %[s3], q3, q1\n\t"
        "vldrw.u32 q3, [q2, #20]\n\t"
        "vmladava.s8 %[s4], q0, q1\n\t"
        "vldrw.u32 q0, [q2, #24]\n\t"
        "vmladava.s8 %[s5], q3, q1\n\t"
        "vldrw.u32 q3, [q2, #28]\n\t"
        "vmladava.s8 %[s6], q0, q1\n\t"
        "vmladava.s8 %[s7], q3, q1\n\t"
        "subs %[c], %[c], #1\n\t"
        "bne 1b\n\t"
        : [k] "+l"(kidx), [w] "+r"(w), [c] "+r"(groups), [s0] "+r"(s0), [s1] "+r"(s1), [s2] "+r"(s2),
          [s3] "+r"(s3), [s4] "+r"(s4), [s5] "+r"(s5), [s6] "+r"(s6), [s7] "+r"(s7)
        : [base] "r"(base)
        : "q0", "q1", "q2", "q3", "cc", "memory");
  }
  if (n & 3) { /* the filter's last 1-3 kernels: predicated loads, zero weights in the idle lanes */
    const int32_t r = n & 3;
    const uint32x4_t k = vreinterpretq_u32_s32(vldrhq_z_s32(kidx, vctp32q((uint32_t)r)));
    const uint32x4_t addr = vaddq_n_u32(vshlq_n_u32(k, 5), base);
    const int8x16_t vw = vldrbq_z_s8(w, vctp8q((uint32_t)(4 * r)));
    s0 = vmladavaq_s8(s0, vreinterpretq_s8_s32(vldrwq_gather_base_s32(addr, 0)), vw);
    s1 = vmladavaq_s8(s1, vreinterpretq_s8_s32(vldrwq_gather_base_s32(addr, 4)), vw);
    s2 = vmladavaq_s8(s2, vreinterpretq_s8_s32(vldrwq_gather_base_s32(addr, 8)), vw);
    s3 = vmladavaq_s8(s3, vreinterpretq_s8_s32(vldrwq_gather_base_s32(addr, 12)), vw);
    s4 = vmladavaq_s8(s4, vreinterpretq_s8_s32(vldrwq_gather_base_s32(addr, 16)), vw);
    s5 = vmladavaq_s8(s5, vreinterpretq_s8_s32(vldrwq_gather_base_s32(addr, 20)), vw);
    s6 = vmladavaq_s8(s6, vreinterpretq_s8_s32(vldrwq_gather_base_s32(addr, 24)), vw);
    s7 = vmladavaq_s8(s7, vreinterpretq_s8_s32(vldrwq_gather_base_s32(addr, 28)), vw);
  }
  acc[0] = s0; acc[1] = s1; acc[2] = s2; acc[3] = s3;
  acc[4] = s4; acc[5] = s5; acc[6] = s6; acc[7] = s7;
#elif defined(DTMM_ISA_DSP)
  int32_t s0 = acc[0], s1 = acc[1], s2 = acc[2], s3 = acc[3];
  if (n > 0) {
    /* per kept kernel: LDRSH index, LDR weights, ADD chunk address, 2 SXTB16, 4 LDRD, 8 SMLAD,
     * CMP + BNE (19 instructions for 16 MACs; 13 registers, so no spills) */
    const int16_t *kend = kidx + n;
    uint32_t t, we, wo, a, b;
    __asm__ volatile(
        "1:\n\t"
        "ldrsh %[t], [%[kp]], #2\n\t"
        "ldr %[wo], [%[wp]], #4\n\t"
        "add %[t], %[buf], %[t], lsl #5\n\t"
        "sxtb16 %[we], %[wo]\n\t"
        "sxtb16 %[wo], %[wo], ror #8\n\t"
        "ldrd %[a], %[b], [%[t]]\n\t"
        "smlad %[s0], %[we], %[a], %[s0]\n\t"
        "smlad %[s1], %[we], %[b], %[s1]\n\t"
        "ldrd %[a], %[b], [%[t], #8]\n\t"
        "smlad %[s2], %[we], %[a], %[s2]\n\t"
        "smlad %[s3], %[we], %[b], %[s3]\n\t"
        "ldrd %[a], %[b], [%[t], #16]\n\t"
        "smlad %[s0], %[wo], %[a], %[s0]\n\t"
        "smlad %[s1], %[wo], %[b], %[s1]\n\t"
        "ldrd %[a], %[b], [%[t], #24]\n\t"
        "smlad %[s2], %[wo], %[a], %[s2]\n\t"
        "smlad %[s3], %[wo], %[b], %[s3]\n\t"
        "cmp %[kp], %[kend]\n\t"
        "bne 1b\n\t"
        : [kp] "+r"(kidx), [wp] "+r"(w), [s0] "+r"(s0), [s1] "+r"(s1), [s2] "+r"(s2), [s3] "+r"(s3),
          [t] "=&r"(t), [we] "=&r"(we), [wo] "=&r"(wo), [a] "=&r"(a), [b] "=&r"(b)
        : [kend] "r"(kend), [buf] "r"(buf)
        : "cc", "memory");
  }
  acc[0] = s0; acc[1] = s1; acc[2] = s2; acc[3] = s3;
#else
  for (int32_t j = 0; j < n; ++j) {
    const int32_t w0 = w[4 * j], w1 = w[4 * j + 1], w2 = w[4 * j + 2], w3 = w[4 * j + 3];
    const int16_t *xc = (const int16_t *)(const void *)(buf + CHUNK * (int32_t)kidx[j]);
    for (int32_t s = 0; s < PG; ++s)
      acc[s] += w0 * xc[2 * s] + w2 * xc[2 * s + 1] + w1 * xc[2 * PG + 2 * s] + w3 * xc[2 * PG + 2 * s + 1];
  }
#endif
}

#if defined(DTMM_ISA_MVE)
/* One filter's PG accumulators requantized 4 pixels per vector, stored cout bytes apart: TFLM's
 * double rounding bit-exact (VQRDMULH = SaturatingRoundingDoublingHighMul, then
 * RoundingDivideByPOT as CMSIS-NN's arm_divide_by_power_of_two_mve; the same steps as
 * dtmm_conv_block_s8.c's requant4). */
static inline void requant_pixels_mve(const int32_t *acc, int32_t npix, int32_t mult, int32_t sh, int8_t *out,
                                      int32_t cout, int32_t out_offset, int32_t act_min, int32_t act_max) {
  const uint32x4_t offs = vmulq_n_u32(vidupq_n_u32(0, 1), (uint32_t)cout);
  const int32x4_t right = vdupq_n_s32(sh > 0 ? 0 : sh);
  for (int32_t s = 0; s < npix; s += 4) {
    int32x4_t v = vshlq_r_s32(vldrwq_s32(acc + s), sh > 0 ? sh : 0);
    v = vqrdmulhq_n_s32(v, mult);
    v = vrshlq_s32(vqaddq_s32(v, vshrq_n_s32(vandq_s32(v, right), 31)), right);
    v = vmaxq_s32(vminq_s32(vaddq_n_s32(v, out_offset), vdupq_n_s32(act_max)), vdupq_n_s32(act_min));
    vstrbq_scatter_offset_p_s32(out + s * cout, offs, v, vctp32q((uint32_t)(npix - s)));
  }
}
#endif

void dtmm_conv_pattern_s8(const int8_t *x, int32_t in_h, int32_t in_w, int32_t cin, int32_t out_h,
                          int32_t out_w, int32_t kw, int32_t sh, int32_t sw, int32_t dh, int32_t dw,
                          int32_t pad_top, int32_t pad_left, int32_t input_offset, int32_t npat,
                          const uint8_t *taps, const int8_t *values, const int16_t *kidx,
                          const int16_t *counts, int32_t cout, const int32_t *bias, const int32_t *mult,
                          const int32_t *shift, int32_t out_offset, int32_t act_min, int32_t act_max,
                          int8_t *out, int8_t *scratch) {
  int32_t *bias_eff = (int32_t *)(void *)align16((uintptr_t)scratch);
  int8_t *padrow = (int8_t *)(bias_eff + cout);
  int8_t *buf = (int8_t *)(void *)align16((uintptr_t)(padrow + cin));
  /* Offset folded out of the dot products: bias + input_offset * (sum of the kept weights). */
  {
    const int8_t *w = values;
    for (int32_t o = 0; o < cout; ++o) {
      int32_t sum = 0;
      for (int32_t j = 0; j < 4 * (int32_t)counts[o]; ++j) sum += w[j];
      w += 4 * (int32_t)counts[o];
      bias_eff[o] = bias[o] + input_offset * sum;
    }
  }
  memset(padrow, (int8_t)(-input_offset), (size_t)cin); /* a padded tap reads the zero point */
  int16_t tap_dy[4 * DTMM_PATTERN_MAX], tap_dx[4 * DTMM_PATTERN_MAX];
  uint8_t tap_of[4 * DTMM_PATTERN_MAX], slot[4 * DTMM_PATTERN_MAX];
  int32_t ntap = 0;
  for (int32_t i = 0; i < 4 * npat && i < 4 * DTMM_PATTERN_MAX; ++i) {
    int32_t u = 0;
    while (u < ntap && tap_of[u] != taps[i]) ++u;
    if (u == ntap) {
      tap_of[u] = taps[i];
      tap_dy[u] = (int16_t)((taps[i] / kw) * dh);
      tap_dx[u] = (int16_t)((taps[i] % kw) * dw);
      ++ntap;
    }
    slot[i] = (uint8_t)u;
  }
  const int32_t pixels = out_h * out_w;
  for (int32_t pix0 = 0; pix0 < pixels; pix0 += PG) {
    const int32_t npix = pixels - pix0 < PG ? pixels - pix0 : PG;
    gather_block(x, in_h, in_w, cin, out_w, sh, sw, pad_top, pad_left, npat, ntap, tap_dy, tap_dx, slot,
                 padrow, pix0, npix, buf);
    const int8_t *w = values;
    const int16_t *k = kidx;
    int8_t *o_ptr = out + pix0 * cout;
    for (int32_t o = 0; o < cout; ++o) {
      int32_t acc[PG] __attribute__((aligned(16)));
      const int32_t n = counts[o];
      for (int32_t s = 0; s < PG; ++s) acc[s] = bias_eff[o];
      filter_block(buf, w, k, n, acc);
      w += 4 * n;
      k += n;
      const int32_t m = mult[o], sft = shift[o];
#if defined(DTMM_ISA_MVE)
      if (sft != DTMM_REQUANT_F32 && m != INT32_MIN) {
        requant_pixels_mve(acc, npix, m, sft, o_ptr + o, cout, out_offset, act_min, act_max);
        continue;
      }
#endif
      for (int32_t s = 0; s < npix; ++s)
        o_ptr[s * cout + o] = clamp_out(dtmm_requantize(acc[s], m, sft) + out_offset, act_min, act_max);
    }
  }
}
