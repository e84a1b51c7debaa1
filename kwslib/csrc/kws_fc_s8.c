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
 * Batch: d->n input vectors (in_pad codes apart; outputs out_stride apart). The VNNI path
 * runs KWS_TILE inputs per pass over the weights (each weight vector loaded once per tile),
 * the AVX2 path pairs of inputs; the other paths loop over the inputs.
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

#if defined(KWS_X86_VNNI)
/* nt inputs x nbk blocks of 16 rows: nt * nbk accumulators stay in registers; each 64-byte weight
   vector is loaded once for the nt inputs (nt, nbk are constants after inlining). */
static inline __attribute__((always_inline)) void vnni_s8_blocks(const int8_t *in, int32_t IP, const int nt,
                                                                 const int nbk, const int8_t *w0, size_t blk,
                                                                 const int32_t *bias_eff, int32_t *acc, int32_t CP) {
    __m512i a[KWS_TILE][4];
    for (int t = 0; t < nt; t++)
        for (int k = 0; k < nbk; k++) a[t][k] = _mm512_loadu_si512(bias_eff + 16 * k);
    for (int32_t g = 0; g < IP / 4; g++) {
        __m512i xb[KWS_TILE];
        for (int t = 0; t < nt; t++) {
            int32_t xv;
            memcpy(&xv, in + (size_t)t * IP + 4 * g, 4);
            xb[t] = _mm512_set1_epi32(xv ^ (int32_t)0x80808080u); /* u = x + 128 */
        }
        for (int k = 0; k < nbk; k++) {
            const __m512i wv = _mm512_loadu_si512(w0 + k * blk + 64 * (size_t)g);
            for (int t = 0; t < nt; t++) a[t][k] = _mm512_dpbusd_epi32(a[t][k], xb[t], wv);
        }
    }
    for (int t = 0; t < nt; t++)
        for (int k = 0; k < nbk; k++) _mm512_storeu_si512(acc + (size_t)t * CP + 16 * k, a[t][k]);
}

static inline __attribute__((always_inline)) void vnni_s8_tile(const int8_t *in, int32_t IP, int32_t CP,
                                                               const int nt, const int8_t *p,
                                                               const int32_t *bias_eff, int32_t *acc) {
    const int32_t nb = CP / 16;
    const size_t blk = (size_t)(IP / 4) * 64;
    int32_t b = 0;
    for (; b + 4 <= nb; b += 4) vnni_s8_blocks(in, IP, nt, 4, p + b * blk, blk, bias_eff + 16 * b, acc + 16 * b, CP);
    for (; b < nb; b++) vnni_s8_blocks(in, IP, nt, 1, p + b * blk, blk, bias_eff + 16 * b, acc + 16 * b, CP);
}
#endif

