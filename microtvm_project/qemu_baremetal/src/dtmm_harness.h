/* Interface between main.c and the model glue generated from metadata.json
 * (src/dtmm_model_glue.c, written by microtvm_api_server.py generate_project). */
#ifndef DTMM_HARNESS_H_
#define DTMM_HARNESS_H_

#include <stdint.h>

#include "tvmgen_default.h"

/* Buffers handed to tvmgen_default_run, pointed to by the structs below, one per tensor. */
extern struct tvmgen_default_inputs dtmm_inputs;
extern struct tvmgen_default_outputs dtmm_outputs;
extern const uint32_t dtmm_num_inputs;
extern const uint32_t dtmm_num_outputs;
extern void* const dtmm_input_ptrs[];
extern const uint32_t dtmm_input_sizes[];
extern void* const dtmm_output_ptrs[];
extern const uint32_t dtmm_output_sizes[];

int32_t dtmm_empty_run(struct tvmgen_default_inputs* inputs,
                       struct tvmgen_default_outputs* outputs);

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
