/* int8 NHWC depthwise conv, TFLM DepthwiseConvPerChannel bit-exact (see dtmm_kernels_dwfc.h for
 * the folded-bias convention).
 *
 * Per output pixel the kernel first builds a table of KH*KW tap pointers (an out-of-image tap
 * points at a pad pixel filled with input_zero_point, which contributes exactly the folded term
 * it must cancel), then runs a channel-vectorized loop over the table:
 *   MVE  (Cortex-M55): up to 16 taps, channels a multiple of 4, no left shift (the usual layer):
 *                      the transposed path (dw_layer_mve_t): taps transposed by VST4, one word
 *                      gather + VMLADAV per channel and pixel, 4- / 8-channel layers pack pixels.
 *                      Otherwise the lane path (dw_layer_mve): 8 int16 lanes per load (VLDRB.S16
 *                      widening loads, VMULLB/VMULLT into even / odd int32 accumulators), 16
 *                      channels per pass (channel_block 16; 4 or 8: 8), a predicated tail, vector
 *                      requantization from a per-call table. Both keep their tables in scratch.
 *   DSP  (Cortex-M4/M7): 4 channels per word: SXTB16 (+ROR 8) on input and weights, SMLABB/SMLATT
 *                      into 4 (channel_block 4) or 8 (channel_block 8) accumulators; 3x3 kernels
 *                      with channels % 4 == 0 and TFLite records take a channel-blocked layer loop
 *                      instead (dw3_layer_dsp: no tap table, weights sign-extended once per block).
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
 * 4 or 8 on DSP, 8 or 16 on MVE (4 runs as 8), 1, 2 or 4 portable; other values use the nearest valid one).
 */
void dtmm_depthwise_conv_s8(int8_t* input, int8_t* weight, int32_t* bias, int32_t* mult, int32_t* shift,
                            int8_t* output, int32_t* scratch, int32_t batches, int32_t in_h, int32_t in_w,
                            int32_t in_c, int32_t ch_mult, int32_t out_h, int32_t out_w, int32_t k_h,
                            int32_t k_w, int32_t stride_h, int32_t stride_w, int32_t pad_top,
                            int32_t pad_left, int32_t dil_h, int32_t dil_w, int32_t input_zp,
                            int32_t output_zp, int32_t act_min, int32_t act_max, int32_t channel_block);
int32_t dtmm_depthwise_conv_s8_get_buffer_size(int32_t in_c, int32_t k_h, int32_t k_w);

#if defined(DTMM_DW_MVE)
/* MVE work area after the pad pixel (16-byte aligned inside the scratch): the larger of the
 * transposed path's tables (dw_layer_mve_t: 1024 + 256 + 256 + 64 bytes) and the lane path's
 * requantization table (dw_layer_mve: 1024 bytes); kept off the stack. */
#define DW_MVE_AREA 1600
#define DW_MVE_ALIGN_SLACK 12 /* the scratch is int32-aligned; the area starts 16-aligned */
#else
#define DW_MVE_AREA 0
#define DW_MVE_ALIGN_SLACK 0
#endif

