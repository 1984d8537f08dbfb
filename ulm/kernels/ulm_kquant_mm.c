/* µLM's matmul for GGUF block-quant weights in the tile layout (ulm_kquant.c) on AVX-512 VNNI, for few rows
 * (decode steps, short prefill chunks), and their unpacking to bf16 for a dense GEMM (long prefills).
 *
 * Activations are quantised per row and group of 32 to int8 with a scale (absmax / 127, rounded to
 * nearest: llama.cpp's Q8_0 for activations), with the sums of the int8 values per 32 and per 16. A
 * tile's unsigned values u (the nibbles with their high bits, or Q8_0's q + 128) meet them in vpdpbusd,
 * 16 rows × 4 consecutive k an instruction, and per group of 32 (dx its scale, xs its sum):
 *   Q4_K/Q5_K  Σ w·x ≈ dx·(d·sc · Σ u·xq) − dx·xs · dmin·m       (sc, m of the group's sub-block)
 *   Q6_K       Σ w·x ≈ dx·d · Σ_{2 sub-blocks of 16} sc·(Σ u·xq − 32·xs₁₆)    (integer inside the group)
 *   Q8_0       Σ w·x ≈ dx·d · (Σ u·xq − 128·xs)
 *   Q5_0       Σ w·x ≈ dx·d · (Σ u·xq − 16·xs)
 * Integer sums exact, the rest fp32 in a fixed order per output: a row's result does not depend on the
 * other rows of its batch nor on the thread count. The quantised weights and scales are used exactly as
 * stored (d·sc is exact in fp32); the only approximation is the activations' rounding.
 *
 * A "precise" linear quantises its activations to int16 instead (for the rows the caller says: the tokens
 * being decoded, not a prompt's) (q = rint(x · 32639 / absmax), kept as
 * two int8 planes, q = 256·h + l) and runs vpdpbusd on both planes with the same unpacked weights, joined
 * as Σ u·l + 256·Σ u·h in int32: ~1e-5 relative error instead of int8's ~0.5% (1.5% with an outlier
 * channel in the group), for twice the dot products and the same bytes read. Measured on Qwen2.5-Coder-
 * 1.5B (256 tokens of code, teacher forcing, top-1 agreement with the exact fp32 model): int8 everywhere
 * 96.5%, int16 on w_gate_up (whose RMSNorm input carries the residual stream's outlier channels) 97.7%,
 * on w_gate_up and w_down 98.8%, everywhere 100%. Decoding one row it costs 0-8% (the weights' streaming
 * hides it); 4 rows, 15-35% (the kernel is then bound by vpdpbusd issue).
 *
 * Work is shared over OpenMP threads (torch's pool) in runs of whole tiles (32 outputs) of equal bytes,
 * across all parts of a linear; rows go 4 at a time over a tile's bytes, so up to 4 rows read each weight
 * byte once from memory.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ulm_kquant.h"
#include "ulm_kquant_layout.h"

#if defined(__AVX512VNNI__) && defined(__AVX512BW__) && defined(__AVX512F__) && defined(__AVX512VL__)
#include <immintrin.h>
#include <omp.h>

#define ROWS 4 /* rows sharing one pass over a tile's bytes */
/* with int16 activations: 4 int32 accumulators a row (2 halves × 2 planes); 4 rows spill, 2 measured best */
#define PRECISE_ROWS 2

int ulm_kq_vnni(void) { return 1; }

/* The quantised activations of M rows of K (G = K / 32 groups): per group, integers q with a scale, as int8
 * (q in q) or, for the first P rows of a precise linear, as int16 q = 256·h + l in two int8 planes (l in q,
 * h in qh). */
typedef struct {
    int8_t *q;     /* [M, K] */
    int8_t *qh;    /* [P, K] (precise rows), else NULL */
    float *d;      /* [M, G]: each group's scale */
    float *dsum;   /* [M, G]: scale · Σ q of the group */
    int32_t *s32;  /* [M, G]: Σ q per group of 32 */
    int32_t *s16;  /* [M, 2G]: Σ q per 16 */
    int64_t K, G;
    int64_t P;     /* rows 0 .. P − 1 in int16 (qh), the others in int8 */
} acts;

#define Q8_MAX 127.0f
#define Q16_MAX 32639.0f /* 127 · 257: h = round(q / 256) and l = q − 256·h both stay in int8 */

/* 16 int32 → 16 int8 at p */
INLINE void store_i8(int8_t *p, __m512i v) { _mm_storeu_si128((__m128i *)p, _mm512_cvtepi32_epi8(v)); }

