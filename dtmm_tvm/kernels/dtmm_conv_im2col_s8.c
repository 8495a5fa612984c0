/*
 * dtmm_conv_im2col_s8.c - im2col of a block of output pixels for dtmm_conv_block_s8.
 *
 * Buffer layout ("chunk-interleaved groups"): the block's pixels form groups of G slots
 * (G = the `group` argument). Each pixel's im2col row is split per kernel tap into
 * CPT = ceil(Cin / CH) chunks of CH elements (the last one partial); the G slots' copies of a
 * chunk are stored next to each other, so ONE pointer walks all G pixels of a group:
 *
 *   MVE (CH = 16, int8):  chunk = [slot0: 16 B][slot1: 16 B]...[slot G-1: 16 B]
 *                         raw input values; padding taps = -input_offset (the offset is
 *                         folded into the bias by dtmm_conv_bias_s8);
 *   DSP/portable (CH = 4, q15):
 *                         chunk = [slot0 (x0,x2)]..[slot G-1 (x0,x2)] [slot0 (x1,x3)]..[slot G-1 (x1,x3)]
 *                         (q15 x + input_offset, CMSIS-NN's "reordered" pairs: SXTB16 of 4 weights
 *                         gives (w0,w2) and (w1,w3) and feeds SMLAD with no PKHBT/PKHTB); padding = 0.
 * Elements of a partial chunk beyond Cin are never read with a non-zero weight.
 * One call gathers the whole block; a kernel row's in-bounds taps are one contiguous copy.
 * MVE, Cin a multiple of 16 (im2col_aligned_mve): a group of 8 pixels in one output row with a
 * slot stride (stride_w * Cin) of at most 64 bytes takes the row path (per tap 8 chunk copies
 * from one input row, padding for slots and kernel rows outside the image); other pixels one by
 * one with pointers stepped per pixel. MVE packed small-Cin patch: VLDRB byte gathers through
 * per-call uint8 offset tables when the patch spans at most 255 input bytes.
 */
#include <string.h>
#include "dtmm_kernels.h"

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

int32_t dtmm_conv_s8_elem_bytes(void) {
#if defined(DTMM_ISA_MVE)
  return 1;
#else
  return 2;
#endif
}

int32_t dtmm_conv_s8_get_buffer_size(int32_t kk, int32_t cin, int32_t npix) {
  return kk * ((cin + CH - 1) / CH) * CHB * npix;
}

#if defined(DTMM_ISA_DSP)
/* a + SXTB16(v) (and of v ROR 8): sign extension and the input offset in one instruction */
static inline uint32_t sxtab16(uint32_t a, uint32_t v) {
  uint32_t r;
  __asm__("sxtab16 %0, %1, %2" : "=r"(r) : "r"(a), "r"(v));
  return r;
}
static inline uint32_t sxtab16_ror8(uint32_t a, uint32_t v) {
  uint32_t r;
  __asm__("sxtab16 %0, %1, %2, ror #8" : "=r"(r) : "r"(a), "r"(v));
  return r;
}
/* Two 4-byte chunks of input into the group-of-4 q15 layout: even values (+ offset) at dst and
 * dst + 32, odd values at dst + 16 and dst + 48. */
static inline void widen_two_chunks_g4(const int8_t *src, int8_t *dst, uint32_t off2) {
  uint32_t v0, v1;
  __builtin_memcpy(&v0, src, 4);
  __builtin_memcpy(&v1, src + 4, 4);
  const uint32_t e0 = sxtab16(off2, v0), o0 = sxtab16_ror8(off2, v0);
  const uint32_t e1 = sxtab16(off2, v1), o1 = sxtab16_ror8(off2, v1);
  __builtin_memcpy(dst, &e0, 4);
  __builtin_memcpy(dst + 16, &o0, 4);
  __builtin_memcpy(dst + 32, &e1, 4);
  __builtin_memcpy(dst + 48, &o1, 4);
}
#endif

/* Copy n input values (n a multiple of CH unless it is one tap's tail) into consecutive chunks
 * starting at dst (this slot's position), cs bytes between chunks, group G. */
