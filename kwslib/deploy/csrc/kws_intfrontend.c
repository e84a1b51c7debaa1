/*
 * The integer front end (see kws_intfrontend.h; specification: kwslib/frontend/intfrontend.py, which argues every
 * width and bound). Portable scalar C, and an aarch64 NEON path (KWS_NEON, kws_nn.h) for the window, the
 * FFT stages and the power: both compute the same integers.
 */
#define _POSIX_C_SOURCE 200112L
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kws_intfrontend.h"
#include "kws_nn.h"

#if defined(KWS_NEON)
#include <arm_neon.h>
#endif
#if defined(KWS_X86_AVX2)
#include <immintrin.h>

/* rmul on 8 lanes: (a * w + 2^30) >> 31 from the two 32 x 32 -> 64 products of even and odd lanes */
static inline __m256i rmul8(__m256i a, __m256i w) {
    const __m256i r = _mm256_set1_epi64x(1LL << 30);
    const __m256i even = _mm256_srli_epi64(_mm256_add_epi64(_mm256_mul_epi32(a, w), r), 31);
    const __m256i odd = _mm256_slli_epi64(
        _mm256_add_epi64(_mm256_mul_epi32(_mm256_srli_epi64(a, 32), _mm256_srli_epi64(w, 32)), r), 1);
    return _mm256_blend_epi32(even, odd, 0xAA); /* bits 31..62 of each sum: the 32-bit results */
}

/* Eight radix-4 butterflies (kwslib.frontend.intfrontend.fft_stockham); a_j at x + j*ms. */
static inline void bfly4_avx2(const int32_t *xr, const int32_t *xi, int32_t ms, const __m256i w[6], __m256i r[4],
                              __m256i i[4]) {
    const __m256i a0r = _mm256_loadu_si256((const __m256i *)xr);
    const __m256i a1r = _mm256_loadu_si256((const __m256i *)(xr + ms));
    const __m256i a2r = _mm256_loadu_si256((const __m256i *)(xr + 2 * ms));
    const __m256i a3r = _mm256_loadu_si256((const __m256i *)(xr + 3 * ms));
    const __m256i a0i = _mm256_loadu_si256((const __m256i *)xi);
    const __m256i a1i = _mm256_loadu_si256((const __m256i *)(xi + ms));
    const __m256i a2i = _mm256_loadu_si256((const __m256i *)(xi + 2 * ms));
    const __m256i a3i = _mm256_loadu_si256((const __m256i *)(xi + 3 * ms));
    const __m256i b0r = _mm256_add_epi32(a0r, a2r), b0i = _mm256_add_epi32(a0i, a2i);
    const __m256i b1r = _mm256_sub_epi32(a0r, a2r), b1i = _mm256_sub_epi32(a0i, a2i);
    const __m256i b2r = _mm256_add_epi32(a1r, a3r), b2i = _mm256_add_epi32(a1i, a3i);
    const __m256i b3r = _mm256_sub_epi32(a1i, a3i), b3i = _mm256_sub_epi32(a3r, a1r);
    r[0] = _mm256_add_epi32(b0r, b2r);
    i[0] = _mm256_add_epi32(b0i, b2i);
    __m256i dr[3], di[3];
    dr[0] = _mm256_add_epi32(b1r, b3r), di[0] = _mm256_add_epi32(b1i, b3i);
    dr[1] = _mm256_sub_epi32(b0r, b2r), di[1] = _mm256_sub_epi32(b0i, b2i);
    dr[2] = _mm256_sub_epi32(b1r, b3r), di[2] = _mm256_sub_epi32(b1i, b3i);
    for (int32_t j = 0; j < 3; j++) {
        r[j + 1] = _mm256_sub_epi32(rmul8(dr[j], w[2 * j]), rmul8(di[j], w[2 * j + 1]));
        i[j + 1] = _mm256_add_epi32(rmul8(dr[j], w[2 * j + 1]), rmul8(di[j], w[2 * j]));
    }
}

/* Store v[0..3] (lanes over p = 0..7) interleaved: out[4p + j] = v[j][p]. */
static inline void store4_interleaved(int32_t *out, const __m256i v[4]) {
    const __m256i t0 = _mm256_unpacklo_epi32(v[0], v[1]), t1 = _mm256_unpackhi_epi32(v[0], v[1]);
    const __m256i t2 = _mm256_unpacklo_epi32(v[2], v[3]), t3 = _mm256_unpackhi_epi32(v[2], v[3]);
    const __m256i u0 = _mm256_unpacklo_epi64(t0, t2), u1 = _mm256_unpackhi_epi64(t0, t2);
    const __m256i u2 = _mm256_unpacklo_epi64(t1, t3), u3 = _mm256_unpackhi_epi64(t1, t3);
    _mm256_storeu_si256((__m256i *)out, _mm256_permute2x128_si256(u0, u1, 0x20));
    _mm256_storeu_si256((__m256i *)(out + 8), _mm256_permute2x128_si256(u2, u3, 0x20));
    _mm256_storeu_si256((__m256i *)(out + 16), _mm256_permute2x128_si256(u0, u1, 0x31));
    _mm256_storeu_si256((__m256i *)(out + 24), _mm256_permute2x128_si256(u2, u3, 0x31));
}
#endif

#ifndef M_PI
#define M_PI 3.14159265358979323846
#endif

/* Each step its own function (not inlined), so that an instruction profile under qemu names the steps. */
#define KWS_STEP __attribute__((noinline))

#define WINDOW_BITS 16 /* Q16 Hann, clipped to 2^16 - 1: |s h| < 2^31 */
#define SAMPLE_BITS 15
#define POWER_SHIFT 16
#define MEL_BITS 16
#define LOG_BITS 20
#define LOG_TABLE_BITS 8
#define MANTISSA_BITS 30
#define ENERGY_EXP (2 * (SAMPLE_BITS + WINDOW_BITS) + 2 - POWER_SHIFT + MEL_BITS)