/* 32 activations (16 + 16 floats) → q = rint(x · top / absmax) (top: Q8_MAX, or Q16_MAX when precise), the
 * scale absmax / top and the sums of q. */
INLINE void quantise_group(__m512 lo, __m512 hi, int precise, int8_t *q, int8_t *qh, float *d, float *dsum,
                           int32_t *s32, int32_t *s16) {
    const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(lo), _mm512_abs_ps(hi)));
    const float top = precise ? Q16_MAX : Q8_MAX;
    const __m512 inv = _mm512_set1_ps(amax > 0.0f ? top / amax : 0.0f);
    const __m512i v[2] = {_mm512_cvtps_epi32(_mm512_mul_ps(lo, inv)), _mm512_cvtps_epi32(_mm512_mul_ps(hi, inv))};
    for (int i = 0; i < 2; i++) {
        if (precise) {
            const __m512i h = _mm512_srai_epi32(_mm512_add_epi32(v[i], _mm512_set1_epi32(128)), 8);
            store_i8(qh + 16 * i, h);
            store_i8(q + 16 * i, _mm512_sub_epi32(v[i], _mm512_slli_epi32(h, 8)));
        } else {
            store_i8(q + 16 * i, v[i]);
        }
        s16[i] = _mm512_reduce_add_epi32(v[i]);
    }
    *s32 = s16[0] + s16[1];
    *d = amax / top;
    *dsum = *d * (float)*s32;
}

INLINE __m512 bf16x16(const bf16 *p) {
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)p)), 16));
}

/* x [M, K] (bf16, or fp32 when x_f32) → a's buffers (allocated by the caller; a->qh set for precise rows). */
static void quantise_rows(const void *x, int x_f32, int64_t M, const acts *a) {
    const int64_t K = a->K, G = a->G;
#pragma omp parallel for schedule(static) if (M * K >= 1 << 16)
    for (int64_t m = 0; m < M; m++)
        for (int64_t g = 0; g < G; g++) {
            const int64_t at = m * K + 32 * g;
            __m512 lo, hi;
            if (x_f32) {
                lo = _mm512_loadu_ps((const float *)x + at);
                hi = _mm512_loadu_ps((const float *)x + at + 16);
            } else {
                lo = bf16x16((const bf16 *)x + at);
                hi = bf16x16((const bf16 *)x + at + 16);
            }
            const int precise = m < a->P;
            quantise_group(lo, hi, precise, a->q + at, precise ? a->qh + at : NULL, a->d + m * G + g,
                           a->dsum + m * G + g, a->s32 + m * G + g, a->s16 + m * 2 * G + 2 * g);
        }
}

INLINE __m512 half16(const uint8_t *p) { return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p)); }
INLINE __m512 u8_ps(__m128i b) { return _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(b)); }
INLINE __m512 i8_ps(__m128i b) { return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(b)); }
INLINE __m512i quad_of(const int8_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return _mm512_set1_epi32(v);
}
/* acc[r][h] (+ acch[r][h] for the high plane when P) += the values u[h] of 4 k × 16 rows · row m0 + r's
 * activations at k offset `at`, for rows r < R and the halves h < H listed in u. */
#define DOTS(P, R, H, u, acc, acch, a, m0, at)                                                                 \
    for (int r_ = 0; r_ < (R); r_++) {                                                                         \
        const int64_t at_ = ((m0) + r_) * (a)->K + (at);                                                       \
        const __m512i x_ = quad_of((a)->q + at_);                                                              \
        for (int h_ = 0; h_ < (H); h_++) acc[r_][h_] = _mm512_dpbusd_epi32(acc[r_][h_], (u)[h_], x_);         \
        if (P) {                                                                                               \
            const __m512i xh_ = quad_of((a)->qh + at_);                                                        \
            for (int h_ = 0; h_ < (H); h_++) acch[r_][h_] = _mm512_dpbusd_epi32(acch[r_][h_], (u)[h_], xh_);  \
        }                                                                                                      \
    }

/* acc[r][h] = its low plane's sums + 256 · its high plane's (the int16 activations' dot products) */
#define JOIN(P, R, acc, acch)                                                                                  \
    if (P)                                                                                                     \
        for (int r_ = 0; r_ < (R); r_++)                                                                       \
            for (int h_ = 0; h_ < 2; h_++) acc[r_][h_] = _mm512_add_epi32(acc[r_][h_], _mm512_slli_epi32(acch[r_][h_], 8))