static inline void copy_chunks(const int8_t *src, int8_t *dst, int32_t n, int32_t cs, int32_t g,
                               int32_t input_offset) {
#if defined(DTMM_ISA_MVE)
  (void)g;
  (void)input_offset;
  if (cs == 128) { /* the default group of 8: 4 chunks per step, immediate store offsets */
    for (; n >= 64; n -= 64) {
      const int8x16_t a = vldrbq_s8(src), b = vldrbq_s8(src + 16);
      const int8x16_t c = vldrbq_s8(src + 32), d = vldrbq_s8(src + 48);
      src += 64;
      vstrwq_s32((int32_t *)(void *)dst, vreinterpretq_s32_s8(a));
      vstrwq_s32((int32_t *)(void *)(dst + 128), vreinterpretq_s32_s8(b));
      vstrwq_s32((int32_t *)(void *)(dst + 256), vreinterpretq_s32_s8(c));
      vstrwq_s32((int32_t *)(void *)(dst + 384), vreinterpretq_s32_s8(d));
      dst += 512;
    }
  }
  while (n >= 16) {
    vstrbq_s8(dst, vldrbq_s8(src));
    src += 16;
    dst += cs;
    n -= 16;
  }
  if (n > 0) {
    const mve_pred16_t p = vctp8q((uint32_t)n);
    vstrbq_p_s8(dst, vldrbq_z_s8(src, p), p);
  }
#elif defined(DTMM_ISA_DSP)
  const uint32_t off2 = ((uint32_t)(uint16_t)input_offset) * 0x00010001u;
  const int32_t hi = 4 * g;
  if (g == 4) { /* the default group: two chunks per step, immediate store offsets */
    const int8_t *const end = src + (n & ~7);
    while (src != end) {
      widen_two_chunks_g4(src, dst, off2);
      src += 8;
      dst += 64;
    }
    n &= 7;
  }
  while (n >= 4) {
    uint32_t v;
    __builtin_memcpy(&v, src, 4);
    src += 4;
    const uint32_t e = sxtab16(off2, v);                       /* x0, x2 (+ offset) */
    const uint32_t o = sxtab16_ror8(off2, v);                  /* x1, x3 (+ offset) */
    __builtin_memcpy(dst, &e, 4);
    __builtin_memcpy(dst + hi, &o, 4);
    dst += cs;
    n -= 4;
  }
  if (n > 0) {
    int16_t t[4] = {0, 0, 0, 0};
    for (int32_t i = 0; i < n; ++i) t[i] = (int16_t)(src[i] + input_offset);
    int16_t *d = (int16_t *)(void *)dst;
    int16_t *d2 = (int16_t *)(void *)(dst + hi);
    d[0] = t[0]; d[1] = t[2]; d2[0] = t[1]; d2[1] = t[3];
  }
#else
  const int32_t hi = 4 * g;
  while (n > 0) {
    int16_t t[4] = {0, 0, 0, 0};
    const int32_t m = n < 4 ? n : 4;
    for (int32_t i = 0; i < m; ++i) t[i] = (int16_t)(src[i] + input_offset);
    int16_t *d = (int16_t *)(void *)dst;
    int16_t *d2 = (int16_t *)(void *)(dst + hi);
    d[0] = t[0]; d[1] = t[2]; d2[0] = t[1]; d2[1] = t[3];
    src += m;
    dst += cs;
    n -= m;
  }
#endif
}

static inline void pad_chunks(int8_t *dst, int32_t nchunks, int32_t cs, int32_t g, int32_t input_offset) {
#if defined(DTMM_ISA_MVE)
  (void)g;
  const int8x16_t v = vdupq_n_s8((int8_t)(-input_offset));
  for (int32_t c = 0; c < nchunks; ++c) {
    vstrbq_s8(dst, v);
    dst += cs;
  }
#else
  (void)input_offset;
  const int32_t hi = 4 * g;
  const uint32_t z = 0;
  for (int32_t c = 0; c < nchunks; ++c) {
    __builtin_memcpy(dst, &z, 4);
    __builtin_memcpy(dst + hi, &z, 4);
    dst += cs;
  }
#endif
}

#if defined(DTMM_ISA_MVE)
/* Cin a multiple of 16: every tap is cpt = Cin / 16 whole chunks. Pointers advance per pixel
 * (no division or window arithmetic); a pixel whose every tap is in the image (output columns
 * [ow_lo, ow_hi] of an interior output row) is kh runs of kw * cpt chunk copies when
 * dilation_w is 1 (3x3, Cin 16: ~25 instructions per pixel, was ~150 with the per-pixel
 * address arithmetic); a border pixel is per tap cpt copies or pad stores. */
/* A whole group of 8 pixels in one output row, Cin 16, stride_w 1, dilation_w 1: per kernel tap
 * the 8 slots are 8 consecutive input pixels = 128 contiguous input bytes, so a tap of an
 * in-image kernel row is 8 loads + 8 stores with immediate offsets (~21 instructions per tap
 * and 8 pixels, against ~60 per tap and pixel on the per-pixel path); slots left or right of the
 * image get the padding value, a kernel row above or below the image is all padding.
 * d: the group's first chunk. */
static void im2col_group_row16(const int8_t *x, int32_t in_h, int32_t in_w, int32_t kh, int32_t kw, int32_t dh,
                               int32_t ih0, int32_t iw0, int8x16_t padv, int8_t *d) {
  for (int32_t i = 0; i < kh; ++i) {
    const int32_t ih = ih0 + i * dh;
    if ((uint32_t)ih >= (uint32_t)in_h) {
      const int32x4_t v = vreinterpretq_s32_s8(padv);
      for (int32_t j = 0; j < kw; ++j, d += 128) {
        int32_t *q = (int32_t *)(void *)d;
        vstrwq_s32(q, v); vstrwq_s32(q + 4, v); vstrwq_s32(q + 8, v); vstrwq_s32(q + 12, v);
        vstrwq_s32(q + 16, v); vstrwq_s32(q + 20, v); vstrwq_s32(q + 24, v); vstrwq_s32(q + 28, v);
      }
      continue;
    }
    const int8_t *src = x + (ih * in_w + iw0) * 16; /* slot 0 of tap j = 0, maybe outside the row */
    for (int32_t j = 0; j < kw; ++j, d += 128, src += 16) {
      const int32_t iw = iw0 + j;
      if (iw >= 0 && iw + 8 <= in_w) {
        __asm__ volatile(
            "vldrb.8 q0, [%[s]]\n\t"
            "vldrb.8 q1, [%[s], #16]\n\t"
            "vldrb.8 q2, [%[s], #32]\n\t"
            "vldrb.8 q3, [%[s], #48]\n\t"
            "vstrw.32 q0, [%[d]]\n\t"
            "vstrw.32 q1, [%[d], #16]\n\t"
            "vstrw.32 q2, [%[d], #32]\n\t"
            "vstrw.32 q3, [%[d], #48]\n\t"
            "vldrb.8 q0, [%[s], #64]\n\t"
            "vldrb.8 q1, [%[s], #80]\n\t"
            "vldrb.8 q2, [%[s], #96]\n\t"
            "vldrb.8 q3, [%[s], #112]\n\t"
            "vstrw.32 q0, [%[d], #64]\n\t"
            "vstrw.32 q1, [%[d], #80]\n\t"
            "vstrw.32 q2, [%[d], #96]\n\t"
            "vstrw.32 q3, [%[d], #112]\n\t"
            :
            : [s] "r"(src), [d] "r"(d)
            : "q0", "q1", "q2", "q3", "memory");
        continue;
      }
      /* slots [s_lo, s_hi) read inside the row */
      const int32_t s_lo = iw >= 0 ? 0 : (-iw < 8 ? -iw : 8);
      int32_t s_hi = in_w - iw < 8 ? in_w - iw : 8;
      if (s_hi < s_lo) s_hi = s_lo;
      int8_t *o = d;
      for (int32_t sl = 0; sl < s_lo; ++sl, o += 16) vstrbq_s8(o, padv);
      const int8_t *sp = src + 16 * s_lo;
      for (int32_t sl = s_lo; sl < s_hi; ++sl, o += 16, sp += 16) vstrbq_s8(o, vldrbq_s8(sp));
      for (int32_t sl = s_hi; sl < 8; ++sl, o += 16) vstrbq_s8(o, padv);
    }
  }
}

