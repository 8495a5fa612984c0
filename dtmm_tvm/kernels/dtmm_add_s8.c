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
 *    VSHL + VMAX/VMIN. Otherwise rounding half away from zero: with int8 saturation and e <= 22
 *    VQRDMLAH(sum >> 31, sum, out_m) + out_c (the fixup, from the sum's sign), VQSHL/VSHR; else
 *    VQRDMLAH(sum >> 31, sum, out_m), VRSHL, VADD out_off, VMAX/VMIN. No step saturates (nor, on
 *    DSP, wraps): |x + off| <= 255, ls <= 22 give |s_i| < 2^29, |sum| < 2^30,
 *    |SRDHM(sum, out_m)| < 2^30 and, for e <= 22 and |out_off| <= 128,
 *    |2^(e-1) + out_off << e| <= 2^29 + 2^21. TFLM's int8 ADD (ls 20) always
 *    qualifies for one of the eight loops (2 input x 4 output forms, each its own function, chosen
 *    once per call); anything else (ls 0, no input with the half multiplier, offsets beyond
 *    +-128) takes the scalar loop. Per 4 elements (input 2 general / both half): 13 / 9 (ReLU,
 *    output zero point -128), 14 / 10 (other ReLU), 15 / 11 (no activation), 16 / 12 (else).
 * DSP (Cortex-M4/M7): the same eight forms (same plan) one element at a time, for left shift 20
 * (as immediates) and output shift <= 22 (others take the scalar loop): LDRSB, t = 2 (s_1 + s_2)
 * built with shifted ADD operands (c1 + x1 << 20 + 2 s_2, s_2 = SMMLAR(b, m_2, 2^(e_2-1) +
 * (b >> 31)) >> e_2 with b = c2 + x2 << 21 the doubled operand), then SMMLAR(t, out_m, out_c
 * [+ (t >> 31) rounding away from zero]) >> e, SSAT #8, compares for a narrower clamp, STRB;
 * unrolled twice. Per element (input 2 general / both half): 13.5 / 9 with int8 saturation
 * (was 26 with SXTAB16 lanes), ~21 / ~17 with a narrower clamp.
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

#if defined(DTMM_ADD_MVE) || defined(DTMM_ADD_DSP)
/* Forms of the fast loops, chosen once per call (see the exactness notes). Input 1 always has the
 * half multiplier (2^30, shift 0). */
#define ADD_IN2_HALF 0  /* input 2 too: s_1 + s_2 = (x1 + x2 + off1 + off2) << (ls - 1) */
#define ADD_IN2_GEN 1   /* input 2: any multiplier >= 0, shift <= -1 */
#define ADD_OUT_SAT 0       /* rounding half up, the clamp is int8 saturation */
#define ADD_OUT_CLAMP 1     /* rounding half up, clamp to [act_min, act_max] */
#define ADD_OUT_EXACT 2     /* rounding half away from zero (fixup from the sum's sign), clamp */
#define ADD_OUT_EXACT_SAT 3 /* rounding half away from zero, int8 saturation (output shift <= 22) */

/* One noinline function per (input 2 form, output form) around the ISA's inlined LOOP, whose
 * form arguments are then constants, and the table PREFIX_forms[in2_form][out_form] of them. */
#define ADD_FORM(PREFIX, LOOP, ARGS, NAME, IN2, OUT) \
    static __attribute__((noinline)) void PREFIX##_##NAME(const ARGS* p) { LOOP(p, IN2, OUT); }
#define ADD_FORMS(PREFIX, LOOP, ARGS)                                                                        \
    ADD_FORM(PREFIX, LOOP, ARGS, half_sat, ADD_IN2_HALF, ADD_OUT_SAT)                                          \
    ADD_FORM(PREFIX, LOOP, ARGS, half_clamp, ADD_IN2_HALF, ADD_OUT_CLAMP)                                      \
    ADD_FORM(PREFIX, LOOP, ARGS, half_exact, ADD_IN2_HALF, ADD_OUT_EXACT)                                      \
    ADD_FORM(PREFIX, LOOP, ARGS, half_exact_sat, ADD_IN2_HALF, ADD_OUT_EXACT_SAT)                              \
    ADD_FORM(PREFIX, LOOP, ARGS, gen_sat, ADD_IN2_GEN, ADD_OUT_SAT)                                            \
    ADD_FORM(PREFIX, LOOP, ARGS, gen_clamp, ADD_IN2_GEN, ADD_OUT_CLAMP)                                        \
    ADD_FORM(PREFIX, LOOP, ARGS, gen_exact, ADD_IN2_GEN, ADD_OUT_EXACT)                                        \
    ADD_FORM(PREFIX, LOOP, ARGS, gen_exact_sat, ADD_IN2_GEN, ADD_OUT_EXACT_SAT)                                \
    static void (*const PREFIX##_forms[2][4])(const ARGS*) = {                                                 \
        {PREFIX##_half_sat, PREFIX##_half_clamp, PREFIX##_half_exact, PREFIX##_half_exact_sat},                \
        {PREFIX##_gen_sat, PREFIX##_gen_clamp, PREFIX##_gen_exact, PREFIX##_gen_exact_sat}};

/* What the fast loops need, from the call's parameters (dtmm_add_s8's names; e = -shift). */
struct add_plan {
    const int8_t *x1, *x2; /* x1: the input with the half multiplier */
    int32_t off1, off2, m2, e2;
    int in2_form, out_form;
    int32_t out_c; /* out_e <= 22: 2^(out_e-1) (0 if out_e = 0) + out_off * 2^out_e, else 0 */
};

/* 1 and the plan when the parameters are in the ranges the exactness notes cover (always for
 * TFLM's int8 ADD, left shift 20), else 0: the caller's scalar loop does everything. */
static int add_make_plan(struct add_plan* p, const int8_t* x1, const int8_t* x2, int32_t off1, int32_t m1,
                         int32_t e1, int32_t off2, int32_t m2, int32_t e2, int32_t out_off, int32_t out_m,
                         int32_t out_e, int32_t ls, int32_t act_min, int32_t act_max)
{
    if (!(m1 == (1 << 30) && e1 == 0)) { /* s_1 + s_2 is symmetric: input 1 is the half-multiplier one */
        const int8_t* xt = x1;
        int32_t t = off1;
        x1 = x2, x2 = xt;
        off1 = off2, off2 = t;
        t = m1, m1 = m2, m2 = t;
        t = e1, e1 = e2, e2 = t;
    }
    const int half2 = m2 == (1 << 30) && e2 == 0;
    if (!(m1 == (1 << 30) && e1 == 0) || !(half2 || (m2 >= 0 && e2 >= 1 && e2 <= 31)) || ls < 1 || ls > 22 ||
        off1 < -128 || off1 > 128 || off2 < -128 || off2 > 128 || out_off < -128 || out_off > 128 || out_m < 0 ||
        out_e < 0 || out_e > 31)
        return 0;
    /* round half up is exact when negative results are clamped anyway or nothing is rounded */
    const int up = out_e == 0 || (act_min >= out_off && out_e <= 22);
    p->x1 = x1, p->x2 = x2, p->off1 = off1, p->off2 = off2, p->m2 = m2, p->e2 = e2;
    p->in2_form = half2 ? ADD_IN2_HALF : ADD_IN2_GEN;
    const int sat = act_min <= -128 && act_max >= 127;
    p->out_form = up ? (sat ? ADD_OUT_SAT : ADD_OUT_CLAMP) : (sat && out_e <= 22) ? ADD_OUT_EXACT_SAT : ADD_OUT_EXACT;
    p->out_c = out_e <= 22 ? (out_e > 0 ? 1 << (out_e - 1) : 0) + out_off * (1 << out_e) : 0;
    return 1;
}
#endif

#if defined(DTMM_ADD_MVE)
/* One call's operands: n4 vectors of 4 elements; half = 2^(ls-1), c1 = off1 * half (HALF form:
 * (off1 + off2) * half); pow2 = 2^ls, c2 = off2 * 2^ls, m2, e2 >= 1 (GEN form); out_c (UP forms). */
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
        if (in2_form == ADD_IN2_HALF) {
            sum = vmlasq_n_s32(vaddq_s32(a, b), v_half, c1);
        } else {
            const int32x4_t b2 = vmlasq_n_s32(b, v_pow2, c2);                 /* (x2 + off2) << ls */
            const int32x4_t h2 = vqrdmlahq_n_s32(vshrq_n_s32(b2, 31), b2, m2); /* fixup + SRDHM */
            sum = vaddq_s32(vmlasq_n_s32(a, v_half, c1), vrshlq_n_s32(h2, -e2));
        }
        int32x4_t r;
        if (out_form == ADD_OUT_EXACT) {
            r = vqrdmlahq_n_s32(vshrq_n_s32(sum, 31), sum, out_m);
            r = vaddq_n_s32(vrshlq_n_s32(r, -out_e), out_off);
        } else if (out_form == ADD_OUT_EXACT_SAT) { /* VQRDMLAH: the fixup register is free to overwrite */
            r = vaddq_n_s32(vqrdmlahq_n_s32(vshrq_n_s32(sum, 31), sum, out_m), out_c);
        } else {
            r = vqrdmlashq_n_s32(sum, v_out_m, out_c); /* SRDHM(sum, out_m) + out_c */
        }
        if (out_form == ADD_OUT_SAT || out_form == ADD_OUT_EXACT_SAT) {
            r = vshrq_n_s32(vqshlq_r_s32(r, 24 - out_e), 24);
        } else {
            if (out_form == ADD_OUT_CLAMP)
                r = vshlq_r_s32(r, -out_e); /* arithmetic: floor */
            r = vminq_s32(vmaxq_s32(r, v_lo), v_hi);
        }
        vstrbq_s32(out, r);
        out += 4;
    }
}

ADD_FORMS(add_mve, add_mve_loop, struct add_mve_args)

/* The first 4 * (size / 4) elements; returns how many were done. */
static int32_t add_mve(const int8_t* x1, const int8_t* x2, int8_t* out, int32_t size, int32_t off1, int32_t m1,
                       int32_t e1, int32_t off2, int32_t m2, int32_t e2, int32_t out_off, int32_t out_m,
                       int32_t out_e, int32_t ls, int32_t act_min, int32_t act_max)
{
    struct add_plan p;
    if (size < 4 || !add_make_plan(&p, x1, x2, off1, m1, e1, off2, m2, e2, out_off, out_m, out_e, ls, act_min,
                                   act_max))
        return 0;
    const int32_t half = 1 << (ls - 1);
    const struct add_mve_args args = {p.x1, p.x2, out, size >> 2, half,
                                      p.in2_form == ADD_IN2_HALF ? (p.off1 + p.off2) * half : p.off1 * half,
                                      1 << ls, p.off2 * (1 << ls), p.m2, p.e2, out_m, out_e, p.out_c, out_off,
                                      act_min, act_max};
    add_mve_forms[p.in2_form][p.out_form](&args);
    return 4 * (size >> 2);
}
#endif

#if defined(DTMM_ADD_DSP)
/* SMMLAR: acc + ((a * b + 2^31) >> 32), i.e. acc + SRDHM(a / 2, b) for the doubled operand a. */
static inline int32_t add_smmlar(int32_t a, int32_t b, int32_t acc)
{
    int32_t r;
    __asm__("smmlar %0, %1, %2, %3" : "=r"(r) : "r"(a), "r"(b), "r"(acc));
    return r;
}

#define ADD_DSP_LS 20 /* TFLM's int8 left shift, as immediates; any other takes the scalar loop */

/* One call's operands: c1 = off1 << ls (HALF form: (off1 + off2) << ls), c2 = off2 << (ls + 1),
 * r2 = 2^(e2-1) (GEN form), out_c (out_e <= 22). */
struct add_dsp_args {
    const int8_t *x1, *x2;
    int8_t* out;
    int32_t n, c1, c2, m2, e2, r2, out_m, out_e, out_c, act_min, act_max;
};

/* One element per iteration: LDRSB, the shifts as operands of ADD, SMMLAR with the rounding
 * constant, the fixup and the offsets in its accumulator, SSAT. t = 2 (s_1 + s_2): the doubled
 * SMMULR operand of the output multiply (see the exactness notes). */
static inline __attribute__((always_inline)) void add_dsp_loop(const struct add_dsp_args* p, const int in2_form,
                                                               const int out_form)
{
    const int8_t* x1 = p->x1;
    const int8_t* x2 = p->x2;
    int8_t* out = p->out;
    const int32_t c1 = p->c1, c2 = p->c2, m2 = p->m2, e2 = p->e2, r2 = p->r2, out_m = p->out_m, out_e = p->out_e;
    const int32_t out_c = p->out_c, act_min = p->act_min, act_max = p->act_max;
    _Pragma("GCC unroll 2") for (int8_t* const end = out + p->n; out != end;) {
        const int32_t a = *x1++, b = *x2++;
        int32_t t;
        if (in2_form == ADD_IN2_HALF) {
            t = c1 + (a + b) * (1 << ADD_DSP_LS);
        } else {
            const int32_t b2 = c2 + b * (1 << (ADD_DSP_LS + 1));        /* (x2 + off2) << (ls + 1) */
            const int32_t s2 = add_smmlar(b2, m2, r2 + (b2 >> 31)) >> e2; /* RDBP(SRDHM, e2) */
            t = c1 + a * (1 << ADD_DSP_LS) + s2 * 2;
        }
        const int exact = out_form == ADD_OUT_EXACT || out_form == ADD_OUT_EXACT_SAT;
        int32_t r = __ssat(add_smmlar(t, out_m, exact ? out_c + (t >> 31) : out_c) >> out_e, 8);
        if (out_form == ADD_OUT_CLAMP || out_form == ADD_OUT_EXACT) {
            r = r < act_min ? act_min : r;
            r = r > act_max ? act_max : r;
        }
        *out++ = (int8_t)r;
    }
}

ADD_FORMS(add_dsp, add_dsp_loop, struct add_dsp_args)

/* All size elements; returns how many were done (0 or size). */
static int32_t add_dsp(const int8_t* x1, const int8_t* x2, int8_t* out, int32_t size, int32_t off1, int32_t m1,
                       int32_t e1, int32_t off2, int32_t m2, int32_t e2, int32_t out_off, int32_t out_m,
                       int32_t out_e, int32_t ls, int32_t act_min, int32_t act_max)
{
    struct add_plan p;
    /* every DSP form folds the output offset into the accumulator: output shift <= 22 */
    if (size < 1 || ls != ADD_DSP_LS || out_e > 22 ||
        !add_make_plan(&p, x1, x2, off1, m1, e1, off2, m2, e2, out_off, out_m, out_e, ls, act_min, act_max))
        return 0;
    const struct add_dsp_args args = {
        p.x1, p.x2, out, size,
        (p.in2_form == ADD_IN2_HALF ? p.off1 + p.off2 : p.off1) * (1 << ADD_DSP_LS), p.off2 * (1 << (ADD_DSP_LS + 1)),
        p.m2, p.e2, p.e2 >= 1 ? 1 << (p.e2 - 1) : 0, out_m, out_e, p.out_c, act_min, act_max};
    add_dsp_forms[p.in2_form][p.out_form](&args);
    return size;
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
    i = add_dsp(input1, input2, output, size, input1_offset, input1_multiplier, e1, input2_offset, input2_multiplier,
                e2, output_offset, output_multiplier, eo, left_shift, act_min, act_max);
#endif
    for (; i < size; i++)
        output[i] = add_one(input1[i], input2[i], input1_offset, input1_multiplier, e1, input2_offset,
                            input2_multiplier, e2, output_offset, output_multiplier, eo, left_shift, act_min,
                            act_max);
}
