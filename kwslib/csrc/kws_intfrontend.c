/*
 * The integer front end (see kws_intfrontend.h; specification: kwslib/intfrontend.py, which argues every
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

#ifndef M_PI
#define M_PI 3.14159265358979323846
#endif

#define WINDOW_BITS 15
#define POWER_SHIFT 16
#define MEL_BITS 16
#define LOG_BITS 20
#define LOG_TABLE_BITS 8
#define MANTISSA_BITS 30
#define ENERGY_EXP (2 * (2 * WINDOW_BITS) + 2 - POWER_SHIFT + MEL_BITS)

struct kws_ifrontend {
    kws_frontend_config cfg;
    int32_t K, stages, k0, k1, block_bits; /* block_bits: 29 - floor(log2 win_length) */
    int32_t *window;          /* [win] Q15 Hann */
    int32_t *tw_re, *tw_im;   /* per stage, contiguous: stage t (m = K >> (t+1) entries) holds W_K^(p * 2^t) */
    int32_t *sp_re, *sp_im;   /* [k1 - k0] Q31 W_N^k */
    int32_t *mel_first, *mel_count, *mel_offset;
    int32_t *mel_w;           /* Q16 non-zero weights, filter by filter */
    int32_t log_table[(1 << LOG_TABLE_BITS) + 1];
    int32_t log_floor;
    int32_t *xw;              /* [win] windowed samples */
    int32_t *bufs;            /* [4][K]: re, im of two ping-pong buffers */
    int64_t *power;           /* [k1 - k0] */
    int16_t *buf;             /* [win] samples not yet consumed by a complete frame */
    int32_t n_buf;
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
    free(fe->tw_re);
    free(fe->tw_im);
    free(fe->sp_re);
    free(fe->sp_im);
    free(fe->mel_first);
    free(fe->mel_count);
    free(fe->mel_offset);
    free(fe->mel_w);
    free(fe->xw);
    free(fe->bufs);
    free(fe->power);
    free(fe->buf);
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
    /* the Parseval bound of the filterbank energies (kwslib.intfrontend._check_cfg): 4 N W 2^(2B) < 2^62 */
    if (ldexp(4.0 * (double)c->n_fft * (double)c->win_length, 2 * fe->block_bits) >= ldexp(1.0, 62)) {
        free(full);
        free(fe);
        return NULL;
    }
    for (int32_t n = K; n > 1; n /= 2) fe->stages++;
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
    fe->tw_re = (int32_t *)malloc(sizeof(int32_t) * K);
    fe->tw_im = (int32_t *)malloc(sizeof(int32_t) * K);
    fe->sp_re = (int32_t *)malloc(sizeof(int32_t) * nk);
    fe->sp_im = (int32_t *)malloc(sizeof(int32_t) * nk);
    fe->mel_first = (int32_t *)calloc((size_t)M, sizeof(int32_t));
    fe->mel_count = (int32_t *)calloc((size_t)M, sizeof(int32_t));
    fe->mel_offset = (int32_t *)calloc((size_t)M, sizeof(int32_t));
    fe->xw = (int32_t *)calloc((size_t)c->n_fft, sizeof(int32_t));
    fe->bufs = (int32_t *)calloc((size_t)4 * K + 4, sizeof(int32_t));
    fe->power = (int64_t *)calloc((size_t)nk + 2, sizeof(int64_t));
    fe->buf = (int16_t *)calloc((size_t)c->win_length, sizeof(int16_t));
    fe->mel = (int32_t *)calloc((size_t)M, sizeof(int32_t));
    if (!fe->window || !fe->tw_re || !fe->tw_im || !fe->sp_re || !fe->sp_im || !fe->mel_first || !fe->mel_count ||
        !fe->mel_offset || !fe->xw || !fe->bufs || !fe->power || !fe->buf || !fe->mel)
        goto fail;
    for (int32_t k = 0; k < c->win_length; k++)
        fe->window[k] = (int32_t)rint((0.5 - 0.5 * cos(2.0 * M_PI * (double)k / (double)c->win_length)) * 32768.0);
    for (int32_t t = 0, off = 0; t < fe->stages; t++) {
        const int32_t m = K >> (t + 1), s = 1 << t;
        for (int32_t p = 0; p < m; p++) {
            const double a = 2.0 * M_PI * (double)(p * s) / (double)K;
            fe->tw_re[off + p] = q31(cos(a));
            fe->tw_im[off + p] = q31(-sin(a));
        }
        off += m;
    }
    for (int32_t k = k0; k < k1; k++) {
        const double a = 2.0 * M_PI * (double)k / (double)c->n_fft;
        fe->sp_re[k - k0] = q31(cos(a));
        fe->sp_im[k - k0] = q31(-sin(a));
    }
    int32_t total = 0;
    for (int32_t m = 0; m < M; m++) {
        int32_t first = -1, last = -1;
        for (int32_t k = 0; k < nb; k++)
            if (rint(full[(size_t)m * nb + k] * 65536.0) != 0.0) {
                if (first < 0) first = k;
                last = k;
            }
        fe->mel_first[m] = first < 0 ? k0 : first;
        fe->mel_count[m] = first < 0 ? 0 : last - first + 1;
        fe->mel_offset[m] = total;
        total += fe->mel_count[m];
    }
    fe->mel_w = (int32_t *)malloc(sizeof(int32_t) * (total ? total : 1));
    if (!fe->mel_w) goto fail;
    for (int32_t m = 0; m < M; m++)
        for (int32_t j = 0; j < fe->mel_count[m]; j++)
            fe->mel_w[fe->mel_offset[m] + j] = (int32_t)rint(full[(size_t)m * nb + fe->mel_first[m] + j] * 65536.0);
    for (int32_t i = 0; i <= (1 << LOG_TABLE_BITS); i++)
        fe->log_table[i] = (int32_t)rint(log2(1.0 + (double)i / (double)(1 << LOG_TABLE_BITS)) * (double)(1 << LOG_BITS));
    fe->log_floor = (int32_t)rint(log2(c->log_floor) * (double)(1 << LOG_BITS));
    free(full);
    fe->bytes = (int64_t)sizeof(kws_ifrontend) +
                (int64_t)sizeof(int32_t) * (c->win_length + 2 * K + 2 * nk + 3 * M + total + c->n_fft + 4 * K + 4 + M) +
                (int64_t)sizeof(int64_t) * (nk + 2) + (int64_t)sizeof(int16_t) * c->win_length;
    return fe;
