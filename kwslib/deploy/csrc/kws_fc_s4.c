/*
 * Fully connected layer, weight codes with |w| <= 7 (widths 1..4) packed two per byte.
 *
 * Same integers as kws_fc_s8; the smaller products are exploited per path:
 *   scalar        row-major nibbles (byte k of a row: code 2k low, 2k+1 high, two's complement),
 *                 as the artifact stores 4-bit layers.
 *   AVX-512 VNNI  "row-pair" bytes: the low nibble holds (w + 8) of a row of block A, the high
 *                 nibble w (two's complement) of the same input in block B (16 rows each).
 *                 With u = x + 128 broadcast:  dpbusd(u, b & 0xF0) = 16 * sum wB u  and
 *                 dpbusd(u, b) = sum (wA + 8) u + 16 * sum wB u: two instructions give 128 MACs
 *                 from 64 bytes, one AND unpacks. Rows B: (H >> 4); rows A: Bsum - H - 8 sum u;
 *                 bias_eff = bias - 128 * sum w. Byte 4*j + k of group g = rows (A_j, B_j), input 4g + k.
 *   AVX2          vpmaddubsw of unsigned nibbles (w + 8, 0..15) with signed x: pair sums
 *                 <= 2 * 15 * 128 never saturate, so int16 sums run 4 chunks before vpmaddwd
 *                 widens them. Rows of 64 inputs in 32 bytes: low nibble input k, high k + 32.
 *                 acc = sum (w + 8) x - 8 sum x.
 *   NEON dotprod  row-pair bytes as on VNNI (low nibble w + 8 of row A, high w of row B), x signed:
 *                 sdot(b & 0xF0, x) = 16 sum wB x, sdot(b, x) = sum (wA + 8) x + 16 sum wB x.
 *                 Groups of 8 rows (A = 4, B = 4) x 16 inputs, 64 bytes, byte 16 r + k.
 *   NEON v8.0     longer int16 accumulation: low nibble (w + 8, input k) and high nibble
 *                 (w, input k + 16) of 32 inputs per 16 bytes; vmlal_s8 adds 4 products per
 *                 int16 lane per chunk (<= 2 * 15 * 128 + 2 * 8 * 128 = 5888), so 5 chunks
 *                 (20 products) accumulate before vpadalq_s16 widens (int8 weights: 2).
 *                 acc = sum - 8 * (sum of x at low-nibble inputs).
 * Batch: as kws_fc_s8 (KWS_TILE inputs per pass over the weights on VNNI, a loop elsewhere).
 */
#include <string.h>

#include "kws_nn.h"

#if defined(KWS_X86_VNNI) || defined(KWS_X86_AVX2)
#include <immintrin.h>
#endif
#if defined(KWS_NEON)
#include <arm_neon.h>
#endif

size_t kws_fc_s4_weight_bytes(const kws_dims *d) { return (size_t)d->out_pad * (size_t)d->in_pad / 2; }

static inline uint8_t nib(int32_t v) { return (uint8_t)(v & 0xF); }

