/* Interface between main.c and the model glue generated from metadata.json
 * (src/dtmm_model_glue.c, written by microtvm_api_server.py generate_project). */
#ifndef DTMM_HARNESS_H_
#define DTMM_HARNESS_H_

#include <stdint.h>

#include "dtmm_model.h"

/* Buffers handed to tvmgen_default_run, pointed to by the structs below, one per tensor. */
extern struct dtmm_model_inputs dtmm_inputs;
extern struct dtmm_model_outputs dtmm_outputs;
extern const uint32_t dtmm_num_inputs;
extern const uint32_t dtmm_num_outputs;
extern void* const dtmm_input_ptrs[];
extern const uint32_t dtmm_input_sizes[];
extern void* const dtmm_output_ptrs[];
extern const uint32_t dtmm_output_sizes[];

int32_t dtmm_empty_run(struct dtmm_model_inputs* inputs,
                       struct dtmm_model_outputs* outputs);

/* Per-operator profile (built with -DDTMM_PROFILE): the runner calls dtmm_profile_mark(k)
 * before operator k and after the last one. dtmm_profile_marks (from the glue) is the number of
 * marks per inference, 0 in a build without profiling; dtmm_mark_times holds them. */
extern const uint32_t dtmm_profile_marks;
extern uint32_t dtmm_mark_times[];
void dtmm_profile_mark(uint32_t index);
/* Ticks of operator k of the last inference (between marks k and k+1). */
uint32_t dtmm_profile_ticks(uint32_t k);

/* Shared by the semihosting batch loop (main.c) and the UART transport (transport.c). */
uint32_t dtmm_timed_run(int32_t* status);
uint32_t dtmm_empty_call_ticks(void);
uint32_t dtmm_mark_pair_ticks(void);
uint32_t dtmm_stack_high_water(void);

/* Exit statuses (also decoded by dtmm_tvm/micro/measure.py). */
#define DTMM_EXIT_OK 0
#define DTMM_EXIT_OPEN_INPUT 10
#define DTMM_EXIT_OPEN_OUTPUT 11
#define DTMM_EXIT_READ 12
#define DTMM_EXIT_PARTIAL_INPUT 13
#define DTMM_EXIT_WRITE 14
#define DTMM_EXIT_NO_INPUTS 15
#define DTMM_EXIT_MODEL 16
#define DTMM_EXIT_STACK_OVERFLOW 17
#define DTMM_EXIT_FAULT 18

#endif  /* DTMM_HARNESS_H_ */