#define ZERO(R, acc)                                                                                           \
    for (int r_ = 0; r_ < (R); r_++) acc[r_][0] = acc[r_][1] = _mm512_setzero_si512()

INLINE __mmask64 mask_at(const uint8_t *p) {
    uint64_t m;
    memcpy(&m, p, 8);
    return _cvtu64_mask64(m);
}
INLINE __m512i low_nibbles(__m512i v) { return _mm512_and_si512(v, _mm512_set1_epi8(0x0f)); }
INLINE __m512i high_nibbles(__m512i v) { return _mm512_and_si512(_mm512_srli_epi16(v, 4), _mm512_set1_epi8(0x0f)); }

/* Q4_K/Q5_K sub-blocks' 6-bit scales and mins of 32 rows (byte r = row r) from the 12 scale planes. */
INLINE void scales_mins(const uint8_t *planes, __m256i *sc, __m256i *mn) {
    __m256i p[12];
    for (int i = 0; i < 12; i++) p[i] = _mm256_loadu_si256((const __m256i *)(planes + 32 * i));
    const __m256i six = _mm256_set1_epi8(63), low = _mm256_set1_epi8(0x0f), top = _mm256_set1_epi8(0x30);
    for (int j = 0; j < 4; j++) {
        sc[j] = _mm256_and_si256(p[j], six);
        mn[j] = _mm256_and_si256(p[j + 4], six);
        /* sub-block j + 4: sc = (q[j + 8] & 15) | (q[j] >> 6) << 4, m = (q[j + 8] >> 4) | (q[j + 4] >> 6) << 4 */
        sc[j + 4] = _mm256_or_si256(_mm256_and_si256(p[j + 8], low), _mm256_and_si256(_mm256_srli_epi16(p[j], 2), top));
        mn[j + 4] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(p[j + 8], 4), low),
                                    _mm256_and_si256(_mm256_srli_epi16(p[j + 4], 2), top));
    }
}

/* Rows m0 .. m0 + R − 1 times one Q4_K (five = 0) or Q5_K tile: tot[r][h] = outputs 16h .. 16h + 15. */
INLINE void tile_q4k(const int P, const int R, const int five, const acts *a, int64_t m0, const uint8_t *tile,
                     __m512 tot[][2]) {
    const int64_t K = a->K, G = a->G, step = five ? Q5K_BLOCK : Q4K_BLOCK;
    const __m512i sixteen = _mm512_set1_epi8(16);
    for (int r = 0; r < R; r++) tot[r][0] = tot[r][1] = _mm512_setzero_ps();
    for (int64_t s = 0; s < K / 256; s++) {
        const uint8_t *b = tile + s * step;
        const __m512 d[2] = {half16(b + KQ_D), half16(b + KQ_D + 32)};
        const __m512 dmin[2] = {half16(b + KQ_DMIN), half16(b + KQ_DMIN + 32)};
        __m256i sc[8], mn[8];
        scales_mins(b + KQ_SCALES, sc, mn);
        for (int j = 0; j < 8; j++) {
            __m512i acc[ROWS][2], acch[ROWS][2];
            ZERO(R, acc);
            if (P) ZERO(R, acch);
            for (int c = 0; c < 8; c++) {
                const int quad = 8 * j + c;
                const __m512i v = _mm512_loadu_si512(b + kq_quad(five, quad));
                __m512i u[2] = {low_nibbles(v), high_nibbles(v)};
                if (five)
                    for (int h = 0; h < 2; h++) u[h] = _mm512_mask_add_epi8(u[h], mask_at(b + kq_mask(quad, h)), u[h], sixteen);
                DOTS(P, R, 2, u, acc, acch, a, m0, s * 256 + 4 * quad);
            }
            JOIN(P, R, acc, acch);
            const __m512 ds[2] = {_mm512_mul_ps(u8_ps(_mm256_castsi256_si128(sc[j])), d[0]),
                                  _mm512_mul_ps(u8_ps(_mm256_extracti128_si256(sc[j], 1)), d[1])};
            const __m512 dm[2] = {_mm512_mul_ps(u8_ps(_mm256_castsi256_si128(mn[j])), dmin[0]),
                                  _mm512_mul_ps(u8_ps(_mm256_extracti128_si256(mn[j], 1)), dmin[1])};
            const int64_t g = s * 8 + j;
            for (int r = 0; r < R; r++) {
                const __m512 dx = _mm512_set1_ps(a->d[(m0 + r) * G + g]), dxs = _mm512_set1_ps(a->dsum[(m0 + r) * G + g]);
                for (int h = 0; h < 2; h++) {
                    const __m512 part = _mm512_mul_ps(_mm512_cvtepi32_ps(acc[r][h]), dx);
                    tot[r][h] = _mm512_fnmadd_ps(dxs, dm[h], _mm512_fmadd_ps(part, ds[h], tot[r][h]));
                }
            }
        }
    }
}

