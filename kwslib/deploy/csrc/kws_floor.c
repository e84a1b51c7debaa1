/*
 * Machine-floor probes for the benchmark: how fast this core streams bytes from cache
 * and how many int8 MACs per second its widest multiply-accumulate sustains. Each
 * returns the elapsed nanoseconds of its loop; kwslib.study.bench turns them into rates.
 */
#define _POSIX_C_SOURCE 199309L
#include <string.h>
#include <time.h>

#include "kws_nn.h"

#if defined(KWS_X86_VNNI) || defined(KWS_X86_AVX2)
#include <immintrin.h>
#endif

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* `reps` calls of kws_net_forward_f32in on the same n inputs (the kernel cost without Python). */
int64_t kws_net_time(kws_net *net, const float *x, int32_t n, int8_t *out, int32_t reps) {
    const int64_t t0 = now_ns();
    for (int32_t r = 0; r < reps; r++)
        if (kws_net_forward_f32in(net, x, n, out) != KWS_OK) return -1;
    return now_ns() - t0;
}

/* Read `bytes` (a multiple of 256) `reps` times with the widest loads. */
int64_t kws_floor_read(const uint8_t *buf, int64_t bytes, int32_t reps, uint64_t *sink) {
    const int64_t t0 = now_ns();
#if defined(KWS_X86_VNNI)
    __m512i s0 = _mm512_setzero_si512(), s1 = s0, s2 = s0, s3 = s0;
    for (int32_t r = 0; r < reps; r++)
        for (int64_t i = 0; i < bytes; i += 256) {
            s0 = _mm512_xor_si512(s0, _mm512_loadu_si512(buf + i));
            s1 = _mm512_xor_si512(s1, _mm512_loadu_si512(buf + i + 64));
            s2 = _mm512_xor_si512(s2, _mm512_loadu_si512(buf + i + 128));
            s3 = _mm512_xor_si512(s3, _mm512_loadu_si512(buf + i + 192));
        }
    uint64_t t[8];
    _mm512_storeu_si512(t, _mm512_xor_si512(_mm512_xor_si512(s0, s1), _mm512_xor_si512(s2, s3)));
    *sink = t[0] ^ t[7];
#elif defined(KWS_X86_AVX2)
    __m256i s0 = _mm256_setzero_si256(), s1 = s0, s2 = s0, s3 = s0;
    for (int32_t r = 0; r < reps; r++)
        for (int64_t i = 0; i < bytes; i += 128) {
            s0 = _mm256_xor_si256(s0, _mm256_loadu_si256((const __m256i *)(buf + i)));
            s1 = _mm256_xor_si256(s1, _mm256_loadu_si256((const __m256i *)(buf + i + 32)));
            s2 = _mm256_xor_si256(s2, _mm256_loadu_si256((const __m256i *)(buf + i + 64)));
            s3 = _mm256_xor_si256(s3, _mm256_loadu_si256((const __m256i *)(buf + i + 96)));
        }
    uint64_t t[4];
    _mm256_storeu_si256((__m256i *)t, _mm256_xor_si256(_mm256_xor_si256(s0, s1), _mm256_xor_si256(s2, s3)));
    *sink = t[0] ^ t[3];
#else
    uint64_t s = 0;
    for (int32_t r = 0; r < reps; r++)
        for (int64_t i = 0; i < bytes; i += 8) {
            uint64_t v;
            memcpy(&v, buf + i, 8);
            s ^= v;
        }
    *sink = s;
#endif
    return now_ns() - t0;
}

/* `iters` rounds of 8 independent multiply-accumulates of the path's widest int8 instruction. */
int64_t kws_floor_macs(int64_t iters, uint64_t *sink, int64_t *macs_per_iter) {
    const int64_t t0 = now_ns();
#if defined(KWS_X86_VNNI)
    __m512i a[8], x = _mm512_set1_epi8(3), w = _mm512_set1_epi8(-5);
    for (int k = 0; k < 8; k++) a[k] = _mm512_set1_epi32(k);
    for (int64_t i = 0; i < iters; i++) {
        for (int k = 0; k < 8; k++) a[k] = _mm512_dpbusd_epi32(a[k], x, w);
        __asm__ volatile("" : "+v"(x), "+v"(w)); /* keep the loop from being folded */
    }
    __m512i s = a[0];
    for (int k = 1; k < 8; k++) s = _mm512_add_epi32(s, a[k]);
    *sink = (uint64_t)_mm512_reduce_add_epi32(s);
    *macs_per_iter = 8 * 64;
#elif defined(KWS_X86_AVX2)
    __m256i a[8], x = _mm256_set1_epi16(3), w = _mm256_set1_epi16(-5);
    for (int k = 0; k < 8; k++) a[k] = _mm256_set1_epi32(k);
    for (int64_t i = 0; i < iters; i++) {
        for (int k = 0; k < 8; k++) a[k] = _mm256_add_epi32(a[k], _mm256_madd_epi16(x, w));
        __asm__ volatile("" : "+x"(x), "+x"(w));
    }
    __m256i s = a[0];
    for (int k = 1; k < 8; k++) s = _mm256_add_epi32(s, a[k]);
    int32_t t[8];
    _mm256_storeu_si256((__m256i *)t, s);
    *sink = (uint64_t)(t[0] + t[7]);
    *macs_per_iter = 8 * 16;
#else
    int32_t a[8] = {0, 1, 2, 3, 4, 5, 6, 7};
    volatile int32_t xv = 3, wv = -5;
    const int32_t x = xv, w = wv;
    for (int64_t i = 0; i < iters; i++)
        for (int k = 0; k < 8; k++) a[k] += x * w + (int32_t)i;
    *sink = (uint64_t)(a[0] + a[7]);
    *macs_per_iter = 8;
#endif
    return now_ns() - t0;
}
