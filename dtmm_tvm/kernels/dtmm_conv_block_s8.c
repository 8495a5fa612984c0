/*
 * dtmm_conv_block_s8.c - the DTMM conv micro-kernel: a block of output pixels x a range of
 * output channels over dense OHWI or filterlet-sparse int8 weights (index formats below).
 *
 * The block's im2col lives in caller scratch in the chunk-interleaved group layout written by
 * dtmm_conv_im2col_s8 (see that file): the G pixels of a group share ONE pointer. For each
 * output channel the kept filterlets are decoded into runs of consecutive kernel taps (a dense
 * row is one run; runs merge only when Cin is a multiple of the chunk), each run is one dot
 * product loop over its chunks into G accumulators, then bias, per-channel requantization
 * (TFLM double rounding, or ONNX float32 for records tagged DTMM_REQUANT_F32), output offset,
 * clamp.
 *
 *   MVE (Helium):  chunk = 16 int8 per slot; per chunk 1 weight load + G x (VLDRB + VMLADAVA),
 *                  the weight load predicated (VCTP) on a partial chunk; dense weights in groups
 *                  of 8 pixels take 2 filters x 4 pixels per loop (dot_pair4*: 2 weight + 4 pixel
 *                  loads per 8 VMLADAVA); offset folded into the bias; vector requantization
 *                  (VQRDMULH + rounding fix-up, bit-exact).
 *   DSP:           chunk = 4 q15 per slot as reordered pairs; per chunk LDR + 2 SXTB16 (no PKH)
 *                  + LDM of the G (x0,x2) words + G SMLAD + LDM of the (x1,x3) words + G SMLAD;
 *                  dense weights in full groups of 4 run in dense_group4_dsp.
 *   portable:      plain C on the same q15 layout.
 *
 * dtmm_conv_block_mve_s8 (MVE only, same arguments; dtmm_tvm/ops/conv2d_micro.py calls it where
 * schedules.conv.mve_fast_block() applies, else dtmm_conv_block_s8): the packed small-Cin
 * patch (a dense filter of <= 32 bytes, kk = 1) keeps 2 filters' weight vectors in registers for
 * the 8 pixels of a group (small_k_tile); filterlet formats with Cin 16 / 32 / 64 walk each
 * channel's kept filterlets in one asm loop with the 8 accumulators in registers (uint8 taps:
 * a whole tile of channels per asm loop, sparse_u8_tile; CSR and bitmask: sparse_dot8 per
 * channel). Both store into the requantization tile; requant_tile as below.
 *
 * Index formats (fmt): DTMM_FMT_DENSE (idx unused), DTMM_FMT_CSR (idx0 int16 col_idx = tap*Cin,
 * idx1 int16 row_ptr[Cout+1]), DTMM_FMT_U8 (idx0 uint8 tap per kept filterlet, idx1 uint8
 * count per filter), DTMM_FMT_MASK (idx0 uint8 bitmask, KH*KW bits per filter LSB first,
 * filter o at bit o*KH*KW, 3 bytes of tail padding; KH*KW <= 25).
 */
#include <string.h>
#include "dtmm_kernels.h"
#include "dtmm_requant_fast.h"

#if defined(DTMM_ISA_MVE)
#include <arm_mve.h>
#define CH 16
#define CHB 16
#elif defined(DTMM_ISA_DSP)
#include <arm_acle.h>
#define CH 4
#define CHB 8
#else
#define CH 4
#define CHB 8
#endif

#define INLINE static inline __attribute__((always_inline))

static inline uint32_t rd32(const void *p) {
  uint32_t v;
  __builtin_memcpy(&v, p, 4);
  return v;
}

/* ---------------------------------------------------------------- dot product over chunks */
/* acc[s] += sum over n full chunks (+ a partial chunk of r elements) of w . x(slot s). */
#if defined(DTMM_ISA_MVE)
INLINE void dot_g(const int G, const int8_t *w, const int8_t *x, int32_t n, int32_t r, int32_t *acc) {
  if (G == 8) {
    /* 1 weight load + 8 x (VLDRW + VMLADAVA) per chunk, one pointer, low-overhead loop */
    /* VMLADAVA needs even accumulator registers: pin them to r0..r12 evens and lr */
    register int32_t s0 __asm__("r0") = acc[0];
    register int32_t s1 __asm__("r2") = acc[1];
    register int32_t s2 __asm__("r4") = acc[2];
    register int32_t s3 __asm__("r6") = acc[3];
    register int32_t s4 __asm__("r8") = acc[4];
    register int32_t s5 __asm__("r10") = acc[5];
    register int32_t s6 __asm__("r12") = acc[6];
    register int32_t s7 __asm__("lr") = acc[7];
    if (n > 0) {
      int32_t cnt = n;
      __asm__ volatile(
          "1:\n\t"
          "vldrb.8 q0, [%[w]], #16\n\t"
          "vldrw.32 q1, [%[x]], #128\n\t" /* post-increment: no separate pointer add */
          "vmladava.s8 %[s0], q1, q0\n\t"
          "vldrw.32 q2, [%[x], #-112]\n\t"
          "vmladava.s8 %[s1], q2, q0\n\t"
          "vldrw.32 q1, [%[x], #-96]\n\t"
          "vmladava.s8 %[s2], q1, q0\n\t"
          "vldrw.32 q2, [%[x], #-80]\n\t"
          "vmladava.s8 %[s3], q2, q0\n\t"
          "vldrw.32 q1, [%[x], #-64]\n\t"
          "vmladava.s8 %[s4], q1, q0\n\t"
          "vldrw.32 q2, [%[x], #-48]\n\t"
          "vmladava.s8 %[s5], q2, q0\n\t"
          "vldrw.32 q1, [%[x], #-32]\n\t"
          "vmladava.s8 %[s6], q1, q0\n\t"
          "vldrw.32 q2, [%[x], #-16]\n\t"
          "vmladava.s8 %[s7], q2, q0\n\t"
          "subs %[c], %[c], #1\n\t"
          "bne 1b\n\t"
          : [w] "+r"(w), [x] "+r"(x), [c] "+r"(cnt), [s0] "+r"(s0), [s1] "+r"(s1), [s2] "+r"(s2),
            [s3] "+r"(s3), [s4] "+r"(s4), [s5] "+r"(s5), [s6] "+r"(s6), [s7] "+r"(s7)
          :
          : "q0", "q1", "q2", "cc", "memory");
    }
    if (r > 0) {
      const int8x16_t vw = vldrbq_z_s8(w, vctp8q((uint32_t)r));
      s0 = vmladavaq_s8(s0, vldrbq_s8(x), vw);
      s1 = vmladavaq_s8(s1, vldrbq_s8(x + 16), vw);
      s2 = vmladavaq_s8(s2, vldrbq_s8(x + 32), vw);
      s3 = vmladavaq_s8(s3, vldrbq_s8(x + 48), vw);
      s4 = vmladavaq_s8(s4, vldrbq_s8(x + 64), vw);
      s5 = vmladavaq_s8(s5, vldrbq_s8(x + 80), vw);
      s6 = vmladavaq_s8(s6, vldrbq_s8(x + 96), vw);
      s7 = vmladavaq_s8(s7, vldrbq_s8(x + 112), vw);
    }
    acc[0] = s0; acc[1] = s1; acc[2] = s2; acc[3] = s3;
    acc[4] = s4; acc[5] = s5; acc[6] = s6; acc[7] = s7;
    return;
  }
  int32_t s0 = acc[0], s1 = G > 1 ? acc[1] : 0, s2 = G > 2 ? acc[2] : 0, s3 = G > 3 ? acc[3] : 0;
  int32_t s4 = G > 4 ? acc[4] : 0, s5 = G > 4 ? acc[5] : 0, s6 = G > 4 ? acc[6] : 0, s7 = G > 4 ? acc[7] : 0;
  for (;;) {
    int8x16_t vw;
    if (n > 0) {
      vw = vldrbq_s8(w);
    } else if (r > 0) {
      vw = vldrbq_z_s8(w, vctp8q((uint32_t)r));
      r = 0;
    } else {
      break;
    }
    w += 16;
    --n;
    s0 = vmladavaq_s8(s0, vldrbq_s8(x), vw);
    if (G > 1) s1 = vmladavaq_s8(s1, vldrbq_s8(x + 16), vw);
    if (G > 2) s2 = vmladavaq_s8(s2, vldrbq_s8(x + 32), vw);
    if (G > 3) s3 = vmladavaq_s8(s3, vldrbq_s8(x + 48), vw);
    if (G > 4) {
      s4 = vmladavaq_s8(s4, vldrbq_s8(x + 64), vw);
      s5 = vmladavaq_s8(s5, vldrbq_s8(x + 80), vw);
      s6 = vmladavaq_s8(s6, vldrbq_s8(x + 96), vw);
      s7 = vmladavaq_s8(s7, vldrbq_s8(x + 112), vw);
    }
    x += 16 * G;
  }
  acc[0] = s0;
  if (G > 1) acc[1] = s1;
  if (G > 2) acc[2] = s2;
  if (G > 3) acc[3] = s3;
  if (G > 4) { acc[4] = s4; acc[5] = s5; acc[6] = s6; acc[7] = s7; }
}
/* Dense weights, 2 output channels x 4 pixels (half h of a group of 8) over n full chunks and a
 * partial one of r elements: per chunk
 * 2 weight loads + 4 pixel loads + 8 VMLADAVA (16 instructions per 128 MACs with the loop, against
 * 19 for 1 channel x 8 pixels). w1 is the second channel's row (the next OHWI filter). The 8
 * accumulators need the even registers r0..r12 and lr; acc0 / acc1 receive pixels 4h..4h+3. */
