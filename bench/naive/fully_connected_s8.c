/* Naive int8 FULLY_CONNECTED: TFLM's reference_integer_ops::FullyConnected (per-channel
 * multipliers; a per-tensor one is repeated per channel, which gives the same result). */
#include <stdint.h>
#include "naive_common.h"

/* in_h = batches, in_c = accum depth, out_c = output depth. */
void naive_fully_connected_s8(const naive_params_t* p, const int8_t* input, const int8_t* filter,
                              const int32_t* bias, const int32_t* multiplier, const int32_t* shift,
                              int8_t* output) {
  for (int b = 0; b < p->in_h; ++b) {
    for (int oc = 0; oc < p->out_c; ++oc) {
      int32_t acc = 0;
      for (int d = 0; d < p->in_c; ++d) {
        int32_t in_val = input[b * p->in_c + d];
        int32_t f_val = filter[oc * p->in_c + d];
        acc += (f_val + p->filter_offset) * (in_val + p->input_offset);
      }
      if (bias) acc += bias[oc];
      acc = naive_requant(acc, multiplier[oc], shift[oc]);
      acc += p->output_offset;
      if (acc < p->act_min) acc = p->act_min;
      if (acc > p->act_max) acc = p->act_max;
      output[b * p->out_c + oc] = (int8_t)acc;
    }
  }
}