struct kws_ifrontend {
    kws_frontend_config cfg;
    int32_t K, stages, k0, k1, block_bits; /* block_bits: 29 - floor(log2 win_length) */
    int32_t *window;          /* [win] Q16 Hann (<= 2^16 - 1) */
    int32_t *tw;              /* radix-4 stages in order, each [6][m]: re, im of W_K^(j p s) for j = 1, 2, 3 */
    int32_t *twp;             /* the same per p, packed for NEON's by-lane multiplies: [m][8] (6 used) per stage */
    int32_t *sp_re, *sp_im;   /* [k1 - k0] Q31 W_N^k */
    /* the filterbank by filters: filter m reads power[fb_start[m] .. + fb_len[m]) with the Q16 weights
       fb_w[fb_off[m] ..]; fb_len is the filter's span rounded up to 4 (the padding weights are 0), so the SIMD
       paths read whole vectors; power has 4 spare zero entries for the last filter's padding */
    int32_t *fb_start, *fb_len, *fb_off;
    uint32_t *fb_w;
    int32_t log_table[(1 << LOG_TABLE_BITS) + 1];
    int32_t log_floor;
    int32_t *xw;              /* [win] windowed samples */
    int32_t *bufs;            /* [4][K]: re, im of two ping-pong buffers */
    int64_t *power;           /* [k1 - k0] */
    kws_framer framer;        /* its buf: [win] samples not yet consumed by a complete frame */
    int32_t *mel;             /* [n_mels] Q20 log2 of the last frame */
    int64_t bytes;
};

static int32_t q31(double v) {
    const double lim = 2147483647.0;
    double r = rint(v * 2147483648.0);
    r = r > lim ? lim : r < -lim ? -lim : r;
    return (int32_t)r;
}

void kws_ifrontend_free(kws_ifrontend *fe) {
    if (!fe) return;
    free(fe->window);
    free(fe->tw);
    free(fe->twp);
    free(fe->sp_re);
    free(fe->sp_im);
    free(fe->fb_start);
    free(fe->fb_len);
    free(fe->fb_off);
    free(fe->fb_w);
    free(fe->xw);
    free(fe->bufs);
    free(fe->power);
    free(fe->framer.buf);
    free(fe->mel);
    free(fe);
}

kws_ifrontend *kws_ifrontend_new(const kws_frontend_config *c) {
    if (!c || c->n_fft < 8 || (c->n_fft & (c->n_fft - 1)) || c->win_length > c->n_fft || c->n_mels <= 0 ||
        c->hop_length <= 0 || c->win_length <= 0)
        return NULL;
    const int32_t nb = c->n_fft / 2 + 1, M = c->n_mels, K = c->n_fft / 2;
    double *full = (double *)malloc(sizeof(double) * (size_t)nb * M);
    kws_ifrontend *fe = (kws_ifrontend *)calloc(1, sizeof(kws_ifrontend));
    if (!full || !fe || kws_frontend_mel_weights(c, full) != 0) {
        free(full);
        free(fe);
        return NULL;
    }
    fe->cfg = *c;
    fe->K = K;
    fe->block_bits = 29 - (31 - __builtin_clz((uint32_t)c->win_length));
    /* the Parseval bound of the filterbank energies (kwslib.frontend.intfrontend._check_cfg): 4 N W 2^(2B) < 2^62 */
    if (ldexp(4.0 * (double)c->n_fft * (double)c->win_length, 2 * fe->block_bits) >= ldexp(1.0, 62)) {
        free(full);
        free(fe);
        return NULL;
    }
    /* the bins the filterbank reads */
    int32_t k0 = -1, k1 = 0;
    for (int32_t k = 0; k < nb; k++)
        for (int32_t m = 0; m < M; m++)
            if (full[(size_t)m * nb + k] != 0.0) {
                if (k0 < 0) k0 = k;
                k1 = k + 1;
            }
    if (k0 < 0) k0 = 0, k1 = 1;
    fe->k0 = k0;
    fe->k1 = k1;
    const int32_t nk = k1 - k0;
    fe->window = (int32_t *)malloc(sizeof(int32_t) * c->win_length);
    fe->tw = (int32_t *)malloc(sizeof(int32_t) * 2 * K);
    fe->twp = (int32_t *)calloc((size_t)3 * K, sizeof(int32_t)); /* 8 per p; sum of m over the stages < K / 3 */
    fe->sp_re = (int32_t *)malloc(sizeof(int32_t) * nk);
    fe->sp_im = (int32_t *)malloc(sizeof(int32_t) * nk);
    fe->fb_start = (int32_t *)calloc((size_t)M, sizeof(int32_t));
    fe->fb_len = (int32_t *)calloc((size_t)M, sizeof(int32_t));
    fe->fb_off = (int32_t *)calloc((size_t)M + 1, sizeof(int32_t));
    fe->xw = (int32_t *)calloc((size_t)c->n_fft, sizeof(int32_t));
    fe->bufs = (int32_t *)calloc((size_t)4 * K + 4, sizeof(int32_t));
    fe->power = (int64_t *)calloc((size_t)nk + 4, sizeof(int64_t));
    fe->framer.buf = (int16_t *)calloc((size_t)c->win_length, sizeof(int16_t));
    fe->framer.win = c->win_length;
    fe->framer.hop = c->hop_length;
    fe->mel = (int32_t *)calloc((size_t)M, sizeof(int32_t));
    if (!fe->window || !fe->tw || !fe->twp || !fe->sp_re || !fe->sp_im || !fe->fb_start || !fe->fb_len || !fe->fb_off ||
        !fe->xw || !fe->bufs || !fe->power || !fe->framer.buf || !fe->mel)
        goto fail;
    for (int32_t k = 0; k < c->win_length; k++) {
        const double h = rint((0.5 - 0.5 * cos(2.0 * M_PI * (double)k / (double)c->win_length)) * (double)(1 << WINDOW_BITS));
        fe->window[k] = (int32_t)(h < (double)((1 << WINDOW_BITS) - 1) ? h : (double)((1 << WINDOW_BITS) - 1));
    }
    for (int32_t n = K, st = 1, off = 0; n >= 4; n /= 4, st *= 4) { /* radix-4 stages: m = n / 4, stride st */
        const int32_t m = n / 4;
        for (int32_t j = 1; j <= 3; j++)
            for (int32_t p = 0; p < m; p++) {
                const double a = 2.0 * M_PI * (double)(j * p * st) / (double)K;
                fe->tw[off + (2 * j - 2) * m + p] = q31(cos(a));
                fe->tw[off + (2 * j - 1) * m + p] = q31(-sin(a));
                fe->twp[off / 6 * 8 + 8 * p + 2 * j - 2] = q31(cos(a));
                fe->twp[off / 6 * 8 + 8 * p + 2 * j - 1] = q31(-sin(a));
            }
        off += 6 * m;
    }
    for (int32_t k = k0; k < k1; k++) {
        const double a = 2.0 * M_PI * (double)k / (double)c->n_fft;
        fe->sp_re[k - k0] = q31(cos(a));
        fe->sp_im[k - k0] = q31(-sin(a));
    }
    for (int32_t m = 0; m < M; m++) { /* each filter's span of bins in [k0, k1), rounded up to 4 */
        int32_t a = -1, b = -1;
        for (int32_t j = 0; j < nk; j++)
            if (rint(full[(size_t)m * nb + k0 + j] * 65536.0) != 0.0) {
                if (a < 0) a = j;
                b = j + 1;
            }
        fe->fb_start[m] = a < 0 ? 0 : a;
        fe->fb_len[m] = a < 0 ? 0 : (b - a + 3) / 4 * 4;
        fe->fb_off[m + 1] = fe->fb_off[m] + fe->fb_len[m];
    }
    fe->fb_w = (uint32_t *)calloc((size_t)fe->fb_off[M] + 1, sizeof(uint32_t));
    if (!fe->fb_w) goto fail;
    for (int32_t m = 0; m < M; m++)
        for (int32_t t = 0; t < fe->fb_len[m] && fe->fb_start[m] + t < nk; t++)
            fe->fb_w[fe->fb_off[m] + t] = (uint32_t)rint(full[(size_t)m * nb + k0 + fe->fb_start[m] + t] * 65536.0);
    for (int32_t i = 0; i <= (1 << LOG_TABLE_BITS); i++)
        fe->log_table[i] = (int32_t)rint(log2(1.0 + (double)i / (double)(1 << LOG_TABLE_BITS)) * (double)(1 << LOG_BITS));
    fe->log_floor = (int32_t)rint(log2(c->log_floor) * (double)(1 << LOG_BITS));
    free(full);
    fe->bytes = (int64_t)sizeof(kws_ifrontend) +
                (int64_t)sizeof(int32_t) * (c->win_length + 5 * K + 2 * nk + (3 * M + 1) + (fe->fb_off[M] + 1) + c->n_fft +
                                            4 * K + 4 + M) +
                (int64_t)sizeof(int64_t) * (nk + 4) + (int64_t)sizeof(int16_t) * c->win_length;
    return fe;
fail:
    free(full);
    kws_ifrontend_free(fe);
    return NULL;
}

