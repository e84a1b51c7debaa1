/*
 * The streaming log-mel front end in C (kws_frontend.c).
 *
 * The specification is kwslib.frontend.features (logmel_numpy / StreamingFrontend): frame i covers samples
 * [i*hop, i*hop + win) (no padding, a trailing partial frame is dropped), each frame times a periodic
 * Hann window, zero-padded to n_fft, |rfft|^2, a triangular HTK-mel filterbank, log(max(e, floor)).
 * Arithmetic: float64 throughout, the result rounded to float32, as the numpy specification (and the
 * training features) compute it. The real FFT is KISS FFT (kissfft/, BSD-3-Clause) built with
 * kiss_fft_scalar = double. Samples are int16 PCM, read as s / 32768.
 *
 * All memory is allocated by kws_frontend_new; push allocates nothing.
 */
#ifndef KWS_FRONTEND_H
#define KWS_FRONTEND_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    int32_t sample_rate, win_length, hop_length, n_fft, n_mels;
    double fmin, fmax, log_floor;
} kws_frontend_config;

typedef struct kws_frontend kws_frontend;

/* The framing both front ends share (kws_frontend.c, kws_intfrontend.c): frame i covers samples
   [i*hop, i*hop + win); buf (win samples, the owner's memory) holds the samples not yet consumed. */
typedef struct {
    int16_t *buf;
    int32_t n_buf, win, hop;
} kws_framer;

/* Feed samples until a frame completes: consumes up to n samples of pcm, stores in *consumed how many, returns 1
   when buf holds a complete frame (the next call first drops its first hop samples), 0 when the samples ran out. */
int32_t kws_framer_push(kws_framer *f, const int16_t *pcm, int32_t n, int32_t *consumed);

/* NULL on a bad config (non-positive sizes, win > n_fft, odd n_fft, fmin/fmax out of range) or no memory. */
kws_frontend *kws_frontend_new(const kws_frontend_config *cfg);
void kws_frontend_free(kws_frontend *fe);
void kws_frontend_reset(kws_frontend *fe);
/* Bytes the front end holds (state + tables + scratch). */
int64_t kws_frontend_bytes(const kws_frontend *fe);

/* The triangular HTK-mel filterbank of kwslib.frontend.features.mel_filterbank as [n_mels][n_fft/2 + 1] float64
   weights into full (shared with the integer front end); 0, or -1 on a bad config / no memory. */
int32_t kws_frontend_mel_weights(const kws_frontend_config *cfg, double *full);

/* Feed samples until a frame completes: consumes up to n samples of pcm, stores in *consumed how many,
   returns 1 when a frame is ready (read it with kws_frontend_frame), 0 when the samples ran out first. */
int32_t kws_frontend_push(kws_frontend *fe, const int16_t *pcm, int32_t n, int32_t *consumed);
/* The last completed frame: n_mels float32 log-mel values. */
const float *kws_frontend_frame(const kws_frontend *fe);

/* Every frame completed by pcm[0..n) (streaming state carries over between calls): writes at most
   max_frames frames of n_mels floats to out, returns the number written (negative on error). */
int32_t kws_frontend_push_frames(kws_frontend *fe, const int16_t *pcm, int32_t n, float *out, int32_t max_frames);

#endif
