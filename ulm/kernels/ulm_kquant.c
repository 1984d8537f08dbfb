/* µLM's GGUF block quants in the "tile" layout that ulm_kquant_mm.c's VNNI kernels read, and the portable
 * code around it: sizes, the repack from the GGUF rows, and rows dequantised straight from the GGUF layout
 * (an embedding lookup). Any CPU.
 *
 * The GGUF blocks (per row, along K; d, dmin f16; values unsigned, their offsets in the formula):
 *   Q4_K  256 w, 144 B: d, dmin, scales[12] (8 × 6-bit sc, 8 × 6-bit m), qs[128]   w = d·sc·q − dmin·m
 *   Q5_K  256 w, 176 B: d, dmin, scales[12], qh[32] (5th bits), qs[128]              w = d·sc·q − dmin·m
 *   Q6_K  256 w, 210 B: ql[128], qh[64] (2 high bits), scales[16] int8, d             w = d·sc·(q − 32)
 *   Q8_0   32 w,  34 B: d, qs[32] int8                                                w = d·q
 *   Q5_0   32 w,  22 B: d, qh[4] (5th bits), qs[16]                                   w = d·(q − 16)
 * Q4_K/Q5_K sub-blocks of 32 weights share a (sc, m); Q6_K sub-blocks of 16 an sc.
 *
 * The tile layout: 32 output rows at a time ("a tile"), each GGUF block column of the 32 rows stored as one
 * tile block of 32 × block-bytes bytes, i.e. exactly the file's size. The values are stored as
 *   "nibble quads": their low 4 bits per quad of k (k = 4c .. 4c + 3) in 64 bytes whose byte 4j + t holds
 *   row j's value at k = 4c + t in its low nibble and row 16 + j's in its high nibble: one 64-byte load and
 *   two masks give two registers of 16 rows × 4 consecutive k, what vpdpbusd sums (the int4 kernel's
 *   layout, ulm_int4.c);
 *   Q5_K/Q5_0 fifth bits: per quad, two 64-bit masks (rows 0-15, rows 16-31), bit 4j + t for row j (or
 *   16 + j) at k = 4c + t: AVX-512 byte masks that add 16 to the nibbles;
 *   Q6_K high 2 bits: per pair of quads (2p, 2p + 1), 64 bytes whose byte 4j + t holds, from bit 0 up, the
 *   2-bit fields of (row j, quad 2p), (row 16 + j, quad 2p), (row j, quad 2p + 1), (row 16 + j, quad 2p + 1)
 *   at k offset t: shifts and one masked or each put them at bits 4-5 of the nibbles;
 *   Q8_0 values as bytes q + 128 (unsigned, as vpdpbusd multiplies), per quad and half 64 bytes, byte
 *   4j + t = row 16·half + j at k = 4c + t;
 * the scales as planes of 32 bytes, byte r for row r: d [32] f16 first; Q4_K/Q5_K dmin [32] f16 and the 12
 * packed scale bytes (plane b = every row's scales[b], unpacked in registers for 32 rows at once); Q6_K the
 * int8 scales of each sub-block of 16, just before its values. Each tile block reads front to back as one
 * stream (measured: Q6_K streamed at 11.5 GB/s a thread with its 2-bit fields and nibbles in two planes
 * 2 KB apart, at the int4 kernel's ~25 GB/s interleaved).
 * Byte offsets within a tile block are in ulm_kquant_layout.h. Rows past N are zero (d = 0: they add 0).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ulm_kquant.h"
#include "ulm_kquant_layout.h"

int64_t ulm_kq_block_size(int64_t type) {
    switch (type) {
    case ULM_Q5_0: case ULM_Q8_0: return 32;
    case ULM_Q4_K: case ULM_Q5_K: case ULM_Q6_K: return 256;
    default: return -1;
    }
}

int64_t ulm_kq_block_bytes(int64_t type) {
    switch (type) {
    case ULM_Q5_0: return 22;
    case ULM_Q8_0: return 34;
    case ULM_Q4_K: return 144;
    case ULM_Q5_K: return 176;
    case ULM_Q6_K: return 210;
    default: return -1;
    }
}

int64_t ulm_kq_tile_bytes(int64_t type, int64_t K) {
    const int64_t size = ulm_kq_block_size(type);
    if (size < 0 || K <= 0 || K % size) return -1;
    return K / size * ULM_KQ_TILE * ulm_kq_block_bytes(type);
}

/* IEEE half → float, exactly (subnormals, infinities and NaNs included). */
static float half_in(const uint8_t *p) {
    const uint32_t h = (uint32_t)p[0] | (uint32_t)p[1] << 8;
    const uint32_t sign = (h & 0x8000u) << 16, exp = (h >> 10) & 0x1f;
    uint32_t man = h & 0x3ff, bits;
    if (exp == 0x1f) bits = sign | 0x7f800000u | man << 13;
    else if (exp != 0) bits = sign | (exp + 112) << 23 | man << 13;
    else if (man == 0) bits = sign;
    else { /* subnormal: man · 2^-24, normalised */
        uint32_t shift = 0;
        while (!(man & 0x400)) { man <<= 1; shift++; }
        bits = sign | (113 - shift) << 23 | (man & 0x3ff) << 13;
    }
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* Q4_K/Q5_K: sub-block j's 6-bit scale and min from the 12 packed bytes (llama.cpp's get_scale_min_k4). */
static void scale_min(const uint8_t *q, int j, int *sc, int *m) {
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (q[j + 4] & 0x0f) | (q[j - 4] >> 6) << 4;
        *m = (q[j + 4] >> 4) | (q[j] >> 6) << 4;
    }
}