int32_t dtmm_depthwise_conv_s8_get_buffer_size(int32_t in_c, int32_t k_h, int32_t k_w)
{
    /* tap pointer table, then one pad pixel (in_c bytes of input_zero_point), 4-byte rounded,
     * then (MVE) the work area */
    return (int32_t)sizeof(int8_t*) * k_h * k_w + ((in_c + 3) & ~3) + DW_MVE_ALIGN_SLACK + DW_MVE_AREA;
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

/* MVE has no vector x vector integer multiply-accumulate (VMLA is vector x scalar), so a tap of
 * 8 channels is: VLDRB.S16 input + VLDRB.S16 weight (widening loads) + VMULLB/VMULLT (16 x 16 ->
 * 32 bit, even / odd lanes) + 2 VADD: 6 instructions per 8 MACs (4 lanes of int32 would take 8).
 * The accumulators of a 16-channel block are therefore channel-interleaved: e0 = channels
 * c+0,2,4,6, o0 = c+1,3,5,7, e1 = c+8,..,14, o1 = c+9,..,15; bias, multiplier and shift are
 * gathered in that order and VMOVNB/VMOVNT put the results back in channel order for one
 * narrowing 8-byte store. */
#define DW_ACC_E(acc, x, w) vaddq_s32((acc), vmullbq_int_s16((x), (w)))
#define DW_ACC_O(acc, x, w) vaddq_s32((acc), vmulltq_int_s16((x), (w)))

/* Per 8 output channels c..c+7, the interleaved per-channel constants of one layer call, built
 * once per call and super-block (instead of gathers and shift splitting per pixel): bias, multiplier,
 * -(right shift) and left shift, each as an even-lane and an odd-lane vector. */
typedef struct {
    int32_t bias_e[4], bias_o[4], mult_e[4], mult_o[4], right_e[4], right_o[4], left_e[4], left_o[4];
} dw_group_mve;

/* Channels per super-block: the group table (DW_SUPER / 8 * 128 bytes) and the transposed
 * path's weight table (DW_SUPER * 16 bytes) live in the scratch work area. */
#define DW_SUPER 64

static void dw_groups_mve(dw_group_mve* tab, const int32_t* bias, const int32_t* mult, const int32_t* shift,
                          int32_t n)
{
    for (int32_t i = 0; i < (n + 7) / 8 * 8; i++) {
        dw_group_mve* g = tab + i / 8;
        const int32_t lane = (i % 8) / 2, odd = i % 2;
        const int32_t valid = i < n;
        const int32_t sh = valid ? shift[i] : 0;
        (odd ? g->bias_o : g->bias_e)[lane] = valid ? bias[i] : 0;
        (odd ? g->mult_o : g->mult_e)[lane] = valid ? mult[i] : 0;
        (odd ? g->right_o : g->right_e)[lane] = sh < 0 ? sh : 0;
        (odd ? g->left_o : g->left_e)[lane] = sh > 0 ? sh : 0;
    }
}

/* TFLM MultiplyByQuantizedMultiplier on 4 lanes (the steps of CMSIS-NN's MVE requantization):
 * VQRDMULH = SaturatingRoundingDoublingHighMul; then RoundingDivideByPOT: nudge negative values
 * down by one so VRSHL's round-half-up becomes round-half-away-from-zero. The left shift is
 * skipped (no_left) when no channel of the layer has a positive shift, the usual case. */
static inline __attribute__((always_inline)) int32x4_t dw_requantize_mve(int32x4_t val, const int32_t* m,
                                                                         const int32_t* right, const int32_t* left,
                                                                         int32_t no_left, int32_t ozp,
                                                                         int32x4_t vmin, int32x4_t vmax)
{
    if (!no_left) val = vshlq_s32(val, vldrwq_s32(left));
    int32x4_t r = vqrdmulhq_s32(val, vldrwq_s32(m));
    const int32x4_t rs = vldrwq_s32(right);
    r = vqaddq_s32(r, vshrq_n_s32(vandq_s32(r, rs), 31));
    r = vaddq_n_s32(vrshlq_s32(r, rs), ozp);
    return vminq_s32(vmaxq_s32(r, vmin), vmax);
}

/* Requantize channels c..c+n-1 (n <= 8) from their even / odd accumulators; VMOVNB/VMOVNT put
 * them back in channel order for one narrowing store. */
static inline __attribute__((always_inline)) void dw_store8_mve(int8_t* out, int32x4_t even, int32x4_t odd,
                                                                const dw_group_mve* g, int32_t no_left,
                                                                int32_t ozp, int32x4_t vmin, int32x4_t vmax,
                                                                int32_t n)
{
    const int32x4_t re = dw_requantize_mve(even, g->mult_e, g->right_e, g->left_e, no_left, ozp, vmin, vmax);
    const int32x4_t ro = dw_requantize_mve(odd, g->mult_o, g->right_o, g->left_o, no_left, ozp, vmin, vmax);
    const int16x8_t r = vmovntq_s32(vmovnbq_s32(vreinterpretq_s16_s32(re), re), ro);
    if (n == 8)
        vstrbq_s16(out, r);
    else
        vstrbq_p_s16(out, r, vctp16q((uint32_t)n));
}

/* The taps of 16 channels (widening VLDRB needs r0-r7 bases: "l"): 16 instructions per tap (one low-overhead loop; in C, GCC keeps the
 * four loaded vectors live at once and spills an accumulator: 22). */
static inline __attribute__((always_inline)) void dw_taps16_mve(const int8_t* const* taps, int32_t ntaps,
                                                                const int8_t* wp, int32_t c, int32_t channels,
                                                                int32x4_t* e0, int32x4_t* o0, int32x4_t* e1,
                                                                int32x4_t* o1)
{
    register int32_t cnt __asm__("lr") = ntaps;
    int32x4_t a0 = *e0, a1 = *o0, a2 = *e1, a3 = *o1;
    const int8_t* xp;
    __asm__ volatile(
        "dls lr, lr\n\t"
        "1:\n\t"
        "ldr %[xp], [%[tp]], #4\n\t"
        "add %[xp], %[xp], %[c]\n\t"
        "vldrb.s16 q4, [%[xp]]\n\t"
        "vldrb.s16 q5, [%[wp]]\n\t"
        "vmullb.s16 q6, q4, q5\n\t"
        "vadd.i32 %q[a0], %q[a0], q6\n\t"
        "vmullt.s16 q6, q4, q5\n\t"
        "vadd.i32 %q[a1], %q[a1], q6\n\t"
        "vldrb.s16 q4, [%[xp], #8]\n\t"
        "vldrb.s16 q5, [%[wp], #8]\n\t"
        "vmullb.s16 q6, q4, q5\n\t"
        "vadd.i32 %q[a2], %q[a2], q6\n\t"
        "vmullt.s16 q6, q4, q5\n\t"
        "vadd.i32 %q[a3], %q[a3], q6\n\t"
        "add %[wp], %[wp], %[ch]\n\t"
        "le lr, 1b\n\t"
        : [tp] "+r"(taps), [wp] "+l"(wp), [cnt] "+r"(cnt), [xp] "=&l"(xp), [a0] "+w"(a0), [a1] "+w"(a1),
          [a2] "+w"(a2), [a3] "+w"(a3)
        : [c] "r"(c), [ch] "r"(channels)
        : "q4", "q5", "q6", "memory");
    *e0 = a0; *o0 = a1; *e1 = a2; *o1 = a3;
}

/* Channels [c0, c0 + n) of one output pixel. */
static void dw_pixel_mve(const int8_t* const* taps, int32_t ntaps, const int8_t* weight, const dw_group_mve* tab,
                         int8_t* out, int32_t c0, int32_t n, int32_t channels, int32_t ozp, int32x4_t vmin,
                         int32x4_t vmax, int32_t channel_block, int32_t no_left)
{
    const int8_t* const* const taps_end = taps + ntaps;
    int32_t c = 0;
    if (channel_block >= 16) {
        for (; c + 16 <= n; c += 16) {
            const dw_group_mve* g = tab + c / 8;
            int32x4_t e0 = vldrwq_s32(g[0].bias_e), o0 = vldrwq_s32(g[0].bias_o);
            int32x4_t e1 = vldrwq_s32(g[1].bias_e), o1 = vldrwq_s32(g[1].bias_o);
            dw_taps16_mve(taps, ntaps, weight + c0 + c, c0 + c, channels, &e0, &o0, &e1, &o1);
            dw_store8_mve(out + c, e0, o0, g, no_left, ozp, vmin, vmax, 8);
            dw_store8_mve(out + c + 8, e1, o1, g + 1, no_left, ozp, vmin, vmax, 8);
        }
    }
    for (; c < n; c += 8) { /* 8 channels, or the 1-7 of the tail (predicated: never read past it) */
        const dw_group_mve* g = tab + c / 8;
        const int32_t m = n - c < 8 ? n - c : 8;
        const mve_pred16_t p = vctp16q((uint32_t)m);
        int32x4_t e0 = vldrwq_s32(g->bias_e), o0 = vldrwq_s32(g->bias_o);
        const int8_t* wp = weight + c0 + c;
        for (const int8_t* const* tp = taps; tp != taps_end; tp++) {
            const int16x8_t x0 = vldrbq_z_s16(*tp + c0 + c, p), w0 = vldrbq_z_s16(wp, p);
            e0 = vaddq_s32(e0, vmullbq_int_s16(x0, w0));
            o0 = vaddq_s32(o0, vmulltq_int_s16(x0, w0));
            wp += channels;
        }
        dw_store8_mve(out + c, e0, o0, g, no_left, ozp, vmin, vmax, m);
    }
}

/* The whole layer, depth multiplier 1, TFLite records, more than DW_T_TAPS taps: per super-block
 * of DW_SUPER channels the group table (tab: scratch), then every output pixel (tap table as the
 * portable path). */
static void dw_layer_mve(const int8_t* input, const int8_t* weight, const int32_t* bias, const int32_t* mult,
                         const int32_t* shift, int8_t* output, const int8_t** taps, const int8_t* pad,
                         int32_t batches, int32_t in_h, int32_t in_w, int32_t in_c, int32_t out_h, int32_t out_w,
                         int32_t k_h, int32_t k_w, int32_t stride_h, int32_t stride_w, int32_t pad_top,
                         int32_t pad_left, int32_t dil_h, int32_t dil_w, int32_t ozp, int32_t amin, int32_t amax,
                         int32_t channel_block, dw_group_mve* tab)
{
    const int32_t ntaps = k_h * k_w, row_bytes = in_w * in_c;
    const int32x4_t vmin = vdupq_n_s32(amin), vmax = vdupq_n_s32(amax);
    int32_t no_left = 1; /* no channel needs the left shift (scale >= 1): skip it per vector */
    for (int32_t i = 0; i < in_c; i++) no_left &= shift[i] <= 0;
    for (int32_t c0 = 0; c0 < in_c; c0 += DW_SUPER) {
        const int32_t n = in_c - c0 < DW_SUPER ? in_c - c0 : DW_SUPER;
        dw_groups_mve(tab, bias + c0, mult + c0, shift + c0, n);
        int8_t* out = output + c0;
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
                    dw_pixel_mve(taps, ntaps, weight, tab, out, c0, n, in_c, ozp, vmin, vmax, channel_block,
                                 no_left);
                    out += in_c;
                }
            }
        }
    }
}

