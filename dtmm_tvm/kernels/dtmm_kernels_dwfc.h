/* Depthwise conv and fully connected int8 micro-kernels (CMSIS-NN style), TFLM bit-exact.
 *
 * Owner: issue 3 (fast non-conv kernels). Called from TIR via T.call_extern by
 * dtmm_tvm/ops/depthwise_conv2d.py and dtmm_tvm/ops/fully_connected.py.
 *
 * This header holds only the shared static inline helpers. The exported functions are
 * documented and defined in dtmm_depthwise_conv_s8.c / dtmm_fully_connected_s8.c with exactly the
 * C types TVM's CodeGenC prints in its own forward declaration of a call_extern callee
 * (non-const int8_t* / int32_t* pointers, int32_t scalars, void result). They are deliberately
 * NOT declared in any header of this folder: codegen drops TVM's forward declaration of every
 * name it finds in a header here but includes only dtmm_kernels.h, so a declaration here would
 * leave the generated C with implicit declarations. (Fix in the hook's owner files: include this
 * header from dtmm_kernels.h; the prototypes can then move here.)
 *
 * Bias convention ("folded bias"): `bias[oc]` is the model's bias PLUS the input offset term
 *     bias[oc] + input_offset * sum_{all taps / k} w[.., oc],   input_offset = -input_zero_point
 * computed once at compile time (int32 wrap-around, exactly what the kernel would accumulate).
 * The kernels then accumulate raw x * w; a padded depthwise tap reads the value input_zero_point
 * (whose offset-corrected value is 0), which cancels its share of the folded term exactly.
 */
#ifndef DTMM_KERNELS_DWFC_H_
#define DTMM_KERNELS_DWFC_H_

#include <stdint.h>
#include "dtmm_requant_f32.h"

#include "dtmm_kernels_isa.h" /* DTMM_ISA_MVE / DTMM_ISA_DSP / DTMM_ISA_PORTABLE */

#ifdef __cplusplus
extern "C" {
#endif

/* TFLM MultiplyByQuantizedMultiplier (double rounding), exact for multiplier in [0, 2^31).
 *  - SaturatingRoundingDoublingHighMul(a, m) = (a*m + 2^30) >> 31 (floor): equal to TFLM's
 *    sign-dependent nudge with truncating division for every product, and the saturating case
 *    (a = m = INT32_MIN) cannot occur with m >= 0. One SMLAL on v7E-M.
 *  - RoundingDivideByPOT(h, e) for e >= 1 as ((y >> (e - 1)) + 1) >> 1 with y = h - (h < 0):
 *    round half away from zero, no overflow since |h| <= 2^31 - 2. */
static inline int32_t dtmm_dwfc_requantize(int32_t acc, int32_t multiplier, int32_t shift)
{
    if (DTMM_IS_F32_RECORD(shift)) /* an ONNX record: float32 scale (dtmm_requant_f32.h) */
        return dtmm_requantize_f32(acc, multiplier);
    if (shift < 0) { /* the usual case: scale < 1 */
        const int64_t ab = (int64_t)acc * multiplier + ((int64_t)1 << 30);
        const int32_t high = (int32_t)(ab >> 31);
        const int32_t y = high + (high >> 31);
        return ((y >> (-shift - 1)) + 1) >> 1;
    }
    const int64_t ab = (int64_t)(int32_t)((uint32_t)acc << shift) * multiplier + ((int64_t)1 << 30);
    return (int32_t)(ab >> 31);
}

static inline int8_t dtmm_dwfc_clamp_s8(int32_t v, int32_t lo, int32_t hi)
{
    v = v < lo ? lo : v;
    v = v > hi ? hi : v;
    return (int8_t)v;
}

#ifdef __cplusplus
}
#endif

#endif /* DTMM_KERNELS_DWFC_H_ */
