/*
 * A firmware-style keyword detector: the model is compiled in (a header written by
 * `kwslib export MODEL model.kws --header model.h`), audio arrives as raw 16-bit little-endian
 * mono PCM at the model's sample rate, from a file or stdin, in chunks as a microphone driver
 * would deliver them. It prints one line per detection, exactly as `kwslib detect` does:
 *
 *     time (end of the detecting window)  keyword  score
 *
 *   kws_detect [-m int|s8|f32] [-f int|float] [-c CHUNK_SAMPLES] [-t THRESHOLD] [-q] [PCM_FILE | -]
 *
 * -m  network: int (default; packed 4-bit kernel for layers of <= 4 bits), s8 (int8 containers),
 *     f32 (the float32 network the integer one quantizes: a float baseline on the same front end)
 * -f  front end: int (default; the integer front end, kws_intfrontend.c), float (the float64 log-mel front end
 *     the model was trained on: the reference)
 * -q  no per-detection output; the summary line only (for instruction counting under qemu)
 *
 * Everything is allocated once, by kws_pipeline_create; the loop below allocates nothing (built with
 * -DKWS_COUNT_ALLOCS it counts calls to malloc/calloc/realloc after create and prints them).
 *
 * Build: see the Makefile next to this file (make, make aarch64, make check-qemu).
 */
#define _POSIX_C_SOURCE 200112L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kws_pipeline.h"
#include KWS_MODEL_HEADER /* e.g. -DKWS_MODEL_HEADER='"model.h"' (prefix kws_model) */

#ifndef KWS_MODEL_ARTIFACT_BYTES
#error "the model header has no embedded artifact: write it with `kwslib export ... --header`"
#endif

#ifdef KWS_COUNT_ALLOCS
/* Link with -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc,--wrap=posix_memalign. */
static long allocs = 0;
void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t s);
void *__real_realloc(void *p, size_t n);
int __real_posix_memalign(void **p, size_t a, size_t n);
void *__wrap_malloc(size_t n) { allocs++; return __real_malloc(n); }
void *__wrap_calloc(size_t n, size_t s) { allocs++; return __real_calloc(n, s); }
void *__wrap_realloc(void *p, size_t n) { allocs++; return __real_realloc(p, n); }
int __wrap_posix_memalign(void **p, size_t a, size_t n) { allocs++; return __real_posix_memalign(p, a, n); }
#endif

#define MAX_CHUNK 16000

int main(int argc, char **argv) {
    int32_t mode = KWS_PIPE_INT, frontend = KWS_FE_INT, chunk = 1600, quiet = 0;
    double threshold = KWS_MODEL_THRESHOLD;
    const char *path = "-";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-m") && i + 1 < argc) {
            const char *m = argv[++i];
            mode = !strcmp(m, "s8") ? KWS_PIPE_S8 : !strcmp(m, "f32") ? KWS_PIPE_F32 : !strcmp(m, "int") ? KWS_PIPE_INT : -1;
        } else if (!strcmp(argv[i], "-f") && i + 1 < argc) {
            const char *f = argv[++i];
            frontend = !strcmp(f, "int") ? KWS_FE_INT : !strcmp(f, "float") ? KWS_FE_FLOAT : -1;
        } else if (!strcmp(argv[i], "-c") && i + 1 < argc) {
            chunk = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "-t") && i + 1 < argc) {
            threshold = atof(argv[++i]);
        } else if (!strcmp(argv[i], "-q")) {
            quiet = 1;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            mode = -1;
        } else {
            path = argv[i];
        }
    }
    if (mode < 0 || frontend < 0 || chunk < 1 || chunk > MAX_CHUNK) {
        fprintf(stderr, "usage: %s [-m int|s8|f32] [-f int|float] [-c CHUNK_SAMPLES (1..%d)] [-t THRESHOLD] [-q] "
                        "[PCM_FILE | -]\n",
                argv[0], MAX_CHUNK);
        return 2;
    }
    FILE *in = strcmp(path, "-") ? fopen(path, "rb") : stdin;
    if (!in) {
        fprintf(stderr, "kws_detect: cannot open %s\n", path);
        return 2;
    }
    static char in_buf[1 << 15], out_buf[1 << 12]; /* stdio buffers given up front: no allocation in the loop */
    setvbuf(in, in_buf, _IOFBF, sizeof(in_buf));
    setvbuf(stdout, out_buf, _IOLBF, sizeof(out_buf));
    const kws_pipeline_config cfg = {
        {KWS_MODEL_SAMPLE_RATE, KWS_MODEL_WIN_LENGTH, KWS_MODEL_HOP_LENGTH, KWS_MODEL_N_FFT, KWS_MODEL_N_MELS,
         KWS_MODEL_FMIN, KWS_MODEL_FMAX, KWS_MODEL_LOG_FLOOR},
        KWS_MODEL_CONTEXT_FRAMES, KWS_MODEL_DECIMATE, KWS_MODEL_STEP_FRAMES, kws_model_norm_mean, kws_model_norm_std,
        KWS_MODEL_N_CLASSES, kws_model_class_names, threshold, KWS_MODEL_SMOOTH_WINDOWS, KWS_MODEL_REFRACTORY_STEPS,
        frontend};
    int32_t err = 0;
    kws_pipeline *p = kws_pipeline_create(&cfg, kws_model_artifact, KWS_MODEL_ARTIFACT_BYTES, mode, &err);
    if (!p) {
        fprintf(stderr, "kws_detect: kws_pipeline_create failed (%d)\n", err);
        return 2;
    }
    static int16_t pcm[MAX_CHUNK];
    static kws_detection det[4096];
    const int32_t max_det = (int32_t)(sizeof(det) / sizeof(det[0]));
    if (kws_pipeline_max_detections(p, chunk) > max_det) {
        fprintf(stderr, "kws_detect: chunk too large for the detection buffer\n");
        return 2;
    }
#ifdef KWS_COUNT_ALLOCS
    const long allocs_at_create = allocs;
#endif
    long samples = 0, found = 0;
    size_t got;
    while ((got = fread(pcm, sizeof(int16_t), (size_t)chunk, in)) > 0) {
        samples += (long)got;
        const int32_t n = kws_pipeline_push(p, pcm, (int32_t)got, det, max_det);
        if (n < 0) {
            fprintf(stderr, "kws_detect: kws_pipeline_push failed (%d)\n", n);
            return 2;
        }
        for (int32_t k = 0; k < n; k++, found++)
            if (!quiet) printf("%9.3fs  %-8s %.3f\n", det[k].time_s, kws_model_class_names[det[k].class_index], det[k].score);
    }
    fprintf(stderr, "kws_detect: %ld samples (%.2f s), %lld windows, %ld detection(s); RAM %lld bytes (state + scratch), "
                    "weights %lld bytes",
            samples, (double)samples / KWS_MODEL_SAMPLE_RATE, (long long)kws_pipeline_windows(p), found,
            (long long)kws_pipeline_ram_bytes(p), (long long)kws_pipeline_weight_bytes(p));
#ifdef KWS_COUNT_ALLOCS
    fprintf(stderr, "; allocations after create: %ld", allocs - allocs_at_create);
#endif
    fprintf(stderr, "\n");
    if (in != stdin) fclose(in);
    kws_pipeline_free(p);
    return 0;
}
