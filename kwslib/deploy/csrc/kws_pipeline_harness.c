/*
 * Counting harness for the whole pipeline (not part of the shared library): built statically for
 * aarch64 and run under qemu-aarch64 by kwslib.study.bench to count executed instructions per second of
 * audio (front end + window + network + detector).
 *
 *   kws_pipeline_harness MODE ARTIFACT CONFIG PCM [FRONTEND [OUT]]
 *     MODE      int | s8 | f32 (kws_pipeline.h), or frontend: the front end alone (no network, no detector;
 *               ARTIFACT is still read but not used), writing its frames to OUT when given (int32 Q20 log2
 *               values for the integer front end, float32 log-mel for the float one)
 *     ARTIFACT  .kws file
 *     CONFIG    text, one "key value..." per line, written by kwslib.study.bench.pipeline_config_text:
 *               sample_rate win_length hop_length n_fft n_mels fmin fmax log_floor context_frames
 *               decimate step_frames threshold smooth_windows refractory_steps, then norm_mean and
 *               norm_std (n_mels values each) and class_names (n_classes words)
 *     PCM       raw int16 samples, pushed in chunks of 1600
 *     FRONTEND  int (default) | float: kws_pipeline_config.frontend_kind
 *
 * The window is primed (kws_pipeline_prime) so that a network run follows every step_frames frames
 * from the start: the count of a run with PCM of t2 seconds minus that of t1 seconds is the cost of
 * (t2 - t1) seconds of audio in steady state.
 */
#define _POSIX_C_SOURCE 200112L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kws_pipeline.h"

static uint8_t *read_file(const char *path, long *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    *len = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = (uint8_t *)malloc((size_t)(*len > 0 ? *len : 1));
    if (buf && fread(buf, 1, (size_t)*len, f) != (size_t)*len) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    return buf;
}

/* The front end alone on n samples in chunks of 1600; frames to out_path when given. */
static int run_frontend(const kws_frontend_config *f, int32_t kind, const int16_t *x, int32_t n, const char *out_path) {
    kws_frontend *ffe = kind == KWS_FE_FLOAT ? kws_frontend_new(f) : NULL;
    kws_ifrontend *ife = kind == KWS_FE_INT ? kws_ifrontend_new(f) : NULL;
    if (!ffe && !ife) {
        fprintf(stderr, "the front end refused the config\n");
        return 2;
    }
    FILE *out = out_path ? fopen(out_path, "wb") : NULL;
    if (out_path && !out) return 2;
    const int32_t most = (1600 + f->win_length) / f->hop_length + 1;
    void *frames = malloc((size_t)most * f->n_mels * 4);
    long total = 0;
    for (int32_t i = 0; i < n; i += 1600) {
        const int32_t k = n - i < 1600 ? n - i : 1600;
        const int32_t r = ife ? kws_ifrontend_push_frames(ife, x + i, k, (int32_t *)frames, most)
                              : kws_frontend_push_frames(ffe, x + i, k, (float *)frames, most);
        if (r < 0) return 3;
        if (out && fwrite(frames, 4, (size_t)r * f->n_mels, out) != (size_t)r * f->n_mels) return 3;
        total += r;
    }
    if (out) fclose(out);
    printf("%d samples, %ld frames\n", n, total);
    free(frames);
    kws_frontend_free(ffe);
    kws_ifrontend_free(ife);
    return 0;
}

#define MAX_CLASSES 256
#define MAX_MELS 512

int main(int argc, char **argv) {
    if (argc < 5 || argc > 7) {
        fprintf(stderr, "usage: %s int|s8|f32|frontend ARTIFACT CONFIG PCM [int|float [OUT]]\n", argv[0]);
        return 2;
    }
    const int32_t fe_kind = argc > 5 && !strcmp(argv[5], "float") ? KWS_FE_FLOAT : KWS_FE_INT;
    const int frontend_only = !strcmp(argv[1], "frontend");
    const int32_t mode = !strcmp(argv[1], "s8") ? KWS_PIPE_S8 : !strcmp(argv[1], "f32") ? KWS_PIPE_F32 : KWS_PIPE_INT;
    long alen = 0, plen = 0;
    uint8_t *art = read_file(argv[2], &alen), *pcm = read_file(argv[4], &plen);
    FILE *cf = fopen(argv[3], "r");
    if (!art || !pcm || !cf) {
        fprintf(stderr, "cannot read the inputs\n");
        return 2;
    }
    kws_pipeline_config c;
    memset(&c, 0, sizeof(c));
    static float mean[MAX_MELS], stdv[MAX_MELS];
    static char names_buf[MAX_CLASSES][64];
    static const char *names[MAX_CLASSES];
    kws_frontend_config *f = &c.frontend;
    int ok = fscanf(cf, "%d %d %d %d %d %lf %lf %lf %d %d %d %lf %d %d %d", &f->sample_rate, &f->win_length,
                    &f->hop_length, &f->n_fft, &f->n_mels, &f->fmin, &f->fmax, &f->log_floor, &c.context_frames,
                    &c.decimate, &c.step_frames, &c.threshold, &c.smooth_windows, &c.refractory_steps,
                    &c.n_classes) == 15;
    ok = ok && f->n_mels > 0 && f->n_mels <= MAX_MELS && c.n_classes > 0 && c.n_classes <= MAX_CLASSES;
    for (int32_t m = 0; ok && m < f->n_mels; m++) ok = fscanf(cf, "%f", &mean[m]) == 1;
    for (int32_t m = 0; ok && m < f->n_mels; m++) ok = fscanf(cf, "%f", &stdv[m]) == 1;
    for (int32_t k = 0; ok && k < c.n_classes; k++) {
        ok = fscanf(cf, "%63s", names_buf[k]) == 1;
        names[k] = names_buf[k];
    }
    fclose(cf);
    if (!ok) {
        fprintf(stderr, "bad config file %s\n", argv[3]);
        return 2;
    }
    c.norm_mean = mean;
    c.norm_std = stdv;
    c.class_names = names;
    c.frontend_kind = fe_kind;
    if (frontend_only) return run_frontend(&c.frontend, fe_kind, (const int16_t *)pcm, (int32_t)(plen / 2),
                                           argc > 6 ? argv[6] : NULL);
    int32_t err = 0;
    kws_pipeline *p = kws_pipeline_create(&c, art, alen, mode, &err);
    if (!p) {
        fprintf(stderr, "kws_pipeline_create failed (%d)\n", err);
        return 2;
    }
    kws_pipeline_prime(p);
    static kws_detection det[4096];
    const int16_t *x = (const int16_t *)pcm;
    const int32_t n = (int32_t)(plen / 2);
    long found = 0;
    for (int32_t i = 0; i < n; i += 1600) {
        const int32_t k = n - i < 1600 ? n - i : 1600;
        const int32_t r = kws_pipeline_push(p, x + i, k, det, 4096);
        if (r < 0) return 3;
        found += r;
    }
    printf("%d samples, %lld windows, %ld detections\n", n, (long long)kws_pipeline_windows(p), found);
    kws_pipeline_free(p);
    free(art);
    free(pcm);
    return 0;
}
