/* Polled driver for the board's CMSDK APB UART (the transport of the Project API's
 * open_transport; QEMU connects it to its -serial chardev). DTMM_UART_BASE comes from the
 * board (board.mk). */
#ifndef DTMM_UART_H_
#define DTMM_UART_H_

#include <stdint.h>

#ifndef DTMM_UART_BASE
#error "define DTMM_UART_BASE (set by the board in board.mk)"
#endif

#if defined(DTMM_UART_NRF51)
/* nRF51 UART (micro:bit): start TX/RX tasks, TXD/RXD registers, TXDRDY/RXDRDY events. */
#define DTMM_NRF_UART_REG(off) (*(volatile uint32_t*)(DTMM_UART_BASE + (off)))
#define DTMM_NRF_UART_STARTRX DTMM_NRF_UART_REG(0x000u)
#define DTMM_NRF_UART_STARTTX DTMM_NRF_UART_REG(0x008u)
#define DTMM_NRF_UART_RXDRDY DTMM_NRF_UART_REG(0x108u)
#define DTMM_NRF_UART_TXDRDY DTMM_NRF_UART_REG(0x11Cu)
#define DTMM_NRF_UART_ENABLE DTMM_NRF_UART_REG(0x500u)
#define DTMM_NRF_UART_RXD DTMM_NRF_UART_REG(0x518u)
#define DTMM_NRF_UART_TXD DTMM_NRF_UART_REG(0x51Cu)

static inline void dtmm_uart_init(void) {
  DTMM_NRF_UART_ENABLE = 4u;
  DTMM_NRF_UART_STARTTX = 1u;
  DTMM_NRF_UART_STARTRX = 1u;
}

static inline void dtmm_uart_putc(uint8_t c) {
  DTMM_NRF_UART_TXDRDY = 0u;
  DTMM_NRF_UART_TXD = c;
  while (!DTMM_NRF_UART_TXDRDY) {
  }
}

static inline uint8_t dtmm_uart_getc(void) {
  while (!DTMM_NRF_UART_RXDRDY) {
  }
  DTMM_NRF_UART_RXDRDY = 0u;
  return (uint8_t)DTMM_NRF_UART_RXD;
}

#else /* CMSDK APB UART (MPS2/MPS3) */
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

#endif

#endif /* DTMM_UART_H_ */
