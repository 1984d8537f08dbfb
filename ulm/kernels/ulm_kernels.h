/* What µLM's kernel sources share: the per-layer attention struct and the entry points one source calls in
 * another (all are compiled into one library; see native.py). */
#ifndef ULM_KERNELS_H
#define ULM_KERNELS_H

#include <stdint.h>

#include "ulm_bf16.h"

typedef struct {
    bf16 *k, *v;             /* this layer's cache: row r, head h, position t at k + r·ks_r + h·ks_h + t·ks_t */
    int64_t ks_r, ks_h, ks_t, vs_r, vs_h, vs_t;
    const bf16 *cos, *sin;   /* rotary tables [max_len, hd]; sin signed as (−sin₁, sin₂) over the halves */
    int64_t Hq, Hkv, hd;
    float scale;
} ulm_layer;

int ulm_decode_layer_bf16(const ulm_layer *L, const int64_t *meta, int64_t B, const bf16 *qkv, bf16 *out);
void ulm_rms_norm(const float *x, int64_t rows, int64_t D, const float *w, float eps, void *y, int y_bf16);
void ulm_silu_mul_bf16(const bf16 *gu, int64_t rows, int64_t F, bf16 *out);
int ulm_int4_vnni_mm(const bf16 *x, int64_t M, int64_t K, const uint8_t *packed, const bf16 *scales_zeros,
                     int64_t N, void *out, int out_f32);

#endif
