/*
 * Requantization and input quantization, shared by every kernel.
 *
 * kws_requantize (kws_nn.h) is the definition; kws_requantize_block applies it to a
 * block of accumulators, with SIMD branches that compute the same integers:
 *   AVX-512  vpmuldq 64-bit products (even / odd lanes), add 2^(n-1), vpsravq, clamp in int64.
 *   AVX2     vpmuldq 64-bit products (even / odd lanes), add 2^(n-1), arithmetic shift as
 *            ((p ^ s) >>> n) ^ s with s the sign mask (vpsrlvq; AVX2 has no vpsravq), clamp to
 *            [lo - z_y, hi - z_y] in int64 (vpcmpgtq + blend), add z_y.
 *   NEON     smull 64-bit products, srshl by -n (rounding shift = add 2^(n-1), arithmetic
 *            shift), saturating narrow to int32 (keeps the order relative to [lo, hi]),
 *            saturating add of z_y, clamp.
 */
#include <math.h>

#include "kws_nn.h"

#if defined(KWS_X86_VNNI) || defined(KWS_X86_AVX2)
#include <immintrin.h>
#endif
#if defined(KWS_NEON)
#include <arm_neon.h>
#endif

void kws_requantize_block(const int32_t *acc, int32_t n, const kws_quant_params *q, const kws_act_params *a,
                          int8_t *out) {
    int32_t c = 0;
#if defined(KWS_X86_VNNI)
    const __m512i one = _mm512_set1_epi64(1), c31 = _mm512_set1_epi32(31);
    const __m512i zp = _mm512_set1_epi64(a->out_zero_point), lo = _mm512_set1_epi64(a->act_min),
                  hi = _mm512_set1_epi64(a->act_max);
    for (; c + 16 <= n; c += 16) {
        const __m512i x = _mm512_loadu_si512(acc + c), m = _mm512_loadu_si512(q->mult + c);
        const __m512i sh = _mm512_add_epi32(_mm512_loadu_si512(q->shift + c), c31); /* n = 31 + shift */
        const __m512i ne = _mm512_srli_epi64(_mm512_slli_epi64(sh, 32), 32), no = _mm512_srli_epi64(sh, 32);
        __m512i pe = _mm512_mul_epi32(x, m); /* even lanes, signed 32 x 32 -> 64 */
        __m512i po = _mm512_mul_epi32(_mm512_srli_epi64(x, 32), _mm512_srli_epi64(m, 32));
        pe = _mm512_srav_epi64(_mm512_add_epi64(pe, _mm512_sllv_epi64(one, _mm512_sub_epi64(ne, one))), ne);
        po = _mm512_srav_epi64(_mm512_add_epi64(po, _mm512_sllv_epi64(one, _mm512_sub_epi64(no, one))), no);
        pe = _mm512_min_epi64(_mm512_max_epi64(_mm512_add_epi64(pe, zp), lo), hi);
        po = _mm512_min_epi64(_mm512_max_epi64(_mm512_add_epi64(po, zp), lo), hi);
        const __m512i r = _mm512_mask_blend_epi32((__mmask16)0xAAAA, pe, _mm512_slli_epi64(po, 32));
        _mm_storeu_si128((__m128i *)(out + c), _mm512_cvtepi32_epi8(r));
    }
#elif defined(KWS_X86_AVX2)
    const __m256i one = _mm256_set1_epi64x(1), c31 = _mm256_set1_epi32(31), zero = _mm256_setzero_si256();
    const __m256i lo = _mm256_set1_epi64x((int64_t)a->act_min - a->out_zero_point);
    const __m256i hi = _mm256_set1_epi64x((int64_t)a->act_max - a->out_zero_point);
    const __m256i zp = _mm256_set1_epi32(a->out_zero_point);
    for (; c + 8 <= n; c += 8) {
        const __m256i x = _mm256_loadu_si256((const __m256i *)(acc + c));
        const __m256i m = _mm256_loadu_si256((const __m256i *)(q->mult + c));
        const __m256i sh = _mm256_add_epi32(_mm256_loadu_si256((const __m256i *)(q->shift + c)), c31);
        const __m256i ne = _mm256_srli_epi64(_mm256_slli_epi64(sh, 32), 32), no = _mm256_srli_epi64(sh, 32);
        __m256i pe = _mm256_mul_epi32(x, m); /* even lanes, signed 32 x 32 -> 64 */
        __m256i po = _mm256_mul_epi32(_mm256_srli_epi64(x, 32), _mm256_srli_epi64(m, 32));
        pe = _mm256_add_epi64(pe, _mm256_sllv_epi64(one, _mm256_sub_epi64(ne, one)));
        po = _mm256_add_epi64(po, _mm256_sllv_epi64(one, _mm256_sub_epi64(no, one)));
        const __m256i se = _mm256_cmpgt_epi64(zero, pe), so = _mm256_cmpgt_epi64(zero, po);
        pe = _mm256_xor_si256(_mm256_srlv_epi64(_mm256_xor_si256(pe, se), ne), se);
        po = _mm256_xor_si256(_mm256_srlv_epi64(_mm256_xor_si256(po, so), no), so);
        pe = _mm256_blendv_epi8(pe, lo, _mm256_cmpgt_epi64(lo, pe));
        po = _mm256_blendv_epi8(po, lo, _mm256_cmpgt_epi64(lo, po));
        pe = _mm256_blendv_epi8(pe, hi, _mm256_cmpgt_epi64(pe, hi));
        po = _mm256_blendv_epi8(po, hi, _mm256_cmpgt_epi64(po, hi));
        const __m256i r = _mm256_add_epi32(_mm256_blend_epi32(pe, _mm256_slli_epi64(po, 32), 0xAA), zp);
        const __m128i w = _mm_packs_epi32(_mm256_castsi256_si128(r), _mm256_extracti128_si256(r, 1));
        _mm_storel_epi64((__m128i *)(out + c), _mm_packs_epi16(w, w));
    }
#elif defined(KWS_NEON)
    const int32x4_t c31 = vdupq_n_s32(31), zp = vdupq_n_s32(a->out_zero_point);
    const int32x4_t lo = vdupq_n_s32(a->act_min), hi = vdupq_n_s32(a->act_max);
    for (; c + 8 <= n; c += 8) {
        int32x4_t r[2];
        for (int h = 0; h < 2; h++) {
            const int32x4_t x = vld1q_s32(acc + c + 4 * h), m = vld1q_s32(q->mult + c + 4 * h);
            const int32x4_t neg_n = vnegq_s32(vaddq_s32(vld1q_s32(q->shift + c + 4 * h), c31));
            const int64x2_t pl = vrshlq_s64(vmull_s32(vget_low_s32(x), vget_low_s32(m)), vmovl_s32(vget_low_s32(neg_n)));
            const int64x2_t ph = vrshlq_s64(vmull_high_s32(x, m), vmovl_high_s32(neg_n));
            r[h] = vminq_s32(vmaxq_s32(vqaddq_s32(vqmovn_high_s64(vqmovn_s64(pl), ph), zp), lo), hi);
        }
        vst1_s8(out + c, vmovn_s16(vcombine_s16(vmovn_s32(r[0]), vmovn_s32(r[1]))));
    }
#endif
    for (; c < n; c++)
        out[c] = kws_requantize(acc[c], q->mult[c], q->shift[c], a->out_zero_point, a->act_min, a->act_max);
}