/* Q6_K: a pair of quads (its 2-bit fields w, then the nibbles v0, v1 of its two quads) → the four value
 * registers [quad][half] (ternlog 0xEA: (a & b) | c). */
INLINE void q6_pair(const uint8_t *pair, __m512i q[2][2]) {
    const __m512i w = _mm512_loadu_si512(pair), v0 = _mm512_loadu_si512(pair + 64), v1 = _mm512_loadu_si512(pair + 128);
    const __m512i top = _mm512_set1_epi8(0x30);
    q[0][0] = _mm512_ternarylogic_epi32(_mm512_slli_epi16(w, 4), top, low_nibbles(v0), 0xEA);
    q[0][1] = _mm512_ternarylogic_epi32(_mm512_slli_epi16(w, 2), top, high_nibbles(v0), 0xEA);
    q[1][0] = _mm512_ternarylogic_epi32(w, top, low_nibbles(v1), 0xEA);
    q[1][1] = _mm512_ternarylogic_epi32(_mm512_srli_epi16(w, 2), top, high_nibbles(v1), 0xEA);
}

INLINE void tile_q6k(const int P, const int R, const acts *a, int64_t m0, const uint8_t *tile, __m512 tot[][2]) {
    const int64_t K = a->K, G = a->G;
    for (int r = 0; r < R; r++) tot[r][0] = tot[r][1] = _mm512_setzero_ps();
    for (int64_t s = 0; s < K / 256; s++) {
        const uint8_t *b = tile + s * Q6K_BLOCK;
        const __m512 d[2] = {half16(b + KQ_D), half16(b + KQ_D + 32)};
        for (int gi = 0; gi < 8; gi++) {
            __m512 group[ROWS][2];
            for (int r = 0; r < R; r++) group[r][0] = group[r][1] = _mm512_setzero_ps();
            for (int u = 2 * gi; u < 2 * gi + 2; u++) { /* sub-blocks of 16: two quad pairs each */
                __m512i acc[ROWS][2], acch[ROWS][2];
                ZERO(R, acc);
                if (P) ZERO(R, acch);
                for (int p = 2 * u; p < 2 * u + 2; p++) {
                    __m512i q[2][2];
                    q6_pair(b + q6k_pair(p), q);
                    DOTS(P, R, 2, q[0], acc, acch, a, m0, s * 256 + 8 * p);
                    DOTS(P, R, 2, q[1], acc, acch, a, m0, s * 256 + 8 * p + 4);
                }
                JOIN(P, R, acc, acch);
                const __m512 sc[2] = {i8_ps(_mm_loadu_si128((const __m128i *)(b + q6k_scales(u)))),
                                      i8_ps(_mm_loadu_si128((const __m128i *)(b + q6k_scales(u) + 16)))};
                for (int r = 0; r < R; r++) { /* sc · Σ (u − 32)·x, in fp32: int32 would overflow for int16 x */
                    const __m512i off = _mm512_set1_epi32(32 * a->s16[(m0 + r) * 2 * G + s * 16 + u]);
                    for (int h = 0; h < 2; h++)
                        group[r][h] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(acc[r][h], off)), sc[h], group[r][h]);
                }
            }
            for (int r = 0; r < R; r++) {
                const __m512 dx = _mm512_set1_ps(a->d[(m0 + r) * G + s * 8 + gi]);
                for (int h = 0; h < 2; h++) tot[r][h] = _mm512_fmadd_ps(group[r][h], _mm512_mul_ps(dx, d[h]), tot[r][h]);
            }
        }
    }
}

