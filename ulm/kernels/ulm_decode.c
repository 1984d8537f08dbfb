/* The fast model's decode step through all of its blocks in one foreign call: per layer, RMSNorm → fused
 * q/k/v matmul → rotary embedding, cache write and attention (ulm_decode_layer_bf16) → output matmul →
 * residual add → RMSNorm → fused gate/up matmul → silu · up → down matmul → residual add. The same kernels,
 * in the same order and with the same roundings, as FastTransformer's Python loop over them, so the two
 * agree bit for bit; this one saves the ~10 Python-level calls per layer (~1.9 ms a step on the embedded
 * model's 30 layers, a third of the step).
 *
 * Each linear is either int4 in the vnni layout (ulm_int4.c: bf16 inputs, no bias) or a GGUF block-quant
 * linear (ulm_kquant_mm.c: its bias added inside); a block-quant q/k/v or gate/up projection takes its
 * RMSNorm's output in fp32, as the generic forward hands it over. Builds with ulm_int4.c's kernel (AVX-512 VNNI, or AVX2).
 *   x      [B, D] fp32, the residual stream after the embedding; updated in place
 *   meta   [B, 3] int64 (cache row, lo, hi) per batch row, as for ulm_decode_layer_bf16
 *   P      rows 0 .. P − 1 are tokens being decoded, the others a prompt's: a precise block-quant linear
 *          quantises the former's activations to int16, the latter's to int8 (ulm_kquant_mm.c)
 * Returns 0, -1 when a row has no key to attend to (or attention has no memory), -2 without memory, -3 for
 * a block-quant linear the kernels refuse (or one in a build without them).
 */
#include <stdint.h>
#include <stdlib.h>

#include "ulm_bf16.h"
#include "ulm_kernels.h"
#include "ulm_kquant.h"

#if (defined(__AVX512VNNI__) && defined(__AVX512BW__) && defined(__AVX512F__)) || \
    (defined(__AVX2__) && defined(__FMA__)) /* where ulm_int4.c's kernel is built */

#if defined(__AVX512VNNI__) && defined(__AVX512BW__) && defined(__AVX512F__) && defined(__AVX512VL__)
#define KQ_BUILT 1 /* ulm_kquant_mm.c's kernels are in this build */
#else
#define KQ_BUILT 0
#endif

typedef struct {
    const uint8_t *packed;   /* int4, vnni layout [N, K] (NULL for a block-quant linear) */
    const bf16 *sz;          /* its scales and zeros */
    const ulm_kq_linear *kq; /* a block-quant linear, or NULL */
} ulm_linear;

typedef struct {
    const ulm_layer *attn;             /* the layer's cache and rotary tables (DecodeLayers) */
    const float *attn_norm, *mlp_norm; /* [D] fp32 */
    ulm_linear qkv, o, gu, down;       /* [(Hq + 2·Hkv)·hd, D], [D, Hq·hd], [2F, D], [D, F] */
} ulm_block;

/* out [M, N] bf16 = x [M, K] · Wᵀ (+ bias); x fp32 when x_f32 (block-quant linears only), else bf16; the first
 * P rows are decoded tokens (int16 activations in a precise block-quant linear) */
static int matmul(const ulm_linear *w, const void *x, int x_f32, int64_t M, int64_t P, int64_t K, int64_t N,
                  bf16 *out) {
    if (w->kq != NULL) {
#if KQ_BUILT
        const int rc = ulm_kq_mm(w->kq, x, x_f32, M, P, out, 0);
        return rc == 0 ? 0 : rc == -2 ? -2 : -3;
#else
        return -3;
#endif
    }
    return ulm_int4_vnni_mm((const bf16 *)x, M, K, w->packed, w->sz, N, out, 0) != 0 ? -2 : 0;
}

/* x[i] += y[i] with y rounded from bf16 (torch's fp32 += bf16) */
static void add_bf16(float *x, const bf16 *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) x[i] += bf16_in(y[i]);
}

int ulm_decode_blocks_bf16(const ulm_block *blocks, int64_t n_layers, int64_t D, int64_t F, float eps,
                           const int64_t *meta, int64_t B, int64_t P, float *x) {
    const ulm_layer *first = blocks[0].attn;
    const int64_t Q = first->Hq * first->hd, QKV = (first->Hq + 2 * first->Hkv) * first->hd;
    float *h = malloc(sizeof(float) * (size_t)(B * D)); /* each norm's output: bf16, or fp32 for a block-quant linear */
    bf16 *buf = malloc(sizeof(bf16) * (size_t)(B * (QKV + Q + D + 2 * F + F)));
    if (h == NULL || buf == NULL) {
        free(h);
        free(buf);
        return -2;
    }
    bf16 *qkv = buf, *att = qkv + B * QKV, *proj = att + B * Q, *gu = proj + B * D, *act = gu + B * 2 * F;
    int rc = 0;
    for (int64_t i = 0; i < n_layers && rc == 0; i++) {
        const ulm_block *L = blocks + i;
        const int qkv_f32 = L->qkv.kq != NULL, gu_f32 = L->gu.kq != NULL;
        ulm_rms_norm(x, B, D, L->attn_norm, eps, h, !qkv_f32);
        if ((rc = matmul(&L->qkv, h, qkv_f32, B, P, D, QKV, qkv)) != 0) break;
        if (ulm_decode_layer_bf16(L->attn, meta, B, qkv, att) != 0) {
            rc = -1;
            break;
        }
        if ((rc = matmul(&L->o, att, 0, B, P, Q, D, proj)) != 0) break;
        add_bf16(x, proj, B * D);
        ulm_rms_norm(x, B, D, L->mlp_norm, eps, h, !gu_f32);
        if ((rc = matmul(&L->gu, h, gu_f32, B, P, D, 2 * F, gu)) != 0) break;
        ulm_silu_mul_bf16(gu, B, F, act);
        if ((rc = matmul(&L->down, act, 0, B, P, F, D, proj)) != 0) break;
        add_bf16(x, proj, B * D);
    }
    free(h);
    free(buf);
    return rc;
}

#endif
