/*
 * dtmm_conv_im2col_s8.c - im2col gather of one kernel tap for dtmm_conv_block_s8.
 *
 * MVE build: the row is int8 (raw input values; padding filled with -input_offset so that
 * (x + input_offset) == 0 there and the offset can be folded into the bias).
 * DSP/portable build: the row is q15 (int16) holding x + input_offset; padding is 0.
 */
#include <string.h>
#include "dtmm_kernels.h"

#if defined(__ARM_FEATURE_MVE)
#include <arm_mve.h>
#elif defined(__ARM_FEATURE_DSP)
#include <arm_acle.h>
#endif

int32_t dtmm_conv_s8_elem_bytes(void) {
#if defined(__ARM_FEATURE_MVE)
  return 1;
#else
  return 2;
#endif
}

int32_t dtmm_conv_s8_get_buffer_size(int32_t row_len, int32_t npix) {
  const int32_t stride = (row_len * dtmm_conv_s8_elem_bytes() + 15) & ~15;
  return stride * npix;
}

void dtmm_conv_im2col_s8(const int8_t *src, int8_t *row, int32_t elem_offset, int32_t count,
                         int32_t input_offset) {
#if defined(__ARM_FEATURE_MVE)
  (void)input_offset;
  int8_t *dst = row + elem_offset;
  while (count > 0) {
    const mve_pred16_t p = vctp8q((uint32_t)count);
    vstrbq_p_s8(dst, vldrbq_z_s8(src, p), p);
    src += 16;
    dst += 16;
    count -= 16;
  }
#elif defined(__ARM_FEATURE_DSP)
  int16_t *dst = (int16_t *)(void *)row + elem_offset;
  const uint32_t off2 = ((uint32_t)(uint16_t)input_offset) * 0x00010001u;
  int32_t n = count >> 2;
  while (n-- > 0) {
    uint32_t v;
    __builtin_memcpy(&v, src, 4);
    src += 4;
    const uint32_t even = __sxtb16(v);                         /* x0, x2 */
    const uint32_t odd = __sxtb16((v >> 8) | (v << 24));       /* x1, x3 */
    const uint32_t e = __sadd16(even, off2);
    const uint32_t o = __sadd16(odd, off2);
    const uint32_t lo = (e & 0xFFFFu) | (o << 16);             /* x0, x1 */
    const uint32_t hi = (o & 0xFFFF0000u) | (e >> 16);         /* x2, x3 */
    __builtin_memcpy(dst, &lo, 4);
    __builtin_memcpy(dst + 2, &hi, 4);
    dst += 4;
  }
  for (n = count & 3; n > 0; --n) *dst++ = (int16_t)(*src++ + input_offset);
#else
  int16_t *dst = (int16_t *)(void *)row + elem_offset;
  for (int32_t i = 0; i < count; ++i) dst[i] = (int16_t)(src[i] + input_offset);
#endif
}

void dtmm_conv_pad_s8(int8_t *row, int32_t elem_offset, int32_t count, int32_t input_offset) {
#if defined(__ARM_FEATURE_MVE)
  __builtin_memset(row + elem_offset, (int8_t)(-input_offset), (size_t)count);
#else
  (void)input_offset;
  __builtin_memset((int16_t *)(void *)row + elem_offset, 0, (size_t)count * 2u);
#endif
}