/* ---- transposed path (up to DW_T_TAPS taps: 3x3 at any stride / dilation, 1xN, ...) ----
 * Per output pixel and block of 16 channels the KH*KW tap vectors (16 channels each) are
 * transposed by VST4 into xt: group g of 4 taps at xt + 64 g holds, per channel c, the word
 * (tap 4g, 4g+1, 4g+2, 4g+3) at byte 4c. One gather (VLDRW, 4 word addresses xt + 4c + 64 g,
 * written back by +4 per channel) then loads channel c's taps as one int8x16 vector, and VMLADAV
 * against the channel's weight row (taps in the same order, zero past the last tap, built once
 * per super-block in wt) gives its accumulator: 3 instructions per channel per pixel instead of
 * a VMULL / VADD pair per 8 MACs and tap. The 4 accumulators of 4 channels are one vector for
 * the requantization (channel order, per-channel constants loaded straight from the records). */
#define DW_T_TAPS 16

/* VLDRW.U32 Qd, [Qn, #4]!: gather 4 words, then advance the 4 addresses by 4 bytes */
static inline __attribute__((always_inline)) int32x4_t dw_gather_wb4(uint32x4_t* addr)
{
    int32x4_t v;
    __asm__ volatile("vldrw.u32 %q0, [%q1, #4]!" : "=&w"(v), "+w"(*addr) : : "memory");
    return v;
}

/* Transpose one group of k <= 4 taps (the other slots: any bytes, their weights are 0) of m <= 16
 * channels at byte OFF of the tap pointers tp[0..k-1] into the 64 bytes at xt (VST40-43 of
 * q4-q7). m < 16: the loads are predicated (VCTP), so a short block never reads past its last
 * channel. */
#define DW_LD(i, r) "ldr %[" #r "], [%[tp], #" #i "]\n\t"
#define DW_VL(q, r) "vldrb.8 " q ", [%[" #r "], %[off]]\n\t"
#define DW_VLT(q, r) "vpst\n\tvldrbt.8 " q ", [%[" #r "], %[off]]\n\t"
#define DW_CTP "vctp.8 %[m]\n\t"
#define DW_ST4 "vst40.8 {q4, q5, q6, q7}, [%[xt]]\n\tvst41.8 {q4, q5, q6, q7}, [%[xt]]\n\t" \
               "vst42.8 {q4, q5, q6, q7}, [%[xt]]\n\tvst43.8 {q4, q5, q6, q7}, [%[xt]]\n\t"
#define DW_T_ASM(body)                                                                                   \
    __asm__ volatile(body : [p0] "=&r"(p0), [p1] "=&r"(p1), [p2] "=&r"(p2), [p3] "=&r"(p3)                \
                     : [tp] "r"(tp), [xt] "r"(xt), [off] "i"(OFF), [m] "r"(m) : "q4", "q5", "q6", "q7", "memory")