static inline __attribute__((always_inline)) void dot_pair4(const int8_t *w0, const int8_t *w1, const int8_t *x,
                                                           int32_t n, int32_t r, int32_t b0, int32_t b1,
                                                           int32_t *acc0, int32_t *acc1) {
  register int32_t s0 __asm__("r0") = b0;
  register int32_t s1 __asm__("r2") = b0;
  register int32_t s2 __asm__("r4") = b0;
  register int32_t s3 __asm__("r6") = b0;
  register int32_t s4 __asm__("r8") = b1;
  register int32_t s5 __asm__("r10") = b1;
  register int32_t s6 __asm__("r12") = b1;
  register int32_t s7 __asm__("lr") = b1;
  if (n > 0)
  __asm__ volatile(
      "1:\n\t"
      "vldrb.8 q0, [%[w0]], #16\n\t"
      "vldrb.8 q1, [%[w1]], #16\n\t"
      "vldrw.32 q2, [%[x]], #128\n\t"
      "vmladava.s8 %[s0], q2, q0\n\t"
      "vmladava.s8 %[s4], q2, q1\n\t"
      "vldrw.32 q3, [%[x], #-112]\n\t"
      "vmladava.s8 %[s1], q3, q0\n\t"
      "vmladava.s8 %[s5], q3, q1\n\t"
      "vldrw.32 q2, [%[x], #-96]\n\t"
      "vmladava.s8 %[s2], q2, q0\n\t"
      "vmladava.s8 %[s6], q2, q1\n\t"
      "vldrw.32 q3, [%[x], #-80]\n\t"
      "vmladava.s8 %[s3], q3, q0\n\t"
      "vmladava.s8 %[s7], q3, q1\n\t"
      "subs %[c], %[c], #1\n\t"
      "bne 1b\n\t"
      : [w0] "+r"(w0), [w1] "+r"(w1), [x] "+r"(x), [c] "+r"(n), [s0] "+r"(s0), [s1] "+r"(s1), [s2] "+r"(s2),
        [s3] "+r"(s3), [s4] "+r"(s4), [s5] "+r"(s5), [s6] "+r"(s6), [s7] "+r"(s7)
      :
      : "q0", "q1", "q2", "q3", "cc", "memory");
  if (r > 0) { /* a partial last chunk: the rows are contiguous, so the weight loads are predicated */
    const mve_pred16_t p = vctp8q((uint32_t)r);
    const int8x16_t v0 = vldrbq_z_s8(w0, p), v1 = vldrbq_z_s8(w1, p);
    int8x16_t xv = vldrbq_s8(x);
    s0 = vmladavaq_s8(s0, xv, v0); s4 = vmladavaq_s8(s4, xv, v1);
    xv = vldrbq_s8(x + 16);
    s1 = vmladavaq_s8(s1, xv, v0); s5 = vmladavaq_s8(s5, xv, v1);
    xv = vldrbq_s8(x + 32);
    s2 = vmladavaq_s8(s2, xv, v0); s6 = vmladavaq_s8(s6, xv, v1);
    xv = vldrbq_s8(x + 48);
    s3 = vmladavaq_s8(s3, xv, v0); s7 = vmladavaq_s8(s7, xv, v1);
  }
  acc0[0] = s0; acc0[1] = s1; acc0[2] = s2; acc0[3] = s3;
  acc1[0] = s4; acc1[1] = s5; acc1[2] = s6; acc1[3] = s7;
}
/* Half h of a group of 8 pixels for 2 dense filters over n >= 1 full chunks (the loop of
 * dot_pair4) with the accumulators stored by STRD straight into the tile rows: acc0[0..3]
 * (filter o) and acc0[8..11] (filter o + 1); 13 registers. */
static inline __attribute__((always_inline)) void dot_pair4_tile(const int8_t *w0, const int8_t *w1,
                                                                const int8_t *x, int32_t n, int32_t b0,
                                                                int32_t b1, int32_t *acc0) {
  register int32_t s0 __asm__("r0") = b0;
  register int32_t s1 __asm__("r2") = b0;
  register int32_t s2 __asm__("r4") = b0;
  register int32_t s3 __asm__("r6") = b0;
  register int32_t s4 __asm__("r8") = b1;
  register int32_t s5 __asm__("r10") = b1;
  register int32_t s6 __asm__("r12") = b1;
  register int32_t s7 __asm__("lr") = b1;
  __asm__ volatile(
      "1:\n\t"
      "vldrb.8 q0, [%[w0]], #16\n\t"
      "vldrb.8 q1, [%[w1]], #16\n\t"
      "vldrw.32 q2, [%[x]], #128\n\t"
      "vmladava.s8 %[s0], q2, q0\n\t"
      "vmladava.s8 %[s4], q2, q1\n\t"
      "vldrw.32 q3, [%[x], #-112]\n\t"
      "vmladava.s8 %[s1], q3, q0\n\t"
      "vmladava.s8 %[s5], q3, q1\n\t"
      "vldrw.32 q2, [%[x], #-96]\n\t"
      "vmladava.s8 %[s2], q2, q0\n\t"
      "vmladava.s8 %[s6], q2, q1\n\t"
      "vldrw.32 q3, [%[x], #-80]\n\t"
      "vmladava.s8 %[s3], q3, q0\n\t"
      "vmladava.s8 %[s7], q3, q1\n\t"
      "subs %[c], %[c], #1\n\t"
      "bne 1b\n\t"
      "strd %[s0], %[s1], [%[acc]]\n\t"
      "strd %[s2], %[s3], [%[acc], #8]\n\t"
      "strd %[s4], %[s5], [%[acc], #32]\n\t"
      "strd %[s6], %[s7], [%[acc], #40]\n\t"
      : [w0] "+r"(w0), [w1] "+r"(w1), [x] "+r"(x), [c] "+r"(n), [s0] "+r"(s0), [s1] "+r"(s1), [s2] "+r"(s2),
        [s3] "+r"(s3), [s4] "+r"(s4), [s5] "+r"(s5), [s6] "+r"(s6), [s7] "+r"(s7)
      : [acc] "r"(acc0)
      : "q0", "q1", "q2", "q3", "cc", "memory");
}

/* Dense filters of at most 32 bytes (the packed small-Cin patch, e.g. 3x3x3 = 27, or a 1x1 conv
 * with a small Cin) and a group of 8 pixels: each filter is one or two predicated weight
 * vectors held in registers for all 8 pixels, two filters share every pixel load, and the
 * accumulators go straight into the requantization tile (rows of 8 int32, bias included): per
 * 2 filters x 8 pixels 4 weight + 16 pixel loads, 32 VMLADAVA, 16 stores, no chunk loop. */
