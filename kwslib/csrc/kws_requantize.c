/*
 * Requantization and input quantization, shared by every kernel (the routine itself,
 * kws_requantize, is the static inline function in kws_nn.h).
 */
#include <math.h>

#include "kws_nn.h"

void kws_requantize_block(const int32_t *acc, int32_t n, const kws_quant_params *q, const kws_act_params *a,
                          int8_t *out) {
    for (int32_t c = 0; c < n; c++)
        out[c] = kws_requantize(acc[c], q->mult[c], q->shift[c], a->out_zero_point, a->act_min, a->act_max);
}

/* intspec.quantize_input: clamp(floor(x / scale + 0.5) + z, -128, 127) in float32
   (compiled with -ffp-contract=off so x / scale + 0.5 is rounded twice, as numpy does).
   NaN inputs give code z. */
void kws_quantize_input(const float *x, int32_t n, float scale, int32_t zero_point, int8_t *out) {
    const float z = (float)zero_point;
    for (int32_t i = 0; i < n; i++) {
        const float t = floorf(x[i] / scale + 0.5f) + z;
        out[i] = t >= 127.0f ? 127 : t <= -128.0f ? -128 : t == t ? (int8_t)t : (int8_t)zero_point;
    }
}