/* One GGUF block's values split as the tile planes hold them: lo [size] the low 4 bits (Q8_0: the byte
 * q + 128), hi [size] the bits above (Q5: 0/1, Q6_K: 0..3). */
static void block_values(int64_t type, const uint8_t *b, uint8_t *lo, uint8_t *hi) {
    switch (type) {
    case ULM_Q4_K: case ULM_Q5_K: {
        const uint8_t *qs = b + (type == ULM_Q4_K ? 16 : 48), *qh = b + 16;
        for (int c = 0; c < 4; c++) /* weight 64c + i: low nibble of qs[32c + i]; 64c + 32 + i: its high one */
            for (int i = 0; i < 32; i++) {
                lo[64 * c + i] = qs[32 * c + i] & 15;
                lo[64 * c + 32 + i] = qs[32 * c + i] >> 4;
            }
        for (int j = 0; j < 8; j++) /* weight 32j + i: bit j of qh[i] */
            for (int i = 0; i < 32; i++) hi[32 * j + i] = type == ULM_Q5_K ? (uint8_t)((qh[i] >> j) & 1) : 0;
        break;
    }
    case ULM_Q6_K:
        for (int half = 0; half < 2; half++) {
            const uint8_t *ql = b + 64 * half, *qh = b + 128 + 32 * half;
            uint8_t *l = lo + 128 * half, *h = hi + 128 * half;
            for (int i = 0; i < 64; i++) l[i] = ql[i] & 15, l[64 + i] = ql[i] >> 4;
            for (int f = 0; f < 4; f++)
                for (int i = 0; i < 32; i++) h[32 * f + i] = (uint8_t)((qh[i] >> (2 * f)) & 3);
        }
        break;
    case ULM_Q8_0:
        for (int i = 0; i < 32; i++) lo[i] = (uint8_t)(b[2 + i] ^ 0x80), hi[i] = 0;
        break;
    case ULM_Q5_0: {
        const uint32_t qh = (uint32_t)b[2] | (uint32_t)b[3] << 8 | (uint32_t)b[4] << 16 | (uint32_t)b[5] << 24;
        for (int i = 0; i < 32; i++) {
            lo[i] = (uint8_t)(i < 16 ? b[6 + i] & 15 : b[6 + i - 16] >> 4);
            hi[i] = (uint8_t)((qh >> i) & 1);
        }
        break;
    }
    }
}