int32_t kws_fc_s4_prepare(const kws_dims *d, const int8_t *w, const int32_t *bias, void *w_prep,
                          int32_t *bias_eff) {
    const int32_t I = d->in_dim, C = d->out_dim, IP = d->in_pad, CP = d->out_pad;
    uint8_t *p = (uint8_t *)w_prep;
    if (IP % KWS_IN_ALIGN || CP % KWS_OUT_ALIGN || I > IP || C > CP) return KWS_ERR_ARG;
    for (size_t k = 0; k < (size_t)C * I; k++)
        if (w[k] < -7 || w[k] > 7) return KWS_ERR_RANGE;
#define W(c, i) ((c) < C && (i) < I ? (int32_t)w[(size_t)(c) * I + (i)] : 0)
    for (int32_t c = 0; c < CP; c++) bias_eff[c] = c < C ? bias[c] : 0;
#if defined(KWS_X86_VNNI)
    if ((int64_t)IP * 16 * 7 * 255 >= ((int64_t)1 << 31)) return KWS_ERR_RANGE; /* 16 * sum wB u must fit */
    const int32_t G = IP / 4;
    for (int32_t pr = 0; pr < CP / 32; pr++)
        for (int32_t g = 0; g < G; g++)
            for (int32_t j = 0; j < 16; j++)
                for (int32_t k = 0; k < 4; k++)
                    p[((size_t)pr * G + g) * 64 + 4 * j + k] =
                        (uint8_t)(nib(W(32 * pr + j, 4 * g + k) + 8) | nib(W(32 * pr + 16 + j, 4 * g + k)) << 4);
    for (int32_t c = 0; c < C; c++) {
        int64_t sum_w = 0;
        for (int32_t i = 0; i < I; i++) sum_w += w[(size_t)c * I + i];
        bias_eff[c] = (int32_t)(uint32_t)((int64_t)bias[c] - 128 * sum_w);
    }
#elif defined(KWS_X86_AVX2)
    const int32_t nc = IP / 64;
    for (int32_t r4 = 0; r4 < CP / 4; r4++)
        for (int32_t c = 0; c < nc; c++)
            for (int32_t r = 0; r < 4; r++)
                for (int32_t k = 0; k < 32; k++)
                    p[((size_t)r4 * nc + c) * 128 + 32 * r + k] =
                        (uint8_t)(nib(W(4 * r4 + r, 64 * c + k) + 8) | nib(W(4 * r4 + r, 64 * c + 32 + k) + 8) << 4);
#elif defined(KWS_NEON_DOTPROD)
    if ((int64_t)IP * 16 * 7 * 128 >= ((int64_t)1 << 31)) return KWS_ERR_RANGE;
    const int32_t nc = IP / 16;
    for (int32_t r8 = 0; r8 < CP / 8; r8++)
        for (int32_t c = 0; c < nc; c++)
            for (int32_t r = 0; r < 4; r++)
                for (int32_t k = 0; k < 16; k++)
                    p[((size_t)r8 * nc + c) * 64 + 16 * r + k] =
                        (uint8_t)(nib(W(8 * r8 + r, 16 * c + k) + 8) | nib(W(8 * r8 + 4 + r, 16 * c + k)) << 4);
#elif defined(KWS_NEON)
    const int32_t nc = IP / 32;
    for (int32_t r4 = 0; r4 < CP / 4; r4++)
        for (int32_t c = 0; c < nc; c++)
            for (int32_t r = 0; r < 4; r++)
                for (int32_t k = 0; k < 16; k++)
                    p[((size_t)r4 * nc + c) * 64 + 16 * r + k] =
                        (uint8_t)(nib(W(4 * r4 + r, 32 * c + k) + 8) | nib(W(4 * r4 + r, 32 * c + 16 + k)) << 4);
#else
    for (int32_t c = 0; c < CP; c++)
        for (int32_t k = 0; k < IP / 2; k++)
            p[(size_t)c * (IP / 2) + k] = (uint8_t)(nib(W(c, 2 * k)) | nib(W(c, 2 * k + 1)) << 4);
#endif
#undef W
    return KWS_OK;
}

#if defined(KWS_X86_VNNI)
/* nt inputs x npr row pairs (32 rows each): 2 * nt * npr accumulators in registers, each 64-byte
   weight vector loaded and masked once for the nt inputs. */