void kws_fc_s8(const kws_context *ctx, const kws_act_params *a, const kws_quant_params *q, const kws_dims *d,
               const int8_t *input, const void *w_prep, const int32_t *bias_eff, int8_t *output) {
    const int32_t IP = d->in_pad, CP = d->out_pad;
    const int8_t *p = (const int8_t *)w_prep;
    int32_t *acc = ctx->acc;
#if defined(KWS_X86_VNNI)
    for (int32_t s = 0; s < d->n; s += KWS_TILE) {
        const int32_t nt = d->n - s < KWS_TILE ? d->n - s : KWS_TILE;
        const int8_t *in = input + (size_t)s * IP;
        switch (nt) { /* one specialisation per tile size */
        case 4: vnni_s8_tile(in, IP, CP, 4, p, bias_eff, acc); break;
        case 3: vnni_s8_tile(in, IP, CP, 3, p, bias_eff, acc); break;
        case 2: vnni_s8_tile(in, IP, CP, 2, p, bias_eff, acc); break;
        default: vnni_s8_tile(in, IP, CP, 1, p, bias_eff, acc); break;
        }
        for (int32_t t = 0; t < nt; t++)
            kws_requantize_block(acc + (size_t)t * CP, d->out_dim, q, a, output + (size_t)(s + t) * d->out_stride);
    }
#else
    int32_t s = 0;
#if defined(KWS_X86_AVX2)
    /* Pairs of input vectors share each pass over the weights: every widened weight vector feeds two
       inputs, halving the weight traffic, which dominates at batch > 1 once the inputs evict the
       weights from cache. A lone last vector takes the single-vector loop below. */
    for (; s + 2 <= d->n; s += 2) {
        const int8_t *in0 = input + (size_t)s * IP, *in1 = in0 + IP;
        int16_t *x16 = ctx->x16; /* [2][IP]: the context's scratch holds KWS_TILE * in_pad int16 */
        for (int32_t i = 0; i < IP; i += 16) {
            _mm256_storeu_si256((__m256i *)(x16 + i), _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(in0 + i))));
            _mm256_storeu_si256((__m256i *)(x16 + IP + i),
                                _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(in1 + i))));
        }
        const int32_t nc = IP / 16;
        for (int32_t r4 = 0; r4 < CP / 4; r4++) {
            __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0;
            const int8_t *wp = p + (size_t)r4 * nc * 64;
            for (int32_t c = 0; c < nc; c++, wp += 64) {
                const __m256i xv = _mm256_loadu_si256((const __m256i *)(x16 + 16 * c));
                const __m256i yv = _mm256_loadu_si256((const __m256i *)(x16 + IP + 16 * c));
                const __m256i w0 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)wp));
                const __m256i w1 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(wp + 16)));
                a0 = _mm256_add_epi32(a0, _mm256_madd_epi16(w0, xv));
                b0 = _mm256_add_epi32(b0, _mm256_madd_epi16(w0, yv));
                a1 = _mm256_add_epi32(a1, _mm256_madd_epi16(w1, xv));
                b1 = _mm256_add_epi32(b1, _mm256_madd_epi16(w1, yv));
                const __m256i w2 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(wp + 32)));
                const __m256i w3 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(wp + 48)));
                a2 = _mm256_add_epi32(a2, _mm256_madd_epi16(w2, xv));
                b2 = _mm256_add_epi32(b2, _mm256_madd_epi16(w2, yv));
                a3 = _mm256_add_epi32(a3, _mm256_madd_epi16(w3, xv));
                b3 = _mm256_add_epi32(b3, _mm256_madd_epi16(w3, yv));
            }
            const __m128i be = _mm_loadu_si128((const __m128i *)(bias_eff + 4 * r4));
            const __m256i t = _mm256_hadd_epi32(_mm256_hadd_epi32(a0, a1), _mm256_hadd_epi32(a2, a3));
            const __m256i u = _mm256_hadd_epi32(_mm256_hadd_epi32(b0, b1), _mm256_hadd_epi32(b2, b3));
            _mm_storeu_si128((__m128i *)(acc + 4 * r4),
                             _mm_add_epi32(_mm_add_epi32(_mm256_castsi256_si128(t), _mm256_extracti128_si256(t, 1)), be));
            _mm_storeu_si128((__m128i *)(acc + CP + 4 * r4),
                             _mm_add_epi32(_mm_add_epi32(_mm256_castsi256_si128(u), _mm256_extracti128_si256(u, 1)), be));
        }
        kws_requantize_block(acc, d->out_dim, q, a, output + (size_t)s * d->out_stride);
        kws_requantize_block(acc + CP, d->out_dim, q, a, output + (size_t)(s + 1) * d->out_stride);
    }
#endif
    for (; s < d->n; s++) {
        const int8_t *in = input + (size_t)s * IP;
#if defined(KWS_X86_AVX2)
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
            __m128i sum = _mm_add_epi32(_mm256_castsi256_si128(t), _mm256_extracti128_si256(t, 1));
            sum = _mm_add_epi32(sum, _mm_loadu_si128((const __m128i *)(bias_eff + 4 * r4)));
            _mm_storeu_si128((__m128i *)(acc + 4 * r4), sum);
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
            int32x4_t sum = vpaddq_s32(vpaddq_s32(a0, a1), vpaddq_s32(a2, a3));
            vst1q_s32(acc + 4 * r4, vaddq_s32(sum, vld1q_s32(bias_eff + 4 * r4)));
        }
#else
        (void)CP;
        for (int32_t c = 0; c < d->out_dim; c++) {
            const int8_t *wr = p + (size_t)c * IP;
            int32_t sum = bias_eff[c];
            for (int32_t i = 0; i < d->in_dim; i++) sum += (int32_t)wr[i] * (int32_t)in[i];
            acc[c] = sum;
        }
#endif
        kws_requantize_block(acc, d->out_dim, q, a, output + (size_t)s * d->out_stride);
    }
#endif
}
