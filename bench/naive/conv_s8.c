/* Naive int8 CONV_2D: TFLM's reference_integer_ops::ConvPerChannel loop nest. */
#include <stdint.h>
#include "naive_common.h"

void naive_conv_s8(const naive_params_t* p, const int8_t* input, const int8_t* filter,
                   const int32_t* bias, const int32_t* multiplier, const int32_t* shift,
                   int8_t* output) {
  for (int out_y = 0; out_y < p->out_h; ++out_y) {
    const int in_y_origin = out_y * p->stride_h - p->pad_top;
    for (int out_x = 0; out_x < p->out_w; ++out_x) {
      const int in_x_origin = out_x * p->stride_w - p->pad_left;
      for (int oc = 0; oc < p->out_c; ++oc) {
        int32_t acc = 0;
        for (int fy = 0; fy < p->k_h; ++fy) {
          const int in_y = in_y_origin + p->dilation_h * fy;
          for (int fx = 0; fx < p->k_w; ++fx) {
            const int in_x = in_x_origin + p->dilation_w * fx;
            if (in_x < 0 || in_x >= p->in_w || in_y < 0 || in_y >= p->in_h) continue;
            for (int ic = 0; ic < p->in_c; ++ic) {
              int32_t in_val = input[(in_y * p->in_w + in_x) * p->in_c + ic];
              int32_t f_val = filter[((oc * p->k_h + fy) * p->k_w + fx) * p->in_c + ic];
              acc += f_val * (in_val + p->input_offset);
            }
          }
        }
        if (bias) acc += bias[oc];
        acc = naive_requant(acc, multiplier[oc], shift[oc]);
        acc += p->output_offset;
        if (acc < p->act_min) acc = p->act_min;
        if (acc > p->act_max) acc = p->act_max;
        output[(out_y * p->out_w + out_x) * p->out_c + oc] = (int8_t)acc;
      }
    }
  }
}