/* Q8_0 (five = 0: values q + 128) or Q5_0 (nibbles and fifth bits, values q): one group of 32 per block. */
INLINE void tile_q80(const int P, const int R, const int five, const acts *a, int64_t m0, const uint8_t *tile,
                     __m512 tot[][2]) {
    const int64_t G = a->G, step = five ? Q50_BLOCK : Q80_BLOCK, zero = five ? 16 : 128;
    const __m512i sixteen = _mm512_set1_epi8(16);
    for (int r = 0; r < R; r++) tot[r][0] = tot[r][1] = _mm512_setzero_ps();
    for (int64_t g = 0; g < G; g++) {
        const uint8_t *b = tile + g * step;
        const __m512 d[2] = {half16(b + KQ_D), half16(b + KQ_D + 32)};
        __m512i acc[ROWS][2], acch[ROWS][2];
        ZERO(R, acc);
        if (P) ZERO(R, acch);
        for (int c = 0; c < 8; c++) {
            __m512i q[2];
            if (five) {
                const __m512i v = _mm512_loadu_si512(b + Q50_QS + c * 64), lo = low_nibbles(v), hi = high_nibbles(v);
                q[0] = _mm512_mask_add_epi8(lo, mask_at(b + Q50_QH + c * 16), lo, sixteen);
                q[1] = _mm512_mask_add_epi8(hi, mask_at(b + Q50_QH + c * 16 + 8), hi, sixteen);
            } else {
                q[0] = _mm512_loadu_si512(b + Q80_Q + 2 * c * 64);
                q[1] = _mm512_loadu_si512(b + Q80_Q + (2 * c + 1) * 64);
            }
            DOTS(P, R, 2, q, acc, acch, a, m0, 32 * g + 4 * c);
        }
        JOIN(P, R, acc, acch);
        for (int r = 0; r < R; r++) {
            const __m512i off = _mm512_set1_epi32((int32_t)zero * a->s32[(m0 + r) * G + g]);
            const __m512 dx = _mm512_set1_ps(a->d[(m0 + r) * G + g]);
            for (int h = 0; h < 2; h++)
                tot[r][h] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(acc[r][h], off)), _mm512_mul_ps(dx, d[h]),
                                            tot[r][h]);
        }
    }
}

/* 16 floats rounded to bf16 (nearest even; a NaN stays a NaN). */
INLINE __m256i to_bf16(__m512 f) {
#ifdef __AVX512BF16__
    return (__m256i)_mm512_cvtneps_pbh(f);
#else
    const __m512i u = _mm512_castps_si512(f);
    const __m512i odd = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
    const __m512i rounded = _mm512_srli_epi32(_mm512_add_epi32(u, _mm512_add_epi32(odd, _mm512_set1_epi32(0x7fff))), 16);
    const __m512i quiet = _mm512_or_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(0x40));
    return _mm512_cvtepi32_epi16(_mm512_mask_mov_epi32(rounded, _mm512_cmp_ps_mask(f, f, _CMP_UNORD_Q), quiet));
#endif
}

/* Rows m0 .. m0 + R − 1 of the outputs of one tile (`valid` ≤ 32 of its outputs are real) into out. */
INLINE void store_rows(const int R, __m512 tot[][2], const float *bias, int64_t valid, void *out, int64_t N,
                       int64_t m0, int64_t n, int out_f32) {
    const __mmask16 keep[2] = {(__mmask16)(valid >= 16 ? 0xffff : (1u << valid) - 1),
                               (__mmask16)(valid >= 32 ? 0xffff : valid <= 16 ? 0 : (1u << (valid - 16)) - 1)};
    for (int h = 0; h < 2; h++) {
        const __m512 b = bias ? _mm512_maskz_loadu_ps(keep[h], bias + n + 16 * h) : _mm512_setzero_ps();
        for (int r = 0; r < R; r++) {
            const __m512 y = _mm512_add_ps(tot[r][h], b);
            const int64_t at = (m0 + r) * N + n + 16 * h;
            if (out_f32) _mm512_mask_storeu_ps((float *)out + at, keep[h], y);
            else _mm256_mask_storeu_epi16((bf16 *)out + at, keep[h], to_bf16(y));
        }
    }
}

#define TILE_CALL(P, R)                                                                                        \
    switch (part->type) {                                                                                      \
    case ULM_Q4_K: tile_q4k(P, R, 0, a, m0, tile, tot); break;                                                 \
    case ULM_Q5_K: tile_q4k(P, R, 1, a, m0, tile, tot); break;                                                 \
    case ULM_Q6_K: tile_q6k(P, R, a, m0, tile, tot); break;                                                    \
    case ULM_Q8_0: tile_q80(P, R, 0, a, m0, tile, tot); break;                                                 \
    default: tile_q80(P, R, 1, a, m0, tile, tot); break;                                                       \
    }                                                                                                          \
    store_rows(R, tot, L->bias, valid, out, L->N, m0, part->n0 + 32 * t, out_f32)

