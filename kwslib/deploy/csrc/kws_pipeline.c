/*
 * The streaming detector (see kws_pipeline.h). Every floating-point step follows the operation
 * order of its numpy specification, so that in integer mode the posteriors are bit-identical:
 *   normalise     x = (logmel - mean) / std                                  (float32)
 *   average       ((x[0] + x[1]) + x[2]) + ... / decimate                    (float32, in order)
 *   dequantize    (q - z) * scale                                            (float32)
 *   softmax       e_j = (float)exp((double)(l_j - max)), s = e_0 + e_1 + ... in order, p_j = e_j / s
 *   smoothing     mean of the last min(steps, smooth_windows) posteriors, oldest first (float64)
 * Compiled with -ffp-contract=off (no fused multiply-add), like the kernels.
 */
#define _POSIX_C_SOURCE 200112L
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kws_artifact.h"
#include "kws_pipeline.h"

struct kws_pipeline {
    kws_pipeline_config cfg;
    int32_t mode, n_mels, in_dim, n_kw;
    kws_frontend *fe;     /* KWS_FE_FLOAT */
    kws_ifrontend *ife;   /* KWS_FE_INT */
    kws_net *net;
    kws_fnet *fnet;
    float out_scale;
    int32_t out_zero_point;
    float *norm;          /* [2][n_mels]: mean, std */
    float *frames;        /* KWS_FE_FLOAT: ring [context][n_mels] of normalised frames (frame f at f % context) */
    int64_t *cmul, *cadd; /* KWS_FE_INT: the code map [n_mels] (kws_icode_map) */
    int32_t *cshift;
    int32_t *gsum;        /* KWS_FE_INT: [n_mels] Q20 log2 sums of the group being filled */
    int8_t *codes;        /* KWS_FE_INT: ring [context / decimate][n_mels] of group codes (group g at g % G) */
    int8_t *xq;           /* KWS_FE_INT: [in_dim] the window's input codes */
    int64_t groups_seen;
    int32_t group_fill;
    float in_scale;
    int32_t in_zero_point;
    int64_t frames_seen, next_end, step;
    float *x;             /* [in_dim] input vector */
    int8_t *logits_q;     /* [n_classes] */
    float *logits, *post; /* [n_classes] */
    double *hist;         /* [smooth][n_kw] keyword posteriors, oldest first */
    int32_t n_hist;
    int64_t *last;        /* [n_kw] step of the last detection */
    int32_t *kw;          /* [n_kw] class index of each keyword */
    int64_t own_bytes;
};

void kws_pipeline_free(kws_pipeline *p) {
    if (!p) return;
    kws_frontend_free(p->fe);
    kws_ifrontend_free(p->ife);
    kws_net_free(p->net);
    kws_fnet_free(p->fnet);
    free(p->norm);
    free(p->frames);
    free(p->cmul);
    free(p->cadd);
    free(p->cshift);
    free(p->gsum);
    free(p->codes);
    free(p->xq);
    free(p->x);
    free(p->logits_q);
    free(p->logits);
    free(p->post);
    free(p->hist);
    free(p->last);
    free(p->kw);
    free(p);
}

void kws_pipeline_reset(kws_pipeline *p) {
    if (!p) return;
    kws_frontend_reset(p->fe);
    kws_ifrontend_reset(p->ife);
    p->groups_seen = 0;
    p->group_fill = 0;
    if (p->gsum) memset(p->gsum, 0, sizeof(int32_t) * p->n_mels);
    p->frames_seen = 0;
    p->next_end = p->cfg.context_frames;
    p->step = 0;
    p->n_hist = 0;
    for (int32_t j = 0; j < p->n_kw; j++) p->last[j] = -1000000000LL; /* engine.Detector: -(10 ** 9) */
}