void kws_ifrontend_reset(kws_ifrontend *fe) {
    if (fe) fe->framer.n_buf = 0;
}

int64_t kws_ifrontend_bytes(const kws_ifrontend *fe) { return fe ? fe->bytes : 0; }

const int32_t *kws_ifrontend_frame(const kws_ifrontend *fe) { return fe->mel; }

/* rmul(a, w) = (a * w + 2^30) >> 31: NEON's vqrdmulh (no saturation: |w| < 2^31) */
static inline int32_t rmul(int32_t a, int32_t w) { return (int32_t)(((int64_t)a * w + (1LL << 30)) >> 31); }

/* Step 1-2: window, block scaling, deinterleave into z = x[2j] + i x[2j+1] (zero-padded); returns e. */
#if defined(KWS_NEON)
/* NEON: the window goes straight into z (vld2 deinterleaves samples and window), then the block shift runs in
   place over the windowed half: vrshl by -e is (p + 2^(e-1)) >> e for e > 0 (no overflow: |p| < 2^31 - 2^15,
   2^(e-1) <= 2^9) and the exact p << -e otherwise, the specification's step 2 in one instruction. */
static KWS_STEP int32_t window_and_scale(kws_ifrontend *fe, int32_t *zr, int32_t *zi) {
    const int32_t W = fe->cfg.win_length, K = fe->K, half = (W + 1) / 2;
    const int16_t *restrict buf = fe->framer.buf;
    const int32_t *restrict win = fe->window;
    int32_t j = W / 2, k = 0;
    for (; j < K && (j & 3); j++) zr[j] = zi[j] = 0; /* zero padding: the FFT used z as scratch */
    for (; j < K; j += 4) {
        vst1q_s32(zr + j, vdupq_n_s32(0));
        vst1q_s32(zi + j, vdupq_n_s32(0));
    }
    uint32x4_t vmx = vdupq_n_u32(0);
    for (; k + 16 <= W; k += 16) {
        const int16x8x2_t sv = vld2q_s16(buf + k); /* even, odd samples k .. k + 15 */
        const int32x4x2_t w0 = vld2q_s32(win + k), w1 = vld2q_s32(win + k + 8);
        const int32x4_t e0 = vmulq_s32(vmovl_s16(vget_low_s16(sv.val[0])), w0.val[0]);
        const int32x4_t e1 = vmulq_s32(vmovl_high_s16(sv.val[0]), w1.val[0]);
        const int32x4_t o0 = vmulq_s32(vmovl_s16(vget_low_s16(sv.val[1])), w0.val[1]);
        const int32x4_t o1 = vmulq_s32(vmovl_high_s16(sv.val[1]), w1.val[1]);
        vst1q_s32(zr + k / 2, e0);
        vst1q_s32(zr + k / 2 + 4, e1);
        vst1q_s32(zi + k / 2, o0);
        vst1q_s32(zi + k / 2 + 4, o1);
        vmx = vmaxq_u32(vmaxq_u32(vmx, vreinterpretq_u32_s32(vabsq_s32(e0))), vreinterpretq_u32_s32(vabsq_s32(e1)));
        vmx = vmaxq_u32(vmaxq_u32(vmx, vreinterpretq_u32_s32(vabsq_s32(o0))), vreinterpretq_u32_s32(vabsq_s32(o1)));
    }
    uint32_t mx = vmaxvq_u32(vmx);
    for (; k < W; k++) {
        const int32_t v = (int32_t)buf[k] * win[k];
        const uint32_t a = (uint32_t)(v < 0 ? -v : v);
        (k & 1 ? zi : zr)[k >> 1] = v;
        mx = a > mx ? a : mx;
    }
    const int32_t e = mx ? (32 - __builtin_clz(mx)) - fe->block_bits : 0;
    const int32x4_t sh = vdupq_n_s32(-e);
    for (j = 0; j + 8 <= half; j += 8) {
        int32x4x2_t r = vld1q_s32_x2(zr + j), i = vld1q_s32_x2(zi + j);
        r.val[0] = vrshlq_s32(r.val[0], sh), r.val[1] = vrshlq_s32(r.val[1], sh);
        i.val[0] = vrshlq_s32(i.val[0], sh), i.val[1] = vrshlq_s32(i.val[1], sh);
        vst1q_s32_x2(zr + j, r);
        vst1q_s32_x2(zi + j, i);
    }
    for (; j + 4 <= half; j += 4) {
        vst1q_s32(zr + j, vrshlq_s32(vld1q_s32(zr + j), sh));
        vst1q_s32(zi + j, vrshlq_s32(vld1q_s32(zi + j), sh));
    }
    for (; j < half; j++) {
        zr[j] = e > 0 ? (zr[j] + (1 << (e - 1))) >> e : (int32_t)((uint32_t)zr[j] << -e);
        zi[j] = e > 0 ? (zi[j] + (1 << (e - 1))) >> e : (int32_t)((uint32_t)zi[j] << -e);
    }
    return e;
}
#else
static KWS_STEP int32_t window_and_scale(kws_ifrontend *fe, int32_t *zr, int32_t *zi) {
    const int32_t W = fe->cfg.win_length, K = fe->K;
    int32_t *xw = fe->xw;
    uint32_t mx = 0;
    int32_t k = 0;
#if defined(KWS_X86_AVX2)
    __m256i vmx = _mm256_setzero_si256();
    for (; k + 8 <= W; k += 8) {
        const __m256i v = _mm256_mullo_epi32(_mm256_cvtepi16_epi32(_mm_loadu_si128((const __m128i *)(fe->framer.buf + k))),
                                             _mm256_loadu_si256((const __m256i *)(fe->window + k)));
        _mm256_storeu_si256((__m256i *)(xw + k), v);
        vmx = _mm256_max_epu32(vmx, _mm256_abs_epi32(v));
    }
    uint32_t lanes[8];
    _mm256_storeu_si256((__m256i *)lanes, vmx);
    for (int32_t j = 0; j < 8; j++) mx = lanes[j] > mx ? lanes[j] : mx;
#endif
    for (; k < W; k++) {
        xw[k] = (int32_t)fe->framer.buf[k] * fe->window[k];
        const uint32_t a = (uint32_t)(xw[k] < 0 ? -xw[k] : xw[k]);
        mx = a > mx ? a : mx;
    }
    const int32_t bits = mx ? 32 - __builtin_clz(mx) : 0;
    const int32_t e = mx ? bits - fe->block_bits : 0;
    /* xw[W .. n_fft) stays 0 from kws_ifrontend_new (zero padding); deinterleave with the shift */
    if (e > 0) {
        const int32_t r = 1 << (e - 1);
        int32_t j = 0;
#if defined(KWS_X86_AVX2)
        const __m256i vr = _mm256_set1_epi32(r), even = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);
        for (; j + 8 <= K; j += 8) {
            const __m256i v0 = _mm256_permutevar8x32_epi32(_mm256_loadu_si256((const __m256i *)(xw + 2 * j)), even);
            const __m256i v1 = _mm256_permutevar8x32_epi32(_mm256_loadu_si256((const __m256i *)(xw + 2 * j + 8)), even);
            const __m256i re = _mm256_permute2x128_si256(v0, v1, 0x20), im = _mm256_permute2x128_si256(v0, v1, 0x31);
            _mm256_storeu_si256((__m256i *)(zr + j), _mm256_srai_epi32(_mm256_add_epi32(re, vr), e));
            _mm256_storeu_si256((__m256i *)(zi + j), _mm256_srai_epi32(_mm256_add_epi32(im, vr), e));
        }
#endif
        for (; j < K; j++) {
            zr[j] = (xw[2 * j] + r) >> e;
            zi[j] = (xw[2 * j + 1] + r) >> e;
        }
    } else {
        const int32_t l = -e;
        int32_t j = 0;
#if defined(KWS_X86_AVX2)
        const __m256i even = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);
        const __m128i cnt = _mm_cvtsi32_si128(l);
        for (; j + 8 <= K; j += 8) {
            const __m256i v0 = _mm256_permutevar8x32_epi32(_mm256_loadu_si256((const __m256i *)(xw + 2 * j)), even);
            const __m256i v1 = _mm256_permutevar8x32_epi32(_mm256_loadu_si256((const __m256i *)(xw + 2 * j + 8)), even);
            _mm256_storeu_si256((__m256i *)(zr + j), _mm256_sll_epi32(_mm256_permute2x128_si256(v0, v1, 0x20), cnt));
            _mm256_storeu_si256((__m256i *)(zi + j), _mm256_sll_epi32(_mm256_permute2x128_si256(v0, v1, 0x31), cnt));
        }
