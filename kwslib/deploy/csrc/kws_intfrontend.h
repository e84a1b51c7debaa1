/*
 * The integer front end in C (kws_intfrontend.c): int16 PCM -> Q20 log2 mel energies per frame, and the
 * per-mel-bin multiply-shift that turns group sums of them into the network's int8 input codes.
 *
 * The specification is kwslib.frontend.intfrontend (numpy): Q16 Hann window, block floating point (|x| <= 2^21),
 * a radix-2 Stockham FFT in int32 with Q31 twiddles and per-product rounding (vqrdmulh), the real-FFT
 * split, power >> 16 in int64, Q16 filterbank, log2 in Q20 by leading bit + table. Every step's width and
 * overflow bound is argued there. This code computes the same integers (tested bit for bit, scalar C and
 * the aarch64 NEON path under qemu). The frame timing is kws_frontend.h's: frame i covers samples
 * [i*hop, i*hop + win).
 *
 * All memory is allocated by kws_ifrontend_new; push allocates nothing.
 */
#ifndef KWS_INTFRONTEND_H
#define KWS_INTFRONTEND_H

#include <stdint.h>

#include "kws_frontend.h"

typedef struct kws_ifrontend kws_ifrontend;

/* NULL on a config the integer front end cannot run (n_fft not a power of two >= 8, bad sizes) or no memory.
   Uses sample_rate, win_length, hop_length, n_fft, n_mels, fmin, fmax, log_floor of kws_frontend_config. */
kws_ifrontend *kws_ifrontend_new(const kws_frontend_config *cfg);
void kws_ifrontend_free(kws_ifrontend *fe);
void kws_ifrontend_reset(kws_ifrontend *fe);
int64_t kws_ifrontend_bytes(const kws_ifrontend *fe); /* state + tables + scratch */

/* Feed samples until a frame completes (as kws_frontend_push); the frame: n_mels Q20 log2 values. */
int32_t kws_ifrontend_push(kws_ifrontend *fe, const int16_t *pcm, int32_t n, int32_t *consumed);
const int32_t *kws_ifrontend_frame(const kws_ifrontend *fe);
/* Every frame completed by pcm[0..n): at most max_frames rows of n_mels int32 to out; number written or < 0. */
int32_t kws_ifrontend_push_frames(kws_ifrontend *fe, const int16_t *pcm, int32_t n, int32_t *out, int32_t max_frames);

/* The code map of a model (kwslib.frontend.intfrontend.code_map): per mel bin mult (int64, [2^30, 2^31)), add (int64),
   shift. Returns 0, or -1 on bad arguments / a factor out of range / a possible int64 overflow. */
int32_t kws_icode_map(const float *norm_mean, const float *norm_std, int32_t n_mels, int32_t decimate,
                      double input_scale, int32_t input_zero_point, int64_t *mult, int64_t *add, int32_t *shift);
/* codes[m] = clamp((sums[m] * mult[m] + add[m]) >> shift[m], -128, 127) for m < n_mels. */
void kws_icode_apply(const int32_t *sums, const int64_t *mult, const int64_t *add, const int32_t *shift,
                     int32_t n_mels, int8_t *codes);

#endif
