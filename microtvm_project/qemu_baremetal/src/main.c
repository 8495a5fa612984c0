/*
 * DTMM measurement harness.
 *
 * Reads inference inputs from the host file dtmm_inputs.bin (records of all inputs back to
 * back, in metadata order), runs tvmgen_default_run on each record between two timer reads,
 * writes the outputs to dtmm_outputs.bin and prints machine-readable lines on the semihosting
 * console (QEMU's stderr):
 *
 *   DTMM empty_ticks <i> <ticks>     timer ticks of an empty call with the same signature
 *   DTMM mark_ticks <i> <ticks>      (profiled builds) ticks of two back-to-back profile marks
 *   DTMM ticks <n> <ticks>           timer ticks of inference n
 *   DTMM op_ticks <k> <ticks>        (profiled builds) ticks of operator k of that inference
 *   DTMM stack <high_water> <size>   painted-stack high-water mark and reserved stack, bytes
 *   DTMM done <count>                all inferences completed
 *   DTMM error <code> <detail>       what failed (the exit status is the code)
 *
 * Ticks are converted to instructions on the host, since the factor depends on QEMU's -icount.
 *
 * With the semihosting command line "uart" (QEMU -semihosting-config ...,arg=uart) the harness serves requests on
 * the UART instead (transport.c): the Project API's open_transport.
 */
#include <stdint.h>

#include "dtmm_harness.h"
#include "semihost.h"
#include "timer.h"
#include "transport.h"

#define DTMM_INPUT_FILE "dtmm_inputs.bin"
#define DTMM_OUTPUT_FILE "dtmm_outputs.bin"
#define DTMM_STACK_PAINT 0xC5A5C5A5u
#define DTMM_EMPTY_REPEATS 3u

extern uint32_t __StackLimit[];
extern uint32_t __StackTop[];

typedef int32_t (*dtmm_run_fn)(struct dtmm_model_inputs*, struct dtmm_model_outputs*);

/* Both the model and the empty function are timed through this one function and an indirect
 * call, so the two measurements execute identical instruction sequences except the callee. */
__attribute__((noinline, noipa)) static uint32_t timed_call(dtmm_run_fn fn, int32_t* status) {
  uint32_t t0 = dtmm_timer_read();
  int32_t rc = fn(&dtmm_inputs, &dtmm_outputs);
  uint32_t t1 = dtmm_timer_read();
  *status = rc;
  return dtmm_timer_elapsed(t0, t1);
}

uint32_t dtmm_timed_run(int32_t* status) { return timed_call(dtmm_model_run, status); }

uint32_t dtmm_empty_call_ticks(void) {
  int32_t rc;
  uint32_t best = 0xFFFFFFFFu;
  for (uint32_t i = 0; i < DTMM_EMPTY_REPEATS; i++) {
    uint32_t t = timed_call(dtmm_empty_run, &rc);
    if (t < best) best = t;
  }
  return best;
}

void dtmm_profile_mark(uint32_t index) {
  if (index < dtmm_profile_marks) dtmm_mark_times[index] = dtmm_timer_read();
}

uint32_t dtmm_profile_ticks(uint32_t k) {
  return dtmm_timer_elapsed(dtmm_mark_times[k], dtmm_mark_times[k + 1u]);
}

/* The cost of one mark as seen between two marks: subtracted from every operator's ticks. */
uint32_t dtmm_mark_pair_ticks(void) {
  if (dtmm_profile_marks < 2u) return 0u;
  uint32_t best = 0xFFFFFFFFu;
  for (uint32_t i = 0; i < DTMM_EMPTY_REPEATS; i++) {
    dtmm_profile_mark(0u);
    dtmm_profile_mark(1u);
    uint32_t t = dtmm_profile_ticks(0u);
    if (t < best) best = t;
  }
  return best;
}

static void fail(int32_t code, uint32_t detail) {
  dtmm_report("error", (uint32_t)code, detail);
  dtmm_exit(code);
}

/* Fill the unused part of the stack with a pattern; main's own frame (above sp) is left alone. */
__attribute__((noinline)) static void paint_stack(void) {
  uint32_t marker;
  /* 64 bytes below this frame's local covers paint_stack's own frame. */
  volatile uint32_t* end = (volatile uint32_t*)((uintptr_t)&marker - 64u);
  for (volatile uint32_t* p = __StackLimit; p < end; p++) *p = DTMM_STACK_PAINT;
}