fail:
    free(full);
    kws_ifrontend_free(fe);
    return NULL;
}

void kws_ifrontend_reset(kws_ifrontend *fe) {
    if (fe) fe->n_buf = 0;
}

int64_t kws_ifrontend_bytes(const kws_ifrontend *fe) { return fe ? fe->bytes : 0; }

const int32_t *kws_ifrontend_frame(const kws_ifrontend *fe) { return fe->mel; }

/* rmul(a, w) = (a * w + 2^30) >> 31: NEON's vqrdmulh (no saturation: |w| < 2^31) */
static inline int32_t rmul(int32_t a, int32_t w) { return (int32_t)(((int64_t)a * w + (1LL << 30)) >> 31); }

/* Step 1-2: window, block scaling, deinterleave into z = x[2j] + i x[2j+1] (zero-padded); returns e. */
static int32_t window_and_scale(kws_ifrontend *fe, int32_t *zr, int32_t *zi) {
    const int32_t W = fe->cfg.win_length, K = fe->K;
    int32_t *xw = fe->xw;
    uint32_t mx = 0;
    int32_t k = 0;
#if defined(KWS_NEON)
    uint32x4_t vmx = vdupq_n_u32(0);
    for (; k + 4 <= W; k += 4) {
        const int32x4_t v = vmulq_s32(vmovl_s16(vld1_s16(fe->buf + k)), vld1q_s32(fe->window + k));
        vst1q_s32(xw + k, v);
        vmx = vmaxq_u32(vmx, vreinterpretq_u32_s32(vabsq_s32(v)));
    }
    mx = vmaxvq_u32(vmx);
#endif
    for (; k < W; k++) {
        xw[k] = (int32_t)fe->buf[k] * fe->window[k];
        const uint32_t a = (uint32_t)(xw[k] < 0 ? -xw[k] : xw[k]);
        mx = a > mx ? a : mx;
    }
    const int32_t bits = mx ? 32 - __builtin_clz(mx) : 0;
    const int32_t e = mx ? bits - fe->block_bits : 0;
    /* zero-pad to n_fft, then deinterleave with the shift */
    for (k = W; k < 2 * K; k++) xw[k] = 0;
    if (e > 0) {
        const int32_t r = 1 << (e - 1);
        int32_t j = 0;
#if defined(KWS_NEON)
        const int32x4_t vr = vdupq_n_s32(r), vs = vdupq_n_s32(-e);
        for (; j + 4 <= K; j += 4) {
            const int32x4x2_t v = vld2q_s32(xw + 2 * j);
            vst1q_s32(zr + j, vshlq_s32(vaddq_s32(v.val[0], vr), vs));
            vst1q_s32(zi + j, vshlq_s32(vaddq_s32(v.val[1], vr), vs));
        }
#endif
        for (; j < K; j++) {
            zr[j] = (xw[2 * j] + r) >> e;
            zi[j] = (xw[2 * j + 1] + r) >> e;
        }
    } else {
        const int32_t l = -e;
        int32_t j = 0;
#if defined(KWS_NEON)
        const int32x4_t vs = vdupq_n_s32(l);
        for (; j + 4 <= K; j += 4) {
            const int32x4x2_t v = vld2q_s32(xw + 2 * j);
            vst1q_s32(zr + j, vshlq_s32(v.val[0], vs));
            vst1q_s32(zi + j, vshlq_s32(v.val[1], vs));
        }
#endif
        for (; j < K; j++) {
            zr[j] = (int32_t)((uint32_t)xw[2 * j] << l);
            zi[j] = (int32_t)((uint32_t)xw[2 * j + 1] << l);
        }
    }
    return e;
}

