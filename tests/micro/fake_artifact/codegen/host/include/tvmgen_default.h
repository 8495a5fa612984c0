/* Hand-written stand-in for the codegen's tvmgen_default.h (tests only). */
#ifndef TVMGEN_DEFAULT_H_
#define TVMGEN_DEFAULT_H_

#include <stdint.h>

#define TVMGEN_DEFAULT_INPUT_SIZE 16
#define TVMGEN_DEFAULT_OUTPUT_SIZE 16

struct tvmgen_default_inputs {
  void* input;
};

struct tvmgen_default_outputs {
  void* output;
};

int32_t tvmgen_default_run(struct tvmgen_default_inputs* inputs,
                           struct tvmgen_default_outputs* outputs);

#endif  /* TVMGEN_DEFAULT_H_ */
