/*
 * A whole integer network in one call: input quantization, then each dense layer
 * through its kernel (kws_fc_s8 or kws_fc_s4), ping-ponging two int8 buffers.
 * Also the float32 network of the same shape (kws_fnet), for reference counts.
 */
#define _POSIX_C_SOURCE 200112L
#include <stdlib.h>
#include <string.h>

#include "kws_nn.h"

typedef struct {
    kws_dims dims;
    int32_t bits, kernel;
    kws_act_params act;
    int32_t *mult, *shift;
    void *w_prep;
    size_t w_bytes;
    int32_t *bias_eff;
} kws_layer;

struct kws_net {
    int32_t n_layers, ready;
    float input_scale;
    int32_t input_zero_point;
    kws_layer *layers;
    int8_t *buf[2];
    int32_t buf_len;
    kws_context ctx;
};

static int32_t round_up(int32_t v, int32_t m) { return (v + m - 1) / m * m; }

static void *alloc64(size_t n) {
    void *p = NULL;
    if (posix_memalign(&p, 64, n ? (n + 63) / 64 * 64 : 64)) return NULL;
    return p;
}

const char *kws_simd_path(void) {
#if defined(KWS_X86_VNNI)
    return "avx512vnni";
#elif defined(KWS_X86_AVX2)
    return "avx2";
#elif defined(KWS_NEON_DOTPROD)
    return "neon-dotprod";
#elif defined(KWS_NEON)
    return "neon";
#else
    return "scalar";
#endif
}

kws_net *kws_net_new(int32_t n_layers, float input_scale, int32_t input_zero_point) {
    if (n_layers < 1 || !(input_scale > 0.0f) || input_zero_point < -128 || input_zero_point > 127) return NULL;
    kws_net *net = (kws_net *)calloc(1, sizeof(kws_net));
    if (!net) return NULL;
    net->layers = (kws_layer *)calloc((size_t)n_layers, sizeof(kws_layer));
    if (!net->layers) {
        free(net);
        return NULL;
    }
    net->n_layers = n_layers;
    net->input_scale = input_scale;
    net->input_zero_point = input_zero_point;
    return net;
}

int32_t kws_net_set_layer(kws_net *net, int32_t index, int32_t in_dim, int32_t out_dim, int32_t bits,
                          int32_t kernel, const int8_t *w, const int32_t *bias, const int32_t *mult,
                          const int32_t *shift, int32_t out_zero_point, int32_t act_min) {
    if (!net || index < 0 || index >= net->n_layers || in_dim < 1 || out_dim < 1 || bits < 1 || bits > 8 ||
        out_zero_point < -128 || out_zero_point > 127 || act_min < -128 || act_min > 127)
        return KWS_ERR_ARG;
    if (kernel != KWS_KERNEL_S8 && kernel != KWS_KERNEL_S4) return KWS_ERR_ARG;
    if (kernel == KWS_KERNEL_S4 && bits > 4) return KWS_ERR_ARG;
    const int32_t qmax = bits == 1 ? 1 : (1 << (bits - 1)) - 1;
    int64_t worst = 0; /* max_abs_accumulator: sum |w| * 128 + |bias| must fit int32 */
    for (int32_t c = 0; c < out_dim; c++) {
        if (shift[c] < -30 || shift[c] > 32) return KWS_ERR_ARG;
        int64_t s = bias[c] < 0 ? -(int64_t)bias[c] : bias[c];
        for (int32_t i = 0; i < in_dim; i++) {
            const int32_t v = w[(size_t)c * in_dim + i];
            if (v > qmax || v < -qmax) return KWS_ERR_RANGE;
            s += 128 * (int64_t)(v < 0 ? -v : v);
        }
        worst = s > worst ? s : worst;
    }
    if (worst > INT32_MAX) return KWS_ERR_RANGE;
    kws_layer *L = &net->layers[index];
    free(L->mult);
    free(L->shift);
    free(L->w_prep);
    free(L->bias_eff);
    memset(L, 0, sizeof(*L));
    net->ready = 0;
    L->dims.in_dim = in_dim;
    L->dims.out_dim = out_dim;
    L->dims.in_pad = round_up(in_dim, KWS_IN_ALIGN);
    L->dims.out_pad = round_up(out_dim, KWS_OUT_ALIGN);
    L->bits = bits;
    L->kernel = kernel;
    L->act.out_zero_point = out_zero_point;
    L->act.act_min = act_min;
    L->act.act_max = KWS_ACT_MAX;
    L->w_bytes = kernel == KWS_KERNEL_S4 ? kws_fc_s4_weight_bytes(&L->dims) : kws_fc_s8_weight_bytes(&L->dims);
    L->mult = (int32_t *)malloc(sizeof(int32_t) * out_dim);
    L->shift = (int32_t *)malloc(sizeof(int32_t) * out_dim);
    L->bias_eff = (int32_t *)alloc64(sizeof(int32_t) * L->dims.out_pad);
    L->w_prep = alloc64(L->w_bytes);
    if (!L->mult || !L->shift || !L->bias_eff || !L->w_prep) return KWS_ERR_NOMEM;
    memcpy(L->mult, mult, sizeof(int32_t) * out_dim);
    memcpy(L->shift, shift, sizeof(int32_t) * out_dim);
    return kernel == KWS_KERNEL_S4 ? kws_fc_s4_prepare(&L->dims, w, bias, L->w_prep, L->bias_eff)
                                   : kws_fc_s8_prepare(&L->dims, w, bias, L->w_prep, L->bias_eff);
}

