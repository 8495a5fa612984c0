/* int8 elementwise ADD of two same-shape tensors, bit-exact with TFLM's
 * reference_integer_ops::AddFunc (CMSIS-NN arm_elementwise_add_s8 style). Called from
 * dtmm_tvm/ops/add.py (T.call_extern) for C targets when both inputs have the output's shape.
 *
 * Per element (all shifts <= 0, every multiply TFLM's MultiplyByQuantizedMultiplierSmallerThanOneExp
 * = RoundingDivideByPOT(SaturatingRoundingDoublingHighMul(a, m), -shift)):
 *     s_i = MBQM((x_i + in_off_i) << left_shift, m_i, sh_i)            i = 1, 2
 *     out = clamp(MBQM(s_1 + s_2, out_m, out_sh) + out_off, act_min, act_max)
 *
 * Exactness notes
 *  - SRDHM(a, m) = floor((a * m + 2^30) / 2^31) for every int32 product (gemmlowp's sign dependent
 *    nudge with truncating division equals this floor; the only saturating case a = m = INT32_MIN
 *    cannot occur because m >= 0). That is (2a * m + 2^31) >> 32, i.e.
 *      MVE: VQRDMULH(a, m)  (its doubling-rounding high half is exactly this);
 *      DSP: SMMULR(2a, m)   when 2a does not overflow. With left_shift <= 22 (TFLM: 20) and
 *           |x + off| <= 255, |2 * (x + off) << left_shift| < 2^31; every m_i encodes a real
 *           multiplier <= 0.5 so |s_i| <= 255 * 2^(left_shift - 1) + 1 and |2 (s_1 + s_2)| < 2^31.
 *  - RoundingDivideByPOT(h, e) (round half away from zero), e >= 1:
 *      (h - (h < 0) + 2^(e-1)) >> e; e = 0 is the identity. Round half up, (h + 2^(e-1)) >> e
 *      (MVE VRSHL by -e), differs only at ties h = 2^(e-1) (mod 2^e) with h < 0.
 *  - Half multiplier: TFLM's larger-scale input always has m = 2^30, shift 0 (real 0.5, exactly
 *    representable), and then for left_shift >= 1 SRDHM((x + off) << ls, 2^30) =
 *    floor((x + off) * 2^(ls-1) + 1/2) = (x + off) << (ls - 1): no multiply, no rounding.
 *  - Fixup from a proxy: for m >= 0, SRDHM(p, m) has p's sign or is 0, and h = 0 is never a tie
 *    for e >= 1, so the fixup -(p < 0) may be taken from the multiply's operand p instead of h.
 *
 * Paths: MVE (Cortex-M55): 4 int32 lanes per vector (widening VLDRB.S32 loads, narrowing
 * VSTRB.32 store), an unpredicated loop over size / 4 vectors, the last size % 4 elements in the
 * scalar loop. Input 1 is made the half-multiplier one (s_1 + s_2 is symmetric), so per vector:
 *      s_1 = VMLAS(x1, 2^(ls-1), off1 << (ls-1))       one op (both inputs half: VADD x1 + x2, VMLAS)
 *      b   = VMLAS(x2, 2^ls, off2 << ls)
 *      s_2 = VRSHL(VQRDMLAH(b >> 31, b, m_2), -e_2)     fixup from b; VQRDMLAH adds it to SRDHM
 *      out = VQRDMLASH(s_1 + s_2, out_m, 2^(e-1) + out_off << e) >> e   (VSHL by -e: floor)
 *    the last line is round half up plus the offset in one op; exact when act_min >= out_off (a
 *    negative quotient gives at most out_off with either rounding and is clamped to act_min: any
 *    ReLU) or e = 0. With act_min = -128, act_max = 127 the clamp is int8 saturation: VQSHL by
 *    24 - e then VSHR #24 (saturating to int32 then taking the top byte clamps exactly), else
 *    VSHL + VMAX/VMIN. Otherwise the exact form: VQRDMLAH(sum >> 31, sum, out_m), VRSHL, VADD
 *    out_off, VMAX/VMIN. No step saturates: |x + off| <= 255, ls <= 22 give |s_i| < 2^29,
 *    |sum| < 2^30, |SRDHM(sum, out_m)| < 2^30 and, for e <= 22 and |out_off| <= 128,
 *    |2^(e-1) + out_off << e| <= 2^29 + 2^21. TFLM's int8 ADD (ls 20) always qualifies for one
 *    of the six loops (each its own function, chosen once per call); anything else (ls 0, no
 *    input with the half multiplier, offsets beyond +-128) takes the scalar loop.
 *    ResNet-8 residual ADDs (ReLU, output zero point -128): 13 instructions per 4 elements.
 * DSP (Cortex-M4/M7): 4 elements per word, offsets added to both byte lanes at once with SXTAB16,
 * SMMULR multiplies, the 4 results packed back into a word and clamped with SSUB8/SEL.
 * Portable C: the scalar formula (what host tests run).
 */
