/*
 * Streaming log-mel front end (see kws_frontend.h for the specification it computes).
 * Like TensorFlow Lite Micro's micro_frontend: all state in one struct, KISS FFT, no allocation
 * after kws_frontend_new.
 */
#define _POSIX_C_SOURCE 200112L
#include <math.h>
#include <stdlib.h>
#include <string.h>

#ifndef kiss_fft_scalar
#define kiss_fft_scalar double /* as kws_kissfft.c compiles KISS FFT */
#endif
#include "kissfft/kiss_fftr.h"
#include "kws_frontend.h"

_Static_assert(sizeof(kiss_fft_scalar) == sizeof(double), "the front end's FFT must run in double precision");

#ifndef M_PI
#define M_PI 3.14159265358979323846
#endif

struct kws_frontend {
    kws_frontend_config cfg;
    kiss_fftr_cfg fft;
    double *window;        /* [win_length] periodic Hann */
    double *frame;         /* [n_fft] windowed samples, zero-padded */
    kiss_fft_cpx *spec;    /* [n_fft / 2 + 1] */
    kws_framer framer;     /* its buf: [win_length] int16 */
    int32_t *mel_first;    /* [n_mels] first FFT bin with a non-zero weight */
    int32_t *mel_count;    /* [n_mels] number of such bins */
    int32_t *mel_offset;   /* [n_mels] start of the filter's weights in mel_w */
    double *mel_w;         /* the non-zero filterbank weights, filter by filter */
    float *mel;            /* [n_mels] the last frame */
    int64_t bytes;
};

static double hz_to_mel(double f) { return 2595.0 * log10(1.0 + f / 700.0); }
static double mel_to_hz(double m) { return 700.0 * (pow(10.0, m / 2595.0) - 1.0); }

/* features.mel_filterbank: edges equally spaced in mel (numpy.linspace: start + i * step, the last exact);
   full: [n_mels][n_fft / 2 + 1] weights. Shared by the float and the integer front end. */
int32_t kws_frontend_mel_weights(const kws_frontend_config *c, double *full) {
    const int32_t nb = c->n_fft / 2 + 1, M = c->n_mels;
    if (M <= 0 || nb < 2 || !(c->fmin >= 0.0 && c->fmin < c->fmax && c->fmax <= c->sample_rate / 2.0)) return -1;
    double *edges = (double *)malloc(sizeof(double) * (M + 2));
    if (!edges) return -1;
    const double m0 = hz_to_mel(c->fmin), m1 = hz_to_mel(c->fmax), step = (m1 - m0) / (double)(M + 1);
    for (int32_t i = 0; i < M + 2; i++) edges[i] = mel_to_hz(i == M + 1 ? m1 : (double)i * step + m0);
    for (int32_t m = 0; m < M; m++) {
        const double lo = edges[m], centre = edges[m + 1], hi = edges[m + 2];
        for (int32_t k = 0; k < nb; k++) {
            const double f = (double)((int64_t)k * c->sample_rate) / (double)c->n_fft;
            const double rising = (f - lo) / (centre - lo), falling = (hi - f) / (hi - centre);
            const double w = rising < falling ? rising : falling;
            full[(size_t)m * nb + k] = w > 0.0 ? w : 0.0;
        }
    }
    return 0;
}

void kws_frontend_free(kws_frontend *fe) {
    if (!fe) return;
    free(fe->fft);
    free(fe->window);
    free(fe->frame);
    free(fe->spec);
    free(fe->framer.buf);
    free(fe->mel_first);
    free(fe->mel_count);
    free(fe->mel_offset);
    free(fe->mel_w);
    free(fe->mel);
    free(fe);
}