/* rows m0 .. end − 1, up to (P ? PRECISE_ROWS : ROWS) of them */
#define ROWS_CALL(P, end)                                                                                      \
    switch ((end) - m0 < ((P) ? PRECISE_ROWS : ROWS) ? (end) - m0 : ((P) ? PRECISE_ROWS : ROWS)) {             \
    case 1: TILE_CALL(P, 1); break;                                                                            \
    case 2: TILE_CALL(P, 2); break;                                                                            \
    case 3: TILE_CALL(P, 3); break;                                                                            \
    default: TILE_CALL(P, 4); break;                                                                           \
    }

/* Every row of x times tile t of one part: the int16 rows (0 .. P − 1), then the int8 ones, over the same
 * tile bytes (read from memory once, from cache the second time). */
static void run_tile(const ulm_kq_linear *L, const ulm_kq_part *part, int64_t t, const acts *a, int64_t M, void *out,
                     int out_f32) {
    const uint8_t *tile = part->tiles + t * ulm_kq_tile_bytes(part->type, L->K);
    const int64_t valid = part->N - 32 * t < 32 ? part->N - 32 * t : 32;
    __m512 tot[ROWS][2];
    for (int64_t m0 = 0; m0 < a->P; m0 += PRECISE_ROWS) ROWS_CALL(1, a->P);
    for (int64_t m0 = a->P; m0 < M; m0 += ROWS) ROWS_CALL(0, M);
}

/* 0 when L is a linear these kernels run: known types, K a multiple of each part's block, parts tiling N. */
static int checked(const ulm_kq_linear *L) {
    int64_t next = 0;
    for (int64_t i = 0; i < L->n_parts; i++) {
        const ulm_kq_part *p = L->parts + i;
        if (ulm_kq_tile_bytes(p->type, L->K) < 0 || p->n0 != next || p->N <= 0 || p->tiles == NULL) return -1;
        next += p->N;
    }
    return next == L->N && L->n_parts > 0 ? 0 : -1;
}

/* The tiles of thread `id` of T: those whose first byte (counting over all parts in order) lies in the
 * thread's T-th of the bytes; calls fn(part, tile) on each. */
#define FOR_MY_TILES(L, id, T, BODY)                                                                           \
    do {                                                                                                       \
        int64_t total_ = 0, offset_ = 0;                                                                       \
        for (int64_t i_ = 0; i_ < (L)->n_parts; i_++)                                                          \
            total_ += ((L)->parts[i_].N + 31) / 32 * ulm_kq_tile_bytes((L)->parts[i_].type, (L)->K);           \
        const int64_t lo_ = total_ / (T) * (id) + total_ % (T) * (id) / (T);                                   \
        const int64_t hi_ = total_ / (T) * ((id) + 1) + total_ % (T) * ((id) + 1) / (T);                       \
        for (int64_t i_ = 0; i_ < (L)->n_parts; i_++) {                                                        \
            const ulm_kq_part *part_ = (L)->parts + i_;                                                        \
            const int64_t size_ = ulm_kq_tile_bytes(part_->type, (L)->K), n_ = (part_->N + 31) / 32;           \
            const int64_t first_ = lo_ <= offset_ ? 0 : (lo_ - offset_ + size_ - 1) / size_;                   \
            const int64_t end_ = hi_ <= offset_ ? 0 : (hi_ - offset_ + size_ - 1) / size_;                     \
            for (int64_t t_ = first_; t_ < (end_ < n_ ? end_ : n_); t_++) {                                    \
                const ulm_kq_part *part = part_;                                                               \
                const int64_t t = t_;                                                                          \
                BODY;                                                                                          \
            }                                                                                                  \
            offset_ += n_ * size_;                                                                             \
        }                                                                                                      \
    } while (0)

/* ulm_kq_mm: out [M, N] = x [M, K] · Wᵀ (+ bias) for the linear L; x bf16 (fp32 when x_f32), out bf16 (fp32
 * when out_f32), both contiguous. Of a precise linear, the first P rows take int16 activations and the
 * others int8 (a fused step's decoded tokens and prompt tokens); of another, every row int8. Each row's
 * result depends on its own values and precision only. 0, -1 for a malformed descriptor or P, -2 without
 * memory. */