/* 8 chunks of 16 bytes, SS input bytes apart (post-incremented loads), to 8 consecutive
 * 16-byte slots at d: one tap chunk of a group of 8 pixels in one input row. The _PAD_FIRST /
 * _PAD_LAST forms leave slot 0 (left image border) or slot 7 (right border) unread and store the
 * padding value padv there: the two border cases of a 3x3 SAME conv whose output width is a
 * multiple of 8, as a row copy instead of slot by slot (~55 instructions per chunk). */
#define DTMM_LD(q, SS) "vldrb.8 " #q ", [%[s]], #" #SS "\n\t"
#define DTMM_LD_END(q) "vldrb.8 " #q ", [%[s]]\n\t"
#define DTMM_ST(q, off) "vstrw.32 " q ", [%[d], #" #off "]\n\t"
#define DTMM_ROW_ASM(BODY)                                                                     \
  __asm__ volatile(BODY : [s] "+r"(sp) : [d] "r"(d), [pv] "w"(padv) : "q0", "q1", "q2", "q3", "memory")
#define DTMM_ROW8(SS)                                                                          \
  DTMM_ROW_ASM(DTMM_LD(q0, SS) DTMM_LD(q1, SS) DTMM_LD(q2, SS) DTMM_LD(q3, SS)                 \
               DTMM_ST("q0", 0) DTMM_ST("q1", 16) DTMM_ST("q2", 32) DTMM_ST("q3", 48)         \
               DTMM_LD(q0, SS) DTMM_LD(q1, SS) DTMM_LD(q2, SS) DTMM_LD_END(q3)                \
               DTMM_ST("q0", 64) DTMM_ST("q1", 80) DTMM_ST("q2", 96) DTMM_ST("q3", 112))
#define DTMM_ROW8_PAD_FIRST(SS)                                                                \
  DTMM_ROW_ASM(DTMM_LD(q0, SS) DTMM_LD(q1, SS) DTMM_LD(q2, SS)                                 \
               DTMM_ST("%q[pv]", 0) DTMM_ST("q0", 16) DTMM_ST("q1", 32) DTMM_ST("q2", 48)     \
               DTMM_LD(q0, SS) DTMM_LD(q1, SS) DTMM_LD(q2, SS) DTMM_LD_END(q3)                \
               DTMM_ST("q0", 64) DTMM_ST("q1", 80) DTMM_ST("q2", 96) DTMM_ST("q3", 112))
#define DTMM_ROW8_PAD_LAST(SS)                                                                 \
  DTMM_ROW_ASM(DTMM_LD(q0, SS) DTMM_LD(q1, SS) DTMM_LD(q2, SS) DTMM_LD(q3, SS)                 \
               DTMM_ST("q0", 0) DTMM_ST("q1", 16) DTMM_ST("q2", 32) DTMM_ST("q3", 48)         \
               DTMM_LD(q0, SS) DTMM_LD(q1, SS) DTMM_LD_END(q2)                                \
               DTMM_ST("q0", 64) DTMM_ST("q1", 80) DTMM_ST("q2", 96) DTMM_ST("%q[pv]", 112))

/* A whole group of 8 pixels in one output row, Cin = 16 * cpt, slot stride ss = stride_w * Cin
 * of 16, 32 or 64 bytes, dilation_w 1: per kernel tap the 8 slots read pixels of one input row
 * ss bytes apart, so a chunk of a tap of an in-image kernel row is 8 post-incremented loads +
 * 8 stores with immediate offsets (~17 instructions per chunk and 8 pixels, against ~4 per
 * chunk and pixel on the per-pixel path); slots left or right of the image get the padding
 * value, a kernel row above or below the image is all padding. d: the group's first chunk. */