int32_t kws_net_finalize(kws_net *net) {
    if (!net) return KWS_ERR_ARG;
    int32_t len = 0, acc_len = 0;
    for (int32_t k = 0; k < net->n_layers; k++) {
        const kws_layer *L = &net->layers[k];
        if (!L->w_prep) return KWS_ERR_ARG; /* layer not set */
        if (k && L->dims.in_dim != net->layers[k - 1].dims.out_dim) return KWS_ERR_ARG;
        len = L->dims.in_pad > len ? L->dims.in_pad : len;
        len = L->dims.out_pad > len ? L->dims.out_pad : len;
        acc_len = L->dims.out_pad > acc_len ? L->dims.out_pad : acc_len;
    }
    free(net->buf[0]);
    free(net->buf[1]);
    free(net->ctx.acc);
    free(net->ctx.x16);
    net->buf[0] = (int8_t *)alloc64((size_t)KWS_TILE * len);
    net->buf[1] = (int8_t *)alloc64((size_t)KWS_TILE * len);
    net->ctx.acc = (int32_t *)alloc64(sizeof(int32_t) * KWS_TILE * acc_len);
    net->ctx.x16 = (int16_t *)alloc64(sizeof(int16_t) * KWS_TILE * len);
    if (!net->buf[0] || !net->buf[1] || !net->ctx.acc || !net->ctx.x16) return KWS_ERR_NOMEM;
    memset(net->buf[0], 0, (size_t)KWS_TILE * len);
    memset(net->buf[1], 0, (size_t)KWS_TILE * len);
    net->buf_len = len;
    net->ready = 1;
    return KWS_OK;
}

/* nt <= KWS_TILE input vectors already in buf[0] (in_pad codes apart, padding zero): every layer
   runs on the whole tile (the batched kernel paths read each weight once per tile); writes nt rows
   of logits. Hidden outputs are laid out in_pad (of the next layer) codes apart, padding zeroed. */
static void forward_tile(kws_net *net, int32_t nt, int8_t *out) {
    int32_t cur = 0;
    for (int32_t k = 0; k < net->n_layers; k++) {
        const kws_layer *L = &net->layers[k];
        const kws_quant_params q = {L->mult, L->shift};
        const int last = k == net->n_layers - 1;
        kws_dims d = L->dims;
        d.n = nt;
        d.out_stride = last ? d.out_dim : net->layers[k + 1].dims.in_pad;
        int8_t *dst = last ? out : net->buf[1 - cur];
        if (!last)
            for (int32_t t = 0; t < nt; t++)
                memset(dst + (size_t)t * d.out_stride + d.out_dim, 0, (size_t)(d.out_stride - d.out_dim));
        if (L->kernel == KWS_KERNEL_S4)
            kws_fc_s4(&net->ctx, &L->act, &q, &d, net->buf[cur], L->w_prep, L->bias_eff, dst);
        else
            kws_fc_s8(&net->ctx, &L->act, &q, &d, net->buf[cur], L->w_prep, L->bias_eff, dst);
        cur = 1 - cur;
    }
}