#include <stdint.h>

#include "dtmm_kernels.h"

#if defined(DTMM_ISA_MVE)
#include <arm_mve.h>
#define DTMM_ADD_MVE 1
#elif defined(DTMM_ISA_DSP)
#include <arm_acle.h>
#define DTMM_ADD_DSP 1
#endif

/* Portable exact helpers (64-bit products; used by the portable path and the tails). */
static inline int32_t add_srdhm(int32_t a, int32_t m)
{
    return (int32_t)(((int64_t)a * (int64_t)m + ((int64_t)1 << 30)) >> 31);
}

static inline int32_t add_rdbp(int32_t h, int32_t e)
{
    return e <= 0 ? h : dtmm_rdbp(h, e);
}

static inline int8_t add_one(int32_t a, int32_t b, int32_t in1_off, int32_t m1, int32_t e1, int32_t in2_off,
                             int32_t m2, int32_t e2, int32_t out_off, int32_t out_m, int32_t out_e,
                             int32_t left_shift, int32_t act_min, int32_t act_max)
{
    const int32_t s1 = add_rdbp(add_srdhm((int32_t)((uint32_t)(a + in1_off) << left_shift), m1), e1);
    const int32_t s2 = add_rdbp(add_srdhm((int32_t)((uint32_t)(b + in2_off) << left_shift), m2), e2);
    int32_t r = add_rdbp(add_srdhm(s1 + s2, out_m), out_e) + out_off;
    r = r < act_min ? act_min : r;
    r = r > act_max ? act_max : r;
    return (int8_t)r;
}

#if defined(DTMM_ADD_MVE)
/* Forms of the MVE loop, chosen once per call (see the exactness notes). Input 1 always has the
 * half multiplier (2^30, shift 0). */
#define ADD_MVE_IN2_HALF 0  /* input 2 too: s_1 + s_2 = (x1 + x2 + off1 + off2) << (ls - 1) */
#define ADD_MVE_IN2_GEN 1   /* input 2: any multiplier >= 0, shift <= -1 */
#define ADD_MVE_OUT_SAT 0   /* rounding half up, clamp = int8 saturation (VQSHL, VSHR #24) */
#define ADD_MVE_OUT_CLAMP 1 /* rounding half up, clamp with VMAX / VMIN */
#define ADD_MVE_OUT_EXACT 2 /* rounding half away from zero (fixup from the sum's sign) */

/* One call's operands: n4 vectors of 4 elements; half = 2^(ls-1), c1 = off1 * half (HALF form:
 * (off1 + off2) * half); pow2 = 2^ls, c2 = off2 * 2^ls, m2, e2 >= 1 (GEN form); out_c = 2^(out_e-1)
 * (0 if out_e = 0) + out_off * 2^out_e (SAT / CLAMP forms). */
struct add_mve_args {
    const int8_t *x1, *x2;
    int8_t* out;
    int32_t n4, half, c1, pow2, c2, m2, e2, out_m, out_e, out_c, out_off, act_min, act_max;
};

/* The unpredicated loop of one form (each form is its own function below: with every operand in
 * a register, the loop has no spills). */
