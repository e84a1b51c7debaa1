/*
 * kwslib integer kernels: types, the one requantize routine, kernel signatures.
 *
 * The arithmetic is specified once, in kwslib/quant/intspec.py; every path here
 * (portable scalar C, AVX2, AVX-512 VNNI, ARMv8.0 NEON, ARMv8.2 dot product)
 * computes exactly those integers. CMSIS-NN style: one kernel per file, a
 * uniform signature (context, parameter structs, dims, data pointers), the
 * scalar and SIMD paths under #if branches of the same function.
 *
 * The SIMD path is chosen at compile time from the compiler's target macros
 * (__AVX512VNNI__, __AVX2__, __ARM_NEON, __ARM_FEATURE_DOTPROD); kwslib builds
 * one shared library per x86 variant and picks the best one the CPU supports.
 * KWS_FORCE_SCALAR disables every SIMD branch.
 *
 * Each kernel owns its weight layout: kws_fc_*_prepare() turns row-major
 * int8 codes [out_dim][in_dim] into the layout its inner loop reads, and
 * folds layout-dependent constants into bias_eff. Dims are padded: in_pad is
 * a multiple of KWS_IN_ALIGN, out_pad of KWS_OUT_ALIGN; padded weights are 0
 * and padded input codes are 0.
 */
#ifndef KWS_NN_H
#define KWS_NN_H

#include <stddef.h>
#include <stdint.h>

#if !defined(KWS_FORCE_SCALAR)
#if defined(__AVX512VNNI__) && defined(__AVX512BW__) && defined(__AVX512F__)
#define KWS_X86_VNNI 1
#endif
#if defined(__AVX2__)
#define KWS_X86_AVX2 1
#endif
#if defined(__ARM_NEON) && defined(__aarch64__)
#define KWS_NEON 1
#if defined(__ARM_FEATURE_DOTPROD)
#define KWS_NEON_DOTPROD 1
#endif
#endif
#endif

/* Unrolling of the NEON inner loops (the same for the integer and float kernels, so that
   instruction counts compare kernels written alike). */
#define KWS_STR(x) #x
#define KWS_PRAGMA(x) _Pragma(KWS_STR(x))
#ifndef KWS_NEON_UNROLL_BY
#define KWS_NEON_UNROLL_BY 1
#endif
#define KWS_NEON_UNROLL KWS_PRAGMA(GCC unroll KWS_NEON_UNROLL_BY)

#define KWS_IN_ALIGN 64
#define KWS_OUT_ALIGN 32
#define KWS_ACT_MIN (-128)
#define KWS_ACT_MAX 127

#define KWS_KERNEL_S8 1 /* weight codes in 8-bit containers (any width 1..8) */
#define KWS_KERNEL_S4 2 /* weight codes packed 2 per byte (widths 1..4) */

#define KWS_OK 0
#define KWS_ERR_ARG (-1)
#define KWS_ERR_NOMEM (-2)
#define KWS_ERR_RANGE (-3) /* the accumulator bound of the layer does not fit the kernel's integer type */

typedef struct {
    int32_t in_dim, out_dim; /* logical */
    int32_t in_pad, out_pad; /* padded (KWS_IN_ALIGN, KWS_OUT_ALIGN) */
    int32_t n; /* batch: input vectors, each in_pad codes apart */
    int32_t out_stride; /* codes between consecutive output vectors (>= out_dim) */
} kws_dims;

#define KWS_TILE 4 /* input vectors per weight pass in the batched paths (context scratch is sized for it) */

typedef struct {
    int32_t out_zero_point; /* z_y */
    int32_t act_min, act_max; /* clamp: [z_y, 127] for hidden layers (ReLU), [-128, 127] for logits */
} kws_act_params;

typedef struct {
    const int32_t *mult; /* [out_dim] signed Q31 multipliers */
    const int32_t *shift; /* [out_dim] in [-30, 32]; right shift n = 31 + shift */
} kws_quant_params;

typedef struct {
    int32_t *acc; /* scratch: int32 [KWS_TILE][out_pad] accumulators */
    int16_t *x16; /* scratch: int16 [KWS_TILE][in_pad] (the AVX2 s8 path keeps |x| there as uint8) */
} kws_context;

/*
 * The one requantize routine (intspec.requantize):
 *   y = clamp(((acc * mult + 2^(n-1)) >> n) + z_y, lo, hi),  n = 31 + shift
 * 64-bit product, round half up, arithmetic right shift (gcc and clang
 * shift negative signed integers arithmetically).
 */
