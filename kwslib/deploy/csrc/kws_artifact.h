/* Reading kwslib artifacts in C (kws_artifact.c); format: kwslib/deploy/export.py. */
#ifndef KWS_ARTIFACT_H
#define KWS_ARTIFACT_H

#include "kws_nn.h"

#define KWS_ARTIFACT_VERSION 1
#define KWS_ARTIFACT_MAX_LAYERS 64

#define KWS_ART_BAD_MAGIC (-10)
#define KWS_ART_NEWER (-11)
#define KWS_ART_TRUNCATED (-12)
#define KWS_ART_CHECKSUM (-13)
#define KWS_ART_BAD_FIELD (-14)

typedef struct {
    int32_t in_dim, out_dim, bits, storage, relu, in_zero_point, out_zero_point;
    double in_scale, out_scale;
    const uint8_t *weights; /* int8 codes or packed rows, as stored */
    const uint8_t *params; /* bias, mult, shift: int32 little-endian [3][out_dim] */
} kws_artifact_layer;

typedef struct {
    int32_t n_layers, input_dim, n_classes, input_zero_point;
    double input_scale;
    kws_artifact_layer layers[KWS_ARTIFACT_MAX_LAYERS];
} kws_artifact;

uint32_t kws_crc32(const uint8_t *p, size_t n);
int32_t kws_unpack_codes(const uint8_t *packed, int32_t rows, int32_t cols, int32_t bits, int8_t *out);
int32_t kws_artifact_parse(const uint8_t *buf, int64_t len, kws_artifact *a);
kws_net *kws_net_from_artifact(const kws_artifact *a, int32_t use_s4, int32_t *err);
kws_fnet *kws_fnet_from_artifact(const kws_artifact *a, int32_t *err);
/* parse + build in one call (the kws_artifact is temporary) */
kws_net *kws_net_load(const uint8_t *buf, int64_t len, int32_t use_s4, int32_t *err);
kws_fnet *kws_fnet_load(const uint8_t *buf, int64_t len, int32_t *err);

#endif