static inline __attribute__((always_inline)) void add_mve_loop(const struct add_mve_args* p, const int in2_form,
                                                               const int out_form)
{
    const int8_t* x1 = p->x1;
    const int8_t* x2 = p->x2;
    int8_t* out = p->out;
    const int32_t n4 = p->n4, c1 = p->c1, c2 = p->c2, m2 = p->m2, e2 = p->e2, out_m = p->out_m, out_e = p->out_e;
    const int32_t out_c = p->out_c, out_off = p->out_off;
    const int32x4_t v_half = vdupq_n_s32(p->half);
    const int32x4_t v_pow2 = vdupq_n_s32(p->pow2);
    const int32x4_t v_out_m = vdupq_n_s32(out_m);
    const int32x4_t v_lo = vdupq_n_s32(p->act_min);
    const int32x4_t v_hi = vdupq_n_s32(p->act_max);
    for (int32_t i = 0; i < n4; i++) {
        const int32x4_t a = vldrbq_s32(x1);
        const int32x4_t b = vldrbq_s32(x2);
        x1 += 4;
        x2 += 4;
        int32x4_t sum;
        if (in2_form == ADD_MVE_IN2_HALF) {
            sum = vmlasq_n_s32(vaddq_s32(a, b), v_half, c1);
        } else {
            const int32x4_t b2 = vmlasq_n_s32(b, v_pow2, c2);                 /* (x2 + off2) << ls */
            const int32x4_t h2 = vqrdmlahq_n_s32(vshrq_n_s32(b2, 31), b2, m2); /* fixup + SRDHM */
            sum = vaddq_s32(vmlasq_n_s32(a, v_half, c1), vrshlq_n_s32(h2, -e2));
        }
        int32x4_t r;
        if (out_form == ADD_MVE_OUT_EXACT) {
            r = vqrdmlahq_n_s32(vshrq_n_s32(sum, 31), sum, out_m);
            r = vaddq_n_s32(vrshlq_n_s32(r, -out_e), out_off);
        } else {
            r = vqrdmlashq_n_s32(sum, v_out_m, out_c); /* SRDHM(sum, out_m) + out_c */
        }
        if (out_form == ADD_MVE_OUT_SAT) {
            r = vshrq_n_s32(vqshlq_r_s32(r, 24 - out_e), 24);
        } else {
            if (out_form == ADD_MVE_OUT_CLAMP)
                r = vshlq_r_s32(r, -out_e); /* arithmetic: floor */
            r = vminq_s32(vmaxq_s32(r, v_lo), v_hi);
        }
        vstrbq_s32(out, r);
        out += 4;
    }
}

#define ADD_MVE_FORM(NAME, IN2, OUT) \
    static __attribute__((noinline)) void NAME(const struct add_mve_args* p) { add_mve_loop(p, IN2, OUT); }
ADD_MVE_FORM(add_mve_half_sat, ADD_MVE_IN2_HALF, ADD_MVE_OUT_SAT)
ADD_MVE_FORM(add_mve_half_clamp, ADD_MVE_IN2_HALF, ADD_MVE_OUT_CLAMP)
ADD_MVE_FORM(add_mve_half_exact, ADD_MVE_IN2_HALF, ADD_MVE_OUT_EXACT)
ADD_MVE_FORM(add_mve_gen_sat, ADD_MVE_IN2_GEN, ADD_MVE_OUT_SAT)
ADD_MVE_FORM(add_mve_gen_clamp, ADD_MVE_IN2_GEN, ADD_MVE_OUT_CLAMP)
ADD_MVE_FORM(add_mve_gen_exact, ADD_MVE_IN2_GEN, ADD_MVE_OUT_EXACT)

/* The MVE loop over the first 4 * (size / 4) elements when the parameters are in the ranges the
 * exactness notes cover (always for TFLM's int8 ADD); returns the number of elements done. */
static int32_t add_mve(const int8_t* x1, const int8_t* x2, int8_t* out, int32_t size, int32_t off1, int32_t m1,
                       int32_t e1, int32_t off2, int32_t m2, int32_t e2, int32_t out_off, int32_t out_m,
                       int32_t out_e, int32_t ls, int32_t act_min, int32_t act_max)
{
    const int32_t n4 = size >> 2;
    if (!(m1 == (1 << 30) && e1 == 0)) { /* s_1 + s_2 is symmetric: input 1 is the half-multiplier one */
        const int8_t* xt = x1;
        int32_t t = off1;
        x1 = x2, x2 = xt;
        off1 = off2, off2 = t;
        t = m1, m1 = m2, m2 = t;
        t = e1, e1 = e2, e2 = t;
    }
    const int half2 = m2 == (1 << 30) && e2 == 0;
    if (n4 == 0 || !(m1 == (1 << 30) && e1 == 0) || !(half2 || (m2 >= 0 && e2 >= 1 && e2 <= 31)) || ls < 1 ||
        ls > 22 || off1 < -128 || off1 > 128 || off2 < -128 || off2 > 128 || out_off < -128 || out_off > 128 ||
        out_m < 0 || out_e < 0 || out_e > 31)
        return 0;
    const int32_t half = 1 << (ls - 1);
    /* round half up is exact when negative results are clamped anyway or nothing is rounded */
    const int up = out_e == 0 || (act_min >= out_off && out_e <= 22);
    const int sat = up && act_min <= -128 && act_max >= 127;
    const struct add_mve_args args = {x1, x2, out, n4, half, half2 ? (off1 + off2) * half : off1 * half, 1 << ls,
                                      off2 * (1 << ls), m2, e2, out_m, out_e,
                                      up ? (out_e > 0 ? 1 << (out_e - 1) : 0) + out_off * (1 << out_e) : 0,
                                      out_off, act_min, act_max};
    if (half2)
        (sat ? add_mve_half_sat : up ? add_mve_half_clamp : add_mve_half_exact)(&args);
    else
        (sat ? add_mve_gen_sat : up ? add_mve_gen_clamp : add_mve_gen_exact)(&args);
    return 4 * n4;
}
#endif

