/* Framing of the UART transport, shared with the host (dtmm_tvm/micro/transport.py).
 *
 * Every message, both directions:
 *   0xD7 0x4D | type u8 | length u32 LE | payload[length] | crc u16 LE
 * crc is CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF) over type, length and payload.
 *
 * host -> device   DTMM_MSG_INFER   payload: one input record (all inputs, metadata order)
 *                  DTMM_MSG_QUIT    payload: none; the device exits with status 0
 * device -> host   DTMM_MSG_HELLO   u16 version, u16 inputs, u16 outputs, u16 marks,
 *                                   u32 empty-call ticks, u32 mark-pair ticks,
 *                                   u32 size per input, u32 size per output
 *                  DTMM_MSG_RESULT  i32 status, u32 ticks, u32 stack high-water,
 *                                   u32 ticks per profiled operator (marks - 1 of them),
 *                                   the output record (all outputs, metadata order)
 *                  DTMM_MSG_ERROR   u32 code, u32 detail
 */
#ifndef DTMM_TRANSPORT_H_
#define DTMM_TRANSPORT_H_

#define DTMM_TRANSPORT_VERSION 1u
#define DTMM_SYNC0 0xD7u
#define DTMM_SYNC1 0x4Du

#define DTMM_MSG_INFER 0x01u
#define DTMM_MSG_QUIT 0x02u
#define DTMM_MSG_HELLO 0x81u
#define DTMM_MSG_RESULT 0x82u
#define DTMM_MSG_ERROR 0x83u

/* DTMM_MSG_ERROR codes. */
#define DTMM_TERR_BAD_CRC 1u
#define DTMM_TERR_BAD_LENGTH 2u
#define DTMM_TERR_BAD_TYPE 3u

/* Serves inference requests on the UART until DTMM_MSG_QUIT; returns the exit status. */
int dtmm_serve_uart(void);

#endif /* DTMM_TRANSPORT_H_ */