static void im2col_group_row(const int8_t *x, int32_t in_h, int32_t in_w, int32_t cin, int32_t kh, int32_t kw,
                             int32_t sw, int32_t dh, int32_t ih0, int32_t iw0, int8x16_t padv, int8_t *d) {
  const int32_t cpt = cin / 16, ss = sw * cin;
  for (int32_t i = 0; i < kh; ++i) {
    const int32_t ih = ih0 + i * dh;
    if ((uint32_t)ih >= (uint32_t)in_h) {
      const int32x4_t v = vreinterpretq_s32_s8(padv);
      for (int32_t t = 0; t < kw * cpt; ++t, d += 128) {
        int32_t *q = (int32_t *)(void *)d;
        vstrwq_s32(q, v); vstrwq_s32(q + 4, v); vstrwq_s32(q + 8, v); vstrwq_s32(q + 12, v);
        vstrwq_s32(q + 16, v); vstrwq_s32(q + 20, v); vstrwq_s32(q + 24, v); vstrwq_s32(q + 28, v);
      }
      continue;
    }
    const int8_t *src = x + (ih * in_w + iw0) * cin; /* slot 0 of tap j = 0, maybe outside the row */
    for (int32_t j = 0; j < kw; ++j, src += cin) {
      const int32_t iw = iw0 + j; /* input column of slot 0 */
      if (iw >= 0 && iw + 7 * sw < in_w) {
        for (int32_t c = 0; c < cpt; ++c, d += 128) {
          const int8_t *sp = src + 16 * c;
          if (ss == 16) DTMM_ROW8(16);
          else if (ss == 32) DTMM_ROW8(32);
          else DTMM_ROW8(64);
        }
        continue;
      }
      /* slots [s_lo, s_hi) read inside the row */
      int32_t s_lo = iw >= 0 ? 0 : (-iw + sw - 1) / sw;
      int32_t s_hi = in_w - iw <= 0 ? 0 : (in_w - iw + sw - 1) / sw;
      if (s_hi > 8) s_hi = 8;
      if (s_lo > s_hi) s_lo = s_hi;
      if (s_hi - s_lo == 7) { /* one slot off the image, at either end */
        for (int32_t c = 0; c < cpt; ++c, d += 128) {
          const int8_t *sp = src + 16 * c + s_lo * ss;
          if (s_lo) {
            if (ss == 16) DTMM_ROW8_PAD_FIRST(16);
            else if (ss == 32) DTMM_ROW8_PAD_FIRST(32);
            else DTMM_ROW8_PAD_FIRST(64);
          } else {
            if (ss == 16) DTMM_ROW8_PAD_LAST(16);
            else if (ss == 32) DTMM_ROW8_PAD_LAST(32);
            else DTMM_ROW8_PAD_LAST(64);
          }
        }
        continue;
      }
      for (int32_t c = 0; c < cpt; ++c, d += 128) {
        int8_t *o = d;
        for (int32_t sl = 0; sl < s_lo; ++sl, o += 16) vstrbq_s8(o, padv);
        const int8_t *sp = src + 16 * c + s_lo * ss;
        for (int32_t sl = s_lo; sl < s_hi; ++sl, o += 16, sp += ss) vstrbq_s8(o, vldrbq_s8(sp));
        for (int32_t sl = s_hi; sl < 8; ++sl, o += 16) vstrbq_s8(o, padv);
      }
    }
  }
}
#undef DTMM_ROW8
#undef DTMM_ROW8_PAD_FIRST
#undef DTMM_ROW8_PAD_LAST
#undef DTMM_ROW_ASM
#undef DTMM_ST
#undef DTMM_LD_END
#undef DTMM_LD

