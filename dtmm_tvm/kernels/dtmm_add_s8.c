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
 *      (h - (h < 0) + 2^(e-1)) >> e; e = 0 is the identity. On MVE (CMSIS-NN
 *      arm_divide_by_power_of_two_mve) fixup = (h & -e) >> 31, VQADD, then VRSHL by -e (round
 *      half up): the fixup is 0 for e = 0, VQADD's saturation only touches h = INT32_MIN whose
 *      quotient is exact anyway.
 *
 * Paths: MVE (Cortex-M55): 4 int32 lanes per vector, widening VLDRB.S32 loads / narrowing
 * VSTRB.32 store, tail-predicated with VCTP.32. DSP (Cortex-M4/M7): 4 elements per word, offsets
 * added to both byte lanes at once with SXTAB16, SMMULR multiplies, the 4 results packed back
 * into a word and clamped with SSUB8/SEL. Portable C: the scalar formula (what host tests run).
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
static inline int32x4_t add_requant_mve(int32x4_t a, int32_t m, int32x4_t neg_e)
{
    const int32x4_t h = vqrdmulhq_n_s32(a, m);
    const int32x4_t fixup = vshrq_n_s32(vandq_s32(h, neg_e), 31);
    return vrshlq_s32(vqaddq_s32(h, fixup), neg_e);
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
    {
        const int32x4_t ne1 = vdupq_n_s32(input1_shift);
        const int32x4_t ne2 = vdupq_n_s32(input2_shift);
        const int32x4_t neo = vdupq_n_s32(output_shift);
        const int32x4_t off1 = vdupq_n_s32(input1_offset);
        const int32x4_t off2 = vdupq_n_s32(input2_offset);
        for (; i < size; i += 4) {
            const mve_pred16_t p = vctp32q((uint32_t)(size - i));
            int32x4_t a = vldrbq_z_s32(input1 + i, p);
            int32x4_t b = vldrbq_z_s32(input2 + i, p);
            a = vshlq_r_s32(vaddq_s32(a, off1), left_shift);
            b = vshlq_r_s32(vaddq_s32(b, off2), left_shift);
            a = add_requant_mve(a, input1_multiplier, ne1);
            b = add_requant_mve(b, input2_multiplier, ne2);
            int32x4_t r = add_requant_mve(vaddq_s32(a, b), output_multiplier, neo);
            r = vaddq_n_s32(r, output_offset);
            r = vmaxq_s32(r, vdupq_n_s32(act_min));
            r = vminq_s32(r, vdupq_n_s32(act_max));
            vstrbq_p_s32(output + i, r, p);
        }
        return;
    }
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