static inline __attribute__((always_inline)) void vnni_s4_pairs(const int8_t *in, int32_t IP, const int nt,
                                                                const int npr, const uint8_t *w0, size_t blk,
                                                                const int32_t *bias_eff, const int32_t *corr,
                                                                int32_t *acc, int32_t CP) {
    const __m512i hi_mask = _mm512_set1_epi8((char)0xF0);
    __m512i bs[KWS_TILE][2], hs[KWS_TILE][2];
    for (int t = 0; t < nt; t++)
        for (int k = 0; k < npr; k++) bs[t][k] = hs[t][k] = _mm512_setzero_si512();
    for (int32_t g = 0; g < IP / 4; g++) {
        __m512i xb[KWS_TILE];
        for (int t = 0; t < nt; t++) {
            int32_t xv;
            memcpy(&xv, in + (size_t)t * IP + 4 * g, 4);
            xb[t] = _mm512_set1_epi32(xv ^ (int32_t)0x80808080u); /* u = x + 128 */
        }
        for (int k = 0; k < npr; k++) {
            const __m512i v = _mm512_loadu_si512(w0 + k * blk + 64 * (size_t)g);
            const __m512i vh = _mm512_and_si512(v, hi_mask);
            for (int t = 0; t < nt; t++) {
                hs[t][k] = _mm512_dpbusd_epi32(hs[t][k], xb[t], vh); /* 16 * sum wB u */
                bs[t][k] = _mm512_dpbusd_epi32(bs[t][k], xb[t], v); /* sum (wA + 8) u + 16 * sum wB u */
            }
        }
    }
    for (int t = 0; t < nt; t++) {
        const __m512i c = _mm512_set1_epi32(corr[t]);
        for (int k = 0; k < npr; k++) {
            int32_t *o = acc + (size_t)t * CP + 32 * k;
            _mm512_storeu_si512(o, _mm512_add_epi32(_mm512_sub_epi32(_mm512_sub_epi32(bs[t][k], hs[t][k]), c),
                                                    _mm512_loadu_si512(bias_eff + 32 * k)));
            _mm512_storeu_si512(o + 16, _mm512_add_epi32(_mm512_srai_epi32(hs[t][k], 4),
                                                         _mm512_loadu_si512(bias_eff + 32 * k + 16)));
        }
    }
}

static inline __attribute__((always_inline)) void vnni_s4_tile(const int8_t *in, int32_t IP, int32_t CP,
                                                               const int nt, const uint8_t *p,
                                                               const int32_t *bias_eff, const int32_t *corr,
                                                               int32_t *acc) {
    const int32_t npair = CP / 32;
    const size_t blk = (size_t)(IP / 4) * 64;
    int32_t pr = 0;
    for (; pr + 2 <= npair; pr += 2)
        vnni_s4_pairs(in, IP, nt, 2, p + pr * blk, blk, bias_eff + 32 * pr, corr, acc + 32 * pr, CP);
    for (; pr < npair; pr++)
        vnni_s4_pairs(in, IP, nt, 1, p + pr * blk, blk, bias_eff + 32 * pr, corr, acc + 32 * pr, CP);
}
#endif

