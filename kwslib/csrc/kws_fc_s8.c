/*
 * Fully connected layer, weight codes in int8 containers (any width 1..8 bits).
 *
 *   acc[c] = bias[c] + sum_i w[c][i] * x[i]     (int32; the layer's bound guarantees no overflow)
 *   out[c] = kws_requantize(acc[c], ...)
 *
 * Paths (all compute the same integers):
 *   scalar        row-major [out_pad][in_pad], one multiply-add per MAC.
 *   AVX-512 VNNI  vpdpbusd (u8 x s8, 4 products per int32 lane): the input is fed
 *                 as unsigned x + 128, so bias_eff = bias - 128 * sum_i w[c][i].
 *                 Layout: blocks of 16 rows; per block and group of 4 inputs, 64 bytes,
 *                 byte 4*j + k = w[16*blk + j][4*g + k].
 *   AVX2          vpmaddwd on int16 (exact for any int8 codes); layout in groups of
 *                 4 rows x 16 inputs (64 bytes, byte 16*r + k = w[4*q + r][16*c + k]).
 *   NEON v8.0     vmull_s8 + vmlal_high_s8 (two products per int16 lane, exact since
 *                 |w| <= 127) then vpadalq_s16 into int32; same layout as AVX2.
 *   NEON dotprod  sdot (4 products per int32 lane); same layout.
 */
#include <string.h>

#include "kws_nn.h"

#if defined(KWS_X86_VNNI) || defined(KWS_X86_AVX2)
#include <immintrin.h>
#endif
#if defined(KWS_NEON)
#include <arm_neon.h>
#endif

size_t kws_fc_s8_weight_bytes(const kws_dims *d) { return (size_t)d->out_pad * (size_t)d->in_pad; }

int32_t kws_fc_s8_prepare(const kws_dims *d, const int8_t *w, const int32_t *bias, void *w_prep,
                          int32_t *bias_eff) {
    const int32_t I = d->in_dim, C = d->out_dim, IP = d->in_pad, CP = d->out_pad;
    int8_t *p = (int8_t *)w_prep;
    if (IP % KWS_IN_ALIGN || CP % KWS_OUT_ALIGN || I > IP || C > CP) return KWS_ERR_ARG;
    memset(p, 0, kws_fc_s8_weight_bytes(d));
    for (int32_t c = 0; c < CP; c++) bias_eff[c] = c < C ? bias[c] : 0;
#if defined(KWS_X86_VNNI)
    for (int32_t c = 0; c < C; c++) {
        int64_t sum_w = 0;
        for (int32_t i = 0; i < I; i++) {
            p[((size_t)(c / 16) * (IP / 4) + i / 4) * 64 + (c % 16) * 4 + i % 4] = w[(size_t)c * I + i];
            sum_w += w[(size_t)c * I + i];
        }
        /* x enters as x + 128: sum w (x + 128) = sum w x + 128 sum w. Wraps mod 2^32 like the
           vector adds; the final accumulator is exact because it fits int32. */
        bias_eff[c] = (int32_t)(uint32_t)((int64_t)bias[c] - 128 * sum_w);
    }
#elif defined(KWS_X86_AVX2) || defined(KWS_NEON)
    for (int32_t c = 0; c < C; c++)
        for (int32_t i = 0; i < I; i++)
            p[((size_t)(c / 4) * (IP / 16) + i / 16) * 64 + (c % 4) * 16 + i % 16] = w[(size_t)c * I + i];
#else
    for (int32_t c = 0; c < C; c++) memcpy(p + (size_t)c * IP, w + (size_t)c * I, (size_t)I);
#endif
    return KWS_OK;
}

