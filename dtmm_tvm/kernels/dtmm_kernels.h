/*
 * dtmm_kernels.h - hand-written C micro-kernels called from generated TIR kernels
 * (T.call_extern). One shared header: every kernel file in dtmm_tvm/kernels declares its
 * exported functions here, in its own section. See dtmm_tvm/kernels/__init__.py for the hook.
 *
 * ISA paths are chosen at C compile time by DTMM_ISA_MVE (Helium), DTMM_ISA_DSP (SXTB16/SMLAD)
 * or DTMM_ISA_PORTABLE, set in dtmm_kernels_isa.h (in an archive: the archive's own ISA).
 * Scratch always comes from the caller.
 */
#ifndef DTMM_KERNELS_H_
#define DTMM_KERNELS_H_

#include <stdint.h>
#include "dtmm_requant_f32.h"

#include "dtmm_kernels_isa.h" /* DTMM_ISA_MVE / DTMM_ISA_DSP / DTMM_ISA_PORTABLE */

#ifdef __cplusplus
extern "C" {
#endif

/* ---- shared: TFLM integer requantization (double rounding) ------------------------------
 * Same arithmetic as dtmm_tvm/ops/fixed_point.py (gemmlowp SaturatingRoundingDoublingHighMul
 * then RoundingDivideByPOT). */
static inline int32_t dtmm_srdhm(int32_t a, int32_t b) {
  if (a == b && a == INT32_MIN) return INT32_MAX;
  /* gemmlowp's (ab + nudge) / 2^31 with nudge = ab >= 0 ? 2^30 : 1 - 2^30 (division truncating
   * toward zero) equals floor((ab + 2^30) / 2^31) for every ab: one SMLAL and a 64-bit shift. */
  return (int32_t)(((int64_t)a * (int64_t)b + (1LL << 30)) >> 31);
}

static inline int32_t dtmm_rdbp(int32_t x, int32_t exponent) {
  const int32_t mask = (int32_t)((1u << exponent) - 1u);
  const int32_t remainder = x & mask;
  const int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
  return (x >> exponent) + (remainder > threshold ? 1 : 0);
}

/* MultiplyByQuantizedMultiplier(acc, mult, shift) of TFLM; an ONNX record (shift ==
 * DTMM_REQUANT_F32, see dtmm_requant_f32.h) is requantized in float32 instead. */
static inline int32_t dtmm_requantize(int32_t acc, int32_t mult, int32_t shift) {
  if (DTMM_IS_F32_RECORD(shift)) return dtmm_requantize_f32(acc, mult);
  const int32_t left = shift > 0 ? shift : 0;
  const int32_t right = shift > 0 ? 0 : -shift;
  return dtmm_rdbp(dtmm_srdhm((int32_t)((uint32_t)acc << left), mult), right);
}

/* ---- regular int8 convolution (dense and filterlet-sparse), owner: conv kernels ----------
 * dtmm_tvm/ops/conv2d_micro.py calls, per layer: dtmm_conv_bias_s8 once; per block of output
 * pixels dtmm_conv_im2col_s8 once, then dtmm_conv_block_s8 per block of output channels.
 * The im2col block (caller scratch) is "chunk-interleaved": pixels in groups of `group` slots,
 * each pixel row split per kernel tap into ceil(Cin/CH) chunks, a chunk's slots side by side
 *   MVE:          CH = 16 int8 raw input values per slot, padding = -input_offset;
 *   DSP/portable: CH = 4 q15 values (x + input_offset) per slot as pairs (x0,x2),(x1,x3),
 *                 padding = 0 (see dtmm_conv_im2col_s8.c).
 * dtmm_conv_s8_elem_bytes() is the element size of this build (1 with MVE, else 2). */
int32_t dtmm_conv_s8_elem_bytes(void);

/* Bytes of scratch for npix pixels of a KH*KW = kk, Cin = cin layer (npix a multiple of group). */
int32_t dtmm_conv_s8_get_buffer_size(int32_t kk, int32_t cin, int32_t npix);

/* im2col of output pixels [pix0, pix0 + npix) (row-major over OH x OW) of one image x (NHWC). */
void dtmm_conv_im2col_s8(const int8_t *x, int32_t in_h, int32_t in_w, int32_t cin, int32_t out_w,
                         int32_t pix0, int32_t npix, int32_t group, int32_t kh, int32_t kw,
                         int32_t sh, int32_t sw, int32_t dh, int32_t dw, int32_t pad_top,
                         int32_t pad_left, int32_t input_offset, int8_t *buf);

/* Small-Cin fast path (dense weights): same arguments, but each pixel's whole KH*KW*Cin patch
 * is one contiguous run of ceil(KH*KW*Cin / CH) chunks (not KH*KW taps of ceil(Cin/CH)); then
 * call dtmm_conv_block_s8 with fmt DENSE, kk = 1, cin = KH*KW*Cin. Needs KH*KW*Cin <=
 * DTMM_CONV_PACKED_MAX; scratch per pixel = dtmm_conv_s8_get_buffer_size(1, KH*KW*Cin, 1). */
#define DTMM_CONV_PACKED_MAX 256
void dtmm_conv_im2col_packed_s8(const int8_t *x, int32_t in_h, int32_t in_w, int32_t cin,
                                int32_t out_w, int32_t pix0, int32_t npix, int32_t group,
                                int32_t kh, int32_t kw, int32_t sh, int32_t sw, int32_t dh,
                                int32_t dw, int32_t pad_top, int32_t pad_left,
                                int32_t input_offset, int8_t *buf);

/* Weight index formats (the kept filterlets' values are always concatenated in (o, kh, kw)
 * order, Cin int8 each):
 *   DENSE: OHWI weights, idx0/idx1 unused;
 *   CSR:   the paper's: idx0 int16 col_idx[kept] = (kh*KW+kw)*Cin, idx1 int16 row_ptr[Cout+1];
 *   U8:    idx0 uint8 tap[kept] = kh*KW+kw, idx1 uint8 count[Cout] (KH*KW <= 255);
 *   MASK:  idx0 uint8 bits: KH*KW bits per filter, filter o at bit o*KH*KW, LSB first, plus 3
 *          padding bytes (KH*KW <= 25); idx1 unused. */
#define DTMM_FMT_DENSE 0
#define DTMM_FMT_CSR 1
#define DTMM_FMT_U8 2
#define DTMM_FMT_MASK 3

/* Per-channel effective bias: MVE bias[o] + input_offset * sum(kept weights of o) (the offset
 * is folded out of the int8 dot products), else a copy of bias. */
void dtmm_conv_bias_s8(int32_t fmt, const int8_t *values, const void *idx0, const void *idx1,
                       int32_t kk, int32_t cin, int32_t cout, const int32_t *bias,
                       int32_t input_offset, int32_t *bias_out);

/* npix pixels of the im2col block buf x output channels [o_begin, o_end): for every channel
 * the kept filterlets as runs of consecutive taps, one dot-product loop per run into `group`
 * accumulators, then bias (from dtmm_conv_bias_s8), requantization, output offset, clamp.
 * out points at the first pixel's channel 0; pixels are out_pixel_stride bytes apart.
 * tile: dtmm_conv_block_s8_get_buffer_size() bytes of int32-aligned caller scratch (the MVE
 * accumulator tile, kept off the stack; 0 bytes and unused on the other ISAs). */
int32_t dtmm_conv_block_s8_get_buffer_size(void);
void dtmm_conv_block_s8(const int8_t *buf, int32_t npix, int32_t group, int32_t fmt,
                        const int8_t *values, const void *idx0, const void *idx1, int32_t kk,
                        int32_t cin, int32_t o_begin, int32_t o_end, const int32_t *bias,
                        const int32_t *mult, const int32_t *shift, int8_t *out,
                        int32_t out_pixel_stride, int32_t out_offset, int32_t act_min,
                        int32_t act_max, int32_t *tile);
#if defined(DTMM_ISA_MVE)
/* The MVE block entry with register-resident fast paths (same arguments; conv2d_micro.py calls it
 * instead of dtmm_conv_block_s8 where schedules.conv.mve_fast_block() says one applies, any other
 * call is passed on to dtmm_conv_block_s8): a dense filter of at most 32 bytes (kk = 1: the packed
 * small-Cin patch) keeps 2 filters' weights in registers for the 8 pixels of a group; filterlet
 * formats with Cin = 16, 32 or 64 walk each channel's kept filterlets in one asm loop with the 8
 * accumulators in registers (no run decode). Group of 8 pixels only. */
void dtmm_conv_block_mve_s8(const int8_t *buf, int32_t npix, int32_t group, int32_t fmt,
                               const int8_t *values, const void *idx0, const void *idx1, int32_t kk,
                               int32_t cin, int32_t o_begin, int32_t o_end, const int32_t *bias,
                               const int32_t *mult, const int32_t *shift, int8_t *out,
                               int32_t out_pixel_stride, int32_t out_offset, int32_t act_min,
                               int32_t act_max, int32_t *tile);
#endif

/* ---- output of a filter-compacted conv (format "filter_compact"), owner: conv kernels ------
 * npix pixels of kept_out (rows of `kept` bytes: the conv over the kept filters only) into out
 * (rows of cout bytes): each row is `fill` (the dropped filters' constant outputs) with the kept
 * channels stored at channels[j] (uint16, ascending). No scratch. */
void dtmm_expand_channels_s8(const int8_t *kept_out, int32_t npix, int32_t kept, const uint16_t *channels,
                             const int8_t *fill, int8_t *out, int32_t cout);

/* ---- regular int8 convolution over element-sparse (unstructured) weights, CSR per output
 * filter, owner: unstructured kernel (dtmm_conv_csr_s8.c, dtmm_tvm/ops/conv2d_unstructured.py).
 * values int8 [nnz], col_idx int16 [nnz] = (kh*KW + kw)*Cin + ci, row_ptr int32 [Cout+1].
 * One call per image; scratch of dtmm_conv_csr_s8_get_buffer_size bytes (4-byte aligned).
 * dtmm_conv_csr_s8_pixels() is the output pixels per row walk of this build (8 MVE, else 4). */
int32_t dtmm_conv_csr_s8_pixels(void);
int32_t dtmm_conv_csr_s8_get_buffer_size(int32_t kh, int32_t kw, int32_t cin, int32_t cout);
void dtmm_conv_csr_s8(const int8_t *x, int32_t in_h, int32_t in_w, int32_t cin, int32_t out_h,
                      int32_t out_w, int32_t kh, int32_t kw, int32_t sh, int32_t sw, int32_t dh,
                      int32_t dw, int32_t pad_top, int32_t pad_left, int32_t input_offset,
                      const int8_t *values, const int16_t *col_idx, const int32_t *row_ptr,
                      int32_t cout, const int32_t *bias, const int32_t *mult,
                      const int32_t *shift, int8_t *out, int32_t out_offset, int32_t act_min,
                      int32_t act_max, int8_t *scratch);

/* ---- pattern-pruned int8 convolution (PatDNN-style baseline), owner: pattern kernel ------
 * dtmm_tvm/ops/conv2d_pattern.py calls it once per image. Every kept (out, in) kernel has its
 * non-zeros inside one of npat 4-tap patterns (taps[4*npat], tap = kh*KW + kw); per kept kernel
 * j: values[4j..4j+3] (weights at the pattern's taps), kidx[j] = pattern * Cin + channel;
 * counts[o] kept kernels of filter o (see dtmm_conv_pattern_s8.c). Scratch: get_buffer_size. */
int32_t dtmm_conv_pattern_s8_get_buffer_size(int32_t npat, int32_t cin, int32_t cout);
void dtmm_conv_pattern_s8(const int8_t *x, int32_t in_h, int32_t in_w, int32_t cin, int32_t out_h,
                          int32_t out_w, int32_t kw, int32_t sh, int32_t sw, int32_t dh, int32_t dw,
                          int32_t pad_top, int32_t pad_left, int32_t input_offset, int32_t npat,
                          const uint8_t *taps, const int8_t *values, const int16_t *kidx,
                          const int16_t *counts, int32_t cout, const int32_t *bias, const int32_t *mult,
                          const int32_t *shift, int32_t out_offset, int32_t act_min, int32_t act_max,
                          int8_t *out, int8_t *scratch);

/* ---- int8 elementwise ADD (same shapes), owner: ADD kernel ------------------------------
 * dtmm_tvm/ops/add.py calls it once per ADD whose inputs are not broadcast. TFLM
 * reference_integer_ops::AddFunc bit-exact over `size` elements (parameters as in TFLM's
 * OpDataAdd: offsets = -zero points / +output zero point, shifts <= 0). No scratch.
 * MVE / DSP (SXTAB16, SMMULR) / portable paths, see dtmm_add_s8.c. */
void dtmm_add_s8(int8_t* input1, int8_t* input2, int8_t* output, int32_t size, int32_t input1_offset,
                 int32_t input1_multiplier, int32_t input1_shift, int32_t input2_offset, int32_t input2_multiplier,
                 int32_t input2_shift, int32_t output_offset, int32_t output_multiplier, int32_t output_shift,
                 int32_t left_shift, int32_t act_min, int32_t act_max);

/* ---- ONNX QDQ models: onnxruntime's QuantizeLinear / DequantizeLinear / QLinearGlobalAveragePool /
 * QLinearSoftmax (float32 on the FPU, see dtmm_requant_f32.h), owner: ONNX lowering
 * (relay_passes/lower_onnx_qdq_to_integer.py, dtmm_tvm/ops/qlinear.py). Float parameters come as
 * 1-element (or table) constant arrays so their bits are exact. */
void dtmm_quantize_linear_s8(float *input, float *scale, int8_t *output, int32_t size, int32_t zero_point);
void dtmm_dequantize_linear_s8(int8_t *input, float *scale, float *output, int32_t size, int32_t zero_point);
int32_t dtmm_qlinear_global_avg_pool_s8_get_buffer_size(int32_t channels);
void dtmm_qlinear_global_avg_pool_s8(int8_t *input, float *scale, int8_t *output, int32_t *scratch,
                                     int32_t batches, int32_t image_size, int32_t channels,
                                     int32_t input_zp, int32_t output_zp);
void dtmm_qlinear_softmax_s8(int8_t *input, float *table, float *y_scale_inv, int8_t *output, int32_t rows,
                             int32_t depth, int32_t output_zp);
/* QLinearAdd / QLinearMul of two tensors of one shape; offset 128 for uint8 models (values and
 * act_min/act_max in the model's own type). */
int32_t dtmm_qlinear_add_s8_get_buffer_size(void);
void dtmm_qlinear_add_s8(int8_t *a, int8_t *b, float *params, int8_t *output, int32_t size, int32_t offset,
                         int32_t act_min, int32_t act_max);
/* QLinearAveragePool (a window smaller than the image), float32 as onnxruntime computes it. */
int32_t dtmm_qlinear_avg_pool_s8_get_buffer_size(int32_t channels);
void dtmm_qlinear_avg_pool_s8(int8_t *input, float *table, float *y_scale, int8_t *output, float *scratch,
                              int32_t batches, int32_t height, int32_t width, int32_t channels,
                              int32_t out_height, int32_t out_width, int32_t kernel_h, int32_t kernel_w,
                              int32_t stride_h, int32_t stride_w, int32_t pad_top, int32_t pad_left,
                              int32_t count_include_pad, int32_t offset, int32_t output_zp, int32_t act_min,
                              int32_t act_max);
int32_t dtmm_qlinear_mul_s8_get_buffer_size(void);
void dtmm_qlinear_mul_s8(int8_t *a, int8_t *b, float *ratio, int8_t *output, int32_t size, int32_t offset,
                         int32_t a_zp, int32_t b_zp, int32_t y_zp, int32_t act_min, int32_t act_max);

#ifdef __cplusplus
}
#endif
#endif /* DTMM_KERNELS_H_ */