static inline __attribute__((always_inline)) void dw_transpose4(const int8_t* const* tp, const int32_t k, int8_t* xt,
                                                                const int32_t OFF, int32_t m)
{
    const int8_t *p0, *p1, *p2, *p3;
    if (m >= 16) {
        if (k >= 4)
            DW_T_ASM(DW_LD(0, p0) DW_LD(4, p1) DW_LD(8, p2) DW_LD(12, p3) DW_VL("q4", p0) DW_VL("q5", p1)
                         DW_VL("q6", p2) DW_VL("q7", p3) DW_ST4);
        else if (k == 3)
            DW_T_ASM(DW_LD(0, p0) DW_LD(4, p1) DW_LD(8, p2) DW_VL("q4", p0) DW_VL("q5", p1) DW_VL("q6", p2) DW_ST4);
        else if (k == 2)
            DW_T_ASM(DW_LD(0, p0) DW_LD(4, p1) DW_VL("q4", p0) DW_VL("q5", p1) DW_ST4);
        else
            DW_T_ASM(DW_LD(0, p0) DW_VL("q4", p0) DW_ST4);
    } else {
        if (k >= 4)
            DW_T_ASM(DW_CTP DW_LD(0, p0) DW_LD(4, p1) DW_LD(8, p2) DW_LD(12, p3) DW_VLT("q4", p0) DW_VLT("q5", p1)
                         DW_VLT("q6", p2) DW_VLT("q7", p3) DW_ST4);
        else if (k == 3)
            DW_T_ASM(DW_CTP DW_LD(0, p0) DW_LD(4, p1) DW_LD(8, p2) DW_VLT("q4", p0) DW_VLT("q5", p1) DW_VLT("q6", p2)
                         DW_ST4);
        else if (k == 2)
            DW_T_ASM(DW_CTP DW_LD(0, p0) DW_LD(4, p1) DW_VLT("q4", p0) DW_VLT("q5", p1) DW_ST4);
        else
            DW_T_ASM(DW_CTP DW_LD(0, p0) DW_VLT("q4", p0) DW_ST4);
    }
}
#undef DW_T_ASM
#undef DW_ST4
#undef DW_VLT
#undef DW_CTP
#undef DW_VL
#undef DW_LD

/* All taps of one block (3x3 unrolled). */
static inline __attribute__((always_inline)) void dw_transpose_taps(const int8_t* const* taps, int32_t ntaps,
                                                                    int8_t* xt, const int32_t OFF, int32_t m)
{
    if (ntaps == 9) {
        dw_transpose4(taps, 4, xt, OFF, m);
        dw_transpose4(taps + 4, 4, xt + 64, OFF, m);
        dw_transpose4(taps + 8, 1, xt + 128, OFF, m);
        return;
    }
    int32_t t = 0;
    for (; t + 4 <= ntaps; t += 4) dw_transpose4(taps + t, 4, xt + 16 * t, OFF, m);
    if (t + 3 == ntaps) dw_transpose4(taps + t, 3, xt + 16 * t, OFF, m);
    else if (t + 2 == ntaps) dw_transpose4(taps + t, 2, xt + 16 * t, OFF, m);
    else if (t + 1 == ntaps) dw_transpose4(taps + t, 1, xt + 16 * t, OFF, m);
}

/* q = m / 4 steps of 4 channels over the transposed block xt: 4 gathers + 4 weight rows + 4
 * VMLADAV, two VMOV into one vector (lanes (2, 0) then (3, 1)), bias, TFLM requantization (right
 * shift from the rt table: no channel of the layer shifts left), clamp, narrowing store; one
 * low-overhead loop, 28 instructions per 4 channels. */
static inline __attribute__((always_inline)) void dw_dot_t(int32_t q, const int8_t* wp, int8_t* xt, uint32x4_t goff,
                                                           const int32_t* bias, const int32_t* mult,
                                                           const int32_t* rt, int8_t* out, int32_t ozp,
                                                           int32x4_t vmin, int32x4_t vmax)
{
    uint32x4_t addr = vaddq_n_u32(goff, (uint32_t)xt - 4u);
    register int32_t a0 __asm__("r0");
    register int32_t a1 __asm__("r2");
    register int32_t a2 __asm__("r4");
    register int32_t a3 __asm__("r6");
    register int32_t cnt __asm__("lr") = q;
    __asm__ volatile(
        "dls lr, lr\n\t"
        "1:\n\t"
        "vldrw.u32 q0, [%q[addr], #4]!\n\t"
        "vldrb.8 q1, [%[wp]], #16\n\t"
        "vmladav.s8 %[a0], q0, q1\n\t"
        "vldrw.u32 q0, [%q[addr], #4]!\n\t"
        "vldrb.8 q1, [%[wp]], #16\n\t"
        "vmladav.s8 %[a1], q0, q1\n\t"
        "vldrw.u32 q0, [%q[addr], #4]!\n\t"
        "vldrb.8 q1, [%[wp]], #16\n\t"
        "vmladav.s8 %[a2], q0, q1\n\t"
        "vldrw.u32 q0, [%q[addr], #4]!\n\t"
        "vldrb.8 q1, [%[wp]], #16\n\t"
        "vmladav.s8 %[a3], q0, q1\n\t"
        "vmov q2[2], q2[0], %[a0], %[a2]\n\t"
        "vmov q2[3], q2[1], %[a1], %[a3]\n\t"
        "vldrw.32 q0, [%[bp]], #16\n\t"
        "vadd.i32 q2, q2, q0\n\t"
        "vldrw.32 q0, [%[mp]], #16\n\t"
        "vldrw.32 q1, [%[rp]], #16\n\t"
        "vqrdmulh.s32 q2, q2, q0\n\t"
        "vand q0, q2, q1\n\t"
        "vshr.s32 q0, q0, #31\n\t"
        "vqadd.s32 q2, q2, q0\n\t"
        "vrshl.s32 q2, q2, q1\n\t"
        "vadd.i32 q2, q2, %[ozp]\n\t"
        "vmax.s32 q2, q2, %q[vmin]\n\t"
        "vmin.s32 q2, q2, %q[vmax]\n\t"
        "vstrb.32 q2, [%[op]], #4\n\t"
        "le lr, 1b\n\t"
        : [addr] "+w"(addr), [wp] "+r"(wp), [bp] "+r"(bias), [rp] "+r"(rt), [mp] "+r"(mult), [op] "+l"(out),
          [a0] "=r"(a0), [a1] "=r"(a1), [a2] "=r"(a2), [a3] "=r"(a3), [cnt] "+r"(cnt), [ozp] "+r"(ozp)
        /* no GPR is input-only, so none can share a register with the pinned outputs a0-a3 */
        : [vmin] "w"(vmin), [vmax] "w"(vmax)
        : "q0", "q1", "q2", "memory");
}

