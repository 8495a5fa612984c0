/* int8 NHWC depthwise conv, TFLM DepthwiseConvPerChannel bit-exact (see dtmm_kernels_dwfc.h for
 * the folded-bias convention).
 *
 * Per output pixel the kernel first builds a table of KH*KW tap pointers (an out-of-image tap
 * points at a pad pixel filled with input_zero_point, which contributes exactly the folded term
 * it must cancel), then runs a channel-vectorized loop over the table:
 *   MVE  (Cortex-M55): 4 int32 lanes per vector (VLDRB.S32 widening loads, VMUL + VADD), channel_block
 *                      channels (1-4 vectors) per pass, tail-predicated last block, vector requant.
 *   DSP  (Cortex-M4/M7): 4 channels per word: SXTB16 (+ROR 8) on input and weights, SMLABB/SMLATT
 *                      into 4 (channel_block 4) or 8 (channel_block 8) accumulators.
 *   portable C:        1, 2 or 4 channels per pass.
 * Depth multiplier > 1 uses the portable loop on every ISA.
 */
#include <string.h>

#include "dtmm_kernels_dwfc.h"
#include "dtmm_requant_fast.h"

#if defined(DTMM_ISA_MVE)
#include <arm_mve.h>
#define DTMM_DW_MVE 1
#elif defined(DTMM_ISA_DSP)
#include <arm_acle.h>
#define DTMM_DW_DSP 1
#endif
#if defined(DTMM_DW_MVE)
#define DW_VECTOR_REQUANT 1
#else
#define DW_VECTOR_REQUANT 0
#endif

/* Exported API. Not declared in a header on purpose (see dtmm_kernels_dwfc.h): these are the
 * exact prototypes TVM's CodeGenC emits for the T.call_extern in dtmm_tvm/ops. */
/* NHWC int8 depthwise conv (TFLM DepthwiseConvPerChannel), any kernel/stride/padding/dilation/
 * depth multiplier. weight: [KH, KW, C*M] (TFLite [1, KH, KW, C*M]); bias folded (see dtmm_kernels_dwfc.h);
 * mult/shift per output channel. scratch: dtmm_depthwise_conv_s8_get_buffer_size() bytes
 * (int32_t-aligned). channel_block: output channels computed together (schedule knob;
 * 4 or 8 on DSP, 4, 8 or 16 on MVE, 1, 2 or 4 portable; other values use the nearest valid one).
 */
void dtmm_depthwise_conv_s8(int8_t* input, int8_t* weight, int32_t* bias, int32_t* mult, int32_t* shift,
                            int8_t* output, int32_t* scratch, int32_t batches, int32_t in_h, int32_t in_w,
                            int32_t in_c, int32_t ch_mult, int32_t out_h, int32_t out_w, int32_t k_h,
                            int32_t k_w, int32_t stride_h, int32_t stride_w, int32_t pad_top,
                            int32_t pad_left, int32_t dil_h, int32_t dil_w, int32_t input_zp,
                            int32_t output_zp, int32_t act_min, int32_t act_max, int32_t channel_block);
int32_t dtmm_depthwise_conv_s8_get_buffer_size(int32_t in_c, int32_t k_h, int32_t k_w);

int32_t dtmm_depthwise_conv_s8_get_buffer_size(int32_t in_c, int32_t k_h, int32_t k_w)
{
    /* tap pointer table, then one pad pixel (in_c bytes of input_zero_point), 4-byte rounded */
    return (int32_t)sizeof(int8_t*) * k_h * k_w + ((in_c + 3) & ~3);
}

/* One output pixel, any depth multiplier: oc = c * ch_mult + m reads input channel c. */
static void dw_pixel_generic(const int8_t* const* taps, int32_t ntaps, const int8_t* weight,
                             const int32_t* bias, const int32_t* mult, const int32_t* shift, int8_t* out,
                             int32_t in_c, int32_t ch_mult, int32_t ozp, int32_t amin, int32_t amax)
{
    const int32_t out_c = in_c * ch_mult;
    for (int32_t c = 0; c < in_c; c++) {
        for (int32_t m = 0; m < ch_mult; m++) {
            const int32_t oc = c * ch_mult + m;
            int32_t acc = bias[oc];
            const int8_t* wp = weight + oc;
            for (int32_t t = 0; t < ntaps; t++) {
                acc += (int32_t)taps[t][c] * (int32_t)*wp;
                wp += out_c;
            }
            out[oc] = dtmm_dwfc_clamp_s8(dtmm_dwfc_requantize(acc, mult[oc], shift[oc]) + ozp, amin, amax);
        }
    }
}

