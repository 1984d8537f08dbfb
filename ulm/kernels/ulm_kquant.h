/* µLM's GGUF block-quant linears (ulm_kquant.c): the descriptor one linear is run from, and the entry points
 * (callable from Python through ctypes and from another kernel source, e.g. a fused decode step).
 *
 * A linear y = x·Wᵀ (+ bias) of N outputs over K inputs is a list of parts, each a range of output rows
 * stored in one GGML type: a fused q/k/v projection whose v rows are Q6_K and q/k rows Q4_K is one linear
 * of three parts. Each part's rows are kept in the "tile" layout of its type (see ulm_kquant.c), made from
 * the GGUF rows by ulm_kq_repack: the same quantised values, scales and sizes as the file, reordered.
 */
#ifndef ULM_KQUANT_H
#define ULM_KQUANT_H

#include <stdint.h>

#include "ulm_bf16.h"

/* GGML type ids of the supported block types */
#define ULM_Q5_0 6
#define ULM_Q8_0 8
#define ULM_Q4_K 12
#define ULM_Q5_K 13
#define ULM_Q6_K 14

#define ULM_KQ_TILE 32 /* output rows per tile */

typedef struct {
    int64_t type;         /* ULM_Q* */
    int64_t n0, N;        /* the part's rows are outputs n0 .. n0 + N − 1 of the linear */
    const uint8_t *tiles; /* ceil(N / 32) tiles of ulm_kq_tile_bytes(type, K) bytes (rows past N zero) */
} ulm_kq_part;

typedef struct {
    int64_t N, K;              /* outputs, inputs: every part has K inputs, the parts cover 0 .. N − 1 */
    int64_t n_parts;
    const ulm_kq_part *parts;
    const float *bias;         /* [N] fp32, or NULL */
    int64_t precise;           /* 1: int16 activations (two int8 planes) for the rows a call names, 0: int8 */
} ulm_kq_linear;

/* Portable (any CPU): sizes, the repack, and rows dequantised from the GGUF layout. */
int64_t ulm_kq_block_size(int64_t type);                /* weights per GGUF block (32 or 256); -1: unknown type */
int64_t ulm_kq_block_bytes(int64_t type);               /* bytes per GGUF block; -1: unknown type */
int64_t ulm_kq_tile_bytes(int64_t type, int64_t K);     /* bytes per tile of 32 rows; -1: bad type or K */
int ulm_kq_repack(int64_t type, const uint8_t *rows, int64_t row_stride, int64_t N, int64_t K, uint8_t *tiles);
int ulm_kq_dequant_rows(int64_t type, const uint8_t *rows, int64_t row_stride, const int64_t *ids, int64_t n_ids,
                        int64_t K, float *out);

/* AVX-512 VNNI builds only (ulm_kq_vnni() says which): the matmul and the bf16 unpacking of the tiles. */
int ulm_kq_vnni(void);
/* out [M, N] = x [M, K]·Wᵀ (+ bias); rows 0 .. P − 1 with int16 activations where L->precise */
int ulm_kq_mm(const ulm_kq_linear *L, const void *x, int x_f32, int64_t M, int64_t P, void *out, int out_f32);
int ulm_kq_dequant_t(const ulm_kq_linear *L, int64_t lo, int64_t hi, bf16 *out); /* Wᵀ[:, lo:hi] */

#endif