static inline int8_t kws_requantize(int32_t acc, int32_t mult, int32_t shift, int32_t zero_point, int32_t lo,
                                    int32_t hi) {
    const int32_t n = 31 + shift;
    const int64_t prod = (int64_t)acc * (int64_t)mult;
    int64_t r = ((prod + ((int64_t)1 << (n - 1))) >> n) + zero_point;
    r = r < lo ? lo : r;
    r = r > hi ? hi : r;
    return (int8_t)r;
}

/* Requantize a block of accumulators with kws_requantize (every kernel ends here). */
void kws_requantize_block(const int32_t *acc, int32_t n, const kws_quant_params *q, const kws_act_params *a,
                          int8_t *out);

/* Input quantization (intspec.quantize_input), float32 arithmetic, no contraction. */
void kws_quantize_input(const float *x, int32_t n, float scale, int32_t zero_point, int8_t *out);

/* Fully connected, weight codes in int8 containers. */
size_t kws_fc_s8_weight_bytes(const kws_dims *d);
int32_t kws_fc_s8_prepare(const kws_dims *d, const int8_t *w, const int32_t *bias, void *w_prep,
                          int32_t *bias_eff);
void kws_fc_s8(const kws_context *ctx, const kws_act_params *a, const kws_quant_params *q, const kws_dims *d,
               const int8_t *in, const void *w_prep, const int32_t *bias_eff, int8_t *out);

/* Fully connected, weight codes (|w| <= 7) packed two per byte. */
size_t kws_fc_s4_weight_bytes(const kws_dims *d);
int32_t kws_fc_s4_prepare(const kws_dims *d, const int8_t *w, const int32_t *bias, void *w_prep,
                          int32_t *bias_eff);
void kws_fc_s4(const kws_context *ctx, const kws_act_params *a, const kws_quant_params *q, const kws_dims *d,
               const int8_t *in, const void *w_prep, const int32_t *bias_eff, int8_t *out);

/* Float32 reference: out = relu?(w @ in + bias), w row-major [out_pad][in_pad]. */
size_t kws_fc_f32_weight_bytes(const kws_dims *d);
void kws_fc_f32_prepare(const kws_dims *d, const float *w, float *w_prep);
void kws_fc_f32(const kws_dims *d, const float *in, const float *w_prep, const float *bias, int32_t relu,
                float *out);

/* Whole networks (kws_net.c). */
typedef struct kws_net kws_net;
kws_net *kws_net_new(int32_t n_layers, float input_scale, int32_t input_zero_point);
int32_t kws_net_set_layer(kws_net *net, int32_t index, int32_t in_dim, int32_t out_dim, int32_t bits,
                          int32_t kernel, const int8_t *w, const int32_t *bias, const int32_t *mult,
                          const int32_t *shift, int32_t out_zero_point, int32_t act_min);
int32_t kws_net_finalize(kws_net *net);
int32_t kws_net_forward_s8(kws_net *net, const int8_t *x, int32_t n, int8_t *out);
int32_t kws_net_forward_f32in(kws_net *net, const float *x, int32_t n, int8_t *out);
typedef struct { /* the arguments of one kws_net_forward_f32in call, bound once */
    kws_net *net;
    const float *x;
    int8_t *out;
    int32_t n;
} kws_net_call;
int32_t kws_net_call_f32in(const kws_net_call *c);
int32_t kws_net_layer_kernel(const kws_net *net, int32_t index);
int64_t kws_net_weight_bytes(const kws_net *net);
int64_t kws_net_scratch_bytes(const kws_net *net); /* activation buffers + kernel scratch */
int32_t kws_net_io_dim(const kws_net *net, int32_t which); /* 0: input dim, 1: classes */
void kws_net_free(kws_net *net);

typedef struct kws_fnet kws_fnet;
kws_fnet *kws_fnet_new(int32_t n_layers);
int32_t kws_fnet_set_layer(kws_fnet *net, int32_t index, int32_t in_dim, int32_t out_dim, const float *w,
                           const float *bias, int32_t relu);
int32_t kws_fnet_finalize(kws_fnet *net);
int32_t kws_fnet_forward(kws_fnet *net, const float *x, int32_t n, float *out);
int64_t kws_fnet_scratch_bytes(const kws_fnet *net);
int64_t kws_fnet_weight_bytes(const kws_fnet *net);
void kws_fnet_free(kws_fnet *net);

/* What this build's #if branches selected: "scalar", "avx2", "avx512vnni", "neon", "neon-dotprod". */
const char *kws_simd_path(void);

/* Machine floor probes (kws_floor.c): elapsed nanoseconds of the probe loop. */
int64_t kws_floor_read(const uint8_t *buf, int64_t bytes, int32_t reps, uint64_t *sink);
int64_t kws_floor_macs(int64_t iters, uint64_t *sink, int64_t *macs_per_iter);
int64_t kws_net_time(kws_net *net, const float *x, int32_t n, int8_t *out, int32_t reps);

#endif