#endif
        for (; j < K; j++) {
            zr[j] = (int32_t)((uint32_t)xw[2 * j] << l);
            zi[j] = (int32_t)((uint32_t)xw[2 * j + 1] << l);
        }
    }
    return e;
}
#endif

/* One radix-4 butterfly, scalar (kwslib.frontend.intfrontend.fft_stockham). */
static inline void bfly4(const int32_t *xr, const int32_t *xi, int32_t *yr, int32_t *yi, int32_t i, int32_t ms,
                         int32_t o, int32_t os, const int32_t *w, int32_t m, int32_t p) {
    const int32_t b0r = xr[i] + xr[i + 2 * ms], b0i = xi[i] + xi[i + 2 * ms];
    const int32_t b1r = xr[i] - xr[i + 2 * ms], b1i = xi[i] - xi[i + 2 * ms];
    const int32_t b2r = xr[i + ms] + xr[i + 3 * ms], b2i = xi[i + ms] + xi[i + 3 * ms];
    const int32_t b3r = xi[i + ms] - xi[i + 3 * ms], b3i = xr[i + 3 * ms] - xr[i + ms];
    int32_t dr, di;
    yr[o] = b0r + b2r;
    yi[o] = b0i + b2i;
    dr = b1r + b3r, di = b1i + b3i;
    yr[o + os] = rmul(dr, w[p]) - rmul(di, w[m + p]);
    yi[o + os] = rmul(dr, w[m + p]) + rmul(di, w[p]);
    dr = b0r - b2r, di = b0i - b2i;
    yr[o + 2 * os] = rmul(dr, w[2 * m + p]) - rmul(di, w[3 * m + p]);
    yi[o + 2 * os] = rmul(dr, w[3 * m + p]) + rmul(di, w[2 * m + p]);
    dr = b1r - b3r, di = b1i - b3i;
    yr[o + 3 * os] = rmul(dr, w[4 * m + p]) - rmul(di, w[5 * m + p]);
    yi[o + 3 * os] = rmul(dr, w[5 * m + p]) + rmul(di, w[4 * m + p]);
}