/* a 16-byte x chunk by VLDRW (immediate offsets up to 508 bytes; VLDRB's reach 127) */
#define XLD(p) vreinterpretq_s8_s32(vldrwq_s32((const int32_t *)(const void *)(p)))
/* unused only in the bench-only SKIP_MAC build */
static __attribute__((noinline, unused)) void small_k_tile(const int8_t *xg, const int8_t *w, int32_t k, int32_t nch,
                                                           const int32_t *bias, int32_t *tile) {
  const mve_pred16_t pa = vctp8q((uint32_t)k), pb = vctp8q((uint32_t)(k > 16 ? k - 16 : 0));
  int32_t o = 0;
  if (k > 16) {
    if (nch >= 2) {
      /* all filter pairs in one asm loop: per pair 2 whole + 2 predicated (VCTP of k - 16, set
       * once) weight loads, the two biases by one LDRD, then per 2 pixels 4 x loads, 8 VMLADAVA,
       * 2 STRD into the two tile rows (VMLADAVA needs even accumulator registers) */
      register int32_t a0 __asm__("r0");
      register int32_t a1 __asm__("r2");
      register int32_t a2 __asm__("r4");
      register int32_t a3 __asm__("r6");
      int32_t npairs = nch / 2, b0, b1;
      const int8_t *wt;
      const int32_t *bp = bias;
#define DTMM_SK_PAIR(xo, to)                                  \
      "vldrw.32 q4, [%[x], #" #xo "]\n\t"                    \
      "vldrw.32 q5, [%[x], #" #xo " + 128]\n\t"              \
      "vldrw.32 q6, [%[x], #" #xo " + 16]\n\t"               \
      "vldrw.32 q7, [%[x], #" #xo " + 144]\n\t"              \
      "mov %[a0], %[b0]\n\t"                                  \
      "mov %[a1], %[b0]\n\t"                                  \
      "mov %[a2], %[b1]\n\t"                                  \
      "mov %[a3], %[b1]\n\t"                                  \
      "vmladava.s8 %[a0], q4, q0\n\t"                         \
      "vmladava.s8 %[a1], q6, q0\n\t"                         \
      "vmladava.s8 %[a2], q4, q2\n\t"                         \
      "vmladava.s8 %[a3], q6, q2\n\t"                         \
      "vmladava.s8 %[a0], q5, q1\n\t"                         \
      "vmladava.s8 %[a1], q7, q1\n\t"                         \
      "vmladava.s8 %[a2], q5, q3\n\t"                         \
      "vmladava.s8 %[a3], q7, q3\n\t"                         \
      "strd %[a0], %[a1], [%[t], #" #to "]\n\t"              \
      "strd %[a2], %[a3], [%[t], #" #to " + 32]\n\t"
      __asm__ volatile("sub %[wt], %[k], #16\n\t"
                       "vctp.8 %[wt]\n\t"
                       "1:\n\t"
                       "add %[wt], %[w], %[k]\n\t"
                       "vldrb.8 q0, [%[w]]\n\t"
                       "vldrb.8 q2, [%[wt]]\n\t"
                       "vpstt\n\t"
                       "vldrbt.8 q1, [%[w], #16]\n\t"
                       "vldrbt.8 q3, [%[wt], #16]\n\t"
                       "add %[w], %[wt], %[k]\n\t"
                       "ldrd %[b0], %[b1], [%[bp]], #8\n\t"
                       DTMM_SK_PAIR(0, 0) DTMM_SK_PAIR(32, 8) DTMM_SK_PAIR(64, 16) DTMM_SK_PAIR(96, 24)
                       "adds %[t], %[t], #64\n\t"
                       "subs %[n], %[n], #1\n\t"
                       "bne 1b\n\t"
                       : [a0] "=&r"(a0), [a1] "=&r"(a1), [a2] "=&r"(a2), [a3] "=&r"(a3), [w] "+r"(w),
                         [bp] "+r"(bp), [t] "+r"(tile), [n] "+r"(npairs), [wt] "=&r"(wt), [b0] "=&r"(b0),
                         [b1] "=&r"(b1)
                       : [x] "r"(xg), [k] "r"(k)
                       : "q0", "q1", "q2", "q3", "q4", "q5", "q6", "q7", "cc", "memory");
#undef DTMM_SK_PAIR
      (void)a0; (void)a1; (void)a2; (void)a3; (void)wt; (void)b0; (void)b1;
      o = nch & ~1;
    }
    if (o < nch) {
      const int8x16_t w0a = vldrbq_s8(w), w0b = vldrbq_z_s8(w + 16, pb);
      const int32_t b0 = bias[o];
#pragma GCC unroll 8
      for (int32_t s = 0; s < 8; ++s)
        tile[s] = vmladavaq_s8(vmladavaq_s8(b0, XLD(xg + 16 * s), w0a), XLD(xg + 128 + 16 * s), w0b);
    }
    return;
  }
  for (; o + 1 < nch; o += 2, w += 2 * k, tile += 16) {
    const int8x16_t w0 = vldrbq_z_s8(w, pa), w1 = vldrbq_z_s8(w + k, pa);
    const int32_t b0 = bias[o], b1 = bias[o + 1];
#pragma GCC unroll 8
    for (int32_t s = 0; s < 8; ++s) {
      const int8x16_t xa = XLD(xg + 16 * s);
      tile[s] = vmladavaq_s8(b0, xa, w0);
      tile[8 + s] = vmladavaq_s8(b1, xa, w1);
    }
  }
  if (o < nch) {
    const int8x16_t w0 = vldrbq_z_s8(w, pa);
    const int32_t b0 = bias[o];
#pragma GCC unroll 8
    for (int32_t s = 0; s < 8; ++s) tile[s] = vmladavaq_s8(b0, XLD(xg + 16 * s), w0);
  }
}

#undef XLD

/* any group width (non-default schedules) */
static void dot_any(int32_t g, const int8_t *w, const int8_t *x, int32_t n, int32_t r, int32_t *acc) {
  for (; n > 0 || r > 0; --n) {
    const int8x16_t vw = n > 0 ? vldrbq_s8(w) : vldrbq_z_s8(w, vctp8q((uint32_t)r));
    if (n <= 0) r = 0;
    w += 16;
    for (int32_t s = 0; s < g; ++s) acc[s] = vmladavaq_s8(acc[s], vldrbq_s8(x + 16 * s), vw);
    x += 16 * g;
  }
}
#else
static inline uint32_t tail_word(const int8_t *w, int32_t r) {
  uint32_t v = (uint8_t)w[0];
  if (r > 1) v |= (uint32_t)(uint8_t)w[1] << 8;
  if (r > 2) v |= (uint32_t)(uint8_t)w[2] << 16;
  return v;
}
#if defined(DTMM_ISA_DSP)
static inline uint32_t sxtb16_ror8(uint32_t v) {
  uint32_t r;
  __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(v));
  return r;
}
/* one chunk for G slots from the weight word wv */
#define DSP_CHUNK(G, wv, x, acc)                                                            \
  do {                                                                                      \
    const uint32_t e_ = __sxtb16(wv);                                                       \
    const uint32_t o_ = sxtb16_ror8(wv);                                                    \
    for (int32_t s_ = 0; s_ < (G); ++s_) {                                                  \
      acc[s_] = __smlad(e_, rd32((x) + 4 * s_), acc[s_]);                                   \
      acc[s_] = __smlad(o_, rd32((x) + 4 * (G) + 4 * s_), acc[s_]);                         \
    }                                                                                       \
  } while (0)

INLINE void dot_g(const int G, const int8_t *w, const int8_t *x, int32_t n, int32_t r, int32_t *acc) {
  if (G == 4 && n > 0) {
    register uint32_t a __asm__("r8");
    register uint32_t b __asm__("r9");
    register uint32_t c __asm__("r10");
    register uint32_t d __asm__("r11");
    int32_t s0 = acc[0], s1 = acc[1], s2 = acc[2], s3 = acc[3];
    uint32_t t0, t1, t2;
    /* one chunk: the weight word sign-extended in two halves, each half meets the G pixels'
     * q15 pairs of one LDM */
#define DTMM_DSP_HALF(wreg) \
        "ldmia %[x]!, {%[a], %[b], %[c], %[d]}\n\t" \
        "smlad %[s0], %[" wreg "], %[a], %[s0]\n\t" \
        "smlad %[s1], %[" wreg "], %[b], %[s1]\n\t" \
        "smlad %[s2], %[" wreg "], %[c], %[s2]\n\t" \
        "smlad %[s3], %[" wreg "], %[d], %[s3]\n\t"
#define DTMM_DSP_CHUNK4 \
        "ldr %[t0], [%[w]], #4\n\t" \
        "sxtb16 %[t1], %[t0], ror #8\n\t" \
        "sxtb16 %[t0], %[t0]\n\t" \
        DTMM_DSP_HALF("t0") DTMM_DSP_HALF("t1")
    /* two chunks from one LDRD: (t0, t1) raw, t2 the odd half of whichever is in use */
#define DTMM_DSP_CHUNK4X2 \
        "ldrd %[t0], %[t1], [%[w]], #8\n\t" \
        "sxtb16 %[t2], %[t0], ror #8\n\t" \
        "sxtb16 %[t0], %[t0]\n\t" \
        DTMM_DSP_HALF("t0") DTMM_DSP_HALF("t2") \
        "sxtb16 %[t2], %[t1], ror #8\n\t" \
        "sxtb16 %[t1], %[t1]\n\t" \
        DTMM_DSP_HALF("t1") DTMM_DSP_HALF("t2")
    if (((uintptr_t)w & 3u) == 0) {
      /* 1-3 single chunks, then four chunks (two LDRD) per iteration: one loop branch per
       * 64 MACs, 25 instructions per 32 MACs in the body */
      __asm__ volatile(
          "tst %[n], #1\n\t"
          "beq 2f\n\t"
          DTMM_DSP_CHUNK4
          "2:\n\t"
          "tst %[n], #2\n\t"
          "beq 4f\n\t"
          DTMM_DSP_CHUNK4X2
          "4:\n\t"
          "lsrs %[n], %[n], #2\n\t"
          "beq 3f\n\t"
          "1:\n\t"
          DTMM_DSP_CHUNK4X2
          DTMM_DSP_CHUNK4X2
          "subs %[n], %[n], #1\n\t"
          "bne 1b\n\t"
          "3:\n\t"
          : [w] "+r"(w), [x] "+r"(x), [n] "+r"(n), [s0] "+r"(s0), [s1] "+r"(s1), [s2] "+r"(s2),
            [s3] "+r"(s3), [t0] "=&r"(t0), [t1] "=&r"(t1), [t2] "=&r"(t2), [a] "=&r"(a),
            [b] "=&r"(b), [c] "=&r"(c), [d] "=&r"(d)
          :
          : "cc", "memory");
    } else {
      /* an odd chunk first, then two chunks per iteration (one loop branch per 32 MACs) */
      __asm__ volatile(
          "tst %[n], #1\n\t"
          "beq 2f\n\t"
          DTMM_DSP_CHUNK4
          "2:\n\t"
          "lsrs %[n], %[n], #1\n\t"
          "beq 3f\n\t"
          "1:\n\t"
          DTMM_DSP_CHUNK4
          DTMM_DSP_CHUNK4
          "subs %[n], %[n], #1\n\t"
          "bne 1b\n\t"
          "3:\n\t"
          : [w] "+r"(w), [x] "+r"(x), [n] "+r"(n), [s0] "+r"(s0), [s1] "+r"(s1), [s2] "+r"(s2),
            [s3] "+r"(s3), [t0] "=&r"(t0), [t1] "=&r"(t1), [a] "=&r"(a), [b] "=&r"(b),
            [c] "=&r"(c), [d] "=&r"(d)
          :
          : "cc", "memory");
    }
#undef DTMM_DSP_CHUNK4X2
#undef DTMM_DSP_HALF
#undef DTMM_DSP_CHUNK4
    acc[0] = s0; acc[1] = s1; acc[2] = s2; acc[3] = s3;
  } else {
    for (; n > 0; --n) {
      const uint32_t wv = rd32(w);
      w += 4;
      DSP_CHUNK(G, wv, x, acc);
      x += 8 * G;
    }
  }
  if (r > 0) {
    const uint32_t wv = tail_word(w, r);
    DSP_CHUNK(G, wv, x, acc);
  }
}
static void dot_any(int32_t g, const int8_t *w, const int8_t *x, int32_t n, int32_t r, int32_t *acc) {
  for (; n > 0; --n) {
    const uint32_t wv = rd32(w);
    w += 4;
    DSP_CHUNK(g, wv, x, acc);
    x += 8 * g;
  }
  if (r > 0) {
    const uint32_t wv = tail_word(w, r);
    DSP_CHUNK(g, wv, x, acc);
  }
}
#else /* portable */
static void dot_any(int32_t g, const int8_t *w, const int8_t *x, int32_t n, int32_t r, int32_t *acc) {
  while (n > 0 || r > 0) {
    int32_t w0, w1, w2, w3;
    if (n > 0) {
      w0 = w[0]; w1 = w[1]; w2 = w[2]; w3 = w[3];
    } else {
      w0 = w[0]; w1 = r > 1 ? w[1] : 0; w2 = r > 2 ? w[2] : 0; w3 = 0;
      r = 0;
    }
    --n;
    w += 4;
    for (int32_t s = 0; s < g; ++s) {
      const int16_t *xe = (const int16_t *)(const void *)(x + 4 * s);
      const int16_t *xo = (const int16_t *)(const void *)(x + 4 * g + 4 * s);
      acc[s] += w0 * xe[0] + w2 * xe[1] + w1 * xo[0] + w3 * xo[1];
    }
    x += 8 * g;
  }
}
INLINE void dot_g(const int G, const int8_t *w, const int8_t *x, int32_t n, int32_t r, int32_t *acc) {
  dot_any(G, w, x, n, r, acc);
}
#endif
#endif