#if defined(DTMM_ADD_DSP)
static inline int32_t add_smmulr(int32_t a, int32_t b)
{
    int32_t r;
    __asm__("smmulr %0, %1, %2" : "=r"(r) : "r"(a), "r"(b));
    return r;
}

/* off + SXTB16(v ROR 8) in one instruction (GCC does not fuse the rotate into __sxtab16). */
static inline int32_t add_sxtab16_ror8(int32_t off, int32_t v)
{
    int32_t r;
    __asm__("sxtab16 %0, %1, %2, ror #8" : "=r"(r) : "r"(off), "r"(v));
    return r;
}

static inline int32_t add_read_s8x4(const int8_t* p)
{
    int32_t v;
    __builtin_memcpy(&v, p, 4); /* one LDR: unaligned access is allowed on v7E-M */
    return v;
}

/* RoundingDivideByPOT for e >= 1 (ZERO: e == 0, the identity), round = 2^(e-1). */
#define ADD_RDBP(h, e, round, ZERO) ((ZERO) ? (h) : (((h) + ((h) >> 31) + (round)) >> (e)))

/* One element from the doubled SMMULR operands of both inputs; the result saturated to int8. */
static inline __attribute__((always_inline)) int32_t add_dsp_elem(int32_t a2, int32_t b2, int32_t m1, int32_t e1,
                                                                  int32_t r1, int32_t m2, int32_t e2, int32_t r2,
                                                                  int32_t out_m, int32_t out_e, int32_t ro,
                                                                  int32_t out_off, const int zero1, const int zero2)
{
    const int32_t h1 = add_smmulr(a2, m1);
    const int32_t h2 = add_smmulr(b2, m2);
    const int32_t s1 = ADD_RDBP(h1, e1, r1, zero1);
    const int32_t s2 = ADD_RDBP(h2, e2, r2, zero2);
    const int32_t h = add_smmulr((s1 + s2) * 2, out_m);
    return __ssat(((h + (h >> 31) + ro) >> out_e) + out_off, 8);
}

/* n4 words of 4 elements. Each 16-bit SXTAB16 lane holds x + off (|.| <= 255); it is moved to
 * bits [sl, 32) of a register, i.e. (x + off) << (left_shift + 1): the doubled SMMULR operand
 * (see the exactness notes). zero1/zero2 (compile-time after inlining): input shift is 0. */