kws_pipeline *kws_pipeline_create(const kws_pipeline_config *c, const uint8_t *artifact, int64_t artifact_len,
                                  int32_t mode, int32_t *err) {
    int32_t e = KWS_ERR_ARG;
    kws_pipeline *p = NULL;
    kws_artifact *a = NULL;
    if (!c || !artifact || !c->norm_mean || !c->norm_std || !c->class_names || mode < KWS_PIPE_INT ||
        mode > KWS_PIPE_F32 || c->context_frames < 1 || c->decimate < 1 || c->context_frames % c->decimate ||
        c->step_frames < 1 || c->smooth_windows < 1 || c->refractory_steps < 1 || !(c->threshold >= 0.0) ||
        !(c->threshold <= 1.0) || c->n_classes < 1 || (c->frontend_kind != KWS_FE_INT && c->frontend_kind != KWS_FE_FLOAT) ||
        (c->frontend_kind == KWS_FE_INT && c->step_frames % c->decimate))
        goto fail;
    a = (kws_artifact *)malloc(sizeof(kws_artifact));
    p = (kws_pipeline *)calloc(1, sizeof(kws_pipeline));
    if (!a || !p) {
        e = KWS_ERR_NOMEM;
        goto fail;
    }
    if ((e = kws_artifact_parse(artifact, artifact_len, a)) != KWS_OK) goto fail;
    const int32_t M = c->frontend.n_mels;
    e = KWS_ERR_ARG;
    if (a->input_dim != c->context_frames / c->decimate * M || a->n_classes != c->n_classes) goto fail;
    p->cfg = *c;
    p->mode = mode;
    p->n_mels = M;
    p->in_dim = a->input_dim;
    p->out_scale = (float)a->layers[a->n_layers - 1].out_scale;
    p->out_zero_point = a->layers[a->n_layers - 1].out_zero_point;
    p->in_scale = (float)a->input_scale;
    p->in_zero_point = a->input_zero_point;
    if (mode == KWS_PIPE_F32)
        p->fnet = kws_fnet_from_artifact(a, &e);
    else
        p->net = kws_net_from_artifact(a, mode == KWS_PIPE_INT, &e);
    if (e != KWS_OK) goto fail;
    e = KWS_ERR_NOMEM;
    const int32_t use_int = c->frontend_kind == KWS_FE_INT;
    if (use_int)
        p->ife = kws_ifrontend_new(&c->frontend);
    else
        p->fe = kws_frontend_new(&c->frontend);
    if (!p->fe && !p->ife) {
        e = KWS_ERR_ARG;
        goto fail;
    }
    for (int32_t k = 0; k < c->n_classes; k++)
        if (c->class_names[k] && c->class_names[k][0] != '_') p->n_kw++;
    const int32_t C = c->n_classes, K = p->n_kw > 0 ? p->n_kw : 1;
    p->norm = (float *)malloc(sizeof(float) * 2 * M);
    if (use_int) {
        p->cmul = (int64_t *)malloc(sizeof(int64_t) * M);
        p->cadd = (int64_t *)malloc(sizeof(int64_t) * M);
        p->cshift = (int32_t *)malloc(sizeof(int32_t) * M);
        p->gsum = (int32_t *)calloc((size_t)M, sizeof(int32_t));
        p->codes = (int8_t *)calloc((size_t)p->in_dim, 1);
        p->xq = (int8_t *)malloc((size_t)p->in_dim);
        if (!p->cmul || !p->cadd || !p->cshift || !p->gsum || !p->codes || !p->xq) goto fail;
        if (kws_icode_map(c->norm_mean, c->norm_std, M, c->decimate, a->input_scale, a->input_zero_point, p->cmul,
                          p->cadd, p->cshift) != 0) {
            e = KWS_ERR_ARG;
            goto fail;
        }
    } else {
        p->frames = (float *)malloc(sizeof(float) * (size_t)c->context_frames * M);
        if (!p->frames) goto fail;
    }
    p->x = (float *)malloc(sizeof(float) * p->in_dim);
    p->logits_q = (int8_t *)malloc((size_t)C);
    p->logits = (float *)malloc(sizeof(float) * C);
    p->post = (float *)malloc(sizeof(float) * C);
    p->hist = (double *)malloc(sizeof(double) * (size_t)c->smooth_windows * K);
    p->last = (int64_t *)malloc(sizeof(int64_t) * K);
    p->kw = (int32_t *)malloc(sizeof(int32_t) * K);
    if (!p->norm || !p->x || !p->logits_q || !p->logits || !p->post || !p->hist || !p->last || !p->kw)
        goto fail;
    for (int32_t m = 0; m < M; m++) {
        p->norm[m] = c->norm_mean[m];
        p->norm[M + m] = c->norm_std[m];
    }
    p->cfg.norm_mean = p->norm;
    p->cfg.norm_std = p->norm + M;
    for (int32_t k = 0, j = 0; k < C; k++)
        if (c->class_names[k] && c->class_names[k][0] != '_') p->kw[j++] = k;
    p->own_bytes = (int64_t)sizeof(kws_pipeline) + (int64_t)sizeof(float) * (2 * M + p->in_dim + 2 * C) +
                   C + (int64_t)sizeof(double) * c->smooth_windows * K + (int64_t)(sizeof(int64_t) + sizeof(int32_t)) * K +
                   (use_int ? (int64_t)(2 * sizeof(int64_t) + 2 * sizeof(int32_t)) * M + 2 * p->in_dim
                            : (int64_t)sizeof(float) * c->context_frames * M);
    free(a);
    kws_pipeline_reset(p);
    *err = KWS_OK;
    return p;
fail:
    free(a);
    kws_pipeline_free(p);
    *err = e;
    return NULL;
}