/* ---------------------------------------------------------------------- requantization */
static inline int8_t clamp_out(int32_t v, int32_t lo, int32_t hi) {
  return (int8_t)(v < lo ? lo : (v > hi ? hi : v));
}

#if defined(DTMM_ISA_MVE)
/* gemmlowp RoundingDivideByPOT on 4 lanes (CMSIS-NN arm_divide_by_power_of_two_mve). */
static inline int32x4_t rdbp_mve(int32x4_t x, int32_t exponent) {
  const int32x4_t shift = vdupq_n_s32(-exponent);
  const int32x4_t fixup = vshrq_n_s32(vandq_s32(x, shift), 31);
  return vrshlq_s32(vqaddq_s32(x, fixup), shift);
}
static inline void requant4(const int32_t *acc, int32_t nvalid, int32_t mult, int32_t sh, int8_t *out,
                            int32_t ps, int32_t out_offset, int32_t act_min, int32_t act_max) {
  int32x4_t v = vldrwq_s32(acc);
  v = vshlq_r_s32(v, sh > 0 ? sh : 0);
  v = vqrdmulhq_n_s32(v, mult);
  v = rdbp_mve(v, sh > 0 ? 0 : -sh);
  v = vaddq_n_s32(v, out_offset);
  v = vmaxq_s32(vminq_s32(v, vdupq_n_s32(act_max)), vdupq_n_s32(act_min));
  const uint32x4_t offs = vmulq_n_u32(vidupq_n_u32(0, 1), (uint32_t)ps);
  vstrbq_scatter_offset_p_s32(out, offs, v, vctp32q((uint32_t)nvalid));
}
#if (__ARM_FEATURE_MVE & 2)
/* ONNX record on 4 lanes with MVE floating point: the same single-rounding steps as
 * dtmm_requantize_f32 (convert, multiply, clamp to +-65536, round via + 1.5 * 2^23). */
static inline void requant4_f32(const int32_t *acc, int32_t nvalid, int32_t scale_bits, int8_t *out,
                                int32_t ps, int32_t out_offset, int32_t act_min, int32_t act_max) {
  float32x4_t f = vmulq_n_f32(vcvtq_f32_s32(vldrwq_s32(acc)), dtmm_f32_from_bits(scale_bits));
  f = vmaxnmq_f32(vminnmq_f32(f, vdupq_n_f32(65536.0f)), vdupq_n_f32(-65536.0f));
  f = vaddq_n_f32(f, 12582912.0f);
  int32x4_t v = vsubq_n_s32(vreinterpretq_s32_f32(f), 0x4B400000);
  v = vaddq_n_s32(v, out_offset);
  v = vmaxq_s32(vminq_s32(v, vdupq_n_s32(act_max)), vdupq_n_s32(act_min));
  const uint32x4_t offs = vmulq_n_u32(vidupq_n_u32(0, 1), (uint32_t)ps);
  vstrbq_scatter_offset_p_s32(out, offs, v, vctp32q((uint32_t)nvalid));
}
#endif
#endif

INLINE void requant_body(const int32_t *acc, int32_t g, int32_t nvalid, int32_t mult,
                                 int32_t sh, int8_t *out, int32_t ps, int32_t out_offset,
                                 int32_t act_min, int32_t act_max) {
#if defined(DTMM_BENCH_SKIP_REQUANT) /* bench-only phase build (bench/refmodels.py) */
  __asm__ volatile("" : : "r"(acc), "r"(out) : "memory");
  return;
#endif
  if (DTMM_IS_F32_RECORD(sh)) { /* ONNX record: float32 scale (dtmm_requant_f32.h) */
#if defined(DTMM_ISA_MVE) && (__ARM_FEATURE_MVE & 2)
    for (int32_t s = 0; s < g && s < nvalid; s += 4)
      requant4_f32(acc + s, nvalid - s, mult, out + s * ps, ps, out_offset, act_min, act_max);
    return;
#endif
    for (int32_t s = 0; s < nvalid; ++s)
      out[s * ps] = clamp_out(dtmm_requantize_f32(acc[s], mult) + out_offset, act_min, act_max);
    return;
  }
#if defined(DTMM_ISA_MVE)
  if (mult != INT32_MIN) {
    for (int32_t s = 0; s < g && s < nvalid; s += 4)
      requant4(acc + s, nvalid - s, mult, sh, out + s * ps, ps, out_offset, act_min, act_max);
    return;
  }
#endif
#if !defined(DTMM_ISA_MVE)
  if (mult >= 0) { /* a TFLite record: per-channel decisions hoisted (dtmm_requant_fast.h) */
    dtmm_rq_store(acc, nvalid, mult, sh, out, ps, out_offset, act_min, act_max);
    return;
  }
#endif
  (void)g;
  const int32_t left = sh > 0 ? sh : 0;
  const int32_t right = sh > 0 ? 0 : -sh;
  for (int32_t s = 0; s < nvalid; ++s)
    out[s * ps] = clamp_out(dtmm_rdbp(dtmm_srdhm((int32_t)((uint32_t)acc[s] << left), mult), right)
                                + out_offset, act_min, act_max);
}

#if defined(DTMM_BENCH_SKIP_REQUANT)
#define DTMM_BENCH_SKIP_REQUANT_ON 1
#else
#define DTMM_BENCH_SKIP_REQUANT_ON 0
#endif
#if !defined(DTMM_ISA_MVE)
/* The usual TFLite record of a full 4-pixel group (multiplier >= 2^30, negative shift), inlined:
 * the per-channel call and checks were ~9 instructions per output. Only this case is inlined
 * (once per index format); the rest of requant_body stays out of line in requant_store, which
 * keeps the 4 format instantiations ~2.4 KB smaller than inlining all of it. */
INLINE void requant4_fast(const int32_t *acc, int32_t m2, int32_t right, int8_t *out, int32_t ps,
                          int32_t out_offset, int32_t act_min, int32_t act_max) {
  int32_t v0 = dtmm_rq_sat8(dtmm_rq_rdbp(dtmm_rq_high(acc[0], m2), right) + out_offset);
  int32_t v1 = dtmm_rq_sat8(dtmm_rq_rdbp(dtmm_rq_high(acc[1], m2), right) + out_offset);
  int32_t v2 = dtmm_rq_sat8(dtmm_rq_rdbp(dtmm_rq_high(acc[2], m2), right) + out_offset);
  int32_t v3 = dtmm_rq_sat8(dtmm_rq_rdbp(dtmm_rq_high(acc[3], m2), right) + out_offset);
  if (__builtin_expect(act_min != -128 || act_max != 127, 0)) {
    v0 = v0 < act_min ? act_min : (v0 > act_max ? act_max : v0);
    v1 = v1 < act_min ? act_min : (v1 > act_max ? act_max : v1);
    v2 = v2 < act_min ? act_min : (v2 > act_max ? act_max : v2);
    v3 = v3 < act_min ? act_min : (v3 > act_max ? act_max : v3);
  }
  out[0] = (int8_t)v0;
  out[ps] = (int8_t)v1;
  out[2 * ps] = (int8_t)v2;
  out[3 * ps] = (int8_t)v3;
}
/* Out of line for the generic group widths and the uncommon records of the fast group. */
static void requant_store(const int32_t *acc, int32_t g, int32_t nvalid, int32_t mult, int32_t sh,
                          int8_t *out, int32_t ps, int32_t out_offset, int32_t act_min,
                          int32_t act_max) {
  requant_body(acc, g, nvalid, mult, sh, out, ps, out_offset, act_min, act_max);
}
#endif