/* The tile block of 32 GGUF blocks (rows[r]: row r's block, NULL past N) into dst. */
static void tile_block(int64_t type, const uint8_t *const *rows, uint8_t *dst, uint8_t (*lo)[256],
                       uint8_t (*hi)[256]) {
    const int64_t size = ulm_kq_block_size(type), bytes = ulm_kq_block_bytes(type);
    memset(dst, 0, (size_t)(ULM_KQ_TILE * bytes));
    for (int r = 0; r < ULM_KQ_TILE; r++) {
        if (rows[r] == NULL) {
            memset(lo[r], type == ULM_Q8_0 ? 0x80 : 0, 256);
            memset(hi[r], 0, 256);
            continue;
        }
        block_values(type, rows[r], lo[r], hi[r]);
        const uint8_t *b = rows[r];
        memcpy(dst + KQ_D + 2 * r, type == ULM_Q6_K ? b + 208 : b, 2);
        if (type == ULM_Q4_K || type == ULM_Q5_K) {
            memcpy(dst + KQ_DMIN + 2 * r, b + 2, 2);
            for (int p = 0; p < 12; p++) dst[KQ_SCALES + 32 * p + r] = b[4 + p];
        } else if (type == ULM_Q6_K) {
            for (int u = 0; u < 16; u++) dst[q6k_scales(u) + r] = b[192 + u];
        }
    }
    const int64_t quads = size / 4;
    for (int64_t c = 0; c < quads; c++) {
        if (type == ULM_Q8_0) {
            uint8_t *q = dst + Q80_Q + 128 * c;
            for (int j = 0; j < 16; j++)
                for (int t = 0; t < 4; t++) q[4 * j + t] = lo[j][4 * c + t], q[64 + 4 * j + t] = lo[16 + j][4 * c + t];
            continue;
        }
        uint8_t *q = dst + (type == ULM_Q6_K ? q6k_pair(c / 2) + 64 * (1 + c % 2)
                            : type == ULM_Q5_0 ? Q50_QS + 64 * c : kq_quad(type == ULM_Q5_K, c));
        for (int j = 0; j < 16; j++)
            for (int t = 0; t < 4; t++) q[4 * j + t] = (uint8_t)(lo[j][4 * c + t] | lo[16 + j][4 * c + t] << 4);
    }
    if (type == ULM_Q5_K || type == ULM_Q5_0) {
        for (int64_t c = 0; c < quads; c++)
            for (int half = 0; half < 2; half++) {
                uint64_t mask = 0;
                for (int j = 0; j < 16; j++)
                    for (int t = 0; t < 4; t++) mask |= (uint64_t)hi[16 * half + j][4 * c + t] << (4 * j + t);
                uint8_t *at = dst + (type == ULM_Q5_K ? kq_mask(c, half) : Q50_QH + 16 * c + 8 * half);
                for (int i = 0; i < 8; i++) at[i] = (uint8_t)(mask >> (8 * i));
            }
    } else if (type == ULM_Q6_K) {
        for (int64_t p = 0; p < quads / 2; p++)
            for (int j = 0; j < 16; j++)
                for (int t = 0; t < 4; t++) {
                    const int64_t k = 8 * p + t;
                    dst[q6k_pair(p) + 4 * j + t] = (uint8_t)(hi[j][k] | hi[16 + j][k] << 2 | hi[j][k + 4] << 4
                                                             | hi[16 + j][k + 4] << 6);
                }
    }
}

/* ulm_kq_repack: the GGUF rows of an N × K weight of `type` (row n at rows + n·row_stride, K / size blocks)
 * into ceil(N / 32) tiles at `tiles` (ulm_kq_tile_bytes(type, K) bytes each). Tiles are shared out over
 * OpenMP threads. 0, -1 for a bad type or K, -2 without memory. */