void kws_pipeline_prime(kws_pipeline *p) {
    if (!p) return;
    kws_pipeline_reset(p);
    if (p->frames) memset(p->frames, 0, sizeof(float) * (size_t)p->cfg.context_frames * p->n_mels);
    p->frames_seen = p->cfg.context_frames - 1;
    p->groups_seen = p->cfg.context_frames / p->cfg.decimate - 1;
    p->group_fill = p->cfg.decimate - 1;
}

int64_t kws_pipeline_ram_bytes(const kws_pipeline *p) {
    if (!p) return 0;
    return p->own_bytes + kws_frontend_bytes(p->fe) + kws_ifrontend_bytes(p->ife) +
           (p->net ? kws_net_scratch_bytes(p->net) : kws_fnet_scratch_bytes(p->fnet));
}

int64_t kws_pipeline_weight_bytes(const kws_pipeline *p) {
    if (!p) return 0;
    return p->net ? kws_net_weight_bytes(p->net) : kws_fnet_weight_bytes(p->fnet);
}

int64_t kws_pipeline_windows(const kws_pipeline *p) { return p ? p->step : 0; }

int32_t kws_pipeline_max_detections(const kws_pipeline *p, int32_t n) {
    if (!p || n < 0) return 0;
    const int64_t frames = ((int64_t)n + p->cfg.frontend.win_length) / p->cfg.frontend.hop_length + 1;
    const int64_t windows = frames / p->cfg.step_frames + 1;
    const int64_t most = windows * (p->n_kw > 0 ? p->n_kw : 1);
    return most > 0x7fffffff ? 0x7fffffff : (int32_t)most;
}