void kws_fc_s4(const kws_context *ctx, const kws_act_params *a, const kws_quant_params *q, const kws_dims *d,
               const int8_t *input, const void *w_prep, const int32_t *bias_eff, int8_t *output) {
    const int32_t IP = d->in_pad, CP = d->out_pad;
    const uint8_t *p = (const uint8_t *)w_prep;
    int32_t *acc = ctx->acc;
#if defined(KWS_X86_VNNI)
    const __m512i flip = _mm512_set1_epi8((char)0x80);
    for (int32_t s = 0; s < d->n; s += KWS_TILE) {
        const int32_t nt = d->n - s < KWS_TILE ? d->n - s : KWS_TILE;
        const int8_t *in = input + (size_t)s * IP;
        int32_t corr[KWS_TILE]; /* 8 * sum of u = x + 128 over the padded input, per vector */
        for (int32_t t = 0; t < nt; t++) {
            __m512i su = _mm512_setzero_si512();
            for (int32_t i = 0; i < IP; i += 64)
                su = _mm512_add_epi64(su, _mm512_sad_epu8(_mm512_xor_si512(_mm512_loadu_si512(in + (size_t)t * IP + i),
                                                                           flip), _mm512_setzero_si512()));
            corr[t] = (int32_t)(8 * _mm512_reduce_add_epi64(su));
        }
        switch (nt) {
        case 4: vnni_s4_tile(in, IP, CP, 4, p, bias_eff, corr, acc); break;
        case 3: vnni_s4_tile(in, IP, CP, 3, p, bias_eff, corr, acc); break;
        case 2: vnni_s4_tile(in, IP, CP, 2, p, bias_eff, corr, acc); break;
        default: vnni_s4_tile(in, IP, CP, 1, p, bias_eff, corr, acc); break;
        }
        for (int32_t t = 0; t < nt; t++)
            kws_requantize_block(acc + (size_t)t * CP, d->out_dim, q, a, output + (size_t)(s + t) * d->out_stride);
    }
#else
    for (int32_t s = 0; s < d->n; s++) {
        const int8_t *in = input + (size_t)s * IP;
        int8_t *out = output + (size_t)s * d->out_stride;
#if defined(KWS_X86_AVX2)
        const int32_t nc = IP / 64;
        const __m256i lo_mask = _mm256_set1_epi8(0x0F), ones = _mm256_set1_epi16(1);
        int32_t sx = 0;
        {
            __m256i sv = _mm256_setzero_si256();
            const __m256i flip = _mm256_set1_epi8((char)0x80);
            for (int32_t i = 0; i < IP; i += 32)
                sv = _mm256_add_epi64(sv, _mm256_sad_epu8(_mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(in + i)), flip),
                                                        _mm256_setzero_si256()));
            int64_t t[4];
            _mm256_storeu_si256((__m256i *)t, sv);
            sx = (int32_t)(t[0] + t[1] + t[2] + t[3] - 128 * (int64_t)IP);
        }
        for (int32_t r4 = 0; r4 < CP / 4; r4++) {
            __m256i av[4], s16[4];
            for (int r = 0; r < 4; r++) av[r] = s16[r] = _mm256_setzero_si256();
            const uint8_t *wp = p + (size_t)r4 * nc * 128;
            for (int32_t c = 0; c < nc; c++, wp += 128) {
                const __m256i x0 = _mm256_loadu_si256((const __m256i *)(in + 64 * c));
                const __m256i x1 = _mm256_loadu_si256((const __m256i *)(in + 64 * c + 32));
                for (int r = 0; r < 4; r++) {
                    const __m256i v = _mm256_loadu_si256((const __m256i *)(wp + 32 * r));
                    const __m256i lo = _mm256_and_si256(v, lo_mask), hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), lo_mask);
                    s16[r] = _mm256_add_epi16(s16[r], _mm256_add_epi16(_mm256_maddubs_epi16(lo, x0), _mm256_maddubs_epi16(hi, x1)));
                }
                if ((c & 3) == 3 || c == nc - 1) /* int16 lanes hold <= 4 * 7680 */
                    for (int r = 0; r < 4; r++) {
                        av[r] = _mm256_add_epi32(av[r], _mm256_madd_epi16(s16[r], ones));
                        s16[r] = _mm256_setzero_si256();
                    }
            }
            const __m256i t = _mm256_hadd_epi32(_mm256_hadd_epi32(av[0], av[1]), _mm256_hadd_epi32(av[2], av[3]));
            __m128i sum = _mm_add_epi32(_mm256_castsi256_si128(t), _mm256_extracti128_si256(t, 1));
            sum = _mm_sub_epi32(_mm_add_epi32(sum, _mm_loadu_si128((const __m128i *)(bias_eff + 4 * r4))), _mm_set1_epi32(8 * sx));
            _mm_storeu_si128((__m128i *)(acc + 4 * r4), sum);
        }
#elif defined(KWS_NEON_DOTPROD)
        const int32_t nc = IP / 16;
        int32_t sx = 0;
        for (int32_t i = 0; i < IP; i += 16) sx += vaddlvq_s8(vld1q_s8(in + i));
        const int8x16_t hi_mask = vdupq_n_s8((int8_t)0xF0);
        const int32x4_t corr = vdupq_n_s32(8 * sx);
        for (int32_t r8 = 0; r8 < CP / 8; r8++) {
            int32x4_t b0 = vdupq_n_s32(0), b1 = b0, b2 = b0, b3 = b0, h0 = b0, h1 = b0, h2 = b0, h3 = b0;
            const int8_t *wp = (const int8_t *)p + (size_t)r8 * nc * 64;
            KWS_NEON_UNROLL
            for (const int8_t *xp = in, *xe = in + IP; xp < xe; xp += 16, wp += 64) {
                const int8x16_t xv = vld1q_s8(xp);
                const int8x16x4_t wv = vld1q_s8_x4(wp);
                const int8x16_t v0 = wv.val[0], v1 = wv.val[1], v2 = wv.val[2], v3 = wv.val[3];
                b0 = vdotq_s32(b0, v0, xv);
                h0 = vdotq_s32(h0, vandq_s8(v0, hi_mask), xv);
                b1 = vdotq_s32(b1, v1, xv);
                h1 = vdotq_s32(h1, vandq_s8(v1, hi_mask), xv);
                b2 = vdotq_s32(b2, v2, xv);
                h2 = vdotq_s32(h2, vandq_s8(v2, hi_mask), xv);
                b3 = vdotq_s32(b3, v3, xv);
                h3 = vdotq_s32(h3, vandq_s8(v3, hi_mask), xv);
            }
            const int32x4_t bs = vpaddq_s32(vpaddq_s32(b0, b1), vpaddq_s32(b2, b3));
            const int32x4_t hs = vpaddq_s32(vpaddq_s32(h0, h1), vpaddq_s32(h2, h3));
            vst1q_s32(acc + 8 * r8, vaddq_s32(vsubq_s32(vsubq_s32(bs, hs), corr), vld1q_s32(bias_eff + 8 * r8)));
            vst1q_s32(acc + 8 * r8 + 4, vaddq_s32(vshrq_n_s32(hs, 4), vld1q_s32(bias_eff + 8 * r8 + 4)));
        }
