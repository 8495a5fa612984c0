/*
 * dtmm_kernels.h - hand-written C micro-kernels called from generated TIR kernels
 * (T.call_extern). One shared header: every kernel file in dtmm_tvm/kernels declares its
 * exported functions here, in its own section. See dtmm_tvm/kernels/__init__.py for the hook.
 *
 * ISA paths are chosen at C compile time: __ARM_FEATURE_MVE (Helium), __ARM_FEATURE_DSP
 * (SXTB16/SMLAD), else portable C. Scratch always comes from the caller.
 */
#ifndef DTMM_KERNELS_H_
#define DTMM_KERNELS_H_

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- shared: TFLM integer requantization (double rounding) ------------------------------
 * Same arithmetic as dtmm_tvm/ops/fixed_point.py (gemmlowp SaturatingRoundingDoublingHighMul
 * then RoundingDivideByPOT). */
static inline int32_t dtmm_srdhm(int32_t a, int32_t b) {
  if (a == b && a == INT32_MIN) return INT32_MAX;
  int64_t ab = (int64_t)a * (int64_t)b;
  int64_t nudge = ab >= 0 ? (1LL << 30) : (1LL - (1LL << 30));
  return (int32_t)((ab + nudge) / (1LL << 31));
}

static inline int32_t dtmm_rdbp(int32_t x, int32_t exponent) {
  const int32_t mask = (int32_t)((1u << exponent) - 1u);
  const int32_t remainder = x & mask;
  const int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
  return (x >> exponent) + (remainder > threshold ? 1 : 0);
}

/* MultiplyByQuantizedMultiplier(acc, mult, shift) of TFLM. */
static inline int32_t dtmm_requantize(int32_t acc, int32_t mult, int32_t shift) {
  const int32_t left = shift > 0 ? shift : 0;
  const int32_t right = shift > 0 ? 0 : -shift;
  return dtmm_rdbp(dtmm_srdhm((int32_t)((uint32_t)acc << left), mult), right);
}

/* ---- regular int8 convolution (dense and filterlet-sparse), owner: conv kernels ----------
 * The TIR kernel (dtmm_tvm/ops/conv2d_filterlet.py) gathers a block of up to 4 output pixels'
 * im2col rows (row_len = KH*KW*Cin values each, row_stride bytes apart) into caller scratch:
 *   MVE:          int8, raw input values, padding = -input_offset (the input zero point);
 *   DSP/portable: int16 (q15), input + input_offset, padding = 0.
 * dtmm_conv_s8_elem_bytes() is the element size of this build (1 with MVE, else 2). */
int32_t dtmm_conv_s8_elem_bytes(void);

/* Bytes of scratch for npix rows of row_len values (row stride rounded up to 16 bytes). */
int32_t dtmm_conv_s8_get_buffer_size(int32_t row_len, int32_t npix);

/* im2col of one kernel tap: count input values src[0..count) into row[elem_offset..). */
void dtmm_conv_im2col_s8(const int8_t *src, int8_t *row, int32_t elem_offset, int32_t count,
                         int32_t input_offset);
/* A tap in the padding: count values at row[elem_offset..) contribute nothing. */
void dtmm_conv_pad_s8(int8_t *row, int32_t elem_offset, int32_t count, int32_t input_offset);

/* Per-channel effective bias: MVE bias[o] + input_offset * sum(kept weights of o) (the offset
 * is folded out of the int8 dot products), else a copy of bias. row_ptr == NULL: dense OHWI
 * weights, row_len each. */
void dtmm_conv_bias_s8(const int8_t *values, const int16_t *row_ptr, int32_t row_len,
                       int32_t cout, const int32_t *bias, int32_t input_offset,
                       int32_t *bias_out);

/* One pixel block x output channels [o_begin, o_end): for every channel, one dot product of
 * length Cin per kept filterlet (contiguous kept filterlets merged into one run) into npix
 * accumulators, then bias (from dtmm_conv_bias_s8), requantization, output offset, clamp.
 * col_idx == NULL: dense OHWI weights (every channel one run of row_len). out points at the
 * first pixel's channel 0; pixels are out_pixel_stride bytes apart. npix >= 1 (any). */
void dtmm_conv_block_s8(const int8_t *buf, int32_t row_stride, int32_t npix,
                        const int8_t *values, const int16_t *col_idx, const int16_t *row_ptr,
                        int32_t row_len, int32_t cin, int32_t o_begin, int32_t o_end,
                        const int32_t *bias, const int32_t *mult, const int32_t *shift,
                        int8_t *out, int32_t out_pixel_stride, int32_t out_offset,
                        int32_t act_min, int32_t act_max);

#ifdef __cplusplus
}
#endif
#endif /* DTMM_KERNELS_H_ */