#if defined(KWS_NEON)
/* Four radix-4 butterflies: inputs a_j at x + j*ms (4 lanes each); outputs y_j (j = 0..3) in (r[j], i[j]); each
   twiddle product rounded (vqrdmulh = rmul). The sums and differences, then three ways to apply the twiddles. */
static inline __attribute__((always_inline)) void bfly4_neon_sums(const int32_t *xr, const int32_t *xi, int32_t ms,
                                                                  int32x4_t *r, int32x4_t *i, int32x4_t *dr,
                                                                  int32x4_t *di) {
    const int32x4_t a0r = vld1q_s32(xr), a1r = vld1q_s32(xr + ms);
    const int32x4_t a2r = vld1q_s32(xr + 2 * ms), a3r = vld1q_s32(xr + 3 * ms);
    const int32x4_t a0i = vld1q_s32(xi), a1i = vld1q_s32(xi + ms);
    const int32x4_t a2i = vld1q_s32(xi + 2 * ms), a3i = vld1q_s32(xi + 3 * ms);
    const int32x4_t b0r = vaddq_s32(a0r, a2r), b0i = vaddq_s32(a0i, a2i);
    const int32x4_t b1r = vsubq_s32(a0r, a2r), b1i = vsubq_s32(a0i, a2i);
    const int32x4_t b2r = vaddq_s32(a1r, a3r), b2i = vaddq_s32(a1i, a3i);
    const int32x4_t b3r = vsubq_s32(a1i, a3i), b3i = vsubq_s32(a3r, a1r);
    r[0] = vaddq_s32(b0r, b2r);
    i[0] = vaddq_s32(b0i, b2i);
    dr[0] = vaddq_s32(b1r, b3r), di[0] = vaddq_s32(b1i, b3i);
    dr[1] = vsubq_s32(b0r, b2r), di[1] = vsubq_s32(b0i, b2i);
    dr[2] = vsubq_s32(b1r, b3r), di[2] = vsubq_s32(b1i, b3i);
}

/* twiddles per lane: w = (w1r, w1i, w2r, w2i, w3r, w3i) */
static inline __attribute__((always_inline)) void bfly4_neon(const int32_t *xr, const int32_t *xi, int32_t ms,
                                                             const int32x4_t *w, int32x4_t *r, int32x4_t *i) {
    int32x4_t dr[3], di[3];
    bfly4_neon_sums(xr, xi, ms, r, i, dr, di);
    for (int32_t j = 0; j < 3; j++) {
        r[j + 1] = vsubq_s32(vqrdmulhq_s32(dr[j], w[2 * j]), vqrdmulhq_s32(di[j], w[2 * j + 1]));
        i[j + 1] = vaddq_s32(vqrdmulhq_s32(dr[j], w[2 * j + 1]), vqrdmulhq_s32(di[j], w[2 * j]));
    }
}

/* one twiddle set for all lanes, packed: t0 = (w1r, w1i, w2r, w2i), t1 = (w3r, w3i, -, -) */
static inline __attribute__((always_inline)) void bfly4_neon_bcast(const int32_t *xr, const int32_t *xi, int32_t ms,
                                                                   int32x4_t t0, int32x4_t t1, int32x4_t *r,
                                                                   int32x4_t *i) {
    int32x4_t dr[3], di[3];
    bfly4_neon_sums(xr, xi, ms, r, i, dr, di);
    r[1] = vsubq_s32(vqrdmulhq_laneq_s32(dr[0], t0, 0), vqrdmulhq_laneq_s32(di[0], t0, 1));
    i[1] = vaddq_s32(vqrdmulhq_laneq_s32(dr[0], t0, 1), vqrdmulhq_laneq_s32(di[0], t0, 0));
    r[2] = vsubq_s32(vqrdmulhq_laneq_s32(dr[1], t0, 2), vqrdmulhq_laneq_s32(di[1], t0, 3));
    i[2] = vaddq_s32(vqrdmulhq_laneq_s32(dr[1], t0, 3), vqrdmulhq_laneq_s32(di[1], t0, 2));
    r[3] = vsubq_s32(vqrdmulhq_laneq_s32(dr[2], t1, 0), vqrdmulhq_laneq_s32(di[2], t1, 1));
    i[3] = vaddq_s32(vqrdmulhq_laneq_s32(dr[2], t1, 1), vqrdmulhq_laneq_s32(di[2], t1, 0));
}

/* p = 0: every twiddle is W^0 = (2^31 - 1, 0), whose products are the identity here, so they are left out:
   rmul(d, 2^31 - 1) = d + floor((2^30 - d) / 2^31) = d for |d| <= 2^30 (the FFT's values stay below 2^29.3, see
   the specification's bound) and rmul(d, 0) = 0. The same integers, without 12 multiplies. */
static inline __attribute__((always_inline)) void bfly4_neon_unit(const int32_t *xr, const int32_t *xi, int32_t ms,
                                                                  int32x4_t *r, int32x4_t *i) {
    int32x4_t dr[3], di[3];
    bfly4_neon_sums(xr, xi, ms, r, i, dr, di);
    for (int32_t j = 0; j < 3; j++) r[j + 1] = dr[j], i[j + 1] = di[j];
}
#endif

/* Step 3: Stockham DIF over K points (radix-4 stages, then radix-2 if K is not a power of 4);
   in (xr, xi), scratch (yr, yi); returns 1 if the result ended in y. */