int ulm_kq_repack(int64_t type, const uint8_t *rows, int64_t row_stride, int64_t N, int64_t K, uint8_t *tiles) {
    const int64_t tile = ulm_kq_tile_bytes(type, K);
    if (tile < 0 || N < 0) return -1;
    const int64_t size = ulm_kq_block_size(type), bytes = ulm_kq_block_bytes(type);
    const int64_t n_tiles = (N + ULM_KQ_TILE - 1) / ULM_KQ_TILE, blocks = K / size, per = ULM_KQ_TILE * bytes;
    int failed = 0;
#pragma omp parallel
    {
        uint8_t (*lo)[256] = malloc(2 * ULM_KQ_TILE * 256), (*hi)[256] = lo + ULM_KQ_TILE;
        if (lo == NULL) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(static)
        for (int64_t t = 0; t < n_tiles; t++) {
            if (lo == NULL) continue;
            for (int64_t s = 0; s < blocks; s++) {
                const uint8_t *src[ULM_KQ_TILE];
                for (int r = 0; r < ULM_KQ_TILE; r++) {
                    const int64_t n = t * ULM_KQ_TILE + r;
                    src[r] = n < N ? rows + n * row_stride + s * bytes : NULL;
                }
                tile_block(type, src, tiles + t * tile + s * per, lo, hi);
            }
        }
        free(lo);
    }
    return failed ? -2 : 0;
}

/* One GGUF block's weights as floats (the products rounded once, as gguf's numpy dequantisation rounds). */
static void dequant_block(int64_t type, const uint8_t *b, float *out) {
    uint8_t lo[256], hi[256];
    block_values(type, b, lo, hi);
    switch (type) {
    case ULM_Q4_K: case ULM_Q5_K: {
        const float d = half_in(b), dmin = half_in(b + 2);
        for (int j = 0; j < 8; j++) {
            int sc, m;
            scale_min(b + 4, j, &sc, &m);
            const float ds = d * (float)sc, dm = dmin * (float)m;
            for (int i = 32 * j; i < 32 * j + 32; i++) out[i] = ds * (float)(lo[i] | hi[i] << 4) - dm;
        }
        break;
    }
    case ULM_Q6_K: {
        const float d = half_in(b + 208);
        for (int i = 0; i < 256; i++) out[i] = d * (float)(int8_t)b[192 + i / 16] * (float)((lo[i] | hi[i] << 4) - 32);
        break;
    }
    case ULM_Q8_0: {
        const float d = half_in(b);
        for (int i = 0; i < 32; i++) out[i] = d * (float)(int8_t)b[2 + i];
        break;
    }
    case ULM_Q5_0: {
        const float d = half_in(b);
        for (int i = 0; i < 32; i++) out[i] = d * (float)((lo[i] | hi[i] << 4) - 16);
        break;
    }
    }
}

/* ulm_kq_dequant_rows: rows ids[0 .. n_ids − 1] of an N × K weight in the GGUF layout (row n at
 * rows + n·row_stride) as fp32 out [n_ids, K], equal to gguf's dequantisation. The caller checks the ids.
 * 0, or -1 for a bad type or K. */
int ulm_kq_dequant_rows(int64_t type, const uint8_t *rows, int64_t row_stride, const int64_t *ids, int64_t n_ids,
                        int64_t K, float *out) {
    const int64_t size = ulm_kq_block_size(type), bytes = ulm_kq_block_bytes(type);
    if (size < 0 || K <= 0 || K % size) return -1;
#pragma omp parallel for schedule(static) if (n_ids * K >= 1 << 18)
    for (int64_t i = 0; i < n_ids; i++)
        for (int64_t s = 0; s < K / size; s++) dequant_block(type, rows + ids[i] * row_stride + s * bytes, out + i * K + s * size);
    return 0;
}
