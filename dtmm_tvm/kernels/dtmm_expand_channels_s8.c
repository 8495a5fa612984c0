/*
 * dtmm_expand_channels_s8.c - the output side of a filter-compacted conv (format
 * "filter_compact", dtmm_tvm/ops/conv2d_compact.py).
 *
 * A conv whose all-zero filters were dropped computes only its `kept` channels, as a dense conv
 * of `kept` output channels, into caller scratch (kept_out: npix rows of `kept` bytes). A dropped
 * filter's output channel is a constant (its requantized bias, clamped), stored once per layer in
 * `fill` (cout bytes; the kept channels' bytes there are never read back). Per pixel this copies
 * the fill row into the output and stores the kept channels at their original positions
 * (channels: uint16 [kept], ascending).
 *
 * Paths: MVE copies the fill row 16 bytes per tail-predicated VLDRB/VSTRB and scatters 8 kept
 * channels per VSTRB.16 scatter (offsets = channel numbers); DSP and portable C copy it a word at
 * a time (unaligned LDR/STR are fine on Armv7E-M) and store the kept channels one by one.
 */
#include <string.h>
#include "dtmm_kernels.h"

#if defined(DTMM_ISA_MVE)
#include <arm_mve.h>

void dtmm_expand_channels_s8(const int8_t *kept_out, int32_t npix, int32_t kept, const uint16_t *channels,
                             const int8_t *fill, int8_t *out, int32_t cout) {
  for (int32_t p = 0; p < npix; ++p) {
    for (int32_t c = 0; c < cout; c += 16) {
      const mve_pred16_t m = vctp8q((uint32_t)(cout - c));
      vstrbq_p_s8(out + c, vldrbq_z_s8(fill + c, m), m);
    }
    for (int32_t j = 0; j < kept; j += 8) {
      const mve_pred16_t m = vctp16q((uint32_t)(kept - j));
      const uint16x8_t offsets = vldrhq_z_u16(channels + j, m);
      vstrbq_scatter_offset_p_s16(out, offsets, vldrbq_z_s16(kept_out + j, m), m);
    }
    kept_out += kept;
    out += cout;
  }
}

#else

void dtmm_expand_channels_s8(const int8_t *kept_out, int32_t npix, int32_t kept, const uint16_t *channels,
                             const int8_t *fill, int8_t *out, int32_t cout) {
  const int32_t words = cout >> 2;
  for (int32_t p = 0; p < npix; ++p) {
    for (int32_t i = 0; i < words; ++i) {
      uint32_t v;
      __builtin_memcpy(&v, fill + 4 * i, 4);
      __builtin_memcpy(out + 4 * i, &v, 4);
    }
    for (int32_t c = words << 2; c < cout; ++c) out[c] = fill[c];
    for (int32_t j = 0; j < kept; ++j) out[channels[j]] = kept_out[j];
    kept_out += kept;
    out += cout;
  }
}

#endif