static void im2col_aligned_mve(const int8_t *x, int32_t in_h, int32_t in_w, int32_t cin, int32_t out_w,
                               int32_t pix0, int32_t npix, int32_t group, int32_t kh, int32_t kw, int32_t sh,
                               int32_t sw, int32_t dh, int32_t dw, int32_t pad_top, int32_t pad_left,
                               int32_t input_offset, int8_t *buf) {
  const int32_t cpt = cin / 16;
  const int32_t cs = 16 * group;
  const int32_t next_group = kh * kw * cpt * cs - cs; /* from past the last slot to the next group */
  const int32_t row_chunks = kw * cpt;
  const int32_t src_row = dh * in_w * cin;
  const int32_t ih_last = in_h - 1 - (kh - 1) * dh, iw_last = in_w - 1 - (kw - 1) * dw;
  const int32_t ow_lo = (pad_left + sw - 1) / sw, ow_hi = iw_last + pad_left < 0 ? -1 : (iw_last + pad_left) / sw;
  const int8x16_t padv = vdupq_n_s8((int8_t)(-input_offset));
  int32_t oh = pix0 / out_w;
  int32_t ow = pix0 - oh * out_w;
  int32_t ih0 = oh * sh - pad_top;
  int32_t row_in = ih0 >= 0 && ih0 <= ih_last;
  const int8_t *src = x + (ih0 * in_w + ow * sw - pad_left) * cin; /* window origin (maybe outside) */
  const int32_t src_step = sw * cin;
  int8_t *d = buf;
  int32_t slot = 0;
  for (int32_t p = 0; p < npix; ++p) {
    if (slot == 0 && group == 8 && sw * cin <= 64 && dw == 1 && npix - p >= 8 && ow + 8 <= out_w) {
      /* the group lies in one output row */
      if (cin == 16 && sw == 1) /* its own copy: the general one costs ~15 more per tap here */
        im2col_group_row16(x, in_h, in_w, kh, kw, dh, ih0, ow - pad_left, padv, d);
      else
        im2col_group_row(x, in_h, in_w, cin, kh, kw, sw, dh, ih0, ow * sw - pad_left, padv, d);
      d += next_group + cs;
      p += 7;
      src += 8 * src_step;
      ow += 8;
      if (ow == out_w) {
        ow = 0;
        ++oh;
        ih0 += sh;
        row_in = ih0 >= 0 && ih0 <= ih_last;
        src = x + (ih0 * in_w - pad_left) * cin;
      }
      continue;
    }
    if (row_in && ow >= ow_lo && ow <= ow_hi && dw == 1) {
      const int8_t *s = src;
      int8_t *dd = d;
      if (row_chunks == 3 && kh == 3 && cs == 128) {
        /* 3x3, Cin 16, group of 8: 9 chunk loads + 9 stores + 4 adds (GCC's version of the loop
         * below spilled its pointers: ~75 instructions per pixel) */
        const int8_t *t;
        int8_t *e;
        __asm__ volatile(
            "vldrb.8 q0, [%[s]]\n\t"
            "vldrb.8 q1, [%[s], #16]\n\t"
            "vldrb.8 q2, [%[s], #32]\n\t"
            "add %[t], %[s], %[row]\n\t"
            "vstrw.32 q0, [%[d]]\n\t"
            "vstrw.32 q1, [%[d], #128]\n\t"
            "vstrw.32 q2, [%[d], #256]\n\t"
            "vldrb.8 q0, [%[t]]\n\t"
            "vldrb.8 q1, [%[t], #16]\n\t"
            "vldrb.8 q2, [%[t], #32]\n\t"
            "add %[t], %[t], %[row]\n\t"
            "add %[e], %[d], #384\n\t"
            "vstrw.32 q0, [%[e]]\n\t"
            "vstrw.32 q1, [%[e], #128]\n\t"
            "vstrw.32 q2, [%[e], #256]\n\t"
            "vldrb.8 q0, [%[t]]\n\t"
            "vldrb.8 q1, [%[t], #16]\n\t"
            "vldrb.8 q2, [%[t], #32]\n\t"
            "add %[e], %[d], #768\n\t"
            "vstrw.32 q0, [%[e]]\n\t"
            "vstrw.32 q1, [%[e], #128]\n\t"
            "vstrw.32 q2, [%[e], #256]\n\t"
            : [t] "=&r"(t), [e] "=&r"(e)
            : [s] "r"(s), [d] "r"(dd), [row] "r"(src_row)
            : "q0", "q1", "q2", "memory");
      } else if (row_chunks == 3) { /* 3x3, Cin 16 */
        for (int32_t i = 0; i < kh; ++i, s += src_row) {
          const int8x16_t a = vldrbq_s8(s), b = vldrbq_s8(s + 16), c = vldrbq_s8(s + 32);
          vstrbq_s8(dd, a);
          vstrbq_s8(dd + cs, b);
          vstrbq_s8(dd + 2 * cs, c);
          dd += 3 * cs;
        }
      } else {
        for (int32_t i = 0; i < kh; ++i, s += src_row) {
          const int8_t *sc = s;
          for (int32_t c = 0; c < row_chunks; ++c, sc += 16, dd += cs) vstrbq_s8(dd, vldrbq_s8(sc));
        }
      }
    } else {
      const int32_t iw0 = ow * sw - pad_left;
      int8_t *dd = d;
      for (int32_t i = 0; i < kh; ++i) {
        const int32_t row_ok = (uint32_t)(ih0 + i * dh) < (uint32_t)in_h;
        const int8_t *s = src + i * src_row;
        for (int32_t j = 0; j < kw; ++j, s += dw * cin) {
          if (row_ok && (uint32_t)(iw0 + j * dw) < (uint32_t)in_w) {
            const int8_t *sc = s;
            for (int32_t c = 0; c < cpt; ++c, sc += 16, dd += cs) vstrbq_s8(dd, vldrbq_s8(sc));
          } else {
            for (int32_t c = 0; c < cpt; ++c, dd += cs) vstrbq_s8(dd, padv);
          }
        }
      }
    }
    d += 16;
    if (++slot == group) {
      slot = 0;
      d += next_group;
    }
    src += src_step;
    if (++ow == out_w) {
      ow = 0;
      ++oh;
      ih0 += sh;
      row_in = ih0 >= 0 && ih0 <= ih_last;
      src = x + (ih0 * in_w - pad_left) * cin;
    }
  }
}
#endif

