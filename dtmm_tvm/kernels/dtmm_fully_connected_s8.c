/* int8 fully connected, TFLM FullyConnected bit-exact with weights_offset 0 (see
 * dtmm_kernels_dwfc.h for the folded-bias convention: the kernel accumulates raw x * w).
 *
 * rows_per_block output rows (1, 2 or 4) are computed together so each input load is shared:
 *   MVE  (Cortex-M55): 16 int8 lanes, VMLADAVA.S8 (dot product into a scalar), predicated tail.
 *   DSP  (Cortex-M4/M7): 4 k per word, SXTB16 (+ROR 8) of input and weights, 2 SMLAD per word.
 *   portable C: scalar multiply-accumulate.
 * The requantization is scalar on every ISA (O per batch row, negligible next to O*K MACs).
 */
#include <string.h>

#include "dtmm_kernels_dwfc.h"

#if defined(DTMM_ISA_MVE)
#include <arm_mve.h>
#define DTMM_FC_MVE 1
#elif defined(DTMM_ISA_DSP)
#include <arm_acle.h>
#define DTMM_FC_DSP 1
#endif

/* Exported API. Not declared in a header on purpose (see dtmm_kernels_dwfc.h): these are the
 * exact prototypes TVM's CodeGenC emits for the T.call_extern in dtmm_tvm/ops. */
/* int8 fully connected (TFLM FullyConnected, weights_offset 0): out[n, o] = requant(bias[o] +
 * sum_k x[n, k] * w[o, k]), bias folded (see dtmm_kernels_dwfc.h). weight [O, K] row-major.
 * rows_per_block: outputs computed together sharing the input loads (1, 2 or 4).
 * No scratch (dtmm_fully_connected_s8_get_buffer_size() returns 0).
 */
void dtmm_fully_connected_s8(int8_t* input, int8_t* weight, int32_t* bias, int32_t* mult, int32_t* shift,
                             int8_t* output, int32_t batches, int32_t k, int32_t o, int32_t output_zp,
                             int32_t act_min, int32_t act_max, int32_t rows_per_block);
int32_t dtmm_fully_connected_s8_get_buffer_size(int32_t k);

int32_t dtmm_fully_connected_s8_get_buffer_size(int32_t k)
{
    (void)k;
    return 0;
}

#if defined(DTMM_FC_DSP)
static inline int32_t fc_read_s8x4(const int8_t* p)
{
    int32_t v;
    __builtin_memcpy(&v, p, 4); /* one LDR (unaligned access is allowed on v7E-M); the builtin also
                                  * under -ffreestanding */
    return v;
}

/* SXTB16 of bytes 1 and 3: one instruction (GCC 12 does not fuse a rotate into __sxtb16). */
static inline int32_t fc_sxtb16_ror8(int32_t v)
{
    int32_t r;
    __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(v));
    return r;
}

#define FC_DOT4(xe, xo, wptr, acc)                                     \
    do {                                                               \
        const int32_t wv_ = fc_read_s8x4(wptr);                        \
        acc = (int32_t)__smlad((int32_t)__sxtb16(wv_), xe, acc);       \
        acc = (int32_t)__smlad(fc_sxtb16_ror8(wv_), xo, acc); \
    } while (0)
#endif

/* acc[r] += sum_k x[k] * w[r * k_size + k] for `rows` rows starting at w (k from `k0`). */
static inline void fc_tail(const int8_t* x, const int8_t* w, int32_t k0, int32_t k_size, int32_t rows, int32_t* acc)
{
    for (int32_t r = 0; r < rows; r++) {
        const int8_t* wr = w + r * k_size;
        int32_t a = acc[r];
        for (int32_t k = k0; k < k_size; k++) a += (int32_t)x[k] * (int32_t)wr[k];
        acc[r] = a;
    }
}