void kws_fc_s8(const kws_context *ctx, const kws_act_params *a, const kws_quant_params *q, const kws_dims *d,
               const int8_t *in, const void *w_prep, const int32_t *bias_eff, int8_t *out) {
    const int32_t IP = d->in_pad, CP = d->out_pad;
    const int8_t *p = (const int8_t *)w_prep;
    int32_t *acc = ctx->acc;
#if defined(KWS_X86_VNNI)
    const int32_t G = IP / 4, nb = CP / 16;
    const size_t blk = (size_t)G * 64;
    int32_t b = 0;
    for (; b + 4 <= nb; b += 4) {
        __m512i a0 = _mm512_loadu_si512(bias_eff + 16 * b), a1 = _mm512_loadu_si512(bias_eff + 16 * b + 16);
        __m512i a2 = _mm512_loadu_si512(bias_eff + 16 * b + 32), a3 = _mm512_loadu_si512(bias_eff + 16 * b + 48);
        const int8_t *w0 = p + (size_t)b * blk;
        for (int32_t g = 0; g < G; g++) {
            int32_t xv;
            memcpy(&xv, in + 4 * g, 4);
            const __m512i xb = _mm512_set1_epi32(xv ^ (int32_t)0x80808080u);
            a0 = _mm512_dpbusd_epi32(a0, xb, _mm512_loadu_si512(w0 + 64 * g));
            a1 = _mm512_dpbusd_epi32(a1, xb, _mm512_loadu_si512(w0 + blk + 64 * g));
            a2 = _mm512_dpbusd_epi32(a2, xb, _mm512_loadu_si512(w0 + 2 * blk + 64 * g));
            a3 = _mm512_dpbusd_epi32(a3, xb, _mm512_loadu_si512(w0 + 3 * blk + 64 * g));
        }
        _mm512_storeu_si512(acc + 16 * b, a0);
        _mm512_storeu_si512(acc + 16 * b + 16, a1);
        _mm512_storeu_si512(acc + 16 * b + 32, a2);
        _mm512_storeu_si512(acc + 16 * b + 48, a3);
    }
    for (; b < nb; b++) {
        __m512i a0 = _mm512_loadu_si512(bias_eff + 16 * b);
        const int8_t *w0 = p + (size_t)b * blk;
        for (int32_t g = 0; g < G; g++) {
            int32_t xv;
            memcpy(&xv, in + 4 * g, 4);
            a0 = _mm512_dpbusd_epi32(a0, _mm512_set1_epi32(xv ^ (int32_t)0x80808080u),
                                     _mm512_loadu_si512(w0 + 64 * g));
        }
        _mm512_storeu_si512(acc + 16 * b, a0);
    }
#elif defined(KWS_X86_AVX2)
    int16_t *x16 = ctx->x16;
    for (int32_t i = 0; i < IP; i += 16)
        _mm256_storeu_si256((__m256i *)(x16 + i), _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(in + i))));
    const int32_t nc = IP / 16;
    for (int32_t r4 = 0; r4 < CP / 4; r4++) {
        __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
        const int8_t *wp = p + (size_t)r4 * nc * 64;
        for (int32_t c = 0; c < nc; c++, wp += 64) {
            const __m256i xv = _mm256_loadu_si256((const __m256i *)(x16 + 16 * c));
            a0 = _mm256_add_epi32(a0, _mm256_madd_epi16(_mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)wp)), xv));
            a1 = _mm256_add_epi32(a1, _mm256_madd_epi16(_mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(wp + 16))), xv));
            a2 = _mm256_add_epi32(a2, _mm256_madd_epi16(_mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(wp + 32))), xv));
            a3 = _mm256_add_epi32(a3, _mm256_madd_epi16(_mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(wp + 48))), xv));
        }
        const __m256i t = _mm256_hadd_epi32(_mm256_hadd_epi32(a0, a1), _mm256_hadd_epi32(a2, a3));
        __m128i s = _mm_add_epi32(_mm256_castsi256_si128(t), _mm256_extracti128_si256(t, 1));
        s = _mm_add_epi32(s, _mm_loadu_si128((const __m128i *)(bias_eff + 4 * r4)));
        _mm_storeu_si128((__m128i *)(acc + 4 * r4), s);
    }
#elif defined(KWS_NEON)
    const int32_t nc = IP / 16;
    for (int32_t r4 = 0; r4 < CP / 4; r4++) {
        int32x4_t a0 = vdupq_n_s32(0), a1 = a0, a2 = a0, a3 = a0;
        const int8_t *wp = p + (size_t)r4 * nc * 64;
        KWS_NEON_UNROLL
        for (const int8_t *xp = in, *xe = in + IP; xp < xe; xp += 16, wp += 64) {
            const int8x16_t xv = vld1q_s8(xp);
            const int8x16x4_t wv = vld1q_s8_x4(wp); /* one ld1 of 4 registers: rows 0..3 */
            const int8x16_t w0 = wv.val[0], w1 = wv.val[1], w2 = wv.val[2], w3 = wv.val[3];
#if defined(KWS_NEON_DOTPROD)
            a0 = vdotq_s32(a0, w0, xv);
            a1 = vdotq_s32(a1, w1, xv);
            a2 = vdotq_s32(a2, w2, xv);
            a3 = vdotq_s32(a3, w3, xv);
#else
            const int8x8_t xl = vget_low_s8(xv);
            a0 = vpadalq_s16(a0, vmlal_high_s8(vmull_s8(vget_low_s8(w0), xl), w0, xv));
            a1 = vpadalq_s16(a1, vmlal_high_s8(vmull_s8(vget_low_s8(w1), xl), w1, xv));
            a2 = vpadalq_s16(a2, vmlal_high_s8(vmull_s8(vget_low_s8(w2), xl), w2, xv));
            a3 = vpadalq_s16(a3, vmlal_high_s8(vmull_s8(vget_low_s8(w3), xl), w3, xv));
#endif
        }
        int32x4_t s = vpaddq_s32(vpaddq_s32(a0, a1), vpaddq_s32(a2, a3));
        vst1q_s32(acc + 4 * r4, vaddq_s32(s, vld1q_s32(bias_eff + 4 * r4)));
    }
#else
    (void)CP;
    for (int32_t c = 0; c < d->out_dim; c++) {
        const int8_t *wr = p + (size_t)c * IP;
        int32_t s = bias_eff[c];
        for (int32_t i = 0; i < d->in_dim; i++) s += (int32_t)wr[i] * (int32_t)in[i];
        acc[c] = s;
    }
#endif
    kws_requantize_block(acc, d->out_dim, q, a, out);
}