void dtmm_conv_im2col_s8(const int8_t *x, int32_t in_h, int32_t in_w, int32_t cin, int32_t out_w,
                         int32_t pix0, int32_t npix, int32_t group, int32_t kh, int32_t kw,
                         int32_t sh, int32_t sw, int32_t dh, int32_t dw, int32_t pad_top,
                         int32_t pad_left, int32_t input_offset, int8_t *buf) {
#if defined(DTMM_BENCH_SKIP_IM2COL) /* bench-only phase build (bench/refmodels.py) */
  __asm__ volatile("" : : "r"(x), "r"(buf) : "memory");
  return;
#endif
#if defined(DTMM_ISA_DSP)
  if (kh == 1 && kw == 1 && pad_top == 0 && pad_left == 0 && group == 4 && (cin & 3) == 0) {
    /* 1x1 without padding (pointwise convs): every pixel is in the image and is one run of Cin
     * input values, so no per-pixel bounds or tap arithmetic (Cin = 8: ~20 instructions per
     * pixel instead of ~180). */
    const uint32_t off2 = ((uint32_t)(uint16_t)input_offset) * 0x00010001u;
    const int32_t contiguous = sh == 1 && sw == 1 && out_w == in_w; /* input pixel = output pixel */
    int32_t oh = pix0 / out_w, ow = pix0 - oh * out_w;
    const int8_t *src = x + (oh * sh * in_w + ow * sw) * cin;
    for (int32_t p = 0; p < npix; ++p) {
      int8_t *dst = buf + (p >> 2) * (cin * CHB) + (p & 3) * 4; /* cin / 4 chunks x 8 B x 4 slots */
      const int8_t *s = src;
      const int8_t *const end = s + cin;
      if (cin & 4) { /* an odd chunk first */
        uint32_t v;
        __builtin_memcpy(&v, s, 4);
        const uint32_t e = sxtab16(off2, v), o = sxtab16_ror8(off2, v);
        __builtin_memcpy(dst, &e, 4);
        __builtin_memcpy(dst + 16, &o, 4);
        s += 4;
        dst += 32;
      }
      while (s != end) {
        widen_two_chunks_g4(s, dst, off2);
        s += 8;
        dst += 64;
      }
      if (contiguous) {
        src = end;
      } else if (++ow == out_w) {
        ow = 0;
        ++oh;
        src = x + oh * sh * in_w * cin;
      } else {
        src += sw * cin;
      }
    }
    return;
  }
#endif
#if defined(DTMM_ISA_MVE)
  if (cin % CH == 0) {
    im2col_aligned_mve(x, in_h, in_w, cin, out_w, pix0, npix, group, kh, kw, sh, sw, dh, dw, pad_top, pad_left,
                       input_offset, buf);
    return;
  }
#endif
  const int32_t cpt = (cin + CH - 1) / CH;
  const int32_t cs = CHB * group;                  /* bytes between chunks of one slot */
  const int32_t tap_bytes = cpt * cs;
  const int32_t group_bytes = kh * kw * tap_bytes;
  /* a kernel row of in-bounds taps is one contiguous copy when taps are chunk aligned */
  const int32_t row_copy = (dw == 1) && (cin % CH == 0);
  int32_t oh = pix0 / out_w;
  int32_t ow = pix0 - oh * out_w;
  for (int32_t p = 0; p < npix; ++p) {
    const int32_t gi = p / group;
    const int32_t slot = p - gi * group;
#if defined(DTMM_ISA_MVE)
    int8_t *base = buf + gi * group_bytes + slot * 16;
#else
    int8_t *base = buf + gi * group_bytes + slot * 4;
#endif
    const int32_t ih0 = oh * sh - pad_top;
    const int32_t iw0 = ow * sw - pad_left;
    /* in-bounds kw range [lo, hi) of this pixel */
    int32_t lo = 0, hi = kw;
    if (iw0 < 0) lo = (-iw0 + dw - 1) / dw;
    if (lo > kw) lo = kw;
    if (iw0 + (kw - 1) * dw >= in_w) {
      hi = (in_w - 1 - iw0) / dw + 1;
      if (in_w - 1 - iw0 < 0) hi = 0;
    }
    if (hi < lo) hi = lo;
    for (int32_t i = 0; i < kh; ++i) {
      const int32_t ih = ih0 + i * dh;
      int8_t *rowp = base + i * kw * tap_bytes;
      if (ih < 0 || ih >= in_h) {
        pad_chunks(rowp, kw * cpt, cs, group, input_offset);
        continue;
      }
      if (lo > 0) pad_chunks(rowp, lo * cpt, cs, group, input_offset);
      if (hi < kw) pad_chunks(rowp + hi * tap_bytes, (kw - hi) * cpt, cs, group, input_offset);
      const int8_t *src = x + ((ih * in_w) + iw0 + lo * dw) * cin;
      if (row_copy) {
        copy_chunks(src, rowp + lo * tap_bytes, (hi - lo) * cin, cs, group, input_offset);
      } else {
        for (int32_t j = lo; j < hi; ++j) {
          copy_chunks(src, rowp + j * tap_bytes, cin, cs, group, input_offset);
          src += dw * cin;
        }
      }
    }
    if (++ow == out_w) {
      ow = 0;
      ++oh;
    }
  }
}

/* ---------------------------------------------------------------- packed patch (small Cin)
 * dtmm_conv_im2col_packed_s8: same arguments as dtmm_conv_im2col_s8, but each pixel's whole
 * KH x KW x Cin patch (OHWI order, kk*cin elements) is ONE contiguous run of
 * ceil(kk*cin / CH) chunks instead of KH*KW taps of ceil(Cin / CH) chunks each. The dense OHWI
 * filter of a channel is the same kk*cin contiguous bytes, so dtmm_conv_block_s8 with
 * fmt = DENSE, kk = 1, cin = KH*KW*Cin computes the conv with one dot-product run per
 * (channel, group) and no lanes wasted on per-tap partial chunks (Cin = 3: 27 bytes = 2 MVE
 * chunks instead of 9, 7 DSP chunks instead of 9). Padded taps hold -input_offset (raw), i.e.
 * 0 after the offset; elements beyond kk*cin in the last chunk meet zero weights.
 * Needs kk*cin <= DTMM_CONV_PACKED_MAX. */
static inline void patch_copy(int8_t *dst, const int8_t *src, int32_t n) {
#if defined(DTMM_ISA_MVE)
  while (n > 0) {
    const mve_pred16_t p = vctp8q((uint32_t)n);
    vstrbq_p_s8(dst, vldrbq_z_s8(src, p), p);
    dst += 16;
    src += 16;
    n -= 16;
  }
#else
  for (; n >= 4; n -= 4, dst += 4, src += 4) {
    uint32_t v;
    __builtin_memcpy(&v, src, 4);
    __builtin_memcpy(dst, &v, 4);
  }
  for (; n > 0; --n) *dst++ = *src++;
#endif
}

static inline void patch_fill(int8_t *dst, int8_t value, int32_t n) {
#if defined(DTMM_ISA_MVE)
  const int8x16_t v = vdupq_n_s8(value);
  while (n > 0) {
    vstrbq_p_s8(dst, v, vctp8q((uint32_t)n));
    dst += 16;
    n -= 16;
  }
#else
  for (; n > 0; --n) *dst++ = value;
#endif
}