#elif defined(KWS_NEON)
        const int32_t nc = IP / 32;
        int32_t sx_lo = 0;
        for (int32_t c = 0; c < nc; c++) sx_lo += vaddlvq_s8(vld1q_s8(in + 32 * c));
        const int8x16_t lo_mask = vdupq_n_s8(0x0F);
        const int32x4_t corr = vdupq_n_s32(8 * sx_lo);
        for (int32_t r4 = 0; r4 < CP / 4; r4++) {
            int32x4_t a0 = vdupq_n_s32(0), a1 = a0, a2 = a0, a3 = a0;
            const int8_t *wp = (const int8_t *)p + (size_t)r4 * nc * 64;
            for (int32_t c0 = 0; c0 < nc; c0 += 5) { /* 5 chunks of 32 inputs per int16 run */
                int16x8_t s0 = vdupq_n_s16(0), s1 = s0, s2 = s0, s3 = s0;
                const int32_t c1 = c0 + 5 < nc ? c0 + 5 : nc;
                KWS_NEON_UNROLL
                for (const int8_t *xp = in + 32 * c0, *xe = in + 32 * c1; xp < xe; xp += 32, wp += 64) {
                    const int8x16_t x0 = vld1q_s8(xp), x1 = vld1q_s8(xp + 16);
                    const int8x8_t x0l = vget_low_s8(x0), x1l = vget_low_s8(x1);
                    const int8x16x4_t wv = vld1q_s8_x4(wp);
#define KWS_S4_ROW(S, R)                                                               \
        {                                                                                  \
            const int8x16_t v = wv.val[R];                                                 \
            const int8x16_t lo = vandq_s8(v, lo_mask), hi = vshrq_n_s8(v, 4);              \
            S = vmlal_high_s8(vmlal_s8(S, vget_low_s8(lo), x0l), lo, x0);                   \
            S = vmlal_high_s8(vmlal_s8(S, vget_low_s8(hi), x1l), hi, x1);                   \
        }
                    KWS_S4_ROW(s0, 0)
                    KWS_S4_ROW(s1, 1)
                    KWS_S4_ROW(s2, 2)
                    KWS_S4_ROW(s3, 3)
#undef KWS_S4_ROW
                }
                a0 = vpadalq_s16(a0, s0);
                a1 = vpadalq_s16(a1, s1);
                a2 = vpadalq_s16(a2, s2);
                a3 = vpadalq_s16(a3, s3);
            }
            const int32x4_t sum = vpaddq_s32(vpaddq_s32(a0, a1), vpaddq_s32(a2, a3));
            vst1q_s32(acc + 4 * r4, vaddq_s32(vsubq_s32(sum, corr), vld1q_s32(bias_eff + 4 * r4)));
        }
#else
        (void)CP;
        for (int32_t c = 0; c < d->out_dim; c++) {
            const uint8_t *wr = p + (size_t)c * (IP / 2);
            int32_t sum = bias_eff[c];
            for (int32_t k = 0; k < (d->in_dim + 1) / 2; k++) {
                const int32_t lo = (int8_t)(uint8_t)(wr[k] << 4) >> 4, hi = (int8_t)wr[k] >> 4;
                sum += lo * in[2 * k] + hi * in[2 * k + 1];
            }
            acc[c] = sum;
        }
#endif
        kws_requantize_block(acc, d->out_dim, q, a, out);
    }
#endif
}