static KWS_STEP int32_t fft(kws_ifrontend *fe, int32_t *xr, int32_t *xi, int32_t *yr, int32_t *yi) {
    const int32_t K = fe->K;
    int32_t n = K, s = 1, off = 0, in_y = 0;
    while (n >= 4) {
        const int32_t m = n / 4, ms = m * s;
        const int32_t *w = fe->tw + off;
#if defined(KWS_NEON)
        if (s == 1 && m >= 4) { /* lanes over p; outputs y[4p + j] interleaved */
            for (int32_t p = 0; p < m; p += 4) {
                int32x4x4_t r, i;
                int32x4_t wv[6];
                for (int32_t j = 0; j < 6; j++) wv[j] = vld1q_s32(w + j * m + p);
                bfly4_neon(xr + p, xi + p, m, wv, r.val, i.val);
                vst4q_s32(yr + 4 * p, r);
                vst4q_s32(yi + 4 * p, i);
            }
        } else if (s >= 4) { /* lanes over q; p = 0 has the unit twiddles */
            const int32_t *wp = fe->twp + off / 6 * 8;
            for (int32_t p = 0; p < m; p++) {
                const int32x4x2_t t = vld1q_s32_x2(wp + 8 * p);
                int32_t *o_r = yr + 4 * s * p, *o_i = yi + 4 * s * p;
                for (int32_t q = 0; q < s; q += 4) {
                    int32x4_t r[4], i[4];
                    if (p == 0)
                        bfly4_neon_unit(xr + q, xi + q, ms, r, i);
                    else
                        bfly4_neon_bcast(xr + s * p + q, xi + s * p + q, ms, t.val[0], t.val[1], r, i);
                    for (int32_t j = 0; j < 4; j++) {
                        vst1q_s32(o_r + j * s + q, r[j]);
                        vst1q_s32(o_i + j * s + q, i[j]);
                    }
                }
            }
        } else
#elif defined(KWS_X86_AVX2)
        if (s == 1 && m >= 8) { /* lanes over p; outputs y[4p + j] interleaved */
            for (int32_t p = 0; p < m; p += 8) {
                __m256i wv[6], r[4], i[4];
                for (int32_t j = 0; j < 6; j++) wv[j] = _mm256_loadu_si256((const __m256i *)(w + j * m + p));
                bfly4_avx2(xr + p, xi + p, m, wv, r, i);
                store4_interleaved(yr + 4 * p, r);
                store4_interleaved(yi + 4 * p, i);
            }
        } else if (s >= 8) { /* lanes over q */
            for (int32_t p = 0; p < m; p++) {
                __m256i wv[6];
                for (int32_t j = 0; j < 6; j++) wv[j] = _mm256_set1_epi32(w[j * m + p]);
                int32_t *o_r = yr + 4 * s * p, *o_i = yi + 4 * s * p;
                for (int32_t q = 0; q < s; q += 8) {
                    __m256i r[4], i[4];
                    bfly4_avx2(xr + s * p + q, xi + s * p + q, ms, wv, r, i);
                    for (int32_t j = 0; j < 4; j++) {
                        _mm256_storeu_si256((__m256i *)(o_r + j * s + q), r[j]);
                        _mm256_storeu_si256((__m256i *)(o_i + j * s + q), i[j]);
                    }
                }
            }
        } else if (s == 4 && m % 2 == 0) { /* lanes over (p, p + 1) x q */
            for (int32_t p = 0; p < m; p += 2) {
                __m256i wv[6], r[4], i[4];
                for (int32_t j = 0; j < 6; j++)
                    wv[j] = _mm256_setr_m128i(_mm_set1_epi32(w[j * m + p]), _mm_set1_epi32(w[j * m + p + 1]));
                bfly4_avx2(xr + 4 * p, xi + 4 * p, ms, wv, r, i);
                for (int32_t j = 0; j < 4; j++) { /* p: y[16p + 4j + q]; p + 1: 16 further */
                    _mm_storeu_si128((__m128i *)(yr + 16 * p + 4 * j), _mm256_castsi256_si128(r[j]));
                    _mm_storeu_si128((__m128i *)(yr + 16 * p + 16 + 4 * j), _mm256_extracti128_si256(r[j], 1));
                    _mm_storeu_si128((__m128i *)(yi + 16 * p + 4 * j), _mm256_castsi256_si128(i[j]));
                    _mm_storeu_si128((__m128i *)(yi + 16 * p + 16 + 4 * j), _mm256_extracti128_si256(i[j], 1));
                }
            }
        } else
#endif
        {
            for (int32_t p = 0; p < m; p++)
                for (int32_t q = 0; q < s; q++) bfly4(xr, xi, yr, yi, q + s * p, ms, q + 4 * s * p, s, w, m, p);
        }
        int32_t *t = xr;
        xr = yr, yr = t;
        t = xi, xi = yi, yi = t;
        in_y = !in_y;
        off += 6 * m;
        n = m;
        s *= 4;
    }
    if (n == 2) { /* the last radix-2 stage: twiddle 1 */
        int32_t q = 0;
#if defined(KWS_NEON)
        for (; q + 4 <= s; q += 4) {
            const int32x4_t ar = vld1q_s32(xr + q), br = vld1q_s32(xr + s + q);
            const int32x4_t ai = vld1q_s32(xi + q), bi = vld1q_s32(xi + s + q);
            vst1q_s32(yr + q, vaddq_s32(ar, br));
            vst1q_s32(yr + s + q, vsubq_s32(ar, br));
            vst1q_s32(yi + q, vaddq_s32(ai, bi));
            vst1q_s32(yi + s + q, vsubq_s32(ai, bi));
        }
#endif
        for (; q < s; q++) {
            const int32_t ar = xr[q], br = xr[s + q], ai = xi[q], bi = xi[s + q];
            yr[q] = ar + br;
            yr[s + q] = ar - br;
            yi[q] = ai + bi;
            yi[s + q] = ai - bi;
        }
        in_y = !in_y;
    }
    return in_y;
}

/* Q20 log2 of E (> 0), before the frame's scale. */
static inline int32_t log2_q20(const kws_ifrontend *fe, uint64_t E) {
    const int32_t lead = 63 - __builtin_clzll(E);
    const uint64_t norm = lead >= MANTISSA_BITS ? E >> (lead - MANTISSA_BITS) : E << (MANTISSA_BITS - lead);
    const int64_t frac = (int64_t)(norm & ((1ULL << MANTISSA_BITS) - 1));
    const int32_t rb = MANTISSA_BITS - LOG_TABLE_BITS;
    const int64_t i = frac >> rb, r = frac & ((1LL << rb) - 1);
    const int64_t t0 = fe->log_table[i], t1 = fe->log_table[i + 1];
    return (int32_t)(((int64_t)lead << LOG_BITS) + t0 + (((t1 - t0) * r) >> rb));
}

/* Steps 4-5 for one bin k = k0 + j: Y = A + W_N^k (-i B), P = |Y|^2 >> 16. */
static inline void split_power_one(kws_ifrontend *fe, const int32_t *xr, const int32_t *xi, int32_t j) {
    const int32_t K = fe->K, k = (fe->k0 + j) & (K - 1), r = (K - k) & (K - 1);
    const int32_t a_re = xr[k] + xr[r], a_im = xi[k] - xi[r];
    const int32_t b_re = xr[k] - xr[r], b_im = xi[k] + xi[r];
    const int32_t cr = fe->sp_re[j], ci = fe->sp_im[j];
    const int32_t y_re = a_re + (rmul(b_im, cr) - rmul(-b_re, ci));
    const int32_t y_im = a_im + (rmul(b_im, ci) + rmul(-b_re, cr));
    fe->power[j] = ((int64_t)y_re * y_re + (int64_t)y_im * y_im) >> POWER_SHIFT;
}