#if defined(DTMM_ISA_MVE)
/* The packed patch by byte gathers (dilation_w 1, every patch element within 256 bytes of the
 * patch's first one): per chunk c a table of the 16 elements' byte offsets from the pixel's
 * window origin (kernel row i: i * dh * in_w * cin + the byte in the row), built once per call,
 * so an interior pixel is one VLDRB gather + one store per chunk (27-byte patch: ~6
 * instructions per pixel instead of ~200). A border pixel's gathers are predicated on its
 * in-image kernel rows [ilo, ihi) and row bytes [lo * cin, hi * cin), the rest padded. */
static void packed_gather_mve(const int8_t *x, int32_t in_h, int32_t in_w, int32_t cin, int32_t out_w,
                              int32_t pix0, int32_t npix, int32_t group, int32_t kh, int32_t kw, int32_t sh,
                              int32_t sw, int32_t dh, int32_t pad_top, int32_t pad_left,
                              int32_t input_offset, int8_t *buf) {
  uint8x16_t off[DTMM_CONV_PACKED_MAX / 16], krow[DTMM_CONV_PACKED_MAX / 16], rbyte[DTMM_CONV_PACKED_MAX / 16];
  mve_pred16_t live[DTMM_CONV_PACKED_MAX / 16];
  const int32_t len = kh * kw * cin, row_len = kw * cin;
  const int32_t cpt = (len + 15) / 16;
  const int32_t cs = 16 * group;
  const uint32_t src_row = (uint32_t)(dh * in_w * cin);
  const uint8_t row_skip = (uint8_t)(src_row - (uint32_t)row_len); /* modulo 256: the sums are < 256 */
  for (int32_t c = 0; c < cpt; ++c) {
    const uint8x16_t e = vidupq_n_u8((uint32_t)(16 * c), 1);
    uint8x16_t o = e;
    for (int32_t b = row_len; b < len; b += row_len) o = vaddq_m_n_u8(o, o, row_skip, vcmpcsq_n_u8(e, (uint8_t)b));
    off[c] = o;
    live[c] = vctp8q((uint32_t)(len - 16 * c));
  }
  int32_t border_tables = 0; /* krow / rbyte: built at the first border pixel */
  const uint8x16_t padv = vdupq_n_u8((uint8_t)(-input_offset));
  const int32_t ih_last = in_h - 1 - (kh - 1) * dh, iw_last = in_w - kw;
  /* interior output columns [ow_lo, ow_hi]: no per-pixel bounds arithmetic */
  const int32_t ow_lo = (pad_left + sw - 1) / sw, ow_hi = iw_last + pad_left < 0 ? -1 : (iw_last + pad_left) / sw;
  int32_t oh = pix0 / out_w;
  int32_t ow = pix0 - oh * out_w;
  int32_t ih0 = oh * sh - pad_top;
  int32_t row_in = ih0 >= 0 && ih0 <= ih_last;
  /* the window origin; outside the image for a border pixel, whose gathers then read only
   * their in-image lanes */
  const uint8_t *src = (const uint8_t *)x + (ih0 * in_w + ow * sw - pad_left) * cin;
  const int32_t src_step = sw * cin;
  const int32_t next_group = (cpt - 1) * cs; /* from past the last slot to the next group */
  int8_t *d = buf;
  int32_t slot = 0;
  for (int32_t p = 0; p < npix; ++p) {
    if (row_in && ow >= ow_lo && ow <= ow_hi) {
      /* a run of interior pixels in this row and group: the offset tables stay in registers */
      int32_t run = ow_hi - ow + 1;
      if (run > group - slot) run = group - slot;
      if (run > npix - p) run = npix - p;
      if (cpt == 2) { /* KH*KW*Cin in 17..32 (3x3x3: 27) */
        const uint8x16_t o0 = off[0], o1 = off[1];
        const mve_pred16_t l1 = live[1];
        for (int32_t k = 0; k < run; ++k, d += 16, src += src_step) {
          vstrbq_u8((uint8_t *)d, vldrbq_gather_offset_u8(src, o0));
          vstrbq_u8((uint8_t *)d + cs, vldrbq_gather_offset_z_u8(src, o1, l1));
        }
      } else {
        for (int32_t k = 0; k < run; ++k, d += 16, src += src_step) {
          int8_t *dc = d;
          for (int32_t c = 0; c < cpt; ++c, dc += cs)
            vstrbq_u8((uint8_t *)dc, vldrbq_gather_offset_z_u8(src, off[c], live[c]));
        }
      }
      p += run - 1;
      ow += run - 1; /* the last pixel's step below */
      slot += run - 1;
      d -= 16;
      src -= src_step;
    } else {
      const int32_t iw0 = ow * sw - pad_left;
      int32_t ilo = 0, ihi = kh, lo = 0, hi = kw;
      if (ih0 < 0) ilo = (-ih0 + dh - 1) / dh;
      if (ih0 + (kh - 1) * dh >= in_h) ihi = in_h - 1 - ih0 < 0 ? 0 : (in_h - 1 - ih0) / dh + 1;
      if (iw0 < 0) lo = -iw0;
      if (iw0 + kw > in_w) hi = in_w - iw0;
      if (ilo > kh) ilo = kh;
      if (lo > kw) lo = kw;
      if (hi < lo) hi = lo;
      if (ihi < ilo) ihi = ilo;
      if (!border_tables) {
        border_tables = 1;
        for (int32_t c = 0; c < cpt; ++c) { /* per element: kernel row, byte in the kernel row */
          const uint8x16_t e = vidupq_n_u8((uint32_t)(16 * c), 1);
          uint8x16_t rb = e, ki = vdupq_n_u8(0);
          for (int32_t b = row_len; b < len; b += row_len) {
            const mve_pred16_t q = vcmpcsq_n_u8(e, (uint8_t)b); /* e >= b */
            rb = vsubq_m_n_u8(rb, rb, (uint8_t)row_len, q);
            ki = vaddq_m_n_u8(ki, ki, 1, q);
          }
          krow[c] = ki;
          rbyte[c] = rb;
        }
      }
      int8_t *dc = d;
      for (int32_t c = 0; c < cpt; ++c, dc += cs) {
        const mve_pred16_t in = vcmpcsq_n_u8(krow[c], (uint8_t)ilo) & vcmpcsq_n_u8(rbyte[c], (uint8_t)(lo * cin));
        const mve_pred16_t out = vcmpcsq_n_u8(krow[c], (uint8_t)ihi) | vcmpcsq_n_u8(rbyte[c], (uint8_t)(hi * cin));
        const mve_pred16_t q = in & (mve_pred16_t)~out & live[c];
        vstrbq_u8((uint8_t *)dc, vpselq_u8(vldrbq_gather_offset_z_u8(src, off[c], q), padv, q));
      }
    }
    d += 16;
    if (++slot == group) {
      slot = 0;
      d += next_group;
    }
    src += src_step;
    if (++ow == out_w) {
      ow = 0;
      ++oh;
      ih0 += sh;
      row_in = ih0 >= 0 && ih0 <= ih_last;
      src = (const uint8_t *)x + (ih0 * in_w - pad_left) * cin;
    }
  }
}
#endif