#if defined(DTMM_ISA_MVE)
/* Channels per requantization tile. The accumulators of a pixel group live channel-major in a
 * scratch tile (8 int32 per channel, the dot product's acc[] itself), and are requantized 4
 * channels x 1 pixel per vector (a gather of 4 channels' accumulators): per-channel multiplier
 * and shift vectors are loaded once per 4 channels, the 4 results of a pixel are contiguous in
 * the NHWC output (no scatter), instead of one requantization pass per channel. */
#define TILE_CH 32 /* the tile is caller scratch: dtmm_conv_block_s8_get_buffer_size() */
/* VLDRW.U32 Qd, [Qn, #4]!: gather from 4 addresses, then advance them (GCC 12's
 * vldrwq_gather_base_wb_s32 rejects its immediate once inlined) */
static inline int32x4_t gather_wb4(uint32x4_t *addr) {
  int32x4_t v;
  __asm__ volatile("vldrw.u32 %q0, [%q1, #4]!" : "=&w"(v), "+w"(*addr) : : "memory");
  return v;
}
static void requant_tile(const int32_t *tile, int32_t nvalid, int32_t nch, const int32_t *mult,
                         const int32_t *shift, int8_t *out, int32_t ps, int32_t out_offset,
                         int32_t act_min, int32_t act_max) {
#if defined(DTMM_BENCH_SKIP_REQUANT) /* bench-only phase build (bench/refmodels.py) */
  __asm__ volatile("" : : "r"(tile), "r"(out) : "memory");
  return;
#endif
  const int32x4_t vmin = vdupq_n_s32(act_min), vmax = vdupq_n_s32(act_max);
  const int32x4_t zero = vdupq_n_s32(0);
  const uint32x4_t rows = vmulq_n_u32(vidupq_n_u32(0, 1), 32); /* 4 tile rows, in bytes */
  int32_t c = 0;
  for (; c + 4 <= nch; c += 4) {
    /* 4 whole channels: no predication; the gather walks the 4 tile rows with a vector of
     * addresses written back by +4 bytes per pixel (VLDRW [Qn, #4]!), the left shift only
     * where a channel of the 4 has one: 12 instructions per 4 outputs, ~10 per 4 channels of
     * set-up */
    const int32x4_t m = vldrwq_s32(mult + c);
    const int32x4_t sh = vldrwq_s32(shift + c);
    const int32x4_t right = vminq_s32(sh, zero); /* -exponent of RoundingDivideByPOT */
    uint32x4_t addr = vaddq_n_u32(rows, (uint32_t)(tile + c * 8) - 4u);
    int8_t *o = out + c;
    if (vmaxvq_s32(0, sh) > 0) {
      const int32x4_t left = vmaxq_s32(sh, zero);
      for (int32_t s = 0; s < nvalid; ++s) {
        int32x4_t v = vqrdmulhq_s32(vshlq_s32(gather_wb4(&addr), left), m);
        v = vrshlq_s32(vqaddq_s32(v, vshrq_n_s32(vandq_s32(v, right), 31)), right);
        vstrbq_s32(o, vmaxq_s32(vminq_s32(vaddq_n_s32(v, out_offset), vmax), vmin));
        o += ps;
      }
    } else {
      for (int32_t s = 0; s < nvalid; ++s) {
        int32x4_t v = vqrdmulhq_s32(gather_wb4(&addr), m);
        v = vrshlq_s32(vqaddq_s32(v, vshrq_n_s32(vandq_s32(v, right), 31)), right);
        vstrbq_s32(o, vmaxq_s32(vminq_s32(vaddq_n_s32(v, out_offset), vmax), vmin));
        o += ps;
      }
    }
  }
  if (c < nch) { /* the last 1-3 channels, predicated */
    const mve_pred16_t p = vctp32q((uint32_t)(nch - c));
    const uint32x4_t offs = vmulq_n_u32(vidupq_n_u32(0, 1), 8); /* channel stride in the tile */
    const int32x4_t m = vldrwq_z_s32(mult + c, p);
    const int32x4_t sh = vldrwq_z_s32(shift + c, p);
    const int32x4_t left = vmaxq_s32(sh, zero);
    const int32x4_t right = vminq_s32(sh, zero);
    const int32_t *t = tile + c * 8;
    int8_t *o = out + c;
    for (int32_t s = 0; s < nvalid; ++s) {
      int32x4_t v = vshlq_s32(vldrwq_gather_shifted_offset_z_s32(t + s, offs, p), left);
      v = vqrdmulhq_s32(v, m);                                  /* TFLM SRDHM, bit-exact */
      v = vrshlq_s32(vqaddq_s32(v, vshrq_n_s32(vandq_s32(v, right), 31)), right);
      v = vmaxq_s32(vminq_s32(vaddq_n_s32(v, out_offset), vmax), vmin);
      vstrbq_p_s32(o, v, p);
      o += ps;
    }
  }
}
#endif

#if defined(DTMM_ISA_DSP)
/* Dense weights and a full group of 4 pixels, channels [o_begin, o_end), taps chunk aligned (n
 * chunks per filter): the commonest case of channels() (every pointwise conv) in a function of
 * its own. Inlined into the loop the 4 index formats share, its per-channel state (pointers,
 * offsets, the accumulators between dot product and requantization) was spilled to the stack:
 * ~25 instructions per channel and group more (Cin = 8: +40% on the layer). */
static __attribute__((noinline)) void dense_group4_dsp(const int8_t *xg, const int8_t *w, int32_t n, int32_t wstride, int32_t o_begin,
                             int32_t o_end, const int32_t *bias, const int32_t *mult, const int32_t *shift,
                             int8_t *out, int32_t ps, int32_t out_offset, int32_t act_min, int32_t act_max) {
  for (int32_t o = o_begin; o < o_end; ++o, w += wstride) {
    int32_t acc[4];
    acc[0] = acc[1] = acc[2] = acc[3] = bias[o];
#if defined(DTMM_BENCH_SKIP_MAC) /* bench-only phase build (bench/refmodels.py): no dot products */
    __asm__ volatile("" : : "r"(w), "r"(xg), "r"(acc) : "memory");
#else
    dot_g(4, w, xg, n, 0, acc);
#endif
#if defined(DTMM_BENCH_SKIP_REQUANT)
    __asm__ volatile("" : : "r"(acc), "r"(out) : "memory");
#else
    if (__builtin_expect(mult[o] >= (1 << 30) && shift[o] < 0, 1))
      requant4_fast(acc, (int32_t)((uint32_t)mult[o] << 1), -shift[o], out + o, ps, out_offset, act_min, act_max);
    else { /* a copy: the accumulators stay in registers on the fast path */
      int32_t t[4] = {acc[0], acc[1], acc[2], acc[3]};
      requant_store(t, 4, 4, mult[o], shift[o], out + o, ps, out_offset, act_min, act_max);
    }
#endif
  }
}
#endif

/* ------------------------------------------------------------------ format decode + block */
static inline int32_t mask_bits(const uint8_t *m, int32_t o, int32_t kk) {
  const int32_t bit = o * kk;
  const uint32_t v = rd32(m + (bit >> 3)) >> (bit & 7);
  return (int32_t)(kk >= 32 ? v : (v & ((1u << kk) - 1u)));
}
static inline int32_t popcount32(uint32_t v) {
  int32_t c = 0;
  for (; v; v &= v - 1) ++c;
  return c;
}
static inline int32_t ctz32(uint32_t v) { return __builtin_ctz(v); }

/* Filterlets (= weight offset in filterlets) before filter o. */
#if defined(DTMM_ISA_MVE) /* inlined into each caller as when channels() was its only one (the
                           * asm loops of dtmm_conv_block_s8 need every register GCC can spare) */
#define FILTERLETS_BEFORE static inline __attribute__((always_inline))
#else
#define FILTERLETS_BEFORE static
#endif
FILTERLETS_BEFORE int32_t filterlets_before(int32_t fmt, const void *idx0, const void *idx1, int32_t kk, int32_t o) {
  switch (fmt) {
    case DTMM_FMT_CSR: return ((const int16_t *)idx1)[o];
    case DTMM_FMT_U8: {
      int32_t j = 0;
      for (int32_t i = 0; i < o; ++i) j += ((const uint8_t *)idx1)[i];
      return j;
    }
    case DTMM_FMT_MASK: {
      int32_t j = 0;
      for (int32_t i = 0; i < o; ++i) j += popcount32((uint32_t)mask_bits((const uint8_t *)idx0, i, kk));
      return j;
    }
    default: return o * kk;
  }
}

/* DOT(wptr, tap, ntaps): accumulate a run of ntaps consecutive kept taps starting at tap. */
#define RUN(wp, tap, nt)                                                                    \
  do {                                                                                      \
    if (aligned) {                                                                          \
      DOTCALL((wp), xg + (tap) * tap_bytes, (nt) * cpt, 0);                                 \
    } else {                                                                                \
      for (int32_t t_ = 0; t_ < (nt); ++t_)                                                 \
        DOTCALL((wp) + t_ * cin, xg + ((tap) + t_) * tap_bytes, cin / CH, cin % CH);        \
    }                                                                                       \
  } while (0)