int32_t kws_net_forward_s8(kws_net *net, const int8_t *x, int32_t n, int8_t *out) {
    if (!net || !net->ready || n < 0) return KWS_ERR_ARG;
    const int32_t I = net->layers[0].dims.in_dim, IP = net->layers[0].dims.in_pad;
    const int32_t C = net->layers[net->n_layers - 1].dims.out_dim;
    for (int32_t s = 0; s < n; s += KWS_TILE) {
        const int32_t nt = n - s < KWS_TILE ? n - s : KWS_TILE;
        for (int32_t t = 0; t < nt; t++) {
            memcpy(net->buf[0] + (size_t)t * IP, x + (size_t)(s + t) * I, (size_t)I);
            memset(net->buf[0] + (size_t)t * IP + I, 0, (size_t)(IP - I));
        }
        forward_tile(net, nt, out + (size_t)s * C);
    }
    return KWS_OK;
}

int32_t kws_net_forward_f32in(kws_net *net, const float *x, int32_t n, int8_t *out) {
    if (!net || !net->ready || n < 0) return KWS_ERR_ARG;
    const int32_t I = net->layers[0].dims.in_dim, IP = net->layers[0].dims.in_pad;
    const int32_t C = net->layers[net->n_layers - 1].dims.out_dim;
    for (int32_t s = 0; s < n; s += KWS_TILE) {
        const int32_t nt = n - s < KWS_TILE ? n - s : KWS_TILE;
        for (int32_t t = 0; t < nt; t++) {
            kws_quantize_input(x + (size_t)(s + t) * I, I, net->input_scale, net->input_zero_point,
                               net->buf[0] + (size_t)t * IP);
            memset(net->buf[0] + (size_t)t * IP + I, 0, (size_t)(IP - I));
        }
        forward_tile(net, nt, out + (size_t)s * C);
    }
    return KWS_OK;
}

/* kws_net_forward_f32in with its arguments in one struct bound once (CNet.bound): a one-pointer call
   is the cheapest thing to make through ctypes. */
int32_t kws_net_call_f32in(const kws_net_call *c) {
    if (!c) return KWS_ERR_ARG;
    return kws_net_forward_f32in(c->net, c->x, c->n, c->out);
}

int32_t kws_net_layer_kernel(const kws_net *net, int32_t index) {
    return net && index >= 0 && index < net->n_layers ? net->layers[index].kernel : KWS_ERR_ARG;
}

int32_t kws_net_io_dim(const kws_net *net, int32_t which) {
    if (!net) return KWS_ERR_ARG;
    return which ? net->layers[net->n_layers - 1].dims.out_dim : net->layers[0].dims.in_dim;
}

/* Activation buffers and kernel scratch (what an inference writes; weights not included). */
int64_t kws_net_scratch_bytes(const kws_net *net) {
    if (!net || !net->ready) return 0;
    int32_t acc_len = 0;
    for (int32_t k = 0; k < net->n_layers; k++)
        acc_len = net->layers[k].dims.out_pad > acc_len ? net->layers[k].dims.out_pad : acc_len;
    return (int64_t)2 * KWS_TILE * net->buf_len + (int64_t)sizeof(int32_t) * KWS_TILE * acc_len +
           (int64_t)sizeof(int16_t) * KWS_TILE * net->buf_len;
}

int64_t kws_net_weight_bytes(const kws_net *net) {
    int64_t s = 0;
    for (int32_t k = 0; net && k < net->n_layers; k++) s += (int64_t)net->layers[k].w_bytes;
    return s;
}

void kws_net_free(kws_net *net) {
    if (!net) return;
    for (int32_t k = 0; k < net->n_layers; k++) {
        free(net->layers[k].mult);
        free(net->layers[k].shift);
        free(net->layers[k].w_prep);
        free(net->layers[k].bias_eff);
    }
    free(net->layers);
    free(net->buf[0]);
    free(net->buf[1]);
    free(net->ctx.acc);
    free(net->ctx.x16);
    free(net);
}

/* ---- float32 network ---------------------------------------------------------------------- */

typedef struct {
    kws_dims dims;
    float *w, *bias;
    int32_t relu;
} kws_flayer;

struct kws_fnet {
    int32_t n_layers, ready;
    kws_flayer *layers;
    float *buf[2];
};

kws_fnet *kws_fnet_new(int32_t n_layers) {
    if (n_layers < 1) return NULL;
    kws_fnet *net = (kws_fnet *)calloc(1, sizeof(kws_fnet));
    if (!net) return NULL;
    net->layers = (kws_flayer *)calloc((size_t)n_layers, sizeof(kws_flayer));
    if (!net->layers) {
        free(net);
        return NULL;
    }
    net->n_layers = n_layers;
    return net;
}