#if defined(DTMM_DW_MVE)

/* MVE has no vector x vector integer multiply-accumulate (VMLA is vector x scalar). */
#define DW_MLA(acc, x, w) vaddq_s32((acc), vmulq_s32((x), (w)))

static inline int32x4_t dw_requantize_mve(int32x4_t val, int32x4_t m, int32x4_t s)
{
    const int32x4_t zero = vdupq_n_s32(0);
    const mve_pred16_t positive = vcmpgtq_n_s32(s, 0);
    const int32x4_t left = vpselq_s32(s, zero, positive);
    const int32x4_t right = vpselq_s32(zero, s, positive); /* -(right shift), <= 0 */
    /* VQRDMULH = SaturatingRoundingDoublingHighMul; then RoundingDivideByPOT: nudge negative
     * values down by one so VRSHL's round-half-up becomes round-half-away-from-zero. */
    int32x4_t r = vqrdmulhq_s32(vshlq_s32(val, left), m);
    const int32x4_t fixup = vshrq_n_s32(vandq_s32(r, right), 31);
    r = vqaddq_s32(r, fixup);
    return vrshlq_s32(r, right);
}

static inline void dw_store4_mve(int8_t* out, int32x4_t acc, const int32_t* mult, const int32_t* shift,
                                 int32_t ozp, int32_t amin, int32_t amax, mve_pred16_t p)
{
    int32x4_t r = dw_requantize_mve(acc, vldrwq_z_s32(mult, p), vldrwq_z_s32(shift, p));
    r = vaddq_n_s32(r, ozp);
    r = vmaxq_s32(r, vdupq_n_s32(amin));
    r = vminq_s32(r, vdupq_n_s32(amax));
    vstrbq_p_s32(out, r, p);
}

static void dw_pixel_m1(const int8_t* const* taps, int32_t ntaps, const int8_t* weight, const int32_t* bias,
                        const int32_t* mult, const int32_t* shift, int8_t* out, int32_t channels,
                        int32_t ozp, int32_t amin, int32_t amax, int32_t channel_block)
{
    int32_t c = 0;
    if (channel_block >= 16) {
        for (; c + 16 <= channels; c += 16) {
            int32x4_t a0 = vldrwq_s32(bias + c), a1 = vldrwq_s32(bias + c + 4);
            int32x4_t a2 = vldrwq_s32(bias + c + 8), a3 = vldrwq_s32(bias + c + 12);
            const int8_t* wp = weight + c;
            for (int32_t t = 0; t < ntaps; t++) {
                const int8_t* xp = taps[t] + c;
                a0 = DW_MLA(a0, vldrbq_s32(xp), vldrbq_s32(wp));
                a1 = DW_MLA(a1, vldrbq_s32(xp + 4), vldrbq_s32(wp + 4));
                a2 = DW_MLA(a2, vldrbq_s32(xp + 8), vldrbq_s32(wp + 8));
                a3 = DW_MLA(a3, vldrbq_s32(xp + 12), vldrbq_s32(wp + 12));
                wp += channels;
            }
            const mve_pred16_t all = vctp32q(4);
            dw_store4_mve(out + c, a0, mult + c, shift + c, ozp, amin, amax, all);
            dw_store4_mve(out + c + 4, a1, mult + c + 4, shift + c + 4, ozp, amin, amax, all);
            dw_store4_mve(out + c + 8, a2, mult + c + 8, shift + c + 8, ozp, amin, amax, all);
            dw_store4_mve(out + c + 12, a3, mult + c + 12, shift + c + 12, ozp, amin, amax, all);
        }
    }
    if (channel_block >= 8) {
        for (; c + 8 <= channels; c += 8) {
            int32x4_t a0 = vldrwq_s32(bias + c), a1 = vldrwq_s32(bias + c + 4);
            const int8_t* wp = weight + c;
            for (int32_t t = 0; t < ntaps; t++) {
                const int8_t* xp = taps[t] + c;
                a0 = DW_MLA(a0, vldrbq_s32(xp), vldrbq_s32(wp));
                a1 = DW_MLA(a1, vldrbq_s32(xp + 4), vldrbq_s32(wp + 4));
                wp += channels;
            }
            const mve_pred16_t all = vctp32q(4);
            dw_store4_mve(out + c, a0, mult + c, shift + c, ozp, amin, amax, all);
            dw_store4_mve(out + c + 4, a1, mult + c + 4, shift + c + 4, ozp, amin, amax, all);
        }
    }
    for (; c + 4 <= channels; c += 4) {
        int32x4_t a0 = vldrwq_s32(bias + c);
        const int8_t* wp = weight + c;
        for (int32_t t = 0; t < ntaps; t++) {
            a0 = DW_MLA(a0, vldrbq_s32(taps[t] + c), vldrbq_s32(wp));
            wp += channels;
        }
        dw_store4_mve(out + c, a0, mult + c, shift + c, ozp, amin, amax, vctp32q(4));
    }
    if (c < channels) { /* tail: 1-3 channels, predicated */
        const mve_pred16_t p = vctp32q((uint32_t)(channels - c));
        int32x4_t a0 = vldrwq_z_s32(bias + c, p);
        const int8_t* wp = weight + c;
        for (int32_t t = 0; t < ntaps; t++) {
            a0 = DW_MLA(a0, vldrbq_z_s32(taps[t] + c, p), vldrbq_z_s32(wp, p));
            wp += channels;
        }
        dw_store4_mve(out + c, a0, mult + c, shift + c, ozp, amin, amax, p);
    }
}

