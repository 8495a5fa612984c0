/*
 * dtmm_conv_bias_s8.c - per-channel effective bias for dtmm_conv_block_s8.
 *
 * MVE: the int8 im2col rows hold raw input values, so sum((x + off) * w) is computed as
 * sum(x * w) + off * sum(w); sum(w) over the kept weights of a channel is folded into the bias
 * here, once per layer call (padding holds -off, so padded taps still contribute 0).
 * DSP/portable: the q15 rows already include the offset; the bias is copied.
 * The kept filterlets of filter o are the next count(o) filterlets of `values` for every index
 * format (DTMM_FMT_*, see dtmm_conv_block_s8.c).
 */
#include <string.h>
#include "dtmm_kernels.h"

#if defined(DTMM_ISA_MVE)
#include <arm_mve.h>

static int32_t kept_of(int32_t fmt, const void *idx0, const void *idx1, int32_t kk, int32_t o) {
  switch (fmt) {
    case DTMM_FMT_CSR: return ((const int16_t *)idx1)[o + 1] - ((const int16_t *)idx1)[o];
    case DTMM_FMT_U8: return ((const uint8_t *)idx1)[o];
    case DTMM_FMT_MASK: {
      const int32_t bit = o * kk;
      uint32_t v;
      __builtin_memcpy(&v, (const uint8_t *)idx0 + (bit >> 3), 4);
      v = (v >> (bit & 7)) & ((1u << kk) - 1u);
      int32_t c = 0;
      for (; v; v &= v - 1) ++c;
      return c;
    }
    default: return kk;
  }
}
#endif

void dtmm_conv_bias_s8(int32_t fmt, const int8_t *values, const void *idx0, const void *idx1,
                       int32_t kk, int32_t cin, int32_t cout, const int32_t *bias,
                       int32_t input_offset, int32_t *bias_out) {
#if defined(DTMM_ISA_MVE)
  const int8_t *w = values;
  for (int32_t o = 0; o < cout; ++o) {
    const int32_t n = kept_of(fmt, idx0, idx1, kk, o) * cin;
    register int32_t sum __asm__("r6") = 0; /* VADDVA needs an even register */
    if (n > 0) {
      /* tail-predicated low-overhead loop: 3 instructions per 16 weights */
      const int8_t *p = w;
      __asm__ volatile(
          "dlstp.8 lr, %[n]\n\t"
          "1:\n\t"
          "vldrb.8 q0, [%[p]], #16\n\t"
          "vaddva.s8 %[s], q0\n\t"
          "letp lr, 1b\n\t"
          : [p] "+r"(p), [s] "+r"(sum)
          : [n] "r"(n)
          : "q0", "lr", "memory");
      w += n;
    }
    bias_out[o] = bias[o] + input_offset * sum;
  }
#else
  (void)fmt;
  (void)values;
  (void)idx0;
  (void)idx1;
  (void)kk;
  (void)cin;
  (void)input_offset;
  for (int32_t o = 0; o < cout; ++o) bias_out[o] = bias[o];
#endif
}