/* The window of frames [next_end - context, next_end): input vector, network, posteriors, detections. */
static int32_t run_window(kws_pipeline *p, kws_detection *out) {
    const kws_pipeline_config *c = &p->cfg;
    const int32_t M = p->n_mels, D = c->decimate, G = c->context_frames / D, C = c->n_classes;
    const int64_t start = p->next_end - c->context_frames;
    if (p->ife) { /* the last G groups' codes, oldest first */
        for (int32_t g = 0; g < G; g++)
            memcpy(p->xq + (size_t)g * M, p->codes + ((p->groups_seen - G + g) % G) * M, (size_t)M);
        if (p->net) {
            kws_net_forward_s8(p->net, p->xq, 1, p->logits_q);
        } else {
            for (int32_t i = 0; i < p->in_dim; i++) p->x[i] = (float)((int32_t)p->xq[i] - p->in_zero_point) * p->in_scale;
        }
    }
    for (int32_t g = 0; !p->ife && g < G; g++) {
        float *x = p->x + (size_t)g * M;
        const float *row = p->frames + ((start + (int64_t)g * D) % c->context_frames) * M;
        for (int32_t m = 0; m < M; m++) x[m] = row[m];
        for (int32_t d = 1; d < D; d++) { /* ((x0 + x1) + x2) + ...: numpy's order, element by element */
            row = p->frames + ((start + (int64_t)g * D + d) % c->context_frames) * M;
            for (int32_t m = 0; m < M; m++) x[m] = x[m] + row[m];
        }
        for (int32_t m = 0; m < M; m++) x[m] = x[m] / (float)D;
    }
    if (p->net) {
        if (!p->ife) kws_net_forward_f32in(p->net, p->x, 1, p->logits_q);
        for (int32_t j = 0; j < C; j++) p->logits[j] = (float)((int32_t)p->logits_q[j] - p->out_zero_point) * p->out_scale;
    } else {
        kws_fnet_forward(p->fnet, p->x, 1, p->logits);
    }
    float mx = p->logits[0];
    for (int32_t j = 1; j < C; j++) mx = p->logits[j] > mx ? p->logits[j] : mx;
    float sum = 0.0f;
    for (int32_t j = 0; j < C; j++) {
        p->post[j] = (float)exp((double)(p->logits[j] - mx));
        sum = j ? sum + p->post[j] : p->post[j];
    }
    for (int32_t j = 0; j < C; j++) p->post[j] = p->post[j] / sum;
    /* engine.Detector */
    const int32_t K = p->n_kw, S = c->smooth_windows;
    if (p->n_hist == S) {
        memmove(p->hist, p->hist + K, sizeof(double) * (size_t)(S - 1) * K);
        p->n_hist--;
    }
    for (int32_t j = 0; j < K; j++) p->hist[(size_t)p->n_hist * K + j] = (double)p->post[p->kw[j]];
    p->n_hist++;
    int32_t found = 0;
    for (int32_t j = 0; j < K; j++) {
        double s = p->hist[j];
        for (int32_t h = 1; h < p->n_hist; h++) s = s + p->hist[(size_t)h * K + j];
        const double score = s / (double)p->n_hist;
        if (score >= c->threshold && p->step - p->last[j] >= c->refractory_steps) {
            p->last[j] = p->step;
            kws_detection *d = &out[found++];
            d->step = p->step;
            d->class_index = p->kw[j];
            d->score = score;
            d->reserved = 0;
            d->time_s = ((double)(p->step * c->step_frames + c->context_frames - 1) * c->frontend.hop_length +
                         c->frontend.win_length) / (double)c->frontend.sample_rate;
        }
    }
    p->step++;
    p->next_end += c->step_frames;
    return found;
}

int32_t kws_pipeline_push(kws_pipeline *p, const int16_t *pcm, int32_t n, kws_detection *out, int32_t max_out) {
    if (!p || n < 0 || (n && !pcm) || !out || max_out < kws_pipeline_max_detections(p, n)) return KWS_ERR_ARG;
    const int32_t M = p->n_mels, ctx = p->cfg.context_frames, D = p->cfg.decimate, G = ctx / D;
    int32_t pos = 0, used = 0, found = 0;
    if (p->ife) {
        while (kws_ifrontend_push(p->ife, pcm + pos, n - pos, &used)) {
            pos += used;
            const int32_t *l = kws_ifrontend_frame(p->ife);
            for (int32_t m = 0; m < M; m++) p->gsum[m] += l[m];
            if (++p->group_fill == D) { /* a group is complete: its codes (kwslib.frontend.intfrontend.group_codes) */
                kws_icode_apply(p->gsum, p->cmul, p->cadd, p->cshift, M, p->codes + (p->groups_seen % G) * M);
                memset(p->gsum, 0, sizeof(int32_t) * M);
                p->group_fill = 0;
                p->groups_seen++;
            }
            p->frames_seen++;
            if (p->frames_seen == p->next_end) found += run_window(p, out + found);
        }
        return found;
    }
    while (kws_frontend_push(p->fe, pcm + pos, n - pos, &used)) {
        pos += used;
        const float *mel = kws_frontend_frame(p->fe);
        float *dst = p->frames + (p->frames_seen % ctx) * M;
        for (int32_t m = 0; m < M; m++) dst[m] = (mel[m] - p->norm[m]) / p->norm[M + m];
        p->frames_seen++;
        if (p->frames_seen == p->next_end) found += run_window(p, out + found);
    }
    return found;
}
