/*
 * Reading a kwslib artifact (.kws, format version 1; see kwslib/deploy/export.py) in C, as
 * firmware or the qemu test harness would: check magic, version, size and CRC-32,
 * walk the layer table, unpack bit-packed weight codes, build a kws_net (or the
 * float32 network the integer one approximates). The metadata JSON is skipped.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kws_artifact.h"

static const uint8_t MAGIC[8] = {0x89, 'K', 'W', 'S', '\r', '\n', 0x1a, '\n'};

uint32_t kws_crc32(const uint8_t *p, size_t n) {
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1u)));
    }
    return ~c;
}

static uint32_t rd_u32(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }
static uint64_t rd_u64(const uint8_t *p) { return (uint64_t)rd_u32(p) | (uint64_t)rd_u32(p + 4) << 32; }
static int32_t rd_i32(const uint8_t *p) { return (int32_t)rd_u32(p); }
static double rd_f64(const uint8_t *p) {
    const uint64_t u = rd_u64(p);
    double d;
    memcpy(&d, &u, 8);
    return d;
}

int32_t kws_unpack_codes(const uint8_t *packed, int32_t rows, int32_t cols, int32_t bits, int8_t *out) {
    if (bits < 1 || bits > 8) return KWS_ERR_ARG;
    const size_t row_bytes = ((size_t)cols * bits + 7) / 8;
    for (int32_t r = 0; r < rows; r++) {
        const uint8_t *src = packed + (size_t)r * row_bytes;
        for (int32_t i = 0; i < cols; i++) {
            uint32_t f = 0;
            for (int32_t b = 0; b < bits; b++) {
                const size_t j = (size_t)i * bits + b;
                f |= (uint32_t)((src[j >> 3] >> (j & 7)) & 1u) << b;
            }
            int32_t v;
            if (bits == 1)
                v = f ? 1 : -1;
            else
                v = (int32_t)f - ((f >> (bits - 1)) & 1u ? (1 << bits) : 0);
            out[(size_t)r * cols + i] = (int8_t)v;
        }
    }
    return KWS_OK;
}

int32_t kws_artifact_parse(const uint8_t *buf, int64_t len, kws_artifact *a) {
    memset(a, 0, sizeof(*a));
    if (len < 64 + 36 || memcmp(buf, MAGIC, 8)) return KWS_ART_BAD_MAGIC;
    const uint32_t version = rd_u32(buf + 8);
    if (version > KWS_ARTIFACT_VERSION) return KWS_ART_NEWER;
    if (version < 1 || rd_u32(buf + 12) != 64 || rd_u32(buf + 28) != 64) return KWS_ART_BAD_FIELD;
    if (rd_u64(buf + 16) != (uint64_t)len) return KWS_ART_TRUNCATED;
    const size_t body = (size_t)len - 36;
    if (rd_u32(buf + body + 32) != kws_crc32(buf, body)) return KWS_ART_CHECKSUM;
    a->n_layers = (int32_t)rd_u32(buf + 24);
    a->input_dim = (int32_t)rd_u32(buf + 32);
    a->input_zero_point = rd_i32(buf + 36);
    a->input_scale = rd_f64(buf + 40);
    if (a->n_layers < 1 || a->n_layers > KWS_ARTIFACT_MAX_LAYERS || 64 + 64 * (size_t)a->n_layers > body)
        return KWS_ART_BAD_FIELD;
    int32_t prev = a->input_dim;
    for (int32_t k = 0; k < a->n_layers; k++) {
        const uint8_t *r = buf + 64 + 64 * (size_t)k;
        kws_artifact_layer *L = &a->layers[k];
        L->in_dim = (int32_t)rd_u32(r);
        L->out_dim = (int32_t)rd_u32(r + 4);
        L->bits = r[8];
        L->storage = r[9];
        L->relu = r[10];
        L->in_zero_point = rd_i32(r + 12);
        L->out_zero_point = rd_i32(r + 16);
        L->in_scale = rd_f64(r + 24);
        L->out_scale = rd_f64(r + 32);
        const uint64_t w_off = rd_u64(r + 40), w_len = rd_u64(r + 48), p_off = rd_u64(r + 56);
        if (L->in_dim < 1 || L->out_dim < 1 || L->in_dim != prev || L->bits < 1 || L->bits > 8 || L->storage > 1)
            return KWS_ART_BAD_FIELD;
        prev = L->out_dim;
        const uint64_t need = (uint64_t)L->out_dim *
                              (L->storage ? ((uint64_t)L->in_dim * L->bits + 7) / 8 : (uint64_t)L->in_dim);
        /* written as subtractions so that offsets near 2^64 cannot wrap around the bound */
        if (w_len != need || w_off < 64 || w_off > body || w_len > body - w_off || p_off < 64 || p_off > body ||
            12 * (uint64_t)L->out_dim > body - p_off)
            return KWS_ART_BAD_FIELD;
        L->weights = buf + w_off;
        L->params = buf + p_off;
        for (int32_t c = 0; c < L->out_dim; c++) {  /* shifts must lie in the spec's range [-30, 32] */
            const int32_t shift = rd_i32(L->params + 4 * (2 * (size_t)L->out_dim + (size_t)c));
            if (shift < -30 || shift > 32) return KWS_ART_BAD_FIELD;
        }
    }
    a->n_classes = prev;
    return KWS_OK;
}

