/* Polled driver for the board's CMSDK APB UART (the transport of the Project API's
 * open_transport; QEMU connects it to its -serial chardev). DTMM_UART_BASE comes from the
 * board (board.mk). */
#ifndef DTMM_UART_H_
#define DTMM_UART_H_

#include <stdint.h>

#ifndef DTMM_UART_BASE
#error "define DTMM_UART_BASE (set by the board in board.mk)"
#endif

#define DTMM_UART_DATA (*(volatile uint32_t*)(DTMM_UART_BASE + 0x00u))
#define DTMM_UART_STATE (*(volatile uint32_t*)(DTMM_UART_BASE + 0x04u))
#define DTMM_UART_CTRL (*(volatile uint32_t*)(DTMM_UART_BASE + 0x08u))
#define DTMM_UART_BAUDDIV (*(volatile uint32_t*)(DTMM_UART_BASE + 0x10u))
#define DTMM_UART_STATE_TX_FULL 0x1u
#define DTMM_UART_STATE_RX_FULL 0x2u

static inline void dtmm_uart_init(void) {
  DTMM_UART_BAUDDIV = 16u; /* the smallest legal divider; QEMU ignores the rate */
  DTMM_UART_CTRL = 0x3u;   /* TX and RX enabled, no interrupts */
  /* Reading DATA tells QEMU the receiver has room (otherwise the first byte can wait for
     QEMU's next main-loop timeout). */
  (void)DTMM_UART_DATA;
}

static inline void dtmm_uart_putc(uint8_t c) {
  while (DTMM_UART_STATE & DTMM_UART_STATE_TX_FULL) {
  }
  DTMM_UART_DATA = c;
}

static inline uint8_t dtmm_uart_getc(void) {
  while (!(DTMM_UART_STATE & DTMM_UART_STATE_RX_FULL)) {
  }
  return (uint8_t)DTMM_UART_DATA;
}

#endif /* DTMM_UART_H_ */
