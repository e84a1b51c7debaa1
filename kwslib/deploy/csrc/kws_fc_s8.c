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
 *   AVX2          vpmaddubsw on |x| (u8, 0..128) x sign(w, x) (s8, w * sgn x, |.| <= 127): each
 *                 int16 pair sum is at most 2 * 128 * 127 = 32512 < 32767 in magnitude, so the
 *                 saturating add never saturates and the result is exact for any int8 codes
 *                 (|w| <= 127, which kws_net_set_layer checks); then vpmaddwd by 1 into int32.
 *                 Layout as VNNI's but 8 rows per block: per block and group of 4 inputs,
 *                 32 bytes, byte 4*j + k = w[8*blk + j][4*g + k]; the 4 inputs are broadcast,
 *                 each int32 lane accumulates one output row (no horizontal reduction).
 *   NEON v8.0     vmull_s8 + vmlal_high_s8 (two products per int16 lane, exact since
 *                 |w| <= 127) then vpadalq_s16 into int32; layout in groups of 4 rows x 16
 *                 inputs (64 bytes, byte 16*r + k = w[4*q + r][16*c + k]).
 *   NEON dotprod  sdot (4 products per int32 lane); same layout.
 * Batch: d->n input vectors (in_pad codes apart; outputs out_stride apart). The VNNI and AVX2
 * paths run up to KWS_TILE inputs per pass over the weights (each weight vector loaded once per
 * tile); the other paths loop over the inputs.
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
#elif defined(KWS_X86_AVX2)
    for (int32_t c = 0; c < C; c++)
        for (int32_t i = 0; i < I; i++)
            p[((size_t)(c / 8) * (IP / 4) + i / 4) * 32 + (c % 8) * 4 + i % 4] = w[(size_t)c * I + i];
#elif defined(KWS_NEON)
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

#if defined(KWS_X86_AVX2) && !defined(KWS_X86_VNNI)
/* nt inputs x nbk blocks of 8 rows, nt * nbk accumulators in registers. xa: |x| per input (u8),
   in: x itself (its sign goes onto the weights). Per 4 inputs and block: vpsignb, vpmaddubsw,
   vpmaddwd by 1, vpaddd. */
static inline __attribute__((always_inline)) void avx2_s8_blocks(const int8_t *in, const uint8_t *xa, int32_t IP,
                                                                 const int nt, const int nbk, const int8_t *w0,
                                                                 size_t blk, const int32_t *bias_eff, int32_t *acc,
                                                                 int32_t CP) {
    __m256i a[KWS_TILE][8];
    const __m256i ones = _mm256_set1_epi16(1);
    for (int t = 0; t < nt; t++)
        for (int k = 0; k < nbk; k++) a[t][k] = _mm256_loadu_si256((const __m256i *)(bias_eff + 8 * k));
    for (int32_t g = 0; g < IP / 4; g++) {
        __m256i xu[KWS_TILE], xs[KWS_TILE];
        for (int t = 0; t < nt; t++) {
            int32_t u, v;
            memcpy(&u, xa + (size_t)t * IP + 4 * g, 4);
            memcpy(&v, in + (size_t)t * IP + 4 * g, 4);
            xu[t] = _mm256_set1_epi32(u);
            xs[t] = _mm256_set1_epi32(v);
        }
        for (int k = 0; k < nbk; k++) {
            const __m256i wv = _mm256_loadu_si256((const __m256i *)(w0 + k * blk + 32 * (size_t)g));
            for (int t = 0; t < nt; t++)
                a[t][k] = _mm256_add_epi32(
                    a[t][k], _mm256_madd_epi16(_mm256_maddubs_epi16(xu[t], _mm256_sign_epi8(wv, xs[t])), ones));
        }
    }
    for (int t = 0; t < nt; t++)
        for (int k = 0; k < nbk; k++) _mm256_storeu_si256((__m256i *)(acc + (size_t)t * CP + 8 * k), a[t][k]);
}

/* nbk per pass: 8 blocks for a lone input, 4 for two, 2 for three or four (<= 8 accumulators). */
static inline __attribute__((always_inline)) void avx2_s8_tile(const int8_t *in, const uint8_t *xa, int32_t IP,
                                                               int32_t CP, const int nt, const int8_t *p,
                                                               const int32_t *bias_eff, int32_t *acc) {
    const int32_t nb = CP / 8;
    const size_t blk = (size_t)(IP / 4) * 32;
    int32_t b = 0;
    if (nt == 1)
        for (; b + 8 <= nb; b += 8) avx2_s8_blocks(in, xa, IP, 1, 8, p + b * blk, blk, bias_eff + 8 * b, acc + 8 * b, CP);
    if (nt <= 2)
        for (; b + 4 <= nb; b += 4)
            avx2_s8_blocks(in, xa, IP, nt, 4, p + b * blk, blk, bias_eff + 8 * b, acc + 8 * b, CP);
    for (; b + 2 <= nb; b += 2) avx2_s8_blocks(in, xa, IP, nt, 2, p + b * blk, blk, bias_eff + 8 * b, acc + 8 * b, CP);
    for (; b < nb; b++) avx2_s8_blocks(in, xa, IP, nt, 1, p + b * blk, blk, bias_eff + 8 * b, acc + 8 * b, CP);
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
#elif defined(KWS_X86_AVX2)
    uint8_t *xa = (uint8_t *)ctx->x16; /* [KWS_TILE][IP] |x| (the scratch holds KWS_TILE * in_pad int16) */
    for (int32_t s = 0; s < d->n; s += KWS_TILE) {
        const int32_t nt = d->n - s < KWS_TILE ? d->n - s : KWS_TILE;
        const int8_t *in = input + (size_t)s * IP;
        for (int32_t i = 0; i < nt * IP; i += 32) /* |-128| = 128 as u8 */
            _mm256_storeu_si256((__m256i *)(xa + i), _mm256_abs_epi8(_mm256_loadu_si256((const __m256i *)(in + i))));
        switch (nt) {
        case 4: avx2_s8_tile(in, xa, IP, CP, 4, p, bias_eff, acc); break;
        case 3: avx2_s8_tile(in, xa, IP, CP, 3, p, bias_eff, acc); break;
        case 2: avx2_s8_tile(in, xa, IP, CP, 2, p, bias_eff, acc); break;
        default: avx2_s8_tile(in, xa, IP, CP, 1, p, bias_eff, acc); break;
        }
        for (int32_t t = 0; t < nt; t++)
            kws_requantize_block(acc + (size_t)t * CP, d->out_dim, q, a, output + (size_t)(s + t) * d->out_stride);
    }
#else
    for (int32_t s = 0; s < d->n; s++) {
        const int8_t *in = input + (size_t)s * IP;
#if defined(KWS_NEON)
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