/* One output pixel, the n channels (n a multiple of 4, <= DW_SUPER) of a super-block: per block
 * of 16 (the last one possibly of n % 16, predicated) the transposition at its immediate offset
 * from the tap pointers, then the dot products + requantization. wt / bias / mult / rt / out at
 * the super-block's first channel. */
static inline __attribute__((always_inline)) void dw_pixel_t(const int8_t* const* taps, int32_t ntaps, int32_t n,
                                                 const int8_t* wt, int8_t* xt, uint32x4_t goff, const int32_t* bias,
                                                 const int32_t* mult, const int32_t* rt, int8_t* out, int32_t ozp,
                                                 int32x4_t vmin, int32x4_t vmax)
{
#define DW_BLOCK(k)                                                                                          \
    if (n >= 16 * (k) + 16) {                                                                                \
        dw_transpose_taps(taps, ntaps, xt, 16 * (k), 16);                                                    \
        dw_dot_t(4, wt + 256 * (k), xt, goff, bias + 16 * (k), mult + 16 * (k), rt + 16 * (k), out + 16 * (k), \
                 ozp, vmin, vmax);                                                                           \
    } else {                                                                                                 \
        if (n > 16 * (k)) {                                                                                  \
            const int32_t m = n - 16 * (k);                                                                  \
            dw_transpose_taps(taps, ntaps, xt, 16 * (k), m);                                                 \
            dw_dot_t(m / 4, wt + 256 * (k), xt, goff, bias + 16 * (k), mult + 16 * (k), rt + 16 * (k),       \
                     out + 16 * (k), ozp, vmin, vmax);                                                       \
        }                                                                                                    \
        return;                                                                                              \
    }
    DW_BLOCK(0) DW_BLOCK(1) DW_BLOCK(2) DW_BLOCK(3)
#undef DW_BLOCK
}

/* count output pixels (or packed pixel groups) of a row whose tap pointers advance by step bytes
 * from one to the next; outputs out_step bytes apart. taps: the first one's table (advanced in
 * place). One call per run keeps the per-pixel bookkeeping in this small loop. */
static void __attribute__((noinline)) dw_run_t(const int8_t** taps, int32_t ntaps, int32_t n, int32_t count,
                                               int32_t step, int32_t out_step, const int8_t* wt, int8_t* xt,
                                               uint32x4_t goff, const int32_t* bias, const int32_t* mult,
                                               const int32_t* rt, int8_t* out, int32_t ozp, int32x4_t vmin,
                                               int32x4_t vmax)
{
    for (;;) {
        dw_pixel_t(taps, ntaps, n, wt, xt, goff, bias, mult, rt, out, ozp, vmin, vmax);
        if (--count == 0) return;
        out += out_step;
        for (int32_t t = 0; t < ntaps; t++) taps[t] += step;
    }
}

/* The whole layer, depth multiplier 1, TFLite records, up to DW_T_TAPS taps. area: the 16-byte
 * aligned scratch work area (wt: DW_SUPER x 16 weight rows, xt: 256 bytes of transposed patch,
 * rt: DW_SUPER right shifts, off: DW_T_TAPS tap offsets of an interior pixel). */
