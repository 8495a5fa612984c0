/* tvmgen_default_run executes exactly 2 * CALIB_LOOPS + 3 instructions:
 * ldr (literal), CALIB_LOOPS x (subs + bne), movs, bx lr. The harness's empty function is
 * movs + bx lr (2 instructions), so the reported count must be exactly 2 * CALIB_LOOPS + 1.
 * The outputs are not written (the harness then echoes its zero-initialised buffer). */
#include "tvmgen_default.h"

#ifndef CALIB_LOOPS
#define CALIB_LOOPS 100000
#endif
#define STR_(x) #x
#define STR(x) STR_(x)

__attribute__((naked)) int32_t tvmgen_default_run(struct tvmgen_default_inputs* inputs,
                                                  struct tvmgen_default_outputs* outputs) {
  __asm__ volatile(
      ".syntax unified\n" /* ARMv6-M (Cortex-M0) assembles SUBS only in unified syntax */
      "ldr r3, =" STR(CALIB_LOOPS) "\n"
      "1: subs r3, r3, #1\n"
      "bne 1b\n"
      "movs r0, #0\n"
      "bx lr\n"
      ".ltorg\n");
}