/* Steps 4-5: the real-FFT split and the power, for k in [k0, k1). */
static KWS_STEP void split_power(kws_ifrontend *fe, const int32_t *xr, const int32_t *xi) {
    const int32_t K = fe->K, k0 = fe->k0, nk = fe->k1 - fe->k0;
    int64_t *pw = fe->power;
    int32_t j = 0;
    (void)K, (void)k0, (void)pw; /* read by the SIMD paths only */
#if defined(KWS_NEON)
    for (; j < nk && k0 + j == 0; j++) split_power_one(fe, xr, xi, j);
    { /* bins k .. k+3 with K-k .. K-k-3 (no wrap); pointers walked, tables in locals (no reload per step) */
        const int32_t *restrict cr_p = fe->sp_re, *restrict ci_p = fe->sp_im;
        const int32_t *fr_p = xr + k0 + j, *fi_p = xi + k0 + j, *gr_p = xr + K - k0 - j - 3, *gi_p = xi + K - k0 - j - 3;
        int64_t *restrict out = pw;
        const int32_t stop = nk < K - k0 ? nk : K - k0; /* j + 4 <= stop */
        for (; j + 4 <= stop; j += 4, fr_p += 4, fi_p += 4, gr_p -= 4, gi_p -= 4) {
            const int32x4_t fr = vld1q_s32(fr_p), fi = vld1q_s32(fi_p);
            int32x4_t gr = vrev64q_s32(vld1q_s32(gr_p)), gi = vrev64q_s32(vld1q_s32(gi_p));
            gr = vextq_s32(gr, gr, 2); /* lanes: x[K-k], x[K-k-1], x[K-k-2], x[K-k-3] */
            gi = vextq_s32(gi, gi, 2);
            const int32x4_t a_re = vaddq_s32(fr, gr), a_im = vsubq_s32(fi, gi);
            const int32x4_t b_im = vaddq_s32(fi, gi), nb_re = vsubq_s32(gr, fr);
            const int32x4_t cr = vld1q_s32(cr_p + j), ci = vld1q_s32(ci_p + j);
            const int32x4_t y_re = vaddq_s32(a_re, vsubq_s32(vqrdmulhq_s32(b_im, cr), vqrdmulhq_s32(nb_re, ci)));
            const int32x4_t y_im = vaddq_s32(a_im, vaddq_s32(vqrdmulhq_s32(b_im, ci), vqrdmulhq_s32(nb_re, cr)));
            int64x2_t lo = vmull_s32(vget_low_s32(y_re), vget_low_s32(y_re));
            int64x2_t hi = vmull_high_s32(y_re, y_re);
            lo = vmlal_s32(lo, vget_low_s32(y_im), vget_low_s32(y_im));
            hi = vmlal_high_s32(hi, y_im, y_im);
            vst1q_s64(out + j, vshrq_n_s64(lo, POWER_SHIFT));
            vst1q_s64(out + j + 2, vshrq_n_s64(hi, POWER_SHIFT));
        }
    }
#elif defined(KWS_X86_AVX2)
    for (; j < nk && k0 + j == 0; j++) split_power_one(fe, xr, xi, j);
    const __m256i rev = _mm256_setr_epi32(7, 6, 5, 4, 3, 2, 1, 0);
    for (; j + 8 <= nk && k0 + j + 8 <= K; j += 8) { /* k .. k+7 and K-k .. K-k-7, no wrap */
        const int32_t k = k0 + j, r7 = K - k - 7;
        const __m256i fr = _mm256_loadu_si256((const __m256i *)(xr + k)), fi = _mm256_loadu_si256((const __m256i *)(xi + k));
        const __m256i gr = _mm256_permutevar8x32_epi32(_mm256_loadu_si256((const __m256i *)(xr + r7)), rev);
        const __m256i gi = _mm256_permutevar8x32_epi32(_mm256_loadu_si256((const __m256i *)(xi + r7)), rev);
        const __m256i a_re = _mm256_add_epi32(fr, gr), a_im = _mm256_sub_epi32(fi, gi);
        const __m256i b_im = _mm256_add_epi32(fi, gi), nb_re = _mm256_sub_epi32(gr, fr);
        const __m256i cr = _mm256_loadu_si256((const __m256i *)(fe->sp_re + j));
        const __m256i ci = _mm256_loadu_si256((const __m256i *)(fe->sp_im + j));
        const __m256i y_re = _mm256_add_epi32(a_re, _mm256_sub_epi32(rmul8(b_im, cr), rmul8(nb_re, ci)));
        const __m256i y_im = _mm256_add_epi32(a_im, _mm256_add_epi32(rmul8(b_im, ci), rmul8(nb_re, cr)));
        const __m256i ev = _mm256_add_epi64(_mm256_mul_epi32(y_re, y_re), _mm256_mul_epi32(y_im, y_im));
        const __m256i yr_o = _mm256_srli_epi64(y_re, 32), yi_o = _mm256_srli_epi64(y_im, 32);
        const __m256i od = _mm256_add_epi64(_mm256_mul_epi32(yr_o, yr_o), _mm256_mul_epi32(yi_o, yi_o));
        const __m256i lo = _mm256_unpacklo_epi64(ev, od), hi = _mm256_unpackhi_epi64(ev, od); /* j0 j1 j4 j5 | j2 j3 j6 j7 */
        _mm256_storeu_si256((__m256i *)(pw + j), _mm256_srli_epi64(_mm256_permute2x128_si256(lo, hi, 0x20), POWER_SHIFT));
        _mm256_storeu_si256((__m256i *)(pw + j + 4), _mm256_srli_epi64(_mm256_permute2x128_si256(lo, hi, 0x31), POWER_SHIFT));
    }
#endif
    for (; j < nk; j++) split_power_one(fe, xr, xi, j);
}

/* Step 6 for filter m: E = sum of power * Q16 weight over its span (exact in int64 by the Parseval bound). The SIMD
   paths split each power (>= 0, < 2^46) into its 32-bit halves: E = sum(lo w) + 2^32 sum(hi w), each sum exact
   in 64 bits (lo w < 2^48, hi w < 2^30), so every path computes the same integer. */