void dtmm_conv_im2col_packed_s8(const int8_t *x, int32_t in_h, int32_t in_w, int32_t cin,
                                int32_t out_w, int32_t pix0, int32_t npix, int32_t group,
                                int32_t kh, int32_t kw, int32_t sh, int32_t sw, int32_t dh,
                                int32_t dw, int32_t pad_top, int32_t pad_left,
                                int32_t input_offset, int8_t *buf) {
#if defined(DTMM_BENCH_SKIP_IM2COL) /* bench-only phase build (bench/refmodels.py) */
  __asm__ volatile("" : : "r"(x), "r"(buf) : "memory");
  return;
#endif
#if defined(DTMM_ISA_MVE)
  if (dw == 1 && (kh - 1) * dh * in_w * cin + kw * cin <= 255) { /* u8 offsets and row bytes */
    packed_gather_mve(x, in_h, in_w, cin, out_w, pix0, npix, group, kh, kw, sh, sw, dh, pad_top, pad_left,
                      input_offset, buf);
    return;
  }
#endif
  int8_t patch[DTMM_CONV_PACKED_MAX + 16] __attribute__((aligned(4)));
  const int32_t len = kh * kw * cin;
  const int32_t row_len = kw * cin;
  const int32_t cpt = (len + CH - 1) / CH;
  const int32_t cs = CHB * group;
  const int32_t group_bytes = cpt * cs;
  const int8_t pad = (int8_t)(-input_offset);
  int32_t oh = pix0 / out_w;
  int32_t ow = pix0 - oh * out_w;
#if defined(DTMM_ISA_MVE)
  /* interior pixels: kh predicated row copies, no bounds or padding (as in dtmm_conv_im2col_s8) */
  const int32_t src_row = dh * in_w * cin;
  const int32_t ih_last = in_h - 1 - (kh - 1) * dh, iw_last = in_w - kw;
#endif
  for (int32_t p = 0; p < npix; ++p) {
    const int32_t gi = p / group;
    const int32_t slot = p - gi * group;
#if defined(DTMM_ISA_MVE)
    int8_t *base = buf + gi * group_bytes + slot * 16;
#else
    int8_t *base = buf + gi * group_bytes + slot * 4;
#endif
    const int32_t ih0 = oh * sh - pad_top;
    const int32_t iw0 = ow * sw - pad_left;
#if defined(DTMM_ISA_MVE)
    if (dw == 1 && ih0 >= 0 && ih0 <= ih_last && iw0 >= 0 && iw0 <= iw_last) {
      const int8_t *src = x + (ih0 * in_w + iw0) * cin;
      int8_t *d = patch;
      for (int32_t i = 0; i < kh; ++i, d += row_len, src += src_row) patch_copy(d, src, row_len);
      copy_chunks(patch, base, len, cs, group, input_offset);
      if (++ow == out_w) {
        ow = 0;
        ++oh;
      }
      continue;
    }
#endif
    int32_t lo = 0, hi = kw;
    if (iw0 < 0) lo = (-iw0 + dw - 1) / dw;
    if (lo > kw) lo = kw;
    if (iw0 + (kw - 1) * dw >= in_w) {
      hi = (in_w - 1 - iw0) / dw + 1;
      if (in_w - 1 - iw0 < 0) hi = 0;
    }
    if (hi < lo) hi = lo;
    int8_t *dst = patch;
    for (int32_t i = 0; i < kh; ++i, dst += row_len) {
      const int32_t ih = ih0 + i * dh;
      if (ih < 0 || ih >= in_h) {
        patch_fill(dst, pad, row_len);
        continue;
      }
      if (lo > 0) patch_fill(dst, pad, lo * cin);
      if (hi < kw) patch_fill(dst + hi * cin, pad, (kw - hi) * cin);
      const int8_t *src = x + ((ih * in_w) + iw0 + lo * dw) * cin;
      if (dw == 1) {
        patch_copy(dst + lo * cin, src, (hi - lo) * cin);
      } else {
        for (int32_t j = lo; j < hi; ++j, src += dw * cin) patch_copy(dst + j * cin, src, cin);
      }
    }
    copy_chunks(patch, base, len, cs, group, input_offset);
    if (++ow == out_w) {
      ow = 0;
      ++oh;
    }
  }
}
