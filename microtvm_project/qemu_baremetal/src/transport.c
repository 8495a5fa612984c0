/* The UART transport: a request/reply loop that runs the model on inputs sent by the host
 * and returns outputs, timer ticks and per-operator ticks (see transport.h for the framing). */
#include "transport.h"

#include <stdint.h>

#include "dtmm_harness.h"
#include "uart.h"

static uint16_t crc16_update(uint16_t crc, uint8_t byte) {
  crc ^= (uint16_t)byte << 8;
  for (int i = 0; i < 8; i++) crc = (crc & 0x8000u) ? (uint16_t)((crc << 1) ^ 0x1021u) : (uint16_t)(crc << 1);
  return crc;
}

static uint16_t tx_crc;

static void tx_byte(uint8_t b) {
  tx_crc = crc16_update(tx_crc, b);
  dtmm_uart_putc(b);
}

static void tx_u16(uint32_t v) {
  tx_byte((uint8_t)v);
  tx_byte((uint8_t)(v >> 8));
}

static void tx_u32(uint32_t v) {
  tx_u16(v & 0xFFFFu);
  tx_u16(v >> 16);
}

static void tx_bytes(const void* p, uint32_t n) {
  const uint8_t* b = (const uint8_t*)p;
  for (uint32_t i = 0; i < n; i++) tx_byte(b[i]);
}

static void tx_begin(uint8_t type, uint32_t length) {
  dtmm_uart_putc(DTMM_SYNC0);
  dtmm_uart_putc(DTMM_SYNC1);
  tx_crc = 0xFFFFu;
  tx_byte(type);
  tx_u32(length);
}

static void tx_end(void) {
  uint16_t crc = tx_crc;
  dtmm_uart_putc((uint8_t)crc);
  dtmm_uart_putc((uint8_t)(crc >> 8));
}

static void send_error(uint32_t code, uint32_t detail) {
  tx_begin(DTMM_MSG_ERROR, 8u);
  tx_u32(code);
  tx_u32(detail);
  tx_end();
}

static uint16_t rx_crc;

static uint8_t rx_byte(void) {
  uint8_t b = dtmm_uart_getc();
  rx_crc = crc16_update(rx_crc, b);
  return b;
}

static uint32_t rx_u32(void) {
  uint32_t v = rx_byte();
  v |= (uint32_t)rx_byte() << 8;
  v |= (uint32_t)rx_byte() << 16;
  v |= (uint32_t)rx_byte() << 24;
  return v;
}

static void send_hello(void) {
  uint32_t marks = dtmm_profile_marks;
  tx_begin(DTMM_MSG_HELLO, 16u + 4u * (dtmm_num_inputs + dtmm_num_outputs));
  tx_u16(DTMM_TRANSPORT_VERSION);
  tx_u16(dtmm_num_inputs);
  tx_u16(dtmm_num_outputs);
  tx_u16(marks);
  tx_u32(dtmm_empty_call_ticks());
  tx_u32(dtmm_mark_pair_ticks());
  for (uint32_t i = 0; i < dtmm_num_inputs; i++) tx_u32(dtmm_input_sizes[i]);
  for (uint32_t i = 0; i < dtmm_num_outputs; i++) tx_u32(dtmm_output_sizes[i]);
  tx_end();
}

static void infer_and_reply(void) {
  int32_t rc;
  uint32_t ticks = dtmm_timed_run(&rc);
  uint32_t marks = dtmm_profile_marks;
  uint32_t out_bytes = 0;
  for (uint32_t i = 0; i < dtmm_num_outputs; i++) out_bytes += dtmm_output_sizes[i];
  uint32_t ops = marks > 0u ? marks - 1u : 0u;
  tx_begin(DTMM_MSG_RESULT, 16u + 4u * ops + out_bytes);
  tx_u32((uint32_t)rc);
  tx_u32(ticks);
  tx_u32(dtmm_stack_high_water());
  tx_u32(ops);
  for (uint32_t k = 0; k < ops; k++) tx_u32(dtmm_profile_ticks(k));
  for (uint32_t i = 0; i < dtmm_num_outputs; i++) tx_bytes(dtmm_output_ptrs[i], dtmm_output_sizes[i]);
  tx_end();
}

int dtmm_serve_uart(void) {
  dtmm_uart_init();
  send_hello();
  uint32_t record = 0;
  for (uint32_t i = 0; i < dtmm_num_inputs; i++) record += dtmm_input_sizes[i];
  for (;;) {
    /* Hunt for the two sync bytes; anything else between frames is skipped. */
    if (dtmm_uart_getc() != DTMM_SYNC0) continue;
    uint8_t s1 = dtmm_uart_getc();
    while (s1 == DTMM_SYNC0) s1 = dtmm_uart_getc();
    if (s1 != DTMM_SYNC1) continue;
    rx_crc = 0xFFFFu;
    uint8_t type = rx_byte();
    uint32_t length = rx_u32();
    int fits = type == DTMM_MSG_INFER ? length == record : length == 0u;
    /* Inputs land straight in the model's input buffers; a wrong length is drained so the
       stream stays in sync, then refused. */
    uint32_t got = 0;
    for (uint32_t i = 0; fits && type == DTMM_MSG_INFER && i < dtmm_num_inputs; i++) {
      uint8_t* dst = (uint8_t*)dtmm_input_ptrs[i];
      for (uint32_t j = 0; j < dtmm_input_sizes[i]; j++) dst[j] = rx_byte();
      got += dtmm_input_sizes[i];
    }
    for (; got < length; got++) (void)rx_byte();
    uint16_t want = rx_crc;
    uint16_t crc = dtmm_uart_getc();
    crc |= (uint16_t)(dtmm_uart_getc() << 8);
    if (crc != want) {
      send_error(DTMM_TERR_BAD_CRC, type);
    } else if (type != DTMM_MSG_INFER && type != DTMM_MSG_QUIT) {
      send_error(DTMM_TERR_BAD_TYPE, type);
    } else if (!fits) {
      send_error(DTMM_TERR_BAD_LENGTH, length);
    } else if (type == DTMM_MSG_QUIT) {
      return DTMM_EXIT_OK;
    } else {
      infer_and_reply();
    }
  }
}