INLINE void channels(const int FMT, const int G, int32_t g, const int8_t *xg, int32_t nvalid,
                     const int8_t *values, const void *idx0, const void *idx1, int32_t kk,
                     int32_t cin, int32_t o_begin, int32_t o_end, const int32_t *bias,
                     const int32_t *mult, const int32_t *shift, int8_t *out, int32_t ps,
                     int32_t out_offset, int32_t act_min, int32_t act_max, int32_t *tile) {
  (void)tile;
  const int32_t cpt = (cin + CH - 1) / CH;
  const int32_t tap_bytes = cpt * CHB * g;
  const int32_t aligned = (cin % CH) == 0;
#if defined(DTMM_BENCH_SKIP_MAC) /* bench-only phase build (bench/refmodels.py): no dot products */
#define DOTCALL(w_, x_, n_, r_) __asm__ volatile("" : : "r"(w_), "r"(x_), "r"(acc) : "memory")
#else
#define DOTCALL(w_, x_, n_, r_)                                                             \
  do {                                                                                      \
    if (G) dot_g(G, (w_), (x_), (n_), (r_), acc); else dot_any(g, (w_), (x_), (n_), (r_), acc); \
  } while (0)
#endif
  const int8_t *w = values + (int32_t)filterlets_before(FMT, idx0, idx1, kk, o_begin) * cin;
  const int16_t *col = (const int16_t *)idx0;
  const uint8_t *pos = (const uint8_t *)idx0;
  int32_t j = (FMT == DTMM_FMT_CSR) ? ((const int16_t *)idx1)[o_begin]
              : (FMT == DTMM_FMT_U8) ? (int32_t)(w - values) / (cin ? cin : 1) : 0;
#if defined(DTMM_ISA_DSP)
  if (FMT == DTMM_FMT_DENSE && G == 4 && nvalid == 4 && aligned) {
    dense_group4_dsp(xg, w, kk * cpt, kk * cin, o_begin, o_end, bias, mult, shift, out, ps, out_offset, act_min,
                     act_max);
    return;
  }
#endif
#if defined(DTMM_ISA_MVE)
  for (int32_t o_t = o_begin; o_t < o_end; o_t += TILE_CH) {
  const int32_t o_tend = o_end - o_t < TILE_CH ? o_end : o_t + TILE_CH;
#else
  {
  const int32_t o_t = o_begin, o_tend = o_end;
#endif
  for (int32_t o = o_t; o < o_tend; ++o) {
#if defined(DTMM_ISA_MVE)
    int32_t *acc = tile + (o - o_t) * 8;
#if !defined(DTMM_BENCH_SKIP_MAC)
    if (FMT == DTMM_FMT_DENSE && G == 8 && (aligned || kk == 1) && cin > 0 && o + 1 < o_tend) {
      /* two dense filters at a time (o - o_t is even: both rows are in this tile); one run of
       * chunks: all taps when Cin is chunk aligned, else the one tap of a 1x1 / packed patch */
      const int32_t n = aligned ? kk * cpt : cin / CH, r = aligned ? 0 : cin % CH;
      if (r == 0) {
        const int32_t b0 = bias[o], b1 = bias[o + 1];
        dot_pair4_tile(w, w + kk * cin, xg, n, b0, b1, acc);
        dot_pair4_tile(w, w + kk * cin, xg + 64, n, b0, b1, acc + 4);
      } else {
        const int32_t b0 = bias[o], b1 = bias[o + 1];
        dot_pair4(w, w + kk * cin, xg, n, r, b0, b1, acc, acc + 8);
        dot_pair4(w, w + kk * cin, xg + 64, n, r, b0, b1, acc + 4, acc + 12);
      }
      w += 2 * kk * cin;
      ++o;
      continue;
    }
#endif
#else
    int32_t acc[8];
#endif
    const int32_t b = bias[o];
    for (int32_t s = 0; s < g; ++s) acc[s] = b;
    if (FMT == DTMM_FMT_DENSE) {
      RUN(w, 0, kk);
      w += kk * cin;
    } else if (FMT == DTMM_FMT_CSR) {
      const int32_t end = ((const int16_t *)idx1)[o + 1];
      while (j < end) {
        const int32_t start = col[j];
        int32_t nt = 1;
        while (j + nt < end && col[j + nt] == start + nt * cin) ++nt;
        RUN(w, start / cin, nt);
        w += nt * cin;
        j += nt;
      }
    } else if (FMT == DTMM_FMT_U8) {
      const int32_t end = j + ((const uint8_t *)idx1)[o];
      while (j < end) {
        const int32_t start = pos[j];
        int32_t nt = 1;
        while (j + nt < end && pos[j + nt] == start + nt) ++nt;
        RUN(w, start, nt);
        w += nt * cin;
        j += nt;
      }
    } else {
      uint32_t m = (uint32_t)mask_bits((const uint8_t *)idx0, o, kk);
      while (m) {
        const int32_t t = ctz32(m);
        const uint32_t rest = m >> t;
        const int32_t nt = (~rest) ? ctz32(~rest) : 32;
        RUN(w, t, nt);
        w += nt * cin;
        m = nt + t >= 32 ? 0 : (rest >> nt) << (nt + t);
      }
    }
#if !defined(DTMM_ISA_MVE)
    if (G == 4 && DTMM_BENCH_SKIP_REQUANT_ON) /* bench-only phase build: as requant_body */
      __asm__ volatile("" : : "r"(acc), "r"(out) : "memory");
    else if (G == 4 && __builtin_expect(nvalid == 4 && mult[o] >= (1 << 30) && shift[o] < 0, 1))
      requant4_fast(acc, (int32_t)((uint32_t)mult[o] << 1), -shift[o], out + o, ps, out_offset, act_min, act_max);
    else /* partial groups, shifts >= 0, small multipliers, ONNX records: out of line */
      requant_store(acc, g, nvalid, mult[o], shift[o], out + o, ps, out_offset, act_min, act_max);
#endif
  }
#if defined(DTMM_ISA_MVE)
  if (DTMM_IS_F32_RECORD(shift[o_t])) { /* ONNX records (a layer's are all of one kind): requant_tile
                                         * is TFLite's fixed point, so float32 per channel */
    for (int32_t o = o_t; o < o_tend; ++o)
      requant_body(tile + (o - o_t) * 8, g, nvalid, mult[o], shift[o], out + o, ps, out_offset, act_min,
                    act_max);
  } else {
    requant_tile(tile, nvalid, o_tend - o_t, mult + o_t, shift + o_t, out + o_t, ps, out_offset,
                 act_min, act_max);
  }
#endif
  }
#undef DOTCALL
}

#if defined(DTMM_ISA_MVE)
/* ---------------------------------------------------------------- sparse, Cin = 16 / 32 / 64
 * Filterlet-sparse weights with Cin = 16 * CPT (CPT = 1, 2, 4) and a group of 8 pixels: per
 * output channel ONE asm loop over its kept filterlets, each one index load, one address add
 * (tap * tap bytes: a shift of the uint8 tap, or col_idx * 8 for CSR) and CPT x (weight load +
 * 8 x (pixel load + VMLADAVA)); no run decode, no per-run call, the 8 accumulators stay in the
 * even registers for the whole channel (Cin 16: 20 instructions per kept filterlet and 8
 * pixels). The bitmask's set bits are first listed as uint8 taps (per channel and group). */
#define DTMM_SP_CHUNK(c)                                                   \
  "vldrb.8 q0, [%[w]], #16\n\t"                                          \
  "vldrw.32 q1, [%[xt], #" #c "*128]\n\t"                                \
  "vmladava.s8 %[s0], q1, q0\n\t"                                        \
  "vldrw.32 q2, [%[xt], #" #c "*128+16]\n\t"                             \
  "vmladava.s8 %[s1], q2, q0\n\t"                                        \
  "vldrw.32 q1, [%[xt], #" #c "*128+32]\n\t"                             \
  "vmladava.s8 %[s2], q1, q0\n\t"                                        \
  "vldrw.32 q2, [%[xt], #" #c "*128+48]\n\t"                             \
  "vmladava.s8 %[s3], q2, q0\n\t"                                        \
  "vldrw.32 q1, [%[xt], #" #c "*128+64]\n\t"                             \
  "vmladava.s8 %[s4], q1, q0\n\t"                                        \
  "vldrw.32 q2, [%[xt], #" #c "*128+80]\n\t"                             \
  "vmladava.s8 %[s5], q2, q0\n\t"                                        \
  "vldrw.32 q1, [%[xt], #" #c "*128+96]\n\t"                             \
  "vmladava.s8 %[s6], q1, q0\n\t"                                        \
  "vldrw.32 q2, [%[xt], #" #c "*128+112]\n\t"                            \
  "vmladava.s8 %[s7], q2, q0\n\t"
#define DTMM_SP_LOOP(LOADIDX, CHUNKS)                                                          \
  __asm__ volatile("1:\n\t" LOADIDX CHUNKS "subs %[n], %[n], #1\n\t"                     \
                   "bne 1b\n\t"                                                              \
                   : [w] "+r"(w), [p] "+r"(p), [n] "+r"(n), [xt] "=&r"(xt), [s0] "+r"(s0),    \
                     [s1] "+r"(s1), [s2] "+r"(s2), [s3] "+r"(s3), [s4] "+r"(s4), [s5] "+r"(s5), \
                     [s6] "+r"(s6), [s7] "+r"(s7)                                              \
                   : [xg] "r"(xg)                                                              \
                   : "q0", "q1", "q2", "cc", "memory")
#define DTMM_SP_U8(sh) "ldrb %[xt], [%[p]], #1\n\tadd %[xt], %[xg], %[xt], lsl #" #sh "\n\t"
#define DTMM_SP_I16 "ldrsh %[xt], [%[p]], #2\n\tadd %[xt], %[xg], %[xt], lsl #3\n\t"

/* acc[0..7] = b + the n kept filterlets at w (index entries at p: uint8 taps, or int16 col_idx
 * when CSR) over the group xg. */
static __attribute__((noinline, unused)) void sparse_dot8(int32_t csr, int32_t cpt, const int8_t *xg, const int8_t *w,
                                                  const void *p, int32_t n, int32_t b, int32_t *acc) {
  register int32_t s0 __asm__("r0") = b;
  register int32_t s1 __asm__("r2") = b;
  register int32_t s2 __asm__("r4") = b;
  register int32_t s3 __asm__("r6") = b;
  register int32_t s4 __asm__("r8") = b;
  register int32_t s5 __asm__("r10") = b;
  register int32_t s6 __asm__("r12") = b;
  register int32_t s7 __asm__("lr") = b;
  const int8_t *xt;
  if (n > 0) {
    if (csr) {
      if (cpt == 1) DTMM_SP_LOOP(DTMM_SP_I16, DTMM_SP_CHUNK(0));
      else if (cpt == 2) DTMM_SP_LOOP(DTMM_SP_I16, DTMM_SP_CHUNK(0) DTMM_SP_CHUNK(1));
      else DTMM_SP_LOOP(DTMM_SP_I16, DTMM_SP_CHUNK(0) DTMM_SP_CHUNK(1) DTMM_SP_CHUNK(2) DTMM_SP_CHUNK(3));
    } else {
      if (cpt == 1) DTMM_SP_LOOP(DTMM_SP_U8(7), DTMM_SP_CHUNK(0));
      else if (cpt == 2) DTMM_SP_LOOP(DTMM_SP_U8(8), DTMM_SP_CHUNK(0) DTMM_SP_CHUNK(1));
      else DTMM_SP_LOOP(DTMM_SP_U8(9), DTMM_SP_CHUNK(0) DTMM_SP_CHUNK(1) DTMM_SP_CHUNK(2) DTMM_SP_CHUNK(3));
    }
  }
  __asm__ volatile("strd %[s0], %[s1], [%[a]]\n\t"
                   "strd %[s2], %[s3], [%[a], #8]\n\t"
                   "strd %[s4], %[s5], [%[a], #16]\n\t"
                   "strd %[s6], %[s7], [%[a], #24]\n\t"
                   :
                   : [a] "r"(acc), [s0] "r"(s0), [s1] "r"(s1), [s2] "r"(s2), [s3] "r"(s3), [s4] "r"(s4),
                     [s5] "r"(s5), [s6] "r"(s6), [s7] "r"(s7)
                   : "memory");
}

/* uint8 taps: a tile's channels in one asm loop (per channel its count and bias from a state
 * block on the stack, the 8 accumulators set, the kept filterlets, 4 STRD into the tile row):
 * ~25 instructions per channel and group besides the filterlets, against ~55 with a call per
 * channel. st = {counts, bias, tile, channels}; w and p advance over the tile's filterlets. */
#if defined(DTMM_BENCH_SKIP_MAC) /* bench-only phase build (bench/refmodels.py): the per-channel set-up
                                   * and stores stay, the kept filterlets are only skipped over */
#define DTMM_SPT_FILTERLETS(CHUNKS)                                                            \
                   "add %[p], %[p], %[n]\n\t"                                                 \
                   "add %[w], %[w], %[n], lsl %[wsh]\n\t"
#else
#define DTMM_SPT_FILTERLETS(CHUNKS)                                                            \
                   "cmp %[n], #0\n\t"                                                         \
                   "beq 3f\n\t"                                                               \
                   "1:\n\t"                                                                   \
                   "ldrb %[xt], [%[p]], #1\n\t"                                               \
                   "add %[xt], %[xg], %[xt], lsl %[sh]\n\t"                                   \
                   CHUNKS                                                                      \
                   "subs %[n], %[n], #1\n\t"                                                  \
                   "bne 1b\n\t"
#endif
#define DTMM_SPT_LOOP(CHUNKS)                                                                  \
  __asm__ volatile("2:\n\t"                                                                   \
                   "ldr %[xt], [%[st]]\n\t"                                                   \
                   "ldrb %[n], [%[xt]], #1\n\t"                                               \
                   "str %[xt], [%[st]]\n\t"                                                   \
                   "ldr %[xt], [%[st], #4]\n\t"                                               \
                   "ldr %[s0], [%[xt]], #4\n\t"                                               \
                   "str %[xt], [%[st], #4]\n\t"                                               \
                   "mov %[s1], %[s0]\n\t"                                                     \
                   "mov %[s2], %[s0]\n\t"                                                     \
                   "mov %[s3], %[s0]\n\t"                                                     \
                   "mov %[s4], %[s0]\n\t"                                                     \
                   "mov %[s5], %[s0]\n\t"                                                     \
                   "mov %[s6], %[s0]\n\t"                                                     \
                   "mov %[s7], %[s0]\n\t"                                                     \
                   DTMM_SPT_FILTERLETS(CHUNKS)                                                 \
                   "3:\n\t"                                                                   \
                   "ldr %[xt], [%[st], #8]\n\t"                                               \
                   "strd %[s0], %[s1], [%[xt]], #8\n\t"                                       \
                   "strd %[s2], %[s3], [%[xt]], #8\n\t"                                       \
                   "strd %[s4], %[s5], [%[xt]], #8\n\t"                                       \
                   "strd %[s6], %[s7], [%[xt]], #8\n\t"                                       \
                   "str %[xt], [%[st], #8]\n\t"                                               \
                   "ldr %[xt], [%[st], #12]\n\t"                                              \
                   "subs %[xt], %[xt], #1\n\t"                                                \
                   "str %[xt], [%[st], #12]\n\t"                                              \
                   "bne 2b\n\t"                                                               \
                   : [w] "+r"(w), [p] "+r"(p), [n] "=&r"(n), [xt] "=&r"(xt), [s0] "=&r"(s0),  \
                     [s1] "=&r"(s1), [s2] "=&r"(s2), [s3] "=&r"(s3), [s4] "=&r"(s4),          \
                     [s5] "=&r"(s5), [s6] "=&r"(s6), [s7] "=&r"(s7)                            \
                   : [xg] "r"(xg), [st] "r"(st), [sh] "i"(SH), [wsh] "i"(SH - 3)               \
                   : "q0", "q1", "q2", "cc", "memory")

/* channels [0, nch) of a tile (nch >= 1), uint8 taps, Cin = 16 * cpt (cpt 1, 2, 4) */
static __attribute__((noinline, unused)) void sparse_u8_tile(int32_t cpt, const int8_t *xg, const int8_t **wp,
                                                     const uint8_t **pp, const uint8_t *counts,
                                                     const int32_t *bias, int32_t *tile, int32_t nch) {
  register int32_t s0 __asm__("r0");
  register int32_t s1 __asm__("r2");
  register int32_t s2 __asm__("r4");
  register int32_t s3 __asm__("r6");
  register int32_t s4 __asm__("r8");
  register int32_t s5 __asm__("r10");
  register int32_t s6 __asm__("r12");
  register int32_t s7 __asm__("lr");
  const int8_t *w = *wp;
  const uint8_t *p = *pp;
  const int8_t *xt;
  int32_t n;
  uint32_t st[4] = {(uint32_t)counts, (uint32_t)bias, (uint32_t)tile, (uint32_t)nch};
  if (cpt == 1) {
#define SH 7
    DTMM_SPT_LOOP(DTMM_SP_CHUNK(0));
#undef SH
  } else if (cpt == 2) {
#define SH 8
    DTMM_SPT_LOOP(DTMM_SP_CHUNK(0) DTMM_SP_CHUNK(1));
#undef SH
  } else {
#define SH 9
    DTMM_SPT_LOOP(DTMM_SP_CHUNK(0) DTMM_SP_CHUNK(1) DTMM_SP_CHUNK(2) DTMM_SP_CHUNK(3));
#undef SH
  }
  (void)s0; (void)s1; (void)s2; (void)s3; (void)s4; (void)s5; (void)s6; (void)s7; (void)n; (void)xt;
  *wp = w;
  *pp = p;
}
#undef DTMM_SPT_LOOP
#undef DTMM_SPT_FILTERLETS
#undef DTMM_SP_CHUNK
#undef DTMM_SP_LOOP
#undef DTMM_SP_U8
#undef DTMM_SP_I16

static void sparse_channels(int32_t fmt, const int8_t *xg, int32_t nvalid, const int8_t *values, const void *idx0,
                            const void *idx1, int32_t kk, int32_t cin, int32_t o_begin, int32_t o_end,
                            const int32_t *bias, const int32_t *mult, const int32_t *shift, int8_t *out,
                            int32_t ps, int32_t out_offset, int32_t act_min, int32_t act_max, int32_t *tile) {
  const int32_t cpt = cin / 16;
  int32_t j = filterlets_before(fmt, idx0, idx1, kk, o_begin);
  const int8_t *w = values + j * cin;
  for (int32_t o_t = o_begin; o_t < o_end; o_t += TILE_CH) {
    const int32_t o_tend = o_end - o_t < TILE_CH ? o_end : o_t + TILE_CH;
    if (fmt == DTMM_FMT_U8) {
      const uint8_t *p = (const uint8_t *)idx0 + j;
      sparse_u8_tile(cpt, xg, &w, &p, (const uint8_t *)idx1 + o_t, bias + o_t, tile, o_tend - o_t);
      j = (int32_t)(p - (const uint8_t *)idx0);
    } else
    for (int32_t o = o_t; o < o_tend; ++o) {
      int32_t *acc = tile + (o - o_t) * 8;
      int32_t n;
      const void *p;
      uint8_t taps[32];
      if (fmt == DTMM_FMT_CSR) {
        n = ((const int16_t *)idx1)[o + 1] - j;
        p = (const int16_t *)idx0 + j;
      } else if (fmt == DTMM_FMT_U8) {
        n = ((const uint8_t *)idx1)[o];
        p = (const uint8_t *)idx0 + j;
      } else { /* bitmask: list the set bits */
        uint32_t m = (uint32_t)mask_bits((const uint8_t *)idx0, o, kk);
        n = 0;
        for (; m; m &= m - 1) taps[n++] = (uint8_t)ctz32(m);
        p = taps;
      }
#if defined(DTMM_BENCH_SKIP_MAC) /* bench-only phase build (bench/refmodels.py): no dot products */
      __asm__ volatile("" : : "r"(w), "r"(xg), "r"(p) : "memory");
      for (int32_t s = 0; s < 8; ++s) acc[s] = bias[o];
#else
      sparse_dot8(fmt == DTMM_FMT_CSR, cpt, xg, w, p, n, bias[o], acc);
#endif
      w += n * cin;
      j += n;
    }
    if (DTMM_IS_F32_RECORD(shift[o_t])) {
      for (int32_t o = o_t; o < o_tend; ++o)
        requant_body(tile + (o - o_t) * 8, 8, nvalid, mult[o], shift[o], out + o, ps, out_offset, act_min,
                     act_max);
    } else {
      requant_tile(tile, nvalid, o_tend - o_t, mult + o_t, shift + o_t, out + o_t, ps, out_offset, act_min,
                   act_max);
    }
  }
}
#endif

#if defined(DTMM_ISA_MVE)
/* Dense, kk == 1, Cin <= 32, a group of 8 (small_k_tile), per 32-channel tile then requant_tile. */
static void small_k_channels(const int8_t *xg, int32_t nvalid, const int8_t *w, int32_t cin, int32_t o_begin,
                             int32_t o_end, const int32_t *bias, const int32_t *mult, const int32_t *shift,
                             int8_t *out, int32_t ps, int32_t out_offset, int32_t act_min, int32_t act_max,
                             int32_t *tile) {
  w += o_begin * cin;
  for (int32_t o_t = o_begin; o_t < o_end; o_t += TILE_CH) {
    const int32_t o_tend = o_end - o_t < TILE_CH ? o_end : o_t + TILE_CH;
#if defined(DTMM_BENCH_SKIP_MAC) /* bench-only phase build (bench/refmodels.py): no dot products */
    __asm__ volatile("" : : "r"(w), "r"(xg), "r"(tile), "r"(bias) : "memory");
#else
    small_k_tile(xg, w, cin, o_tend - o_t, bias + o_t, tile);
#endif
    w += (o_tend - o_t) * cin;
    if (DTMM_IS_F32_RECORD(shift[o_t])) {
      for (int32_t o = o_t; o < o_tend; ++o)
        requant_body(tile + (o - o_t) * 8, 8, nvalid, mult[o], shift[o], out + o, ps, out_offset, act_min,
                     act_max);
    } else {
      requant_tile(tile, nvalid, o_tend - o_t, mult + o_t, shift + o_t, out + o_t, ps, out_offset, act_min,
                   act_max);
    }
  }
}
static __attribute__((noinline)) void small_k_block(const int8_t *buf, int32_t npix, const int8_t *w, int32_t cin,
                                                    int32_t o_begin, int32_t o_end, const int32_t *bias,
                                                    const int32_t *mult, const int32_t *shift, int8_t *out,
                                                    int32_t ps, int32_t out_offset, int32_t act_min,
                                                    int32_t act_max, int32_t *tile) {
  const int32_t group_bytes = ((cin + 15) / 16) * 16 * 8;
  for (int32_t p = 0; p < npix; p += 8)
    small_k_channels(buf + (p / 8) * group_bytes, npix - p < 8 ? npix - p : 8, w, cin, o_begin, o_end, bias, mult,
                     shift, out + p * ps, ps, out_offset, act_min, act_max, tile);
}
#define FAST_G(g) ((g) == 4 ? 4 : ((g) == 8 ? 8 : 0))
#elif defined(DTMM_ISA_DSP)
#define FAST_G(g) ((g) == 4 ? 4 : 0)
#else
#define FAST_G(g) 0
#endif

#define DISPATCH(FMT)                                                                       \
  do {                                                                                      \
    if (FAST_G(group) == 4)                                                                 \
      channels(FMT, 4, 4, xg, nvalid, values, idx0, idx1, kk, cin, o_begin, o_end, bias,   \
               mult, shift, o, ps, out_offset, act_min, act_max, tile);                     \
    else if (FAST_G(group) == 8)                                                            \
      channels(FMT, FAST_G(8), 8, xg, nvalid, values, idx0, idx1, kk, cin, o_begin, o_end, \
               bias, mult, shift, o, ps, out_offset, act_min, act_max, tile);               \
    else                                                                                    \
      channels(FMT, 0, group, xg, nvalid, values, idx0, idx1, kk, cin, o_begin, o_end,     \
               bias, mult, shift, o, ps, out_offset, act_min, act_max, tile);               \
  } while (0)

int32_t dtmm_conv_block_s8_get_buffer_size(void) {
#if defined(DTMM_ISA_MVE)
  return (int32_t)sizeof(int32_t) * 8 * TILE_CH;
#else
  return 0;
#endif
}

void dtmm_conv_block_s8(const int8_t *buf, int32_t npix, int32_t group, int32_t fmt,
                        const int8_t *values, const void *idx0, const void *idx1, int32_t kk,
                        int32_t cin, int32_t o_begin, int32_t o_end, const int32_t *bias,
                        const int32_t *mult, const int32_t *shift, int8_t *out,
                        int32_t out_pixel_stride, int32_t out_offset, int32_t act_min,
                        int32_t act_max, int32_t *tile) {
  const int32_t ps = out_pixel_stride;
  const int32_t group_bytes = kk * ((cin + CH - 1) / CH) * CHB * group;
  for (int32_t p = 0; p < npix; p += group) {
    const int8_t *xg = buf + (p / group) * group_bytes;
    const int32_t nvalid = npix - p < group ? npix - p : group;
    int8_t *o = out + p * ps;
    switch (fmt) {
      case DTMM_FMT_CSR: DISPATCH(DTMM_FMT_CSR); break;
      case DTMM_FMT_U8: DISPATCH(DTMM_FMT_U8); break;
      case DTMM_FMT_MASK: DISPATCH(DTMM_FMT_MASK); break;
      default: DISPATCH(DTMM_FMT_DENSE); break;
    }
  }
}

#if defined(DTMM_ISA_MVE)
void dtmm_conv_block_mve_s8(const int8_t *buf, int32_t npix, int32_t group, int32_t fmt,
                               const int8_t *values, const void *idx0, const void *idx1, int32_t kk,
                               int32_t cin, int32_t o_begin, int32_t o_end, const int32_t *bias,
                               const int32_t *mult, const int32_t *shift, int8_t *out,
                               int32_t out_pixel_stride, int32_t out_offset, int32_t act_min,
                               int32_t act_max, int32_t *tile) {
  if (fmt == DTMM_FMT_DENSE && group == 8 && kk == 1 && cin > 0 && cin <= 32) {
    small_k_block(buf, npix, values, cin, o_begin, o_end, bias, mult, shift, out, out_pixel_stride, out_offset,
                  act_min, act_max, tile);
    return;
  }
  if (fmt != DTMM_FMT_DENSE && group == 8 && (cin == 16 || cin == 32 || cin == 64) && kk > 1 && kk <= 32) {
    const int32_t group_bytes = kk * cin * 8;
    for (int32_t p = 0; p < npix; p += 8)
      sparse_channels(fmt, buf + (p / 8) * group_bytes, npix - p < 8 ? npix - p : 8, values, idx0, idx1, kk, cin,
                      o_begin, o_end, bias, mult, shift, out + p * out_pixel_stride, out_pixel_stride, out_offset,
                      act_min, act_max, tile);
    return;
  }
  dtmm_conv_block_s8(buf, npix, group, fmt, values, idx0, idx1, kk, cin, o_begin, o_end, bias, mult, shift, out,
                     out_pixel_stride, out_offset, act_min, act_max, tile);
}
#endif