#elif defined(DTMM_DW_DSP)

static inline int32_t dw_read_s8x4(const int8_t* p)
{
    int32_t v;
    __builtin_memcpy(&v, p, 4); /* one LDR (unaligned access is allowed on v7E-M); the builtin also
                                  * under -ffreestanding */
    return v;
}

/* SXTB16 of bytes 1 and 3: one instruction (GCC 12 does not fuse a rotate into __sxtb16). */
static inline int32_t dw_sxtb16_ror8(int32_t v)
{
    int32_t r;
    __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(v));
    return r;
}

#define DW_MAC4(xv, wv, a0, a1, a2, a3)                       \
    do {                                                      \
        const int32_t xe_ = (int32_t)__sxtb16((xv));          \
        const int32_t xo_ = dw_sxtb16_ror8((xv)); \
        const int32_t we_ = (int32_t)__sxtb16((wv));          \
        const int32_t wo_ = dw_sxtb16_ror8((wv)); \
        a0 = __smlabb(xe_, we_, a0);                          \
        a2 = __smlatt(xe_, we_, a2);                          \
        a1 = __smlabb(xo_, wo_, a1);                          \
        a3 = __smlatt(xo_, wo_, a3);                          \
    } while (0)

/* Requantization modes of the DSP pixel (chosen once per pixel, see dw_pixel_m1):
 * 0 = the general path (ONNX float32 records), 1 = a TFLite record with the activation range
 * [-128, 127] (dtmm_requant_fast.h + one SSAT), 2 = a TFLite record with a narrower range. */
static inline __attribute__((always_inline)) int8_t dw_out_dsp(const int MODE, int32_t a, int32_t m, int32_t sh,
                                                               int32_t ozp, int32_t amin, int32_t amax)
{
    if (MODE == 0) return dtmm_dwfc_clamp_s8(dtmm_dwfc_requantize(a, m, sh) + ozp, amin, amax);
    int32_t v;
    if (m < (1 << 30)) /* not a normalised TFLite multiplier (e.g. 0) */
        v = dtmm_dwfc_requantize(a, m, sh);
    else if (sh < 0)
        v = dtmm_rq_rdbp(dtmm_rq_high(a, (int32_t)((uint32_t)m << 1)), -sh);
    else
        v = dtmm_rq_high((int32_t)((uint32_t)a << sh), (int32_t)((uint32_t)m << 1));
    v = dtmm_rq_sat8(v + ozp);
    if (MODE == 2) v = dtmm_dwfc_clamp_s8(v, amin, amax);
    return (int8_t)v;
}
#define DW_OUT(i, a) out[c + (i)] = dw_out_dsp(MODE, (a), mult[c + (i)], shift[c + (i)], ozp, amin, amax)

