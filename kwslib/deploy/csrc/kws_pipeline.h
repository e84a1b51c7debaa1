/*
 * The whole streaming keyword detector in C: PCM int16 in, detections out.
 *
 *   front end, one of two (kws_pipeline_config.frontend_kind):
 *     KWS_FE_INT (the default): the integer front end (kws_intfrontend.c): Q20 log2 mel energies, summed in
 *       groups of `decimate` frames and mapped to the network's int8 input codes by one multiply-shift per
 *       mel bin (kwslib.frontend.intfrontend); needs step_frames to be a multiple of decimate.
 *     KWS_FE_FLOAT: the float64 log-mel front end (kws_frontend.c), normalised per mel bin, groups of
 *       `decimate` frames averaged into a float input vector that the network quantizes (the reference)
 *   -> every step_frames frames: the input vector of the last context_frames frames
 *   -> network (kws_net: int8 kernels; or kws_fnet: the float32 network, for cost comparisons; behind the
 *      integer front end it reads the dequantized codes (q - z) * scale)
 *   -> softmax of the dequantized logits -> causal moving average over smooth_windows steps
 *   -> a keyword fires when its score >= threshold and refractory_steps have passed since it last fired.
 *
 * The specification of every step is kwslib's numpy code: kwslib.frontend.features (front end),
 * kwslib.frontend.intfrontend (integer front end and codes), kwslib.frontend.streaming.StreamingRunner (windows),
 * IntModel.input_vector (normalise, average; float front end),
 * kwslib.quant.intspec (the integer network), kwslib.quant.intspec.softmax and kwslib.deploy.engine.Detector.
 * In integer mode the detections equal `kwslib detect --backend numpy` (tested).
 *
 * Memory: kws_pipeline_create allocates everything (state, tables, scratch, the network's prepared
 * weights); kws_pipeline_push allocates nothing.
 */
#ifndef KWS_PIPELINE_H
#define KWS_PIPELINE_H

#include <stdint.h>

#include "kws_frontend.h"
#include "kws_intfrontend.h"

#define KWS_PIPE_INT 0 /* integer network: packed 4-bit kernel for layers of <= 4 bits, int8 containers otherwise */
#define KWS_PIPE_S8 1  /* integer network, int8 containers for every layer */
#define KWS_PIPE_F32 2 /* the float32 network the integer one quantizes (same front end and detector) */

#define KWS_FE_INT 0   /* integer front end (default: a zero-initialised config gets it) */
#define KWS_FE_FLOAT 1 /* float64 front end (the reference) */

typedef struct {
    kws_frontend_config frontend;
    int32_t context_frames, decimate, step_frames; /* the model's window */
    const float *norm_mean, *norm_std;             /* [n_mels]: x = (logmel - mean) / std (copied at create) */
    int32_t n_classes;
    const char *const *class_names;                /* [n_classes]; names starting with '_' are not keywords */
    double threshold;                              /* in [0, 1] */
    int32_t smooth_windows, refractory_steps;      /* >= 1 */
    int32_t frontend_kind;                         /* KWS_FE_INT (0) or KWS_FE_FLOAT */
} kws_pipeline_config;

typedef struct {
    double time_s;     /* end of the detecting window: ((step*step_frames + context - 1)*hop + win) / rate */
    double score;      /* the smoothed posterior */
    int64_t step;      /* window index since the start of the stream */
    int32_t class_index;
    int32_t reserved;
} kws_detection;

typedef struct kws_pipeline kws_pipeline;

/* The network comes from an artifact (.kws bytes, kwslib/deploy/export.py; the bytes may be freed after).
   *err: 0 or a negative code (KWS_ERR_*, KWS_ART_*). */
kws_pipeline *kws_pipeline_create(const kws_pipeline_config *cfg, const uint8_t *artifact, int64_t artifact_len,
                                  int32_t mode, int32_t *err);
void kws_pipeline_free(kws_pipeline *p);
void kws_pipeline_reset(kws_pipeline *p); /* start of a new stream */

/* Push n samples; writes the detections they complete to out (at most max_out) and returns their number,
   or KWS_ERR_ARG if max_out < kws_pipeline_max_detections(p, n) (nothing is consumed then). */
int32_t kws_pipeline_push(kws_pipeline *p, const int16_t *pcm, int32_t n, kws_detection *out, int32_t max_out);
int32_t kws_pipeline_max_detections(const kws_pipeline *p, int32_t n);

/* Instrumentation (the instruction-counting harness): act as if context_frames - 1 frames had already
   arrived, so that a network run follows every step_frames frames from the first pushed frame on.
   Not part of the specified stream semantics: a stream that is to match kwslib detect starts unprimed. */
void kws_pipeline_prime(kws_pipeline *p);

/* Bytes held: state + scratch (front end, frame buffer, input vector, logits, detector, the network's
   activation buffers) and, apart, the network's prepared weights. */
int64_t kws_pipeline_ram_bytes(const kws_pipeline *p);
int64_t kws_pipeline_weight_bytes(const kws_pipeline *p);
int64_t kws_pipeline_windows(const kws_pipeline *p); /* network runs so far */

#endif