static inline __attribute__((always_inline)) void add_dsp_loop(
    const int8_t* x1, const int8_t* x2, int8_t* out, int32_t n4, int32_t in1_off, int32_t m1, int32_t e1,
    int32_t in2_off, int32_t m2, int32_t e2, int32_t out_off, int32_t out_m, int32_t out_e, int32_t left_shift,
    int32_t act_min, int32_t act_max, const int zero1, const int zero2)
{
    const int32_t off1 = (int32_t)(((uint32_t)in1_off & 0xffffu) * 0x10001u);
    const int32_t off2 = (int32_t)(((uint32_t)in2_off & 0xffffu) * 0x10001u);
    const int32_t lo4 = (int32_t)(((uint32_t)act_min & 0xffu) * 0x01010101u);
    const int32_t hi4 = (int32_t)(((uint32_t)act_max & 0xffu) * 0x01010101u);
    const int32_t r1 = e1 > 0 ? (int32_t)(1u << (e1 - 1)) : 0;
    const int32_t r2 = e2 > 0 ? (int32_t)(1u << (e2 - 1)) : 0;
    const int32_t ro = (int32_t)(1u << (out_e - 1)); /* out_e >= 1 (checked by the caller) */
    const int32_t sl = left_shift + 1;     /* lane value -> doubled SMMULR operand */
    const int32_t sh_top = sl - 16;        /* top lane: (v & 0xffff0000) << (sl - 16) */
    for (int32_t i = 0; i < n4; i++) {
        const int32_t a = add_read_s8x4(x1 + 4 * i);
        const int32_t b = add_read_s8x4(x2 + 4 * i);
        const int32_t a_ev = (int32_t)__sxtab16(off1, a);                     /* x0+o, x2+o */
        const int32_t a_od = add_sxtab16_ror8(off1, a); /* x1, x3 */
        const int32_t b_ev = (int32_t)__sxtab16(off2, b);
        const int32_t b_od = add_sxtab16_ror8(off2, b);
        const int32_t r0 = add_dsp_elem(a_ev << sl, b_ev << sl, m1, e1, r1, m2, e2, r2, out_m, out_e, ro, out_off,
                                        zero1, zero2);
        const int32_t r1_ = add_dsp_elem(a_od << sl, b_od << sl, m1, e1, r1, m2, e2, r2, out_m, out_e, ro, out_off,
                                         zero1, zero2);
        const int32_t r2_ = add_dsp_elem((int32_t)(((uint32_t)a_ev & 0xffff0000u) << sh_top),
                                         (int32_t)(((uint32_t)b_ev & 0xffff0000u) << sh_top), m1, e1, r1, m2, e2,
                                         r2, out_m, out_e, ro, out_off, zero1, zero2);
        const int32_t r3_ = add_dsp_elem((int32_t)(((uint32_t)a_od & 0xffff0000u) << sh_top),
                                         (int32_t)(((uint32_t)b_od & 0xffff0000u) << sh_top), m1, e1, r1, m2, e2,
                                         r2, out_m, out_e, ro, out_off, zero1, zero2);
        const int32_t res[4] = {r0, r1_, r2_, r3_};
        /* pack elements 0..3 into one word (BFI) */
        int32_t w = (int32_t)(((uint32_t)res[0] & 0xffu) | (((uint32_t)res[1] & 0xffu) << 8) |
                              (((uint32_t)res[2] & 0xffu) << 16) | ((uint32_t)res[3] << 24));
        (void)__ssub8(w, lo4); /* GE per byte where w >= act_min */
        w = (int32_t)__sel(w, lo4);
        (void)__ssub8(hi4, w); /* GE where act_max >= w */
        w = (int32_t)__sel(w, hi4);
        __builtin_memcpy(out + 4 * i, &w, 4);
    }
}
#endif

void dtmm_add_s8(int8_t* input1, int8_t* input2, int8_t* output, int32_t size, int32_t input1_offset,
                 int32_t input1_multiplier, int32_t input1_shift, int32_t input2_offset, int32_t input2_multiplier,
                 int32_t input2_shift, int32_t output_offset, int32_t output_multiplier, int32_t output_shift,
                 int32_t left_shift, int32_t act_min, int32_t act_max)
{
    const int32_t e1 = -input1_shift, e2 = -input2_shift, eo = -output_shift;
    int32_t i = 0;
#if defined(DTMM_ADD_MVE)
    i = add_mve(input1, input2, output, size, input1_offset, input1_multiplier, e1, input2_offset, input2_multiplier,
                e2, output_offset, output_multiplier, eo, left_shift, act_min, act_max);
#elif defined(DTMM_ADD_DSP)
    {
        /* the lane layout below needs 16 <= left_shift + 1 <= 22 (TFLM's int8 ADD: 20); an output
         * shift of 0 (output scale < 2^-19 input scale) takes the portable loop */
        const int32_t n4 = (left_shift >= 15 && left_shift <= 21 && eo >= 1) ? size >> 2 : 0;
        if (n4 > 0) {
            if (e1 == 0 && e2 == 0)
                add_dsp_loop(input1, input2, output, n4, input1_offset, input1_multiplier, e1, input2_offset,
                             input2_multiplier, e2, output_offset, output_multiplier, eo, left_shift, act_min,
                             act_max, 1, 1);
            else if (e1 == 0)
                add_dsp_loop(input1, input2, output, n4, input1_offset, input1_multiplier, e1, input2_offset,
                             input2_multiplier, e2, output_offset, output_multiplier, eo, left_shift, act_min,
                             act_max, 1, 0);
            else if (e2 == 0)
                add_dsp_loop(input1, input2, output, n4, input1_offset, input1_multiplier, e1, input2_offset,
                             input2_multiplier, e2, output_offset, output_multiplier, eo, left_shift, act_min,
                             act_max, 0, 1);
            else
                add_dsp_loop(input1, input2, output, n4, input1_offset, input1_multiplier, e1, input2_offset,
                             input2_multiplier, e2, output_offset, output_multiplier, eo, left_shift, act_min,
                             act_max, 0, 0);
            i = 4 * n4;
        }
    }
#endif
    for (; i < size; i++)
        output[i] = add_one(input1[i], input2[i], input1_offset, input1_multiplier, e1, input2_offset,
                            input2_multiplier, e2, output_offset, output_multiplier, eo, left_shift, act_min,
                            act_max);
}
