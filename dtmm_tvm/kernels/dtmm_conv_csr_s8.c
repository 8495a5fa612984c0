/*
 * dtmm_conv_csr_s8.c - int8 conv over element-sparse (unstructured) weights in CSR form.
 *
 * Weights (dtmm_tvm/sparsity/storage.py PackedUnstructured): per output filter o (a CSR row) the
 * non-zero weights of its flattened OHWI patch (kh, kw, ci):
 *   values  int8  [nnz]       in (o, kh, kw, ci) order,
 *   col_idx int16 [nnz]       (kh * KW + kw) * Cin + ci   (< 32768),
 *   row_ptr int32 [Cout + 1]  row o is values[row_ptr[o] .. row_ptr[o+1]).
 *
 * One call computes one image, in blocks of P consecutive output pixels (row-major). Every CSR
 * row is walked once per block: each weight is loaded once and multiplied with the P pixels'
 * input values at its column. A block whose windows all lie inside the image reads the input in
 * place (a per-call table maps a patch column to its offset from a pixel's first input byte);
 * a border block first gathers each pixel's
 * KH*KW*Cin patch as raw int8 into scratch (out-of-image taps hold the input zero point, so
 * x + input_offset is 0 there, as TFLM adds nothing). The input offset is folded into the bias once
 * per call: acc = bias + offset * sum(w) + sum(x * w) = bias + sum((x + offset) * w), the same
 * integer TFLM computes. Requantization: TFLM's double rounding (dtmm_requantize) or the ONNX
 * float32 records (DTMM_REQUANT_F32), bit-exact.
 *
 *   MVE (Helium): P = 8; per 8 non-zeros one VLDRH of columns (+ one table gather VLDRH in
 *                 place) + one VLDRB of weights (16-bit lanes), then per pixel one gather
 *                 VLDRB.S16 [row, offset] + VMLADAVA (tail predicated by VCTP); requantization
 *                 4 pixels per vector. In place only while the offsets fit 16 bits.
 *   DSP / portable: P = 4; one C path: per non-zero one weight and one column load, 4 LDRSB
 *                 at that column of the four pixels, 4 MACs (gcc emits SMLABB on M4/M7: 12
 *                 instructions per non-zero and 4 pixels). A pairwise SMLAD path was not built:
 *                 the 4 values of a non-zero come from 4 pixels, so packing pairs of them costs
 *                 about what the dual MAC saves (counted, not measured).
 *
 * Scratch (dtmm_conv_csr_s8_get_buffer_size): 4 * Cout bytes of effective bias, 4 * K bytes of
 * column table (K = KH*KW*Cin), then P rows of K bytes (rounded up to 4).
 */
#include <string.h>
#include "dtmm_kernels.h"

#if defined(DTMM_ISA_MVE)
#include <arm_mve.h>
#define CSR_P 8
#else
#define CSR_P 4
#endif

int32_t dtmm_conv_csr_s8_pixels(void) { return CSR_P; }

int32_t dtmm_conv_csr_s8_get_buffer_size(int32_t kh, int32_t kw, int32_t cin, int32_t cout) {
  const int32_t k = kh * kw * cin;
  const int32_t row = (k + 3) & ~3;
  return 4 * cout + 4 * k + CSR_P * row;
}

static inline int8_t clamp_out(int32_t v, int32_t lo, int32_t hi) {
  return (int8_t)(v < lo ? lo : (v > hi ? hi : v));
}

/* Small runs (Cin = 1..15 bytes per tap) as byte loops: a libc call costs more than the copy. */
static inline void copy_run(int8_t *dst, const int8_t *src, int32_t n) {
  if (n >= 16) {
    memcpy(dst, src, (size_t)n);
    return;
  }
  for (int32_t i = 0; i < n; ++i) dst[i] = src[i];
}
static inline void fill_run(int8_t *dst, int8_t v, int32_t n) {
  if (n >= 16) {
    memset(dst, v, (size_t)n);
    return;
  }
  for (int32_t i = 0; i < n; ++i) dst[i] = v;
}