static inline __attribute__((always_inline)) void dw_pixel_m1_mode(
    const int MODE, const int8_t* const* taps, int32_t ntaps, const int8_t* weight, const int32_t* bias,
    const int32_t* mult, const int32_t* shift, int8_t* out, int32_t channels, int32_t ozp, int32_t amin,
    int32_t amax, int32_t channel_block)
{
    int32_t c = 0;
    const int8_t* const* const taps_end = taps + ntaps;
    if (channel_block >= 8) {
        for (; c + 8 <= channels; c += 8) {
            int32_t a0 = bias[c], a1 = bias[c + 1], a2 = bias[c + 2], a3 = bias[c + 3];
            int32_t a4 = bias[c + 4], a5 = bias[c + 5], a6 = bias[c + 6], a7 = bias[c + 7];
            const int8_t* wp = weight + c;
            for (int32_t t = 0; t < ntaps; t++) {
                const int8_t* xp = taps[t] + c;
                const int32_t x0 = dw_read_s8x4(xp), w0 = dw_read_s8x4(wp);
                DW_MAC4(x0, w0, a0, a1, a2, a3);
                const int32_t x1 = dw_read_s8x4(xp + 4), w1 = dw_read_s8x4(wp + 4);
                DW_MAC4(x1, w1, a4, a5, a6, a7);
                wp += channels;
            }
            DW_OUT(0, a0); DW_OUT(1, a1); DW_OUT(2, a2); DW_OUT(3, a3);
            DW_OUT(4, a4); DW_OUT(5, a5); DW_OUT(6, a6); DW_OUT(7, a7);
        }
    }
    for (; c + 4 <= channels; c += 4) {
        int32_t a0 = bias[c], a1 = bias[c + 1], a2 = bias[c + 2], a3 = bias[c + 3];
        const int8_t* wp = weight + c;
        for (const int8_t* const* tp = taps; tp != taps_end; tp++) { /* no counter: 14 instr/tap */
            const int32_t x0 = dw_read_s8x4(*tp + c), w0 = dw_read_s8x4(wp);
            DW_MAC4(x0, w0, a0, a1, a2, a3);
            wp += channels;
        }
        DW_OUT(0, a0); DW_OUT(1, a1); DW_OUT(2, a2); DW_OUT(3, a3);
    }
    for (; c < channels; c++) {
        int32_t a0 = bias[c];
        const int8_t* wp = weight + c;
        for (int32_t t = 0; t < ntaps; t++) {
            a0 += (int32_t)taps[t][c] * (int32_t)*wp;
            wp += channels;
        }
        DW_OUT(0, a0);
    }
}

static void dw_pixel_m1(const int8_t* const* taps, int32_t ntaps, const int8_t* weight, const int32_t* bias,
                        const int32_t* mult, const int32_t* shift, int8_t* out, int32_t channels,
                        int32_t ozp, int32_t amin, int32_t amax, int32_t channel_block)
{
    /* an ONNX float32 record is one per layer (DTMM_REQUANT_F32 in every shift) */
    if (shift[0] == DTMM_REQUANT_F32)
        dw_pixel_m1_mode(0, taps, ntaps, weight, bias, mult, shift, out, channels, ozp, amin, amax, channel_block);
    else if (amin == -128 && amax == 127)
        dw_pixel_m1_mode(1, taps, ntaps, weight, bias, mult, shift, out, channels, ozp, amin, amax, channel_block);
    else
        dw_pixel_m1_mode(2, taps, ntaps, weight, bias, mult, shift, out, channels, ozp, amin, amax, channel_block);
}

#else /* portable C */

#define DW_OUT(i, a) \
    out[c + (i)] = dtmm_dwfc_clamp_s8(dtmm_dwfc_requantize((a), mult[c + (i)], shift[c + (i)]) + ozp, amin, amax)

