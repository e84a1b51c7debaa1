/*
 * Float32 fully connected layer: the reference the integer kernels are compared with
 * (aarch64 instruction counts). out = relu?(w @ in + bias).
 *   scalar  row-major [out_pad][in_pad], plain loops (the compiler may vectorise them).
 *   NEON    written like the int8 NEON kernels, for a fair count: 4 rows at a time,
 *           weights interleaved in 64-byte chunks (4 rows x 4 inputs, float 4 r + k) read
 *           by one ld1 of 4 registers, one input load shared by the 4 rows, vfmaq_f32.
 */
#include <string.h>

#include "kws_nn.h"

#if defined(KWS_NEON)
#include <arm_neon.h>
#endif

size_t kws_fc_f32_weight_bytes(const kws_dims *d) { return (size_t)d->out_pad * d->in_pad * sizeof(float); }

void kws_fc_f32_prepare(const kws_dims *d, const float *w, float *w_prep) {
    const int32_t I = d->in_dim, IP = d->in_pad;
    memset(w_prep, 0, kws_fc_f32_weight_bytes(d));
    for (int32_t c = 0; c < d->out_dim; c++)
#if defined(KWS_NEON)
        for (int32_t i = 0; i < I; i++)
            w_prep[((size_t)(c / 4) * (IP / 4) + i / 4) * 16 + (c % 4) * 4 + i % 4] = w[(size_t)c * I + i];
#else
        memcpy(w_prep + (size_t)c * IP, w + (size_t)c * I, sizeof(float) * I);
#endif
}

void kws_fc_f32(const kws_dims *d, const float *in, const float *w_prep, const float *bias, int32_t relu,
                float *out) {
    const int32_t IP = d->in_pad, C = d->out_dim;
#if defined(KWS_NEON)
    for (int32_t r4 = 0; r4 < d->out_pad / 4; r4++) {
        const float *wp = w_prep + (size_t)4 * r4 * IP;
        float32x4_t a0 = vdupq_n_f32(0.0f), a1 = a0, a2 = a0, a3 = a0;
        KWS_NEON_UNROLL
        for (int32_t i = 0; i < IP; i += 4, wp += 16) {
            const float32x4_t xv = vld1q_f32(in + i);
            const float32x4x4_t wv = vld1q_f32_x4(wp);
            a0 = vfmaq_f32(a0, wv.val[0], xv);
            a1 = vfmaq_f32(a1, wv.val[1], xv);
            a2 = vfmaq_f32(a2, wv.val[2], xv);
            a3 = vfmaq_f32(a3, wv.val[3], xv);
        }
        float32x4_t s = vaddq_f32(vpaddq_f32(vpaddq_f32(a0, a1), vpaddq_f32(a2, a3)), vld1q_f32(bias + 4 * r4));
        if (relu) s = vmaxq_f32(s, vdupq_n_f32(0.0f));
        if (4 * r4 + 4 <= C)
            vst1q_f32(out + 4 * r4, s);
        else {
            float tmp[4];
            vst1q_f32(tmp, s);
            for (int32_t r = 0; 4 * r4 + r < C; r++) out[4 * r4 + r] = tmp[r];
        }
    }
#else
    for (int32_t c = 0; c < C; c++) {
        const float *wr = w_prep + (size_t)c * IP;
        float s = 0.0f;
        for (int32_t i = 0; i < d->in_dim; i++) s += wr[i] * in[i];
        s += bias[c];
        out[c] = relu && s < 0.0f ? 0.0f : s;
    }
#endif
}
