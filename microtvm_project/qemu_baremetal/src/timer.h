/* The board's free-running hardware timer, read around each inference. Under QEMU
 * -icount shift=N every guest instruction advances virtual time by exactly 2^N ns, so
 * elapsed ticks convert exactly to instructions on the host (see dtmm_tvm/micro/measure.py). */
#ifndef DTMM_TIMER_H_
#define DTMM_TIMER_H_

#include <stdint.h>

#if defined(DTMM_TIMER_CMSDK)
/* MPS2 (AN386/AN500): CMSDK TIMER0, 32-bit down-counter at 25 MHz. Used instead of the
   24-bit SysTick, which would wrap after 0.67 s of virtual time. */
#ifndef DTMM_TIMER0_BASE
#define DTMM_TIMER0_BASE 0x40000000u /* the board may move it (secure alias on SSE-200) */
#endif
#define DTMM_TIMER0_CTRL (*(volatile uint32_t*)(DTMM_TIMER0_BASE + 0x0u))
#define DTMM_TIMER0_VALUE (*(volatile uint32_t*)(DTMM_TIMER0_BASE + 0x4u))
#define DTMM_TIMER0_RELOAD (*(volatile uint32_t*)(DTMM_TIMER0_BASE + 0x8u))

static inline void dtmm_timer_init(void) {
  DTMM_TIMER0_CTRL = 0u;
  DTMM_TIMER0_RELOAD = 0xFFFFFFFFu;
  DTMM_TIMER0_VALUE = 0xFFFFFFFFu;
  DTMM_TIMER0_CTRL = 1u; /* enable, no interrupt */
}
static inline uint32_t dtmm_timer_read(void) { return DTMM_TIMER0_VALUE; }
/* Down-counter: modular subtraction also handles one wrap. */
static inline uint32_t dtmm_timer_elapsed(uint32_t t0, uint32_t t1) { return t0 - t1; }

#elif defined(DTMM_TIMER_SSE300_CNT)
/* MPS3 AN547 (SSE-300): the CMSDK timer address is something else there; use the system
   counter (enable via CNTCR, read CNTPCT_LO), 32 MHz, counting up. */
#define DTMM_CNTCR (*(volatile uint32_t*)0x58100000u)
#define DTMM_CNTPCT_LO (*(volatile uint32_t*)0x48000000u)

static inline void dtmm_timer_init(void) { DTMM_CNTCR = 1u; }
static inline uint32_t dtmm_timer_read(void) { return DTMM_CNTPCT_LO; }
static inline uint32_t dtmm_timer_elapsed(uint32_t t0, uint32_t t1) { return t1 - t0; }

#elif defined(DTMM_TIMER_NRF51)
/* micro:bit (nRF51): TIMER0 in 32-bit timer mode at 16 MHz (prescaler 0), counting up; a read
   triggers the CAPTURE[0] task and reads CC[0]. */
#define DTMM_NRF_TIMER0_BASE 0x40008000u
#define DTMM_NRF_TIMER0_REG(off) (*(volatile uint32_t*)(DTMM_NRF_TIMER0_BASE + (off)))
#define DTMM_NRF_TASKS_START DTMM_NRF_TIMER0_REG(0x000u)
#define DTMM_NRF_TASKS_STOP DTMM_NRF_TIMER0_REG(0x004u)
#define DTMM_NRF_TASKS_CLEAR DTMM_NRF_TIMER0_REG(0x00Cu)
#define DTMM_NRF_TASKS_CAPTURE0 DTMM_NRF_TIMER0_REG(0x040u)
#define DTMM_NRF_MODE DTMM_NRF_TIMER0_REG(0x504u)
#define DTMM_NRF_BITMODE DTMM_NRF_TIMER0_REG(0x508u)
#define DTMM_NRF_PRESCALER DTMM_NRF_TIMER0_REG(0x510u)
#define DTMM_NRF_CC0 DTMM_NRF_TIMER0_REG(0x540u)

static inline void dtmm_timer_init(void) {
  DTMM_NRF_TASKS_STOP = 1u;
  DTMM_NRF_MODE = 0u;      /* timer */
  DTMM_NRF_BITMODE = 3u;   /* 32 bit */
  DTMM_NRF_PRESCALER = 0u; /* 16 MHz */
  DTMM_NRF_TASKS_CLEAR = 1u;
  DTMM_NRF_TASKS_START = 1u;
}
static inline uint32_t dtmm_timer_read(void) {
  DTMM_NRF_TASKS_CAPTURE0 = 1u;
  return DTMM_NRF_CC0;
}
static inline uint32_t dtmm_timer_elapsed(uint32_t t0, uint32_t t1) { return t1 - t0; }

#else
#error "define DTMM_TIMER_CMSDK, DTMM_TIMER_SSE300_CNT or DTMM_TIMER_NRF51 (set by the board in board.mk)"
#endif

#endif  /* DTMM_TIMER_H_ */
