/* Fake AOT runner with a static arena.
 *
 * FAKE_SPIN (default 0) adds an assembly loop of exactly 2 instructions per iteration
 * (subs + bne), so tests can check that instruction counts scale as expected; FAKE_STATUS
 * (default 0) is the value returned, to exercise the harness's error path; FAKE_STACK (default 0)
 * bytes of stack scratch exercise the stack high-water mark. */
#include <stdint.h>
#include <string.h>

#include "tvmgen_default.h"

#ifndef FAKE_STATUS
#define FAKE_STATUS 0
#endif
#ifndef FAKE_STACK
#define FAKE_STACK 0
#endif
#ifndef FAKE_SPIN
#define FAKE_SPIN 0
#endif

extern const int16_t fake_params[2];
void fake_scale_bias(const int8_t* in, const int16_t* params, int8_t* out);

static int8_t fake_arena[32] __attribute__((aligned(16)));

int32_t tvmgen_default_run(struct tvmgen_default_inputs* inputs,
                           struct tvmgen_default_outputs* outputs) {
  memcpy(fake_arena, inputs->input, 16);
  fake_scale_bias(fake_arena, fake_params, fake_arena + 16);
  memcpy(outputs->output, fake_arena + 16, 16);
#if FAKE_STACK > 0
  volatile uint8_t scratch[FAKE_STACK];
  for (uint32_t i = 0; i < FAKE_STACK; i++) scratch[i] = (uint8_t)i;
#endif
#if FAKE_SPIN > 0
  uint32_t n = FAKE_SPIN;
  __asm__ volatile("1: subs %0, %0, #1\n\tbne 1b" : "+r"(n) : : "cc");
#endif
  return FAKE_STATUS;
}