static inline int64_t filter_energy(const int64_t *pw, const uint32_t *w, int32_t len) {
#if defined(KWS_NEON)
    const uint32_t *p = (const uint32_t *)pw; /* little endian: lo, hi of each power */
    uint64x2_t lo = vdupq_n_u64(0), hi = vdupq_n_u64(0);
    for (int32_t t = 0; t < len; t += 4) {
        const uint32x4x2_t v = vld2q_u32(p + 2 * t);
        const uint32x4_t wv = vld1q_u32(w + t);
        lo = vmlal_u32(lo, vget_low_u32(v.val[0]), vget_low_u32(wv));
        lo = vmlal_high_u32(lo, v.val[0], wv);
        hi = vmlal_u32(hi, vget_low_u32(v.val[1]), vget_low_u32(wv));
        hi = vmlal_high_u32(hi, v.val[1], wv);
    }
    return (int64_t)(vaddvq_u64(lo) + (vaddvq_u64(hi) << 32));
#elif defined(KWS_X86_AVX2)
    __m256i lo = _mm256_setzero_si256(), hi = _mm256_setzero_si256();
    for (int32_t t = 0; t < len; t += 4) {
        const __m256i v = _mm256_loadu_si256((const __m256i *)(pw + t));
        const __m256i wv = _mm256_cvtepu32_epi64(_mm_loadu_si128((const __m128i *)(w + t)));
        lo = _mm256_add_epi64(lo, _mm256_mul_epu32(v, wv)); /* the low 32 bits of each lane */
        hi = _mm256_add_epi64(hi, _mm256_mul_epu32(_mm256_srli_epi64(v, 32), wv));
    }
    const __m256i s = _mm256_add_epi64(lo, _mm256_slli_epi64(hi, 32));
    const __m128i h = _mm_add_epi64(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
    return _mm_cvtsi128_si64(h) + _mm_extract_epi64(h, 1);
#else
    int64_t e = 0;
    for (int32_t t = 0; t < len; t++) e += pw[t] * (int64_t)w[t];
    return e;
#endif
}

/* Steps 6-7: filterbank, log2, the frame's scale, the floor. */
static KWS_STEP void mel_log2(kws_ifrontend *fe, int32_t e) {
    const int32_t M = fe->cfg.n_mels, floor_q20 = fe->log_floor;
    const int32_t scale = (2 * e - ENERGY_EXP) * (1 << LOG_BITS);
    const int32_t *restrict start = fe->fb_start, *restrict len = fe->fb_len, *restrict off = fe->fb_off;
    const int64_t *restrict pw = fe->power;
    const uint32_t *restrict w = fe->fb_w;
    int32_t *restrict out = fe->mel;
    for (int32_t m = 0; m < M; m++) {
        const int64_t E = filter_energy(pw + start[m], w + off[m], len[m]);
        int32_t L = floor_q20;
        if (E > 0) {
            const int32_t v = log2_q20(fe, (uint64_t)E) + scale;
            L = v > L ? v : L;
        }
        out[m] = L;
    }
}

/* One complete frame in the framer's buffer -> fe->mel (steps 1-7). */
static void compute_frame(kws_ifrontend *fe) {
    const int32_t K = fe->K;
    int32_t *xr = fe->bufs, *xi = fe->bufs + K, *yr = fe->bufs + 2 * K, *yi = fe->bufs + 3 * K;
    const int32_t e = window_and_scale(fe, xr, xi);
    if (fft(fe, xr, xi, yr, yi)) {
        xr = yr;
        xi = yi;
    }
    split_power(fe, xr, xi);
    mel_log2(fe, e);
}

int32_t kws_ifrontend_push(kws_ifrontend *fe, const int16_t *pcm, int32_t n, int32_t *consumed) {
    if (!kws_framer_push(&fe->framer, pcm, n, consumed)) return 0;
    compute_frame(fe);
    return 1;
}

int32_t kws_ifrontend_push_frames(kws_ifrontend *fe, const int16_t *pcm, int32_t n, int32_t *out, int32_t max_frames) {
    if (!fe || n < 0 || (n && !pcm) || max_frames < 0) return -1;
    int32_t pos = 0, frames = 0, used = 0;
    for (;;) {
        const int32_t ready = kws_ifrontend_push(fe, pcm + pos, n - pos, &used);
        pos += used;
        if (!ready) break;
        if (frames == max_frames) return -3;
        memcpy(out + (size_t)frames * fe->cfg.n_mels, fe->mel, sizeof(int32_t) * fe->cfg.n_mels);
        frames++;
    }
    return frames;
}

int32_t kws_icode_map(const float *norm_mean, const float *norm_std, int32_t n_mels, int32_t decimate,
                      double input_scale, int32_t input_zero_point, int64_t *mult, int64_t *add, int32_t *shift) {
    if (!norm_mean || !norm_std || n_mels <= 0 || decimate <= 0 || !(input_scale > 0.0) || !mult || !add || !shift)
        return -1;
    for (int32_t m = 0; m < n_mels; m++) {
        const double sd = (double)norm_std[m], mu = (double)norm_mean[m];
        if (!(sd > 0.0) || !isfinite(mu)) return -1;
        const double a = log(2.0) / ((1048576.0 * (double)decimate) * sd * input_scale);
        int ex = 0;
        frexp(a, &ex);
        int64_t s = 31 - ex;
        if (s < 1 || s > 62) return -1;
        double A = rint(a * ldexp(1.0, (int)s));
        if (A >= 2147483648.0) {
            A = floor(A / 2.0); /* numpy's // 2 on a non-negative integer */
            s -= 1;
        }
        const double C = rint(((double)input_zero_point + 0.5 - mu / (sd * input_scale)) * ldexp(1.0, (int)s));
        if (fabs(C) + (double)decimate * 67108864.0 * A >= 4611686018427387904.0) return -1;
        mult[m] = (int64_t)A;
        add[m] = (int64_t)C;
        shift[m] = (int32_t)s;
    }
    return 0;
}

void kws_icode_apply(const int32_t *sums, const int64_t *mult, const int64_t *add, const int32_t *shift,
                     int32_t n_mels, int8_t *codes) {
    for (int32_t m = 0; m < n_mels; m++) {
        const int64_t q = ((int64_t)sums[m] * mult[m] + add[m]) >> shift[m];
        codes[m] = (int8_t)(q < -128 ? -128 : q > 127 ? 127 : q);
    }
}