/* The KH*KW*Cin patch of output pixel (oh, ow), raw int8, padding = pad_value. */
static void gather_patch(const int8_t *x, int32_t in_h, int32_t in_w, int32_t cin, int32_t oh,
                         int32_t ow, int32_t kh, int32_t kw, int32_t sh, int32_t sw, int32_t dh,
                         int32_t dw, int32_t pad_top, int32_t pad_left, int8_t pad_value,
                         int8_t *row) {
  const int32_t ih0 = oh * sh - pad_top, iw0 = ow * sw - pad_left;
  const int32_t run = kw * cin;
  for (int32_t i = 0; i < kh; ++i) {
    const int32_t ih = ih0 + i * dh;
    int8_t *dst = row + i * run;
    if (ih < 0 || ih >= in_h) {
      fill_run(dst, pad_value, run);
      continue;
    }
    const int8_t *src_row = x + ih * in_w * cin;
    if (dw == 1 && iw0 >= 0 && iw0 + kw <= in_w) { /* the whole kernel row is contiguous NHWC */
      copy_run(dst, src_row + iw0 * cin, run);
      continue;
    }
    for (int32_t j = 0; j < kw; ++j) {
      const int32_t iw = iw0 + j * dw;
      if (iw < 0 || iw >= in_w)
        fill_run(dst + j * cin, pad_value, cin);
      else
        copy_run(dst + j * cin, src_row + iw * cin, cin);
    }
  }
}

#if defined(DTMM_ISA_MVE)
/* gemmlowp RoundingDivideByPOT on 4 lanes (as dtmm_conv_block_s8.c). */
static inline int32x4_t rdbp_mve(int32x4_t v, int32_t exponent) {
  const int32x4_t sh = vdupq_n_s32(-exponent);
  const int32x4_t fixup = vshrq_n_s32(vandq_s32(v, sh), 31);
  return vrshlq_s32(vqaddq_s32(v, fixup), sh);
}
#endif

/* out[s * ps] for the nvalid pixels of one channel. */
static inline void requant_store(const int32_t *acc, int32_t nvalid, int32_t mult, int32_t shift,
                                 int8_t *out, int32_t ps, int32_t out_offset, int32_t act_min,
                                 int32_t act_max) {
#if defined(DTMM_ISA_MVE)
  if (shift != DTMM_REQUANT_F32 && mult != INT32_MIN) {
    const uint32x4_t offs = vmulq_n_u32(vidupq_n_u32(0, 1), (uint32_t)ps);
    for (int32_t s = 0; s < nvalid; s += 4) {
      int32x4_t v = vldrwq_s32(acc + s);
      v = vshlq_r_s32(v, shift > 0 ? shift : 0);
      v = vqrdmulhq_n_s32(v, mult);
      v = rdbp_mve(v, shift > 0 ? 0 : -shift);
      v = vaddq_n_s32(v, out_offset);
      v = vmaxq_s32(vminq_s32(v, vdupq_n_s32(act_max)), vdupq_n_s32(act_min));
      vstrbq_scatter_offset_p_s32(out + s * ps, offs, v, vctp32q((uint32_t)(nvalid - s)));
    }
    return;
  }
#endif
  for (int32_t s = 0; s < nvalid; ++s)
    out[s * ps] = clamp_out(dtmm_requantize(acc[s], mult, shift) + out_offset, act_min, act_max);
}

/* Every CSR row once for CSR_P pixels whose value at patch column c is base[s][off(c)],
 * off(c) = c (gathered rows) or tab[c] (in place in the input, DIRECT). */