static void dw_layer_mve_t(const int8_t* input, const int8_t* weight, const int32_t* bias, const int32_t* mult,
                           const int32_t* shift, int8_t* output, const int8_t** taps, const int8_t* pad,
                           int8_t* area, int32_t batches, int32_t in_h, int32_t in_w, int32_t in_c, int32_t out_h,
                           int32_t out_w, int32_t k_h, int32_t k_w, int32_t stride_h, int32_t stride_w,
                           int32_t pad_top, int32_t pad_left, int32_t dil_h, int32_t dil_w, int32_t ozp, int32_t amin,
                           int32_t amax)
{
    int8_t* const wt = area;
    int8_t* const xt = wt + 16 * DW_SUPER;
    int32_t* const rt = (int32_t*)(void*)(xt + 256);
    int32_t* const off = rt + DW_SUPER;
    const int32_t ntaps = k_h * k_w, row_bytes = in_w * in_c;
    const int32_t last = (ntaps - 1) / 4; /* the last tap group; unused gather lanes repeat it */
    const uint32x4_t goff = vminq_u32(vmulq_n_u32(vidupq_n_u32(0, 1), 64), vdupq_n_u32(64u * (uint32_t)last));
    const int32x4_t vmin = vdupq_n_s32(amin), vmax = vdupq_n_s32(amax);
    const int32_t span_h = (k_h - 1) * dil_h, span_w = (k_w - 1) * dil_w;
    /* output columns [ox_lo, ox_hi) read no padded column */
    const int32_t ox_lo = (pad_left + stride_w - 1) / stride_w;
    const int32_t last_x = in_w - 1 - span_w + pad_left; /* ix0 + span_w < in_w <=> ox * stride_w <= last_x */
    int32_t ox_hi = last_x < 0 ? 0 : last_x / stride_w + 1;
    ox_hi = ox_hi > out_w ? out_w : ox_hi;
    for (int32_t ky = 0, t = 0; ky < k_h; ky++)
        for (int32_t kx = 0; kx < k_w; kx++) off[t++] = ky * dil_h * row_bytes + kx * dil_w * in_c;
    /* Packed pixels: with 4 or 8 channels and stride_w 1, one 16-byte load at a tap of output
     * pixel ox holds that tap for the 16 / in_c pixels ox, ox + 1, ... (consecutive input pixels),
     * so they run as one pixel of 16 "channels" (their outputs are contiguous too) over tables
     * repeated per pixel; where not all of them are free of padding, one pixel at a time. */
    const int32_t pack = (in_c == 4 || in_c == 8) && stride_w == 1 ? 16 / in_c : 1;
    int32_t* const bias_rep = (int32_t*)(void*)(wt + 256); /* pack > 1 only: wt uses 256 bytes */
    int32_t* const mult_rep = bias_rep + 16;
    for (int32_t c0 = 0; c0 < in_c; c0 += DW_SUPER) {
        const int32_t n = in_c - c0 < DW_SUPER ? in_c - c0 : DW_SUPER;
        const int32_t nrep = n * pack;
        /* weight rows: wt[16 c + t] = w[t][c0 + c % n], 0 past the last tap; right shifts */
        memset(wt, 0, (size_t)(16 * n));
        for (int32_t t = 0; t < ntaps; t++) {
            const int8_t* w = weight + t * in_c + c0;
            for (int32_t c = 0; c < n; c++) wt[16 * c + t] = w[c];
        }
        for (int32_t c = 0; c < n; c++) rt[c] = shift[c0 + c] < 0 ? shift[c0 + c] : 0;
        for (int32_t c = n; c < nrep; c++) { /* pack > 1: the copies */
            memcpy(wt + 16 * c, wt + 16 * (c - n), 16);
            rt[c] = rt[c - n];
        }
        for (int32_t c = 0; pack > 1 && c < nrep; c++) {
            bias_rep[c] = bias[c0 + c % n];
            mult_rep[c] = mult[c0 + c % n];
        }
        const int32_t* const bias_t = pack > 1 ? bias_rep : bias + c0;
        const int32_t* const mult_t = pack > 1 ? mult_rep : mult + c0;
        int8_t* out = output + c0;
        const int8_t* const pad_c0 = pad + c0; /* tap pointers point at channel c0 */
        for (int32_t b = 0; b < batches; b++) {
            const int8_t* in_c0 = input + b * in_h * row_bytes + c0;
            for (int32_t oy = 0; oy < out_h; oy++) {
                const int32_t iy0 = oy * stride_h - pad_top;
                const int32_t row_inside = iy0 >= 0 && iy0 + span_h < in_h;
                for (int32_t ox = 0; ox < out_w; ox++) {
                    const int32_t ix0 = ox * stride_w - pad_left;
                    if (row_inside && ox >= ox_lo && ox + pack <= ox_hi) {
                        /* a run of pixels (groups of pack) free of padding */
                        const int8_t* base = in_c0 + iy0 * row_bytes + ix0 * in_c;
                        const int32_t groups = (ox_hi - ox) / pack;
                        for (int32_t t = 0; t < ntaps; t++) taps[t] = base + off[t];
                        dw_run_t(taps, ntaps, pack > 1 ? 16 : n, groups, pack * stride_w * in_c, pack * in_c, wt, xt,
                                 goff, bias_t, mult_t, rt, out, ozp, vmin, vmax);
                        out += groups * pack * in_c;
                        ox += groups * pack - 1;
                        continue;
                    }
                    if (row_inside && ix0 >= 0 && ix0 + span_w < in_w) { /* no padded tap */
                        const int8_t* base = in_c0 + iy0 * row_bytes + ix0 * in_c;
                        for (int32_t t = 0; t < ntaps; t++) taps[t] = base + off[t];
                    } else {
                        int32_t t = 0;
                        for (int32_t ky = 0; ky < k_h; ky++) {
                            const int32_t iy = iy0 + ky * dil_h;
                            if ((uint32_t)iy >= (uint32_t)in_h) {
                                for (int32_t kx = 0; kx < k_w; kx++) taps[t++] = pad_c0;
                                continue;
                            }
                            const int8_t* row = in_c0 + iy * row_bytes;
                            for (int32_t kx = 0; kx < k_w; kx++) {
                                const int32_t ix = ix0 + kx * dil_w;
                                taps[t++] = (uint32_t)ix < (uint32_t)in_w ? row + ix * in_c : pad_c0;
                            }
                        }
                    }
                    dw_run_t(taps, ntaps, n, 1, 0, 0, wt, xt, goff, bias_t, mult_t, rt, out, ozp, vmin, vmax);
                    out += in_c;
                }
            }
        }
    }
}

/* Depth multiplier 1 with TFLite records takes dw_layer_mve; this only keeps the shared pixel loop's
 * call well-formed (ONNX float32 records and depth multipliers > 1 take dw_pixel_generic). */