static void dw_pixel_m1(const int8_t* const* taps, int32_t ntaps, const int8_t* weight, const int32_t* bias,
                        const int32_t* mult, const int32_t* shift, int8_t* out, int32_t channels,
                        int32_t ozp, int32_t amin, int32_t amax, int32_t channel_block)
{
    int32_t c = 0;
    if (channel_block >= 4) {
        for (; c + 4 <= channels; c += 4) {
            int32_t a0 = bias[c], a1 = bias[c + 1], a2 = bias[c + 2], a3 = bias[c + 3];
            const int8_t* wp = weight + c;
            for (int32_t t = 0; t < ntaps; t++) {
                const int8_t* xp = taps[t] + c;
                a0 += (int32_t)xp[0] * wp[0];
                a1 += (int32_t)xp[1] * wp[1];
                a2 += (int32_t)xp[2] * wp[2];
                a3 += (int32_t)xp[3] * wp[3];
                wp += channels;
            }
            DW_OUT(0, a0); DW_OUT(1, a1); DW_OUT(2, a2); DW_OUT(3, a3);
        }
    }
    if (channel_block >= 2) {
        for (; c + 2 <= channels; c += 2) {
            int32_t a0 = bias[c], a1 = bias[c + 1];
            const int8_t* wp = weight + c;
            for (int32_t t = 0; t < ntaps; t++) {
                const int8_t* xp = taps[t] + c;
                a0 += (int32_t)xp[0] * wp[0];
                a1 += (int32_t)xp[1] * wp[1];
                wp += channels;
            }
            DW_OUT(0, a0); DW_OUT(1, a1);
        }
    }
    for (; c < channels; c++) {
        int32_t a0 = bias[c];
        const int8_t* wp = weight + c;
        for (int32_t t = 0; t < ntaps; t++) {
            a0 += (int32_t)taps[t][c] * (int32_t)*wp;
            wp += channels;
        }
        DW_OUT(0, a0);
    }
}

#endif

void dtmm_depthwise_conv_s8(int8_t* input, int8_t* weight, int32_t* bias, int32_t* mult, int32_t* shift,
                            int8_t* output, int32_t* scratch, int32_t batches, int32_t in_h, int32_t in_w,
                            int32_t in_c, int32_t ch_mult, int32_t out_h, int32_t out_w, int32_t k_h,
                            int32_t k_w, int32_t stride_h, int32_t stride_w, int32_t pad_top,
                            int32_t pad_left, int32_t dil_h, int32_t dil_w, int32_t input_zp,
                            int32_t output_zp, int32_t act_min, int32_t act_max, int32_t channel_block)
{
    const int32_t ntaps = k_h * k_w;
    const int32_t out_c = in_c * ch_mult;
    const int8_t** taps = (const int8_t**)(void*)scratch;
    int8_t* pad = (int8_t*)(void*)scratch + sizeof(int8_t*) * (uint32_t)ntaps;
    memset(pad, input_zp, (size_t)in_c);
    const int32_t row_bytes = in_w * in_c;

    for (int32_t b = 0; b < batches; b++) {
        const int8_t* in_b = input + b * in_h * row_bytes;
        for (int32_t oy = 0; oy < out_h; oy++) {
            const int32_t iy0 = oy * stride_h - pad_top;
            for (int32_t ox = 0; ox < out_w; ox++) {
                const int32_t ix0 = ox * stride_w - pad_left;
                int32_t t = 0;
                for (int32_t ky = 0; ky < k_h; ky++) {
                    const int32_t iy = iy0 + ky * dil_h;
                    if ((uint32_t)iy >= (uint32_t)in_h) {
                        for (int32_t kx = 0; kx < k_w; kx++) taps[t++] = pad;
                        continue;
                    }
                    const int8_t* row = in_b + iy * row_bytes;
                    for (int32_t kx = 0; kx < k_w; kx++) {
                        const int32_t ix = ix0 + kx * dil_w;
                        taps[t++] = (uint32_t)ix < (uint32_t)in_w ? row + ix * in_c : pad;
                    }
                }
                /* the MVE pixel requantizes 4 channels at a time as TFLite records; ONNX float32
                 * records (dtmm_requant_f32.h) take the scalar pixel */
                if (ch_mult == 1 && !(DW_VECTOR_REQUANT && DTMM_IS_F32_RECORD(shift[0]))) {
                    dw_pixel_m1(taps, ntaps, weight, bias, mult, shift, output, in_c, output_zp, act_min, act_max,
                                channel_block);
                } else {
                    dw_pixel_generic(taps, ntaps, weight, bias, mult, shift, output, in_c, ch_mult, output_zp,
                                     act_min, act_max);
                }
                output += out_c;
            }
        }
    }
}
