/* dtmm_requant_f32.h - ONNX Runtime's requantization (float32), shared by the int8 kernels.
 *
 * A layer's per-channel requantization record is (mult, shift). TFLite records hold a Q31
 * multiplier and a shift in [-31, 30] (TFLM double rounding, dtmm_requantize). ONNX records
 * (dtmm_tvm/quant/onnx.py, params.requantization == "onnx") hold the bits of a float32 scale in
 * mult and the tag DTMM_REQUANT_F32 in shift; they are requantized as onnxruntime's
 * MlasRequantizeOutput does:
 *     y = RoundHalfToEven(clamp((float)acc * scale, lo - zp, hi - zp)) + zp
 * in IEEE float32 on the FPU (Cortex-M4F/M7/M55; any host). Needs the default rounding mode
 * (round to nearest even, FPSCR/MXCSR reset value). Every float step is a single operation, so
 * -ffp-contract cannot fuse them (the clamp separates the multiply from the rounding add) and
 * -ffast-math cannot reassociate them; the rounding reads the bits of v + 1.5 * 2^23.
 */
#ifndef DTMM_REQUANT_F32_H_
#define DTMM_REQUANT_F32_H_

#include <stdint.h>

/* Must equal dtmm_tvm.quant.onnx.REQUANT_F32_TAG. */
#define DTMM_REQUANT_F32 127

/* Whether this build compiles the float32 path at all. An archive's dtmm_isa.h says so
 * (dtmm_tvm/codegen/isa_guard.py: 1 only when a layer has ONNX records), so TFLite archives do
 * not pay a tag compare per requantization; kernels built alone (their tests) keep both paths. */
#if defined(__has_include)
#if __has_include("dtmm_isa.h")
#include "dtmm_isa.h"
#endif
#endif
#ifndef DTMM_REQUANT_F32_ENABLED
#define DTMM_REQUANT_F32_ENABLED 1
#endif
/* Is (mult, shift) an ONNX float32 record? Constant 0 in archives without ONNX records. */
#define DTMM_IS_F32_RECORD(shift) (DTMM_REQUANT_F32_ENABLED && (shift) == DTMM_REQUANT_F32)

static inline float dtmm_f32_from_bits(int32_t bits) {
  float f;
  __builtin_memcpy(&f, &bits, 4);
  return f;
}

/* Round half to even of |v| <= 2^22: the sum's low mantissa bits are the rounded integer. */
static inline int32_t dtmm_round_half_even_f32(float v) {
  const float biased = v + 12582912.0f; /* 1.5 * 2^23 */
  int32_t bits;
  __builtin_memcpy(&bits, &biased, 4);
  return bits - 0x4B400000;
}

/* RoundHalfToEven((float)acc * scale), saturated to +-65536 (far outside any int8 result, so the
 * caller's + zero point and clamp give MLAS's result). */
static inline int32_t dtmm_requantize_f32(int32_t acc, int32_t scale_bits) {
  float v = (float)acc * dtmm_f32_from_bits(scale_bits);
  v = v < -65536.0f ? -65536.0f : v;
  v = v > 65536.0f ? 65536.0f : v;
  return dtmm_round_half_even_f32(v);
}

#endif /* DTMM_REQUANT_F32_H_ */
