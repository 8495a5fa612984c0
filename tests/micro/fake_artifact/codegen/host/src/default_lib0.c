/* Fake kernel: out[i] = sat_int8(in[i] * params[0] + params[1]). */
#include <stdint.h>

void fake_scale_bias(const int8_t* in, const int16_t* params, int8_t* out) {
  for (int i = 0; i < 16; i++) {
    int32_t v = (int32_t)in[i] * params[0] + params[1];
    out[i] = (int8_t)(v > 127 ? 127 : (v < -128 ? -128 : v));
  }
}