int32_t kws_fnet_set_layer(kws_fnet *net, int32_t index, int32_t in_dim, int32_t out_dim, const float *w,
                           const float *bias, int32_t relu) {
    if (!net || index < 0 || index >= net->n_layers || in_dim < 1 || out_dim < 1) return KWS_ERR_ARG;
    kws_flayer *L = &net->layers[index];
    free(L->w);
    free(L->bias);
    L->dims.in_dim = in_dim;
    L->dims.out_dim = out_dim;
    L->dims.in_pad = round_up(in_dim, KWS_IN_ALIGN);
    L->dims.out_pad = round_up(out_dim, KWS_OUT_ALIGN);
    L->relu = relu;
    L->w = (float *)alloc64(kws_fc_f32_weight_bytes(&L->dims));
    L->bias = (float *)alloc64(sizeof(float) * L->dims.out_pad);
    if (!L->w || !L->bias) return KWS_ERR_NOMEM;
    kws_fc_f32_prepare(&L->dims, w, L->w);
    memset(L->bias, 0, sizeof(float) * L->dims.out_pad);
    memcpy(L->bias, bias, sizeof(float) * out_dim);
    net->ready = 0;
    return KWS_OK;
}

int32_t kws_fnet_finalize(kws_fnet *net) {
    if (!net) return KWS_ERR_ARG;
    int32_t len = 0;
    for (int32_t k = 0; k < net->n_layers; k++) {
        if (!net->layers[k].w) return KWS_ERR_ARG;
        if (k && net->layers[k].dims.in_dim != net->layers[k - 1].dims.out_dim) return KWS_ERR_ARG;
        len = net->layers[k].dims.in_pad > len ? net->layers[k].dims.in_pad : len;
        len = net->layers[k].dims.out_pad > len ? net->layers[k].dims.out_pad : len;
    }
    free(net->buf[0]);
    free(net->buf[1]);
    net->buf[0] = (float *)alloc64(sizeof(float) * len);
    net->buf[1] = (float *)alloc64(sizeof(float) * len);
    if (!net->buf[0] || !net->buf[1]) return KWS_ERR_NOMEM;
    memset(net->buf[0], 0, sizeof(float) * len);
    memset(net->buf[1], 0, sizeof(float) * len);
    net->ready = 1;
    return KWS_OK;
}

int32_t kws_fnet_forward(kws_fnet *net, const float *x, int32_t n, float *out) {
    if (!net || !net->ready || n < 0) return KWS_ERR_ARG;
    const int32_t I = net->layers[0].dims.in_dim, C = net->layers[net->n_layers - 1].dims.out_dim;
    for (int32_t s = 0; s < n; s++) {
        memcpy(net->buf[0], x + (size_t)s * I, sizeof(float) * I);
        int32_t cur = 0;
        for (int32_t k = 0; k < net->n_layers; k++) {
            const kws_flayer *L = &net->layers[k];
            float *dst = k == net->n_layers - 1 ? out + (size_t)s * C : net->buf[1 - cur];
            if (k < net->n_layers - 1) memset(dst + L->dims.out_dim, 0, sizeof(float) * (L->dims.out_pad - L->dims.out_dim));
            kws_fc_f32(&L->dims, net->buf[cur], L->w, L->bias, L->relu, dst);
            cur = 1 - cur;
        }
    }
    return KWS_OK;
}

int64_t kws_fnet_scratch_bytes(const kws_fnet *net) {
    int32_t len = 0;
    for (int32_t k = 0; net && k < net->n_layers; k++) {
        len = net->layers[k].dims.in_pad > len ? net->layers[k].dims.in_pad : len;
        len = net->layers[k].dims.out_pad > len ? net->layers[k].dims.out_pad : len;
    }
    return (int64_t)2 * sizeof(float) * len;
}

int64_t kws_fnet_weight_bytes(const kws_fnet *net) {
    int64_t s = 0;
    for (int32_t k = 0; net && k < net->n_layers; k++)
        s += (int64_t)kws_fc_f32_weight_bytes(&net->layers[k].dims) + (int64_t)sizeof(float) * net->layers[k].dims.out_pad;
    return s;
}

void kws_fnet_free(kws_fnet *net) {
    if (!net) return;
    for (int32_t k = 0; k < net->n_layers; k++) {
        free(net->layers[k].w);
        free(net->layers[k].bias);
    }
    free(net->layers);
    free(net->buf[0]);
    free(net->buf[1]);
    free(net);
}