int ulm_kq_mm(const ulm_kq_linear *L, const void *x, int x_f32, int64_t M, int64_t P, void *out, int out_f32) {
    if (checked(L) != 0 || M < 0 || P < 0 || P > M) return -1;
    if (!L->precise) P = 0;
    const int64_t K = L->K, G = K / 32;
    const int64_t bytes = ((M + P) * K + 63) & ~(int64_t)63;
    int8_t *buffer = malloc((size_t)bytes + sizeof(float) * (size_t)(5 * M * G));
    if (buffer == NULL) return -2;
    float *scales = (float *)(buffer + bytes);
    const acts a = {buffer, P > 0 ? buffer + M * K : NULL, scales, scales + M * G, (int32_t *)(scales + 2 * M * G),
                    (int32_t *)(scales + 3 * M * G), K, G, P};
    quantise_rows(x, x_f32, M, &a);
#pragma omp parallel
    {
        const int id = omp_get_thread_num(), T = omp_get_num_threads();
        FOR_MY_TILES(L, id, T, run_tile(L, part, t, &a, M, out, out_f32));
    }
    free(buffer);
    return 0;
}

/* Q4_K/Q5_K: the (scale d·sc, offset −dmin·m) of each sub-block j and half h of a tile block. */
INLINE void q4k_affine(const uint8_t *b, __m512 scale[8][2], __m512 offset[8][2]) {
    __m256i sc[8], mn[8];
    scales_mins(b + KQ_SCALES, sc, mn);
    for (int j = 0; j < 8; j++)
        for (int h = 0; h < 2; h++) {
            const __m128i s = h ? _mm256_extracti128_si256(sc[j], 1) : _mm256_castsi256_si128(sc[j]);
            const __m128i m = h ? _mm256_extracti128_si256(mn[j], 1) : _mm256_castsi256_si128(mn[j]);
            scale[j][h] = _mm512_mul_ps(u8_ps(s), half16(b + KQ_D + 32 * h));
            offset[j][h] = _mm512_sub_ps(_mm512_setzero_ps(), _mm512_mul_ps(u8_ps(m), half16(b + KQ_DMIN + 32 * h)));
        }
}

/* A register of 16 rows × 4 k (byte 4j + t) as w = u·scale + offset into Wᵀ rows k0 .. k0 + 3 at column n. */
INLINE void unpack_quad(__m512i u, __m512 scale, __m512 offset, bf16 *out, int64_t N, int64_t k0, int64_t n,
                        __mmask16 keep) {
    /* bytes 4j + t → [t][j]: within each 128-bit lane, then the lanes' dwords gathered by t */
    const __m512i by_t = _mm512_set4_epi32(0x0f0b0703, 0x0e0a0602, 0x0d090501, 0x0c080400);
    const __m512i lanes = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    const __m512i q = _mm512_permutexvar_epi32(lanes, _mm512_shuffle_epi8(u, by_t));
    const __m128i by_k[4] = {_mm512_extracti32x4_epi32(q, 0), _mm512_extracti32x4_epi32(q, 1),
                             _mm512_extracti32x4_epi32(q, 2), _mm512_extracti32x4_epi32(q, 3)};
    for (int t = 0; t < 4; t++)
        _mm256_mask_storeu_epi16(out + (k0 + t) * N + n, keep, to_bf16(_mm512_fmadd_ps(u8_ps(by_k[t]), scale, offset)));
}

/* Lanes of one half (16 outputs from column n) inside both the part's rows and the columns lo .. hi − 1. */
INLINE __mmask16 lanes_in(int64_t n, int64_t part_end, int64_t lo, int64_t hi) {
    uint32_t keep = 0;
    for (int i = 0; i < 16; i++) keep |= (uint32_t)(n + i < part_end && n + i >= lo && n + i < hi) << i;
    return (__mmask16)keep;
}