kws_frontend *kws_frontend_new(const kws_frontend_config *c) {
    if (!c || c->sample_rate <= 0 || c->win_length <= 0 || c->hop_length <= 0 || c->n_mels <= 0 ||
        c->n_fft < c->win_length || c->n_fft % 2 || !(c->fmin >= 0.0 && c->fmin < c->fmax &&
                                                       c->fmax <= c->sample_rate / 2.0) || !(c->log_floor > 0.0))
        return NULL;
    kws_frontend *fe = (kws_frontend *)calloc(1, sizeof(kws_frontend));
    if (!fe) return NULL;
    fe->cfg = *c;
    const int32_t nb = c->n_fft / 2 + 1, M = c->n_mels;
    size_t fft_bytes = 0;
    kiss_fftr_alloc(c->n_fft, 0, NULL, &fft_bytes);
    fe->fft = (kiss_fftr_cfg)malloc(fft_bytes);
    fe->window = (double *)malloc(sizeof(double) * c->win_length);
    fe->frame = (double *)calloc((size_t)c->n_fft, sizeof(double));
    fe->spec = (kiss_fft_cpx *)malloc(sizeof(kiss_fft_cpx) * nb);
    fe->framer.buf = (int16_t *)malloc(sizeof(int16_t) * c->win_length);
    fe->framer.win = c->win_length;
    fe->framer.hop = c->hop_length;
    fe->mel_first = (int32_t *)calloc((size_t)M, sizeof(int32_t));
    fe->mel_count = (int32_t *)calloc((size_t)M, sizeof(int32_t));
    fe->mel_offset = (int32_t *)calloc((size_t)M, sizeof(int32_t));
    fe->mel = (float *)calloc((size_t)M, sizeof(float));
    double *full = (double *)malloc(sizeof(double) * nb * M);
    if (!fe->fft || !fe->window || !fe->frame || !fe->spec || !fe->framer.buf || !fe->mel_first || !fe->mel_count ||
        !fe->mel_offset || !fe->mel || !full ||
        kiss_fftr_alloc(c->n_fft, 0, fe->fft, &fft_bytes) == NULL) {
        free(full);
        kws_frontend_free(fe);
        return NULL;
    }
    /* features.hann_window: 0.5 - 0.5 cos(2 pi k / n), periodic */
    for (int32_t k = 0; k < c->win_length; k++)
        fe->window[k] = 0.5 - 0.5 * cos(2.0 * M_PI * (double)k / (double)c->win_length);
    if (kws_frontend_mel_weights(c, full) != 0) {
        free(full);
        kws_frontend_free(fe);
        return NULL;
    }
    int32_t total = 0;
    for (int32_t m = 0; m < M; m++) {
        int32_t first = -1, last = -1;
        for (int32_t k = 0; k < nb; k++)
            if (full[(size_t)m * nb + k] != 0.0) {
                if (first < 0) first = k;
                last = k;
            }
        fe->mel_first[m] = first < 0 ? 0 : first;
        fe->mel_count[m] = first < 0 ? 0 : last - first + 1;
        fe->mel_offset[m] = total;
        total += fe->mel_count[m];
    }
    fe->mel_w = (double *)malloc(sizeof(double) * (total ? total : 1));
    if (!fe->mel_w) {
        free(full);
        kws_frontend_free(fe);
        return NULL;
    }
    for (int32_t m = 0; m < M; m++)
        for (int32_t j = 0; j < fe->mel_count[m]; j++)
            fe->mel_w[fe->mel_offset[m] + j] = full[(size_t)m * nb + fe->mel_first[m] + j];
    free(full);
    fe->bytes = (int64_t)sizeof(kws_frontend) + (int64_t)fft_bytes +
                (int64_t)sizeof(double) * (c->win_length + c->n_fft + total) + (int64_t)sizeof(int16_t) * c->win_length +
                (int64_t)sizeof(kiss_fft_cpx) * nb + (int64_t)sizeof(int32_t) * 3 * M + (int64_t)sizeof(float) * M;
    return fe;
}

void kws_frontend_reset(kws_frontend *fe) {
    if (fe) fe->framer.n_buf = 0;
}

int64_t kws_frontend_bytes(const kws_frontend *fe) { return fe ? fe->bytes : 0; }

const float *kws_frontend_frame(const kws_frontend *fe) { return fe->mel; }

/* One complete frame in the framer's buffer -> fe->mel. Samples are read as s / 32768 (exact: s * 2^-15). */
static void compute_frame(kws_frontend *fe) {
    const kws_frontend_config *c = &fe->cfg;
    for (int32_t k = 0; k < c->win_length; k++)
        fe->frame[k] = ((double)fe->framer.buf[k] * (1.0 / 32768.0)) * fe->window[k];
    kiss_fftr(fe->fft, fe->frame, fe->spec);
    for (int32_t m = 0; m < c->n_mels; m++) {
        const double *w = fe->mel_w + fe->mel_offset[m];
        const kiss_fft_cpx *s = fe->spec + fe->mel_first[m];
        double e = 0.0;
        for (int32_t j = 0; j < fe->mel_count[m]; j++) e += (s[j].r * s[j].r + s[j].i * s[j].i) * w[j];
        fe->mel[m] = (float)log(e > c->log_floor ? e : c->log_floor);
    }
}

int32_t kws_framer_push(kws_framer *f, const int16_t *pcm, int32_t n, int32_t *consumed) {
    const int32_t win = f->win, hop = f->hop;
    int32_t used = 0;
    if (f->n_buf == win) { /* the previous call returned a frame: drop its first hop samples */
        const int32_t keep = win - hop > 0 ? win - hop : 0;
        if (keep) memmove(f->buf, f->buf + hop, sizeof(int16_t) * keep);
        f->n_buf = keep;
        if (hop > win) f->n_buf = -(hop - win); /* samples still to skip before the next frame starts */
    }
    while (f->n_buf < 0 && used < n) { /* hop longer than the window: skip the gap */
        f->n_buf++;
        used++;
    }
    if (f->n_buf >= 0 && used < n) {
        const int32_t take = win - f->n_buf < n - used ? win - f->n_buf : n - used;
        memcpy(f->buf + f->n_buf, pcm + used, sizeof(int16_t) * take);
        f->n_buf += take;
        used += take;
    }
    *consumed = used;
    return f->n_buf == win;
}

int32_t kws_frontend_push(kws_frontend *fe, const int16_t *pcm, int32_t n, int32_t *consumed) {
    if (!kws_framer_push(&fe->framer, pcm, n, consumed)) return 0;
    compute_frame(fe);
    return 1;
}

int32_t kws_frontend_push_frames(kws_frontend *fe, const int16_t *pcm, int32_t n, float *out, int32_t max_frames) {
    if (!fe || n < 0 || (n && !pcm) || max_frames < 0) return -1;
    int32_t pos = 0, frames = 0, used = 0;
    for (;;) {
        const int32_t ready = kws_frontend_push(fe, pcm + pos, n - pos, &used);
        pos += used;
        if (!ready) break;
        if (frames == max_frames) return -3; /* out too small */
        memcpy(out + (size_t)frames * fe->cfg.n_mels, fe->mel, sizeof(float) * fe->cfg.n_mels);
        frames++;
    }
    return frames;
}