/* Dot products of `rows` (1, 2 or 4; a compile-time constant after inlining) consecutive rows. */
static inline __attribute__((always_inline)) void fc_rows(const int8_t* x, const int8_t* w, int32_t k_size,
                                                          int32_t rows, int32_t* acc)
{
    int32_t a0 = acc[0], a1 = rows > 1 ? acc[1] : 0, a2 = rows > 2 ? acc[2] : 0, a3 = rows > 3 ? acc[3] : 0;
    const int8_t* w0 = w;
    const int8_t* w1 = w + k_size;
    const int8_t* w2 = w + 2 * k_size;
    const int8_t* w3 = w + 3 * k_size;
    int32_t k = 0;
#if defined(DTMM_FC_MVE)
    for (; k + 16 <= k_size; k += 16) {
        const int8x16_t xv = vldrbq_s8(x + k);
        a0 = vmladavaq_s8(a0, xv, vldrbq_s8(w0 + k));
        if (rows > 1) a1 = vmladavaq_s8(a1, xv, vldrbq_s8(w1 + k));
        if (rows > 2) a2 = vmladavaq_s8(a2, xv, vldrbq_s8(w2 + k));
        if (rows > 3) a3 = vmladavaq_s8(a3, xv, vldrbq_s8(w3 + k));
    }
    if (k < k_size) {
        const mve_pred16_t p = vctp8q((uint32_t)(k_size - k));
        const int8x16_t xv = vldrbq_z_s8(x + k, p); /* zero lanes: products vanish */
        a0 = vmladavaq_s8(a0, xv, vldrbq_z_s8(w0 + k, p));
        if (rows > 1) a1 = vmladavaq_s8(a1, xv, vldrbq_z_s8(w1 + k, p));
        if (rows > 2) a2 = vmladavaq_s8(a2, xv, vldrbq_z_s8(w2 + k, p));
        if (rows > 3) a3 = vmladavaq_s8(a3, xv, vldrbq_z_s8(w3 + k, p));
        k = k_size;
    }
#elif defined(DTMM_FC_DSP)
    for (; k + 4 <= k_size; k += 4) {
        const int32_t xv = fc_read_s8x4(x + k);
        const int32_t xe = (int32_t)__sxtb16(xv);
        const int32_t xo = fc_sxtb16_ror8(xv);
        FC_DOT4(xe, xo, w0 + k, a0);
        if (rows > 1) FC_DOT4(xe, xo, w1 + k, a1);
        if (rows > 2) FC_DOT4(xe, xo, w2 + k, a2);
        if (rows > 3) FC_DOT4(xe, xo, w3 + k, a3);
    }
#else
    for (; k < k_size; k++) {
        const int32_t xv = x[k];
        a0 += xv * w0[k];
        if (rows > 1) a1 += xv * w1[k];
        if (rows > 2) a2 += xv * w2[k];
        if (rows > 3) a3 += xv * w3[k];
    }
#endif
    acc[0] = a0;
    if (rows > 1) acc[1] = a1;
    if (rows > 2) acc[2] = a2;
    if (rows > 3) acc[3] = a3;
    if (k < k_size) fc_tail(x, w, k, k_size, rows, acc);
}

void dtmm_fully_connected_s8(int8_t* input, int8_t* weight, int32_t* bias, int32_t* mult, int32_t* shift,
                             int8_t* output, int32_t batches, int32_t k, int32_t o, int32_t output_zp,
                             int32_t act_min, int32_t act_max, int32_t rows_per_block)
{
    for (int32_t n = 0; n < batches; n++) {
        const int8_t* x = input + n * k;
        int8_t* out = output + n * o;
        int32_t r = 0;
        int32_t acc[4];
        if (rows_per_block >= 4) {
            for (; r + 4 <= o; r += 4) {
                acc[0] = bias[r]; acc[1] = bias[r + 1]; acc[2] = bias[r + 2]; acc[3] = bias[r + 3];
                fc_rows(x, weight + r * k, k, 4, acc);
                for (int32_t i = 0; i < 4; i++)
                    out[r + i] = dtmm_dwfc_clamp_s8(
                        dtmm_dwfc_requantize(acc[i], mult[r + i], shift[r + i]) + output_zp, act_min, act_max);
            }
        }
        if (rows_per_block >= 2) {
            for (; r + 2 <= o; r += 2) {
                acc[0] = bias[r]; acc[1] = bias[r + 1];
                fc_rows(x, weight + r * k, k, 2, acc);
                for (int32_t i = 0; i < 2; i++)
                    out[r + i] = dtmm_dwfc_clamp_s8(
                        dtmm_dwfc_requantize(acc[i], mult[r + i], shift[r + i]) + output_zp, act_min, act_max);
            }
        }
        for (; r < o; r++) {
            acc[0] = bias[r];
            fc_rows(x, weight + r * k, k, 1, acc);
            out[r] = dtmm_dwfc_clamp_s8(dtmm_dwfc_requantize(acc[0], mult[r], shift[r]) + output_zp, act_min,
                                        act_max);
        }
    }
}
