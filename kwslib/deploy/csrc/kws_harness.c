/*
 * Test and counting harness (not part of the shared library): runs an artifact on input
 * vectors written by Python, on any target (built statically for aarch64 and run under
 * qemu-aarch64 by kwslib.deploy.ckernels).
 *
 *   kws_harness MODE ARTIFACT INPUT OUTPUT NROWS REPEAT
 *     MODE    s8   every layer through kws_fc_s8 (int8 containers)
 *             auto kws_fc_s4 for layers of <= 4 bits, kws_fc_s8 otherwise
 *             f32  the float32 network the integer one quantizes (kws_fc_f32)
 *     INPUT   float32 [NROWS][input_dim] input vectors (before input quantization)
 *     OUTPUT  int8 [NROWS][classes] logits (float32 for f32)
 *     REPEAT  -1: one batched call over all rows (verification);
 *             k >= 0: k single-vector inferences on row 0 (instruction counting:
 *             the difference between REPEAT = k and REPEAT = 0 is k inferences).
 */
#define _POSIX_C_SOURCE 200112L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kws_artifact.h"

/* 64-byte aligned, so that library routines that branch on alignment (memcpy) execute the
   same instructions in every run: the instruction counts are exactly reproducible. */
static void *alloc_aligned(size_t n) {
    void *p = NULL;
    return posix_memalign(&p, 64, n ? (n + 63) / 64 * 64 : 64) ? NULL : p;
}

static uint8_t *read_file(const char *path, long *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    *len = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = (uint8_t *)alloc_aligned((size_t)(*len > 0 ? *len : 1));
    if (buf && fread(buf, 1, (size_t)*len, f) != (size_t)*len) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    return buf;
}

int main(int argc, char **argv) {
    if (argc != 7) {
        fprintf(stderr, "usage: %s s8|auto|f32 ARTIFACT INPUT OUTPUT NROWS REPEAT\n", argv[0]);
        return 2;
    }
    const char *mode = argv[1];
    const int32_t nrows = atoi(argv[5]), repeat = atoi(argv[6]);
    long alen = 0, xlen = 0;
    uint8_t *art = read_file(argv[2], &alen);
    float *x = (float *)read_file(argv[3], &xlen);
    if (!art || !x) {
        fprintf(stderr, "cannot read %s or %s\n", argv[2], argv[3]);
        return 2;
    }
    kws_artifact *a = (kws_artifact *)malloc(sizeof(kws_artifact));
    int32_t err = kws_artifact_parse(art, alen, a);
    if (err != KWS_OK) {
        fprintf(stderr, "%s: artifact rejected (code %d)\n", argv[2], err);
        return 3;
    }
    if (xlen != (long)nrows * a->input_dim * 4 || nrows < 1) {
        fprintf(stderr, "%s: %ld bytes, expected %d rows of %d float32\n", argv[3], xlen, nrows, a->input_dim);
        return 2;
    }
    const int is_f32 = !strcmp(mode, "f32");
    const size_t out_elem = is_f32 ? sizeof(float) : 1;
    void *out = alloc_aligned((size_t)nrows * a->n_classes * out_elem);
    memset(out, 0, (size_t)nrows * a->n_classes * out_elem);
    kws_net *net = NULL;
    kws_fnet *fnet = NULL;
    if (is_f32)
        fnet = kws_fnet_from_artifact(a, &err);
    else if (!strcmp(mode, "s8") || !strcmp(mode, "auto"))
        net = kws_net_from_artifact(a, !strcmp(mode, "auto"), &err);
    else {
        fprintf(stderr, "unknown mode %s\n", mode);
        return 2;
    }
    if (err != KWS_OK) {
        fprintf(stderr, "building the network failed (code %d)\n", err);
        return 3;
    }
    if (repeat < 0)
        err = is_f32 ? kws_fnet_forward(fnet, x, nrows, (float *)out) : kws_net_forward_f32in(net, x, nrows, (int8_t *)out);
    for (int32_t r = 0; r < repeat && err == KWS_OK; r++)
        err = is_f32 ? kws_fnet_forward(fnet, x, 1, (float *)out) : kws_net_forward_f32in(net, x, 1, (int8_t *)out);
    FILE *f = fopen(argv[4], "wb");
    if (!f || fwrite(out, out_elem, (size_t)nrows * a->n_classes, f) != (size_t)nrows * a->n_classes) {
        fprintf(stderr, "cannot write %s\n", argv[4]);
        return 2;
    }
    fclose(f);
    printf("%s %s rows=%d repeat=%d classes=%d\n", kws_simd_path(), mode, nrows, repeat, a->n_classes);
    kws_net_free(net);
    kws_fnet_free(fnet);
    free(a);
    free(art);
    free(x);
    free(out);
    return err == KWS_OK ? 0 : 3;
}