/* Tile t of a part as its columns within lo .. hi − 1 of Wᵀ, into out [K, hi − lo]. */
static void unpack_tile(const ulm_kq_linear *L, const ulm_kq_part *part, int64_t t, int64_t lo, int64_t hi, bf16 *out) {
    const int64_t K = L->K, N = hi - lo, n = part->n0 + 32 * t - lo;
    const __mmask16 keep[2] = {lanes_in(n + lo, part->n0 + part->N, lo, hi), lanes_in(n + lo + 16, part->n0 + part->N, lo, hi)};
    const uint8_t *tile = part->tiles + t * ulm_kq_tile_bytes(part->type, K);
    const __m512i sixteen = _mm512_set1_epi8(16);
    if (part->type == ULM_Q4_K || part->type == ULM_Q5_K) {
        const int five = part->type == ULM_Q5_K;
        for (int64_t s = 0; s < K / 256; s++) {
            const uint8_t *b = tile + s * (five ? Q5K_BLOCK : Q4K_BLOCK);
            __m512 scale[8][2], offset[8][2];
            q4k_affine(b, scale, offset);
            for (int j = 0; j < 8; j++) {
                for (int quad = 8 * j; quad < 8 * j + 8; quad++) {
                    const __m512i v = _mm512_loadu_si512(b + kq_quad(five, quad));
                    __m512i u[2] = {low_nibbles(v), high_nibbles(v)};
                    for (int h = 0; h < 2; h++) {
                        if (five) u[h] = _mm512_mask_add_epi8(u[h], mask_at(b + kq_mask(quad, h)), u[h], sixteen);
                        unpack_quad(u[h], scale[j][h], offset[j][h], out, N, s * 256 + 4 * quad, n + 16 * h, keep[h]);
                    }
                }
            }
        }
    } else if (part->type == ULM_Q6_K) {
        for (int64_t s = 0; s < K / 256; s++) {
            const uint8_t *b = tile + s * Q6K_BLOCK;
            for (int p = 0; p < 32; p++) {
                __m512i q[2][2];
                q6_pair(b + q6k_pair(p), q);
                const int u = p / 2; /* the sub-block of 16 this pair of quads is in */
                for (int h = 0; h < 2; h++) {
                    const __m512 scale = _mm512_mul_ps(
                        i8_ps(_mm_loadu_si128((const __m128i *)(b + q6k_scales(u) + 16 * h))), half16(b + KQ_D + 32 * h));
                    const __m512 offset = _mm512_mul_ps(scale, _mm512_set1_ps(-32.0f));
                    for (int i = 0; i < 2; i++)
                        unpack_quad(q[i][h], scale, offset, out, N, s * 256 + 4 * (2 * p + i), n + 16 * h, keep[h]);
                }
            }
        }
    } else {
        const int five = part->type == ULM_Q5_0;
        for (int64_t g = 0; g < K / 32; g++) {
            const uint8_t *b = tile + g * (five ? Q50_BLOCK : Q80_BLOCK);
            for (int h = 0; h < 2; h++) {
                const __m512 scale = half16(b + KQ_D + 32 * h);
                const __m512 offset = _mm512_mul_ps(scale, _mm512_set1_ps(five ? -16.0f : -128.0f));
                for (int c = 0; c < 8; c++) {
                    __m512i u;
                    if (five) {
                        const __m512i v = _mm512_loadu_si512(b + Q50_QS + c * 64);
                        u = h ? high_nibbles(v) : low_nibbles(v);
                        u = _mm512_mask_add_epi8(u, mask_at(b + Q50_QH + c * 16 + 8 * h), u, sixteen);
                    } else {
                        u = _mm512_loadu_si512(b + Q80_Q + (2 * c + h) * 64);
                    }
                    unpack_quad(u, scale, offset, out, N, 32 * g + 4 * c, n + 16 * h, keep[h]);
                }
            }
        }
    }
}

/* ulm_kq_dequant_t: columns lo .. hi − 1 of the weight of L transposed, Wᵀ[:, lo:hi] as out [K, hi − lo] bf16
 * (contiguous), each value its exact fp32 dequantisation (as ulm_kq_dequant_rows gives it) rounded to nearest
 * even. The tiles in the range are shared out over OpenMP threads. 0, or -1 for a malformed descriptor or range. */
int ulm_kq_dequant_t(const ulm_kq_linear *L, int64_t lo, int64_t hi, bf16 *out) {
    if (checked(L) != 0 || lo < 0 || hi > L->N || lo >= hi) return -1;
    int64_t first[64], count = 0; /* per part: the flat index of its first tile in the range */
    if (L->n_parts > 64) return -1;
    for (int64_t i = 0; i < L->n_parts; i++) {
        const ulm_kq_part *p = L->parts + i;
        const int64_t a = lo > p->n0 ? (lo - p->n0) / 32 : 0, b = hi < p->n0 + p->N ? (hi - p->n0 + 31) / 32 : (p->N + 31) / 32;
        first[i] = count;
        count += b > a ? b - a : 0;
    }
#pragma omp parallel for schedule(static)
    for (int64_t f = 0; f < count; f++) {
        int64_t i = L->n_parts - 1;
        while (first[i] > f) i--;
        const ulm_kq_part *p = L->parts + i;
        const int64_t a = lo > p->n0 ? (lo - p->n0) / 32 : 0;
        unpack_tile(L, p, a + f - first[i], lo, hi, out);
    }
    return 0;
}

#else

int ulm_kq_vnni(void) { return 0; }

#endif