uint32_t dtmm_stack_high_water(void) {
  const uint32_t* p = __StackLimit;
  while (p < __StackTop && *p == DTMM_STACK_PAINT) p++;
  return (uint32_t)((uintptr_t)__StackTop - (uintptr_t)p);
}

/* Reads one record (every input tensor). Returns 1 for a record, 0 at a clean end of file. */
static int read_record(int32_t fd, uint32_t index) {
  for (uint32_t i = 0; i < dtmm_num_inputs; i++) {
    int32_t got = dtmm_sh_read(fd, dtmm_input_ptrs[i], dtmm_input_sizes[i]);
    if (got < 0) fail(DTMM_EXIT_READ, index);
    if (got == 0 && i == 0) return 0;
    if ((uint32_t)got != dtmm_input_sizes[i]) fail(DTMM_EXIT_PARTIAL_INPUT, index);
  }
  return 1;
}

/* 1 when the semihosting command line (-semihosting-config arg=uart) is "uart". */
static int uart_mode(void) {
  char cmdline[16];
  if (dtmm_sh_cmdline(cmdline, sizeof cmdline) != 0) return 0;
  return cmdline[0] == 'u' && cmdline[1] == 'a' && cmdline[2] == 'r' && cmdline[3] == 't' &&
         cmdline[4] == '\0';
}

int main(void) {
  dtmm_timer_init();
  paint_stack();
  if (uart_mode()) return dtmm_serve_uart();

  int32_t in_fd = dtmm_sh_open(DTMM_INPUT_FILE, DTMM_SH_MODE_RB);
  if (in_fd < 0) fail(DTMM_EXIT_OPEN_INPUT, 0);
  int32_t out_fd = dtmm_sh_open(DTMM_OUTPUT_FILE, DTMM_SH_MODE_WB);
  if (out_fd < 0) fail(DTMM_EXIT_OPEN_OUTPUT, 0);

  int32_t rc;
  for (uint32_t i = 0; i < DTMM_EMPTY_REPEATS; i++) {
    uint32_t ticks = timed_call(dtmm_empty_run, &rc);
    dtmm_report("empty_ticks", i, ticks);
  }

  if (dtmm_profile_marks >= 2u) dtmm_report("mark_ticks", 0u, dtmm_mark_pair_ticks());

  uint32_t n = 0;
  while (read_record(in_fd, n)) {
    uint32_t ticks = timed_call(dtmm_model_run, &rc);
    if (rc != 0) fail(DTMM_EXIT_MODEL, (uint32_t)rc);
    for (uint32_t i = 0; i < dtmm_num_outputs; i++) {
      if (dtmm_sh_write(out_fd, dtmm_output_ptrs[i], dtmm_output_sizes[i]) != 0) {
        fail(DTMM_EXIT_WRITE, n);
      }
    }
    dtmm_report("ticks", n, ticks);
    for (uint32_t k = 0; k + 1u < dtmm_profile_marks; k++) {
      dtmm_report("op_ticks", k, dtmm_profile_ticks(k));
    }
    n++;
  }
  if (n == 0) fail(DTMM_EXIT_NO_INPUTS, 0);

  uint32_t high_water = dtmm_stack_high_water();
  uint32_t stack_size = (uint32_t)((uintptr_t)__StackTop - (uintptr_t)__StackLimit);
  dtmm_report("stack", high_water, stack_size);
  /* The lowest word was overwritten: the stack may have grown past its reservation. */
  if (high_water >= stack_size) fail(DTMM_EXIT_STACK_OVERFLOW, high_water);

  dtmm_sh_close(in_fd);
  dtmm_sh_close(out_fd);
  dtmm_report1("done", n);
  return DTMM_EXIT_OK;
}

/* Called from Fault_Handler (startup.S) for every fault and unexpected exception. A stack-limit
 * fault (v8-M UFSR.STKOF, CFSR bit 20) is reported as a stack overflow, anything else with the
 * exception number. */
void dtmm_fault(void) {
  uint32_t ipsr;
  __asm__ volatile("mrs %0, ipsr" : "=r"(ipsr));
  uint32_t cfsr = *(volatile uint32_t*)0xE000ED28u;
  if (cfsr & (1u << 20)) fail(DTMM_EXIT_STACK_OVERFLOW, 0);
  fail(DTMM_EXIT_FAULT, ipsr & 0x1FFu);
}