static inline __attribute__((always_inline)) void walk_rows(
    const int DIRECT, const int8_t *const *base, const void *tab, const int8_t *values,
    const int16_t *col_idx, const int32_t *row_ptr, int32_t cout, const int32_t *bias_eff,
    const int32_t *mult, const int32_t *shift, int8_t *out, int32_t ps, int32_t nvalid,
    int32_t out_offset, int32_t act_min, int32_t act_max) {
#if defined(DTMM_ISA_MVE)
  int32_t acc[CSR_P] __attribute__((aligned(16)));
  const int8_t *r0 = base[0], *r1 = base[1], *r2 = base[2], *r3 = base[3];
  const int8_t *r4 = base[4], *r5 = base[5], *r6 = base[6], *r7 = base[7];
  for (int32_t o = 0; o < cout; ++o) {
    const int32_t b = bias_eff[o];
    int32_t a0 = b, a1 = b, a2 = b, a3 = b, a4 = b, a5 = b, a6 = b, a7 = b;
    const int32_t j0 = row_ptr[o];
    int32_t n = row_ptr[o + 1] - j0;
    const int8_t *w = values + j0;
    const int16_t *c = col_idx + j0;
    while (n > 0) {
      const mve_pred16_t pred = vctp16q((uint32_t)n);
      uint16x8_t offs = vldrhq_z_u16((const uint16_t *)c, pred);
      if (DIRECT) offs = vldrhq_gather_shifted_offset_z_u16((const uint16_t *)tab, offs, pred);
      const int16x8_t vw = vldrbq_z_s16(w, pred);
      /* inactive lanes: weight 0 and gathered 0 (zeroing loads), so no predication below */
      a0 = vmladavaq_s16(a0, vldrbq_gather_offset_z_s16(r0, offs, pred), vw);
      a1 = vmladavaq_s16(a1, vldrbq_gather_offset_z_s16(r1, offs, pred), vw);
      a2 = vmladavaq_s16(a2, vldrbq_gather_offset_z_s16(r2, offs, pred), vw);
      a3 = vmladavaq_s16(a3, vldrbq_gather_offset_z_s16(r3, offs, pred), vw);
      a4 = vmladavaq_s16(a4, vldrbq_gather_offset_z_s16(r4, offs, pred), vw);
      a5 = vmladavaq_s16(a5, vldrbq_gather_offset_z_s16(r5, offs, pred), vw);
      a6 = vmladavaq_s16(a6, vldrbq_gather_offset_z_s16(r6, offs, pred), vw);
      a7 = vmladavaq_s16(a7, vldrbq_gather_offset_z_s16(r7, offs, pred), vw);
      w += 8;
      c += 8;
      n -= 8;
    }
    acc[0] = a0; acc[1] = a1; acc[2] = a2; acc[3] = a3;
    acc[4] = a4; acc[5] = a5; acc[6] = a6; acc[7] = a7;
    requant_store(acc, nvalid, mult[o], shift[o], out + o, ps, out_offset, act_min, act_max);
  }
#else
  const int8_t *r0 = base[0], *r1 = base[1], *r2 = base[2], *r3 = base[3];
  const int32_t *t = (const int32_t *)tab;
  for (int32_t o = 0; o < cout; ++o) {
    const int32_t b = bias_eff[o];
    int32_t a0 = b, a1 = b, a2 = b, a3 = b;
    const int8_t *w = values + row_ptr[o];
    const int8_t *const w_end = values + row_ptr[o + 1];
    const int16_t *c = col_idx + row_ptr[o];
    for (; w < w_end; ++w, ++c) {
      const int32_t wv = *w;
      const int32_t ci = DIRECT ? t[*c] : *c;
      a0 += wv * r0[ci];
      a1 += wv * r1[ci];
      a2 += wv * r2[ci];
      a3 += wv * r3[ci];
    }
    const int32_t acc[CSR_P] = {a0, a1, a2, a3};
    requant_store(acc, nvalid, mult[o], shift[o], out + o, ps, out_offset, act_min, act_max);
  }
#endif
}