static void dw_pixel_m1(const int8_t* const* taps, int32_t ntaps, const int8_t* weight, const int32_t* bias,
                        const int32_t* mult, const int32_t* shift, int8_t* out, int32_t channels,
                        int32_t ozp, int32_t amin, int32_t amax, int32_t channel_block)
{
    (void)channel_block;
    dw_pixel_generic(taps, ntaps, weight, bias, mult, shift, out, channels, 1, ozp, amin, amax);
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

/* ---- 3x3, depth multiplier 1, channels a multiple of 4, TFLite records: channel-blocked layer.
 * Blocks of 4 channels outside, output pixels inside: per block the 9 taps' weights are
 * sign-extended once into a stack table (even / odd channel halves, one LDRD per tap) and the
 * per-channel requantization decisions are hoisted, so a tap is LDR + 2 SXTB16 + LDRD + 4 SMLA
 * (8 instructions per 4 MACs, against 14 plus the tap table per pixel). The taps of a pixel are
 * addressed from one base pointer by the layer's row / column offsets (any stride, dilation);
 * a border pixel loads the input word only for an in-image tap, else the input zero point in
 * every byte (what the pad pixel of the generic path holds), so padding needs no table. */
typedef struct {
    int32_t w[9][2] __attribute__((aligned(8)));  /* tap t: SXTB16 of channels (c, c+2) and of (c+1, c+3) */
    int32_t bias[4];
    int32_t m2[4];     /* 2 * multiplier (dtmm_rq_high) */
    int32_t right[4];  /* right shift >= 1 */
} dw3_block_dsp;

/* acc[0..3] += the 9 taps of channels c..c+3 whose top-left input word is at base; the taps of a
 * row are dx bytes apart, the rows dy. 77 instructions: per tap LDR + 2 SXTB16 + LDRD (the
 * weight table at fixed offsets) + 4 SMLA, per row 2 pointer adds (in C, GCC spills the
 * accumulators: ~130). */
static inline __attribute__((always_inline)) void dw3_taps_dsp(const int8_t* base, int32_t dx, int32_t dy,
                                                                const dw3_block_dsp* blk, int32_t* acc)
{
    int32_t a0 = acc[0], a1 = acc[1], a2 = acc[2], a3 = acc[3];
    const int32_t dyx = dy - dx;
    int32_t x, xe, we, wo;
#define DW3_MAC(off)                                          \
    "sxtb16 %[xe], %[x]\n\t"                                  \
    "sxtb16 %[x], %[x], ror #8\n\t"                           \
    "ldrd %[we], %[wo], [%[wt], #" #off "]\n\t"               \
    "smlabb %[a0], %[xe], %[we], %[a0]\n\t"                   \
    "smlatt %[a2], %[xe], %[we], %[a2]\n\t"                   \
    "smlabb %[a1], %[x], %[wo], %[a1]\n\t"                    \
    "smlatt %[a3], %[x], %[wo], %[a3]\n\t"
#define DW3_ROW(o0, o1, o2)                                   \
    "ldr %[x], [%[r]]\n\t" DW3_MAC(o0)                        \
    "ldr %[x], [%[r], %[dx]]\n\t" DW3_MAC(o1)                 \
    "add %[r], %[r], %[dx]\n\t"                               \
    "ldr %[x], [%[r], %[dx]]\n\t" DW3_MAC(o2)
    __asm__("" : : : "memory");
    __asm__ volatile(
        DW3_ROW(0, 8, 16)
        "add %[r], %[r], %[dyx]\n\t"
        DW3_ROW(24, 32, 40)
        "add %[r], %[r], %[dyx]\n\t"
        DW3_ROW(48, 56, 64)
        : [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3), [r] "+r"(base), [x] "=&r"(x),
          [xe] "=&r"(xe), [we] "=&r"(we), [wo] "=&r"(wo)
        : [dx] "r"(dx), [dyx] "r"(dyx), [wt] "r"(blk->w)
        : "memory");
#undef DW3_ROW
#undef DW3_MAC
    acc[0] = a0; acc[1] = a1; acc[2] = a2; acc[3] = a3;
}

/* Requantize channels c..c+3 of one pixel (records checked by dw3_records_fast). CLAMP: an
 * activation range narrower than int8. */
static inline __attribute__((always_inline)) void dw3_store_dsp(const int CLAMP, const int32_t* acc,
                                                                 const dw3_block_dsp* blk, int8_t* out, int32_t ozp,
                                                                 int32_t amin, int32_t amax)
{
#define DW3_OUT(i)                                                                                    \
    do {                                                                                              \
        int32_t v_ = dtmm_rq_sat8(dtmm_rq_rdbp(dtmm_rq_high(acc[i], blk->m2[i]), blk->right[i]) + ozp); \
        if (CLAMP) v_ = dtmm_dwfc_clamp_s8(v_, amin, amax);                                           \
        out[i] = (int8_t)v_;                                                                          \
    } while (0)
    DW3_OUT(0); DW3_OUT(1); DW3_OUT(2); DW3_OUT(3);
#undef DW3_OUT
}

static inline __attribute__((always_inline)) void dw3_block_rows_dsp(
    const int CLAMP, const int8_t* in_b, int8_t* out, const dw3_block_dsp* blk, int32_t in_h, int32_t in_w,
    int32_t in_c, int32_t out_h, int32_t out_w, int32_t stride_h, int32_t stride_w, int32_t pad_top,
    int32_t pad_left, int32_t dil_h, int32_t dil_w, int32_t pad4, int32_t ozp, int32_t amin, int32_t amax)
{
    const int32_t dx = dil_w * in_c, dy = dil_h * in_w * in_c, step = stride_w * in_c;
    /* output columns whose 3 taps are all in the image: [ox_lo, ox_hi) */
    int32_t ox_lo = (pad_left + stride_w - 1) / stride_w;
    int32_t ox_hi = (in_w - 2 * dil_w + pad_left - 1) / stride_w + 1;
    if (in_w - 2 * dil_w + pad_left - 1 < 0) ox_hi = 0;
    if (ox_hi > out_w) ox_hi = out_w;
    if (ox_lo > ox_hi) ox_lo = ox_hi;
    for (int32_t oy = 0; oy < out_h; oy++) {
        const int32_t iy0 = oy * stride_h - pad_top;
        /* which of the 3 input rows are in the image */
        const int32_t y0 = (uint32_t)iy0 < (uint32_t)in_h, y1 = (uint32_t)(iy0 + dil_h) < (uint32_t)in_h,
                      y2 = (uint32_t)(iy0 + 2 * dil_h) < (uint32_t)in_h;
        const int8_t* row = in_b + iy0 * in_w * in_c; /* only dereferenced through in-image taps */
        int8_t* o = out + oy * out_w * in_c;
        for (int32_t ox = 0; ox < out_w; ox++, o += in_c) {
            const int32_t ix0 = ox * stride_w - pad_left;
            int32_t acc[4] = {blk->bias[0], blk->bias[1], blk->bias[2], blk->bias[3]};
            if (y0 && y1 && y2 && ox == ox_lo && ox < ox_hi) {
                /* the interior run of this row: no per-tap checks */
                const int8_t* base = row + ix0 * in_c;
                for (; ox < ox_hi; ox++, o += in_c, base += step) {
                    acc[0] = blk->bias[0]; acc[1] = blk->bias[1]; acc[2] = blk->bias[2]; acc[3] = blk->bias[3];
                    dw3_taps_dsp(base, dx, dy, blk, acc);
                    dw3_store_dsp(CLAMP, acc, blk, o, ozp, amin, amax);
                }
                ox--; o -= in_c;
                continue;
            }
            /* a border pixel: its 3x3 words of these 4 channels copied into a patch, the
             * out-of-image ones as the zero-point word */
            int32_t patch[9];
            const int8_t* p = row + ix0 * in_c;
            const int32_t x0 = (uint32_t)ix0 < (uint32_t)in_w, x1 = (uint32_t)(ix0 + dil_w) < (uint32_t)in_w,
                          x2 = (uint32_t)(ix0 + 2 * dil_w) < (uint32_t)in_w;
#define DW3_PATCH(ky, kx) patch[(ky) * 3 + (kx)] = (y##ky && x##kx) ? dw_read_s8x4(p + (ky) * dy + (kx) * dx) : pad4
            DW3_PATCH(0, 0); DW3_PATCH(0, 1); DW3_PATCH(0, 2);
            DW3_PATCH(1, 0); DW3_PATCH(1, 1); DW3_PATCH(1, 2);
            DW3_PATCH(2, 0); DW3_PATCH(2, 1); DW3_PATCH(2, 2);
#undef DW3_PATCH
            dw3_taps_dsp((const int8_t*)patch, 4, 12, blk, acc);
            dw3_store_dsp(CLAMP, acc, blk, o, ozp, amin, amax);
        }
    }
}

/* Every channel a normalised TFLite record with a right shift (multiplier >= 2^30, shift < 0):
 * what dw3_layer_dsp's requantization assumes; else (a zero multiplier, a scale >= 0.5) the
 * layer takes the generic path. */
static int32_t dw3_records_fast(const int32_t* mult, const int32_t* shift, int32_t n)
{
    int32_t ok = 1;
    for (int32_t i = 0; i < n; i++) ok &= (mult[i] >= (1 << 30)) & (shift[i] < 0);
    return ok;
}

static void dw3_layer_dsp(const int8_t* input, const int8_t* weight, const int32_t* bias, const int32_t* mult,
                          const int32_t* shift, int8_t* output, int32_t batches, int32_t in_h, int32_t in_w,
                          int32_t in_c, int32_t out_h, int32_t out_w, int32_t stride_h, int32_t stride_w,
                          int32_t pad_top, int32_t pad_left, int32_t dil_h, int32_t dil_w, int32_t izp, int32_t ozp,
                          int32_t amin, int32_t amax)
{
    dw3_block_dsp blk;
    const int32_t pad4 = (int32_t)((uint32_t)(uint8_t)izp * 0x01010101u);
    const int32_t clamp = !(amin == -128 && amax == 127);
    for (int32_t c = 0; c < in_c; c += 4) {
        for (int32_t t = 0; t < 9; t++) {
            const int32_t wv = dw_read_s8x4(weight + t * in_c + c);
            blk.w[t][0] = (int32_t)__sxtb16(wv);
            blk.w[t][1] = dw_sxtb16_ror8(wv);
        }
        for (int32_t i = 0; i < 4; i++) {
            blk.bias[i] = bias[c + i];
            blk.m2[i] = (int32_t)((uint32_t)mult[c + i] << 1);
            blk.right[i] = -shift[c + i];
        }
        for (int32_t b = 0; b < batches; b++) {
            const int8_t* in_b = input + b * in_h * in_w * in_c + c;
            int8_t* out = output + b * out_h * out_w * in_c + c;
#define DW3_ROWS(CL)                                                                                        \
    dw3_block_rows_dsp(CL, in_b, out, &blk, in_h, in_w, in_c, out_h, out_w, stride_h, stride_w,        \
                       pad_top, pad_left, dil_h, dil_w, pad4, ozp, amin, amax)
            if (!clamp) DW3_ROWS(0);
            else DW3_ROWS(1);
#undef DW3_ROWS
        }
    }
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
#if defined(DTMM_DW_MVE)
    if (ch_mult == 1 && shift[0] != DTMM_REQUANT_F32) { /* ONNX float32 records: the scalar pixel */
        int8_t* area = (int8_t*)(((uintptr_t)(pad + ((in_c + 3) & ~3)) + 15u) & ~(uintptr_t)15u);
        int32_t no_left = 1, c4 = (in_c % 4) == 0;
        for (int32_t i = 0; i < in_c; i++) no_left &= shift[i] <= 0;
        if (ntaps <= DW_T_TAPS && no_left && c4) { /* the usual layer */
            dw_layer_mve_t(input, weight, bias, mult, shift, output, taps, pad, area, batches, in_h, in_w, in_c,
                           out_h, out_w, k_h, k_w, stride_h, stride_w, pad_top, pad_left, dil_h, dil_w, output_zp,
                           act_min, act_max);
        } else {
            dw_layer_mve(input, weight, bias, mult, shift, output, taps, pad, batches, in_h, in_w, in_c, out_h,
                         out_w, k_h, k_w, stride_h, stride_w, pad_top, pad_left, dil_h, dil_w, output_zp, act_min,
                         act_max, channel_block, (dw_group_mve*)(void*)area);
        }
        return;
    }
#elif defined(DTMM_DW_DSP)
    if (ch_mult == 1 && k_h == 3 && k_w == 3 && (in_c & 3) == 0 && !DTMM_IS_F32_RECORD(shift[0]) &&
        dw3_records_fast(mult, shift, in_c)) {
        dw3_layer_dsp(input, weight, bias, mult, shift, output, batches, in_h, in_w, in_c, out_h, out_w, stride_h,
                      stride_w, pad_top, pad_left, dil_h, dil_w, input_zp, output_zp, act_min, act_max);
        return;
    }
#endif

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