/* Layer k's int8 codes [out][in] and int32 params (little-endian in the file) in fresh buffers. */
static int32_t layer_arrays(const kws_artifact_layer *L, int8_t **w, int32_t **params) {
    *w = (int8_t *)malloc((size_t)L->out_dim * L->in_dim);
    *params = (int32_t *)malloc(sizeof(int32_t) * 3 * L->out_dim);
    if (!*w || !*params) return KWS_ERR_NOMEM;
    if (L->storage)
        kws_unpack_codes(L->weights, L->out_dim, L->in_dim, L->bits, *w);
    else
        memcpy(*w, L->weights, (size_t)L->out_dim * L->in_dim);
    for (int32_t j = 0; j < 3 * L->out_dim; j++) (*params)[j] = rd_i32(L->params + 4 * (size_t)j);
    return KWS_OK;
}

kws_net *kws_net_from_artifact(const kws_artifact *a, int32_t use_s4, int32_t *err) {
    kws_net *net = kws_net_new(a->n_layers, (float)a->input_scale, a->input_zero_point);
    *err = net ? KWS_OK : KWS_ERR_ARG;
    for (int32_t k = 0; net && k < a->n_layers && *err == KWS_OK; k++) {
        const kws_artifact_layer *L = &a->layers[k];
        int8_t *w = NULL;
        int32_t *pr = NULL;
        *err = layer_arrays(L, &w, &pr);
        if (*err == KWS_OK) {
            const int32_t kernel = use_s4 && L->bits <= 4 ? KWS_KERNEL_S4 : KWS_KERNEL_S8;
            *err = kws_net_set_layer(net, k, L->in_dim, L->out_dim, L->bits, kernel, w, pr, pr + L->out_dim,
                                     pr + 2 * L->out_dim, L->out_zero_point, L->relu ? L->out_zero_point : -128);
        }
        free(w);
        free(pr);
    }
    if (net && *err == KWS_OK) *err = kws_net_finalize(net);
    if (*err != KWS_OK) {
        kws_net_free(net);
        return NULL;
    }
    return net;
}

/* The float network the integer one quantizes (kwslib.deploy.engine.float_layers computes the same):
   g[c] = out_scale * (mult[c] * 2^-(31 + shift[c])),  W = (g[c] / in_scale) * w_q,
   b = g[c] * (bias_q[c] + in_zero_point * sum_i w_q[c][i]), in double, rounded to float. */
kws_fnet *kws_fnet_from_artifact(const kws_artifact *a, int32_t *err) {
    kws_fnet *net = kws_fnet_new(a->n_layers);
    *err = net ? KWS_OK : KWS_ERR_ARG;
    for (int32_t k = 0; net && k < a->n_layers && *err == KWS_OK; k++) {
        const kws_artifact_layer *L = &a->layers[k];
        int8_t *w = NULL;
        int32_t *pr = NULL;
        float *wf = (float *)malloc(sizeof(float) * (size_t)L->out_dim * L->in_dim);
        float *bf = (float *)malloc(sizeof(float) * L->out_dim);
        *err = wf && bf ? layer_arrays(L, &w, &pr) : KWS_ERR_NOMEM;
        for (int32_t c = 0; *err == KWS_OK && c < L->out_dim; c++) {
            const double g = L->out_scale * ldexp((double)pr[L->out_dim + c], -(31 + pr[2 * L->out_dim + c]));
            const double f = g / L->in_scale;
            int64_t sw = 0;
            for (int32_t i = 0; i < L->in_dim; i++) {
                const int8_t v = w[(size_t)c * L->in_dim + i];
                sw += v;
                wf[(size_t)c * L->in_dim + i] = (float)(f * (double)v);
            }
            bf[c] = (float)(g * (double)((int64_t)pr[c] + (int64_t)L->in_zero_point * sw));
        }
        if (*err == KWS_OK) *err = kws_fnet_set_layer(net, k, L->in_dim, L->out_dim, wf, bf, L->relu);
        free(w);
        free(pr);
        free(wf);
        free(bf);
    }
    if (net && *err == KWS_OK) *err = kws_fnet_finalize(net);
    if (*err != KWS_OK) {
        kws_fnet_free(net);
        return NULL;
    }
    return net;
}

kws_net *kws_net_load(const uint8_t *buf, int64_t len, int32_t use_s4, int32_t *err) {
    kws_artifact *a = (kws_artifact *)malloc(sizeof(kws_artifact));
    if (!a) {
        *err = KWS_ERR_NOMEM;
        return NULL;
    }
    *err = kws_artifact_parse(buf, len, a);
    kws_net *net = *err == KWS_OK ? kws_net_from_artifact(a, use_s4, err) : NULL;
    free(a);
    return net;
}

kws_fnet *kws_fnet_load(const uint8_t *buf, int64_t len, int32_t *err) {
    kws_artifact *a = (kws_artifact *)malloc(sizeof(kws_artifact));
    if (!a) {
        *err = KWS_ERR_NOMEM;
        return NULL;
    }
    *err = kws_artifact_parse(buf, len, a);
    kws_fnet *net = *err == KWS_OK ? kws_fnet_from_artifact(a, err) : NULL;
    free(a);
    return net;
}