/* Step 3: radix-2 Stockham DIF over K points; in (xr, xi), scratch (yr, yi); returns 1 if the result ended in y. */
static int32_t fft(kws_ifrontend *fe, int32_t *xr, int32_t *xi, int32_t *yr, int32_t *yi) {
    const int32_t K = fe->K;
    int32_t n = K, s = 1, off = 0, in_y = 0;
    while (n > 1) {
        const int32_t m = n / 2;
        const int32_t *wr = fe->tw_re + off, *wi = fe->tw_im + off;
#if defined(KWS_NEON)
        if (s == 1 && m >= 4) {
            for (int32_t p = 0; p < m; p += 4) {
                const int32x4_t ar = vld1q_s32(xr + p), br = vld1q_s32(xr + p + m);
                const int32x4_t ai = vld1q_s32(xi + p), bi = vld1q_s32(xi + p + m);
                const int32x4_t cr = vld1q_s32(wr + p), ci = vld1q_s32(wi + p);
                const int32x4_t dr = vsubq_s32(ar, br), di = vsubq_s32(ai, bi);
                int32x4x2_t o;
                o.val[0] = vaddq_s32(ar, br);
                o.val[1] = vsubq_s32(vqrdmulhq_s32(dr, cr), vqrdmulhq_s32(di, ci));
                vst2q_s32(yr + 2 * p, o);
                o.val[0] = vaddq_s32(ai, bi);
                o.val[1] = vaddq_s32(vqrdmulhq_s32(dr, ci), vqrdmulhq_s32(di, cr));
                vst2q_s32(yi + 2 * p, o);
            }
        } else if (s == 2 && m >= 4) {
            for (int32_t p = 0; p < m; p += 4) {
                const int32x4x2_t ar = vld2q_s32(xr + 2 * p), br = vld2q_s32(xr + 2 * (p + m));
                const int32x4x2_t ai = vld2q_s32(xi + 2 * p), bi = vld2q_s32(xi + 2 * (p + m));
                const int32x4_t cr = vld1q_s32(wr + p), ci = vld1q_s32(wi + p);
                int32x4x4_t orr, oii;
                for (int32_t q = 0; q < 2; q++) {
                    const int32x4_t dr = vsubq_s32(ar.val[q], br.val[q]), di = vsubq_s32(ai.val[q], bi.val[q]);
                    orr.val[q] = vaddq_s32(ar.val[q], br.val[q]);
                    oii.val[q] = vaddq_s32(ai.val[q], bi.val[q]);
                    orr.val[2 + q] = vsubq_s32(vqrdmulhq_s32(dr, cr), vqrdmulhq_s32(di, ci));
                    oii.val[2 + q] = vaddq_s32(vqrdmulhq_s32(dr, ci), vqrdmulhq_s32(di, cr));
                }
                vst4q_s32(yr + 4 * p, orr);
                vst4q_s32(yi + 4 * p, oii);
            }
        } else if (s >= 4) {
            for (int32_t p = 0; p < m; p++) {
                const int32x4_t cr = vdupq_n_s32(wr[p]), ci = vdupq_n_s32(wi[p]);
                const int32_t *a_r = xr + s * p, *b_r = xr + s * (p + m), *a_i = xi + s * p, *b_i = xi + s * (p + m);
                int32_t *y0r = yr + 2 * s * p, *y1r = y0r + s, *y0i = yi + 2 * s * p, *y1i = y0i + s;
                for (int32_t q = 0; q < s; q += 4) {
                    const int32x4_t ar = vld1q_s32(a_r + q), br = vld1q_s32(b_r + q);
                    const int32x4_t ai = vld1q_s32(a_i + q), bi = vld1q_s32(b_i + q);
                    const int32x4_t dr = vsubq_s32(ar, br), di = vsubq_s32(ai, bi);
                    vst1q_s32(y0r + q, vaddq_s32(ar, br));
                    vst1q_s32(y0i + q, vaddq_s32(ai, bi));
                    vst1q_s32(y1r + q, vsubq_s32(vqrdmulhq_s32(dr, cr), vqrdmulhq_s32(di, ci)));
                    vst1q_s32(y1i + q, vaddq_s32(vqrdmulhq_s32(dr, ci), vqrdmulhq_s32(di, cr)));
                }
            }
        } else
#endif
        {
            for (int32_t p = 0; p < m; p++) {
                const int32_t cr = wr[p], ci = wi[p];
                for (int32_t q = 0; q < s; q++) {
                    const int32_t ar = xr[q + s * p], br = xr[q + s * (p + m)];
                    const int32_t ai = xi[q + s * p], bi = xi[q + s * (p + m)];
                    const int32_t dr = ar - br, di = ai - bi;
                    yr[q + 2 * s * p] = ar + br;
                    yi[q + 2 * s * p] = ai + bi;
                    yr[q + s * (2 * p + 1)] = rmul(dr, cr) - rmul(di, ci);
                    yi[q + s * (2 * p + 1)] = rmul(dr, ci) + rmul(di, cr);
                }
            }
        }
        int32_t *t = xr;
        xr = yr, yr = t;
        t = xi, xi = yi, yi = t;
        in_y = !in_y;
        off += m;
        n = m;
        s *= 2;
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

/* One complete frame in fe->buf -> fe->mel (steps 1-7). */
static void compute_frame(kws_ifrontend *fe) {
    const int32_t K = fe->K, M = fe->cfg.n_mels, k0 = fe->k0, nk = fe->k1 - fe->k0;
    int32_t *xr = fe->bufs, *xi = fe->bufs + K, *yr = fe->bufs + 2 * K, *yi = fe->bufs + 3 * K;
    const int32_t e = window_and_scale(fe, xr, xi);
    if (fft(fe, xr, xi, yr, yi)) {
        xr = yr;
        xi = yi;
    }
    /* step 4-5: split and power for k in [k0, k1) */
    int64_t *pw = fe->power;
    for (int32_t j = 0; j < nk; j++) {
        const int32_t k = (k0 + j) & (K - 1), r = (K - k) & (K - 1);
        const int32_t a_re = xr[k] + xr[r], a_im = xi[k] - xi[r];
        const int32_t b_re = xr[k] - xr[r], b_im = xi[k] + xi[r];
        const int32_t cr = fe->sp_re[j], ci = fe->sp_im[j];
        const int32_t y_re = a_re + (rmul(b_im, cr) - rmul(-b_re, ci));
        const int32_t y_im = a_im + (rmul(b_im, ci) + rmul(-b_re, cr));
        pw[j] = ((int64_t)y_re * y_re + (int64_t)y_im * y_im) >> POWER_SHIFT;
    }
    /* step 6-7: filterbank, log2, the frame's scale, the floor */
    const int32_t scale = (2 * e - ENERGY_EXP) * (1 << LOG_BITS);
    for (int32_t m = 0; m < M; m++) {
        const int32_t *w = fe->mel_w + fe->mel_offset[m];
        const int64_t *p = pw + (fe->mel_first[m] - k0);
        int64_t E = 0;
        for (int32_t j = 0; j < fe->mel_count[m]; j++) E += p[j] * w[j];
        int32_t L = fe->log_floor;
        if (E > 0) {
            const int32_t v = log2_q20(fe, (uint64_t)E) + scale;
            L = v > L ? v : L;
        }
        fe->mel[m] = L;
    }
}

int32_t kws_ifrontend_push(kws_ifrontend *fe, const int16_t *pcm, int32_t n, int32_t *consumed) {
    const int32_t win = fe->cfg.win_length, hop = fe->cfg.hop_length;
    int32_t used = 0;
    if (fe->n_buf == win) { /* the previous call returned a frame: drop its first hop samples */
        const int32_t keep = win - hop > 0 ? win - hop : 0;
        if (keep) memmove(fe->buf, fe->buf + hop, sizeof(int16_t) * keep);
        fe->n_buf = keep;
        if (hop > win) fe->n_buf = -(hop - win);
    }
    while (fe->n_buf < 0 && used < n) {
        fe->n_buf++;
        used++;
    }
    if (fe->n_buf >= 0 && used < n) {
        const int32_t take = win - fe->n_buf < n - used ? win - fe->n_buf : n - used;
        memcpy(fe->buf + fe->n_buf, pcm + used, sizeof(int16_t) * take);
        fe->n_buf += take;
        used += take;
    }
    *consumed = used;
    if (fe->n_buf == win) {
        compute_frame(fe);
        return 1;
    }
    return 0;
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