/* intspec.quantize_input: clamp(floor(x / scale + 0.5) + z, -128, 127) in float32
   (compiled with -ffp-contract=off: x / scale + 0.5 is rounded twice, as numpy does).
   NaN inputs (outside the spec) give -128 on every path. */
void kws_quantize_input(const float *x, int32_t n, float scale, int32_t zero_point, int8_t *out) {
    const float z = (float)zero_point;
    int32_t i = 0;
#if defined(KWS_X86_VNNI)
    const __m512 vs = _mm512_set1_ps(scale), half = _mm512_set1_ps(0.5f), vz = _mm512_set1_ps(z);
    const __m512 vlo = _mm512_set1_ps(-128.0f), vhi = _mm512_set1_ps(127.0f);
    for (; i + 16 <= n; i += 16) {
        __m512 t = _mm512_roundscale_ps(_mm512_add_ps(_mm512_div_ps(_mm512_loadu_ps(x + i), vs), half),
                                        _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
        t = _mm512_min_ps(_mm512_max_ps(_mm512_add_ps(t, vz), vlo), vhi); /* maxps(NaN, lo) = lo */
        _mm_storeu_si128((__m128i *)(out + i), _mm512_cvtepi32_epi8(_mm512_cvttps_epi32(t)));
    }
#elif defined(KWS_X86_AVX2)
    const __m256 vs = _mm256_set1_ps(scale), half = _mm256_set1_ps(0.5f), vz = _mm256_set1_ps(z);
    const __m256 vlo = _mm256_set1_ps(-128.0f), vhi = _mm256_set1_ps(127.0f);
    for (; i + 8 <= n; i += 8) {
        __m256 t = _mm256_floor_ps(_mm256_add_ps(_mm256_div_ps(_mm256_loadu_ps(x + i), vs), half));
        t = _mm256_min_ps(_mm256_max_ps(_mm256_add_ps(t, vz), vlo), vhi);
        const __m256i v = _mm256_cvttps_epi32(t);
        const __m128i w = _mm_packs_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
        _mm_storel_epi64((__m128i *)(out + i), _mm_packs_epi16(w, w));
    }
#elif defined(KWS_NEON)
    const float32x4_t vs = vdupq_n_f32(scale), half = vdupq_n_f32(0.5f), vz = vdupq_n_f32(z);
    const float32x4_t vlo = vdupq_n_f32(-128.0f), vhi = vdupq_n_f32(127.0f);
    for (; i + 8 <= n; i += 8) {
        int32x4_t r[2];
        for (int h = 0; h < 2; h++) {
            float32x4_t t = vrndmq_f32(vaddq_f32(vdivq_f32(vld1q_f32(x + i + 4 * h), vs), half));
            t = vminq_f32(vmaxnmq_f32(vaddq_f32(t, vz), vlo), vhi); /* maxNum(NaN, lo) = lo */
            r[h] = vcvtq_s32_f32(t);
        }
        vst1_s8(out + i, vmovn_s16(vcombine_s16(vmovn_s32(r[0]), vmovn_s32(r[1]))));
    }
#endif
    for (; i < n; i++) {
        const float t = floorf(x[i] / scale + 0.5f) + z;
        out[i] = t >= 127.0f ? 127 : t > -128.0f ? (int8_t)t : -128; /* NaN fails both tests: -128 */
    }
}
