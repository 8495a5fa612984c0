/* Fake constants: kept in flash (.rodata). */
#include <stdint.h>

const int16_t fake_params[2] = {3, -7};