void dtmm_conv_csr_s8(const int8_t *x, int32_t in_h, int32_t in_w, int32_t cin, int32_t out_h,
                      int32_t out_w, int32_t kh, int32_t kw, int32_t sh, int32_t sw, int32_t dh,
                      int32_t dw, int32_t pad_top, int32_t pad_left, int32_t input_offset,
                      const int8_t *values, const int16_t *col_idx, const int32_t *row_ptr,
                      int32_t cout, const int32_t *bias, const int32_t *mult,
                      const int32_t *shift, int8_t *out, int32_t out_offset, int32_t act_min,
                      int32_t act_max, int8_t *scratch) {
  int32_t *bias_eff = (int32_t *)(void *)scratch;
  const int32_t k = kh * kw * cin;
  const int32_t row_bytes = (k + 3) & ~3;
  void *tab = scratch + 4 * cout;
  int8_t *rows = scratch + 4 * cout + 4 * k;
  const int8_t pad_value = (int8_t)(-input_offset);

  for (int32_t o = 0; o < cout; ++o) { /* fold the input offset: once per call */
    int32_t sum = 0;
    for (int32_t j = row_ptr[o]; j < row_ptr[o + 1]; ++j) sum += values[j];
    bias_eff[o] = bias[o] + input_offset * sum;
  }
  /* Patch column -> offset from the pixel's first input byte, for pixels whose window lies
   * inside the image: their values are read in place, without a gather. */
  const int32_t span = ((kh - 1) * dh * in_w + (kw - 1) * dw) * cin + cin - 1;
#if defined(DTMM_ISA_MVE)
  const int32_t direct_ok = span <= 65535; /* the gather's offsets are u16 lanes */
  uint16_t *tab_e = (uint16_t *)tab;
#else
  const int32_t direct_ok = 1;
  (void)span;
  int32_t *tab_e = (int32_t *)tab;
#endif
  if (direct_ok)
    for (int32_t i = 0, c = 0; i < kh; ++i)
      for (int32_t j = 0; j < kw; ++j)
        for (int32_t ci = 0; ci < cin; ++ci, ++c) tab_e[c] = (i * dh * in_w + j * dw) * cin + ci;

  const int32_t pixels = out_h * out_w;
  const int8_t *base[CSR_P];
  for (int32_t p0 = 0; p0 < pixels; p0 += CSR_P) {
    const int32_t nvalid = pixels - p0 < CSR_P ? pixels - p0 : CSR_P;
    int8_t *o_px = out + p0 * cout;
    int32_t inside = direct_ok;
    for (int32_t s = 0; s < nvalid && inside; ++s) {
      const int32_t oh = (p0 + s) / out_w, ow = (p0 + s) % out_w;
      const int32_t ih0 = oh * sh - pad_top, iw0 = ow * sw - pad_left;
      inside = ih0 >= 0 && ih0 + (kh - 1) * dh < in_h && iw0 >= 0 && iw0 + (kw - 1) * dw < in_w;
      base[s] = x + (ih0 * in_w + iw0) * cin;
    }
    if (inside) { /* every window inside the image: read the input in place */
      for (int32_t s = nvalid; s < CSR_P; ++s) base[s] = base[0]; /* computed, never stored */
      walk_rows(1, base, tab, values, col_idx, row_ptr, cout, bias_eff, mult, shift, o_px, cout,
                nvalid, out_offset, act_min, act_max);
      continue;
    }
    for (int32_t s = 0; s < CSR_P; ++s) {
      base[s] = rows + s * row_bytes; /* slots past nvalid: stale bytes, never stored */
      if (s < nvalid)
        gather_patch(x, in_h, in_w, cin, (p0 + s) / out_w, (p0 + s) % out_w, kh, kw, sh, sw, dh,
                     dw, pad_top, pad_left, pad_value, rows + s * row_bytes);
    }
    walk_rows(0, base, tab, values, col_idx, row_ptr, cout, bias_eff, mult, shift, o_px, cout,
              nvalid, out_offset, act_min, act_max);
  }
}
