/* µLM's int4 matmul for few rows (decode steps, short prefill chunks) on AVX-512 VNNI: 4-bit weights times
 * 8-bit activations with integer dot products (`vpdpbusd`: 64 multiply-adds an instruction), the scheme
 * llama.cpp runs for Q4 weights. torch's CPU int4 kernel widens every weight to fp32 and is compute-bound
 * at a third of this machine's memory bandwidth, its cost growing ~1.7× from 1 to 4 rows; this one reads
 * each weight byte once for up to 4 rows and does a quarter of the arithmetic.
 *
 * The weight layout ("vnni"): blocks of 32 output rows, each K / 2 bytes; within a block, for each quad of
 * k (k = 4c .. 4c + 3), 64 bytes whose byte 4j + t holds row j's value at k = 4c + t in its low nibble and
 * row 16 + j's in its high nibble. So one 64-byte load and two masks give two registers of 16 lanes × 4
 * consecutive k, which is what vpdpbusd sums. `ulm_int4_repack_vnni` rewrites torch's CPU packing as it,
 * in place (the same size; see ulm_dequant_int4_bf16_t in ulm_kernels.c for that layout). The bf16 (scale,
 * zero) pairs, w = (q − 8)·scale + zero, go block by block too, [N / 32, K / 32, 32, 2] (Int4Linear reorders
 * them), so that a block's scales stream in order with its weights: 10-17% faster than torch's
 * [K / 32, N, 2], whose scales a block reads at a stride of N pairs.
 *
 * Activations are quantised per row and group of 32 to int8 with a scale (absmax / 127, rounded to
 * nearest), llama.cpp's Q8 for activations. Then per group, with xq the int8 values and d their scale,
 *   Σₖ xₖ·wₖ ≈ d·(scale·Σₖ xqₖ·qₖ + (zero − 8·scale)·Σₖ xqₖ),
 * integer sums exact, the rest fp32 in a fixed order per output: a row's result does not depend on the
 * other rows of its batch or on the thread count. Work is shared over OpenMP threads (torch's pool) by
 * blocks of 32 outputs; rows go 4 at a time over a block's bytes.
 *
 * Compiled where the target has AVX-512 VNNI and BW, or else AVX2 and FMA (the same layout and arithmetic
 * in 256-bit registers: vpmaddubsw + vpmaddwd for vpdpbusd; on a 2-core AVX2 EPYC torch's kernel, which
 * widens to fp32 there too, was the alternative); `ulm_int4_vnni()` says whether it was (Python keeps
 * torch's layout and kernel otherwise). N % 32 == 0, K % 32 == 0.
 */
#include <stdint.h>
#include <stdlib.h>
#include <math.h>
#include <string.h>

#include "ulm_bf16.h"
#include "ulm_kernels.h"

#if defined(__AVX512VNNI__) && defined(__AVX512BW__) && defined(__AVX512F__)
#define ULM_INT4_AVX512 1
#elif defined(__AVX2__) && defined(__FMA__)
#define ULM_INT4_AVX2 1
#endif

#if defined(ULM_INT4_AVX512) || defined(ULM_INT4_AVX2)
#include <immintrin.h>

#define GROUP 32
#define ROWS 4 /* rows sharing one pass over a block's bytes */

int ulm_int4_vnni(void) { return 1; }

/* torch's CPU int4 packing of W [N, K] (N % 64 == 0) rewritten in place as the vnni layout. torch packs
 * blocks of `torch_block` rows (64 where it runs AVX-512, 32 with AVX2) as [K, torch_block / 2] bytes, rows
 * i and i + torch_block / 2 in the low and high nibbles; its blocks and the vnni blocks of the same rows
 * cover the same bytes, so each torch block is copied aside and written back. 0, or -1 without memory or for
 * another block size (the weight is then untouched). */
int ulm_int4_repack_vnni(uint8_t *packed, int64_t N, int64_t K, int64_t torch_block) {
    if (torch_block != 64 && torch_block != 32) return -1;
    const int64_t width = torch_block / 2; /* bytes per k of a torch block */
    int failed = 0;
#pragma omp parallel
    {
        uint8_t *rows = malloc((size_t)(K * width));
        if (rows == NULL) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp barrier
#pragma omp for schedule(static)
        for (int64_t block = 0; block < N / torch_block; block++) {
            if (failed) continue;
            memcpy(rows, packed + block * K * width, (size_t)(K * width));
            for (int half = 0; half < torch_block / 32; half++) {
                uint8_t *out = packed + (block * (torch_block / 32) + half) * 16 * K;
                for (int64_t c = 0; c < K / 4; c++)
                    for (int j = 0; j < 16; j++)
                        for (int t = 0; t < 4; t++) {
                            const uint8_t *at = rows + (4 * c + t) * width;
                            if (torch_block == 32) { /* rows j and 16 + j share a byte already */
                                out[c * 64 + 4 * j + t] = at[j];
                            } else { /* rows 0..31 low, 32..63 high: this half's nibble of rows j, 16 + j */
                                const int shift = 4 * half;
                                out[c * 64 + 4 * j + t] =
                                    (uint8_t)(((at[j] >> shift) & 15) | (((at[16 + j] >> shift) & 15) << 4));
                            }
                        }
            }
        }
        free(rows);
    }
    return failed ? -1 : 0;
}

#if defined(ULM_INT4_AVX512)

/* 16 floats rounded to bf16 (nearest even; finite values) */
INLINE __m256i to_bf16(__m512 f) {
    const __m512i u = _mm512_castps_si512(f);
    const __m512i odd = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
    const __m512i r = _mm512_add_epi32(u, _mm512_add_epi32(odd, _mm512_set1_epi32(0x7fff)));
    return _mm512_cvtepi32_epi16(_mm512_srli_epi32(r, 16));
}

/* to_bf16 for any values: a NaN stays a (quiet) NaN, as bf16_out keeps it */
INLINE __m256i to_bf16_any(__m512 f) {
    const __mmask16 nan = _mm512_cmp_ps_mask(f, f, _CMP_UNORD_Q);
    const __m512i quiet = _mm512_or_si512(_mm512_srli_epi32(_mm512_castps_si512(f), 16), _mm512_set1_epi32(0x40));
    return _mm512_mask_cvtepi32_epi16(to_bf16(f), nan, quiet);
}

INLINE __m512 from_bf16(__m256i h) { return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16)); }

/* Each group's (scale, zero − 8·scale) for 16 outputs from their 16 (scale, zero) bf16 pairs. */
INLINE void scale_zero(const bf16 *pairs, __m512 *scale, __m512 *zero) {
    const __m512i p = _mm512_loadu_si512(pairs);
    *scale = _mm512_castsi512_ps(_mm512_slli_epi32(p, 16));
    const __m512 z = _mm512_castsi512_ps(_mm512_and_si512(p, _mm512_set1_epi32((int)0xffff0000u)));
    *zero = _mm512_fnmadd_ps(_mm512_set1_ps(8.0f), *scale, z);
}

/* Rows r < R (int8 xq [R, K], scales d [R, G], sums xs [R, G]) times one block's 32 outputs n0 .. n0 + 31
 * (its weights w, its scale and zero pairs sz [G, 32, 2]). */
INLINE void block_rows(int R, const int8_t *xq, const float *d, const int32_t *xs, int64_t K, const uint8_t *w,
                       const bf16 *sz, int64_t N, int64_t n0, void *out, int out_f32) {
    const int64_t G = K / GROUP;
    const __m512i nibble = _mm512_set1_epi8(0x0f);
    __m512 tot_lo[ROWS], tot_hi[ROWS];
    for (int r = 0; r < R; r++) tot_lo[r] = tot_hi[r] = _mm512_setzero_ps();
    for (int64_t g = 0; g < G; g++) {
        __m512i acc_lo[ROWS], acc_hi[ROWS];
        for (int r = 0; r < R; r++) acc_lo[r] = acc_hi[r] = _mm512_setzero_si512();
        const uint8_t *wg = w + g * (GROUP / 4) * 64;
        for (int c = 0; c < GROUP / 4; c++) {
            const __m512i v = _mm512_loadu_si512(wg + c * 64);
            const __m512i lo = _mm512_and_si512(v, nibble), hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), nibble);
            for (int r = 0; r < R; r++) {
                int32_t quad;
                memcpy(&quad, xq + r * K + g * GROUP + c * 4, 4);
                const __m512i x = _mm512_set1_epi32(quad);
                acc_lo[r] = _mm512_dpbusd_epi32(acc_lo[r], lo, x);
                acc_hi[r] = _mm512_dpbusd_epi32(acc_hi[r], hi, x);
            }
        }
        __m512 s_lo, z_lo, s_hi, z_hi;
        scale_zero(sz + g * 64, &s_lo, &z_lo);
        scale_zero(sz + g * 64 + 32, &s_hi, &z_hi);
        for (int r = 0; r < R; r++) {
            const __m512 dr = _mm512_set1_ps(d[r * G + g]), sum = _mm512_set1_ps((float)xs[r * G + g]);
            const __m512 lo = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc_lo[r]), s_lo, _mm512_mul_ps(z_lo, sum));
            const __m512 hi = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc_hi[r]), s_hi, _mm512_mul_ps(z_hi, sum));
            tot_lo[r] = _mm512_fmadd_ps(dr, lo, tot_lo[r]);
            tot_hi[r] = _mm512_fmadd_ps(dr, hi, tot_hi[r]);
        }
    }
    for (int r = 0; r < R; r++) {
        if (out_f32) {
            float *o = (float *)out + r * N + n0;
            _mm512_storeu_ps(o, tot_lo[r]);
            _mm512_storeu_ps(o + 16, tot_hi[r]);
        } else {
            bf16 *o = (bf16 *)out + r * N + n0;
            _mm256_storeu_si256((__m256i *)o, to_bf16_any(tot_lo[r]));
            _mm256_storeu_si256((__m256i *)(o + 16), to_bf16_any(tot_hi[r]));
        }
    }
}

/* 32 activations (bf16) → int8 q = rint(x · 127 / absmax), their scale absmax / 127 and the sum of q. */
INLINE void quantise_group(const bf16 *x, int8_t *q, float *d, int32_t *sum) {
    const __m512 lo = from_bf16(_mm256_loadu_si256((const __m256i *)x));
    const __m512 hi = from_bf16(_mm256_loadu_si256((const __m256i *)(x + 16)));
    const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(lo), _mm512_abs_ps(hi)));
    const __m512 inv = _mm512_set1_ps(amax > 0.0f ? 127.0f / amax : 0.0f);
    const __m512i qlo = _mm512_cvtps_epi32(_mm512_mul_ps(lo, inv)), qhi = _mm512_cvtps_epi32(_mm512_mul_ps(hi, inv));
    _mm_storeu_si128((__m128i *)q, _mm512_cvtepi32_epi8(qlo));
    _mm_storeu_si128((__m128i *)(q + 16), _mm512_cvtepi32_epi8(qhi));
    *d = amax / 127.0f;
    *sum = _mm512_reduce_add_epi32(_mm512_add_epi32(qlo, qhi));
}

/* The weight transposed, Wᵀ [K, N] bf16, from the vnni layout: the same bits ulm_dequant_int4_bf16_t gives
 * for torch's layout (q·scale rounded to bf16, plus zero − 8·scale rounded to bf16, rounded). */
void ulm_dequant_int4_vnni_bf16_t(const uint8_t *packed, const bf16 *scales_zeros, int64_t N, int64_t K, bf16 *out) {
    /* bytes 4j + t of a quad → [t][j]: within each 128-bit lane, then the lanes' dwords gathered by t */
    const __m512i by_t = _mm512_set4_epi32(0x0f0b0703, 0x0e0a0602, 0x0d090501, 0x0c080400);
    const __m512i lanes = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    const __m512i nibble = _mm512_set1_epi8(0x0f);
#pragma omp parallel for schedule(static)
    for (int64_t g = 0; g < K / GROUP; g++)
        for (int64_t b = 0; b < N / 32; b++) {
            __m512 s[2], z[2];
            for (int h = 0; h < 2; h++) {
                scale_zero(scales_zeros + ((b * (K / GROUP) + g) * 32 + 16 * h) * 2, &s[h], &z[h]);
                z[h] = from_bf16(to_bf16(z[h]));
            }
            for (int64_t c = g * GROUP / 4; c < (g + 1) * GROUP / 4; c++) {
                const __m512i v = _mm512_loadu_si512(packed + b * 16 * K + c * 64);
                const __m512i half[2] = {_mm512_and_si512(v, nibble), _mm512_and_si512(_mm512_srli_epi16(v, 4), nibble)};
                for (int h = 0; h < 2; h++) {
                    const __m512i q = _mm512_permutexvar_epi32(lanes, _mm512_shuffle_epi8(half[h], by_t));
                    const __m128i by_k[4] = {_mm512_extracti32x4_epi32(q, 0), _mm512_extracti32x4_epi32(q, 1),
                                             _mm512_extracti32x4_epi32(q, 2), _mm512_extracti32x4_epi32(q, 3)};
                    for (int t = 0; t < 4; t++) {
                        const __m512 qf = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(by_k[t]));
                        const __m512 w = _mm512_add_ps(from_bf16(to_bf16(_mm512_mul_ps(qf, s[h]))), z[h]);
                        _mm256_storeu_si256((__m256i *)(out + (4 * c + t) * N + b * 32 + 16 * h), to_bf16(w));
                    }
                }
            }
        }
}

#else /* AVX2 + FMA: the same layout and arithmetic in 256-bit registers; vpdpbusd becomes vpmaddubsw (u8 × s8
       * pairs to int16: 2·15·127 cannot saturate) and vpmaddwd against ones (pairs to int32) */

/* acc + Σ of each 4 consecutive u·s bytes, per 32-bit lane */
INLINE __m256i dot4(__m256i acc, __m256i u, __m256i s) {
    return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1)));
}

/* Each group's (scale, zero − 8·scale) for 8 outputs from their 8 (scale, zero) bf16 pairs. */
INLINE void scale_zero8(const bf16 *pairs, __m256 *scale, __m256 *zero) {
    const __m256i p = _mm256_loadu_si256((const __m256i *)pairs);
    *scale = _mm256_castsi256_ps(_mm256_slli_epi32(p, 16));
    const __m256 z = _mm256_castsi256_ps(_mm256_and_si256(p, _mm256_set1_epi32((int)0xffff0000u)));
    *zero = _mm256_fnmadd_ps(_mm256_set1_ps(8.0f), *scale, z);
}

/* Rows r < R times one block's 32 outputs, as block_rows of the AVX-512 build: quarter q of the accumulators
 * holds outputs 8q .. 8q + 7 (the low nibbles of a quad's two 32-byte halves are rows 0-7 and 8-15, the high
 * ones 16-23 and 24-31). */
INLINE void block_rows(int R, const int8_t *xq, const float *d, const int32_t *xs, int64_t K, const uint8_t *w,
                       const bf16 *sz, int64_t N, int64_t n0, void *out, int out_f32) {
    const int64_t G = K / GROUP;
    const __m256i nibble = _mm256_set1_epi8(0x0f);
    __m256 tot[ROWS][4];
    for (int r = 0; r < R; r++)
        for (int q = 0; q < 4; q++) tot[r][q] = _mm256_setzero_ps();
    for (int64_t g = 0; g < G; g++) {
        __m256i acc[ROWS][4];
        for (int r = 0; r < R; r++)
            for (int q = 0; q < 4; q++) acc[r][q] = _mm256_setzero_si256();
        const uint8_t *wg = w + g * (GROUP / 4) * 64;
        for (int c = 0; c < GROUP / 4; c++) {
            const __m256i v0 = _mm256_loadu_si256((const __m256i *)(wg + c * 64));
            const __m256i v1 = _mm256_loadu_si256((const __m256i *)(wg + c * 64 + 32));
            const __m256i part[4] = {_mm256_and_si256(v0, nibble), _mm256_and_si256(v1, nibble),
                                     _mm256_and_si256(_mm256_srli_epi16(v0, 4), nibble),
                                     _mm256_and_si256(_mm256_srli_epi16(v1, 4), nibble)};
            for (int r = 0; r < R; r++) {
                int32_t quad;
                memcpy(&quad, xq + r * K + g * GROUP + c * 4, 4);
                const __m256i x = _mm256_set1_epi32(quad);
                for (int q = 0; q < 4; q++) acc[r][q] = dot4(acc[r][q], part[q], x);
            }
        }
        __m256 s[4], z[4];
        for (int q = 0; q < 4; q++) scale_zero8(sz + g * 64 + 16 * q, &s[q], &z[q]);
        for (int r = 0; r < R; r++) {
            const __m256 dr = _mm256_set1_ps(d[r * G + g]), sum = _mm256_set1_ps((float)xs[r * G + g]);
            for (int q = 0; q < 4; q++) {
                const __m256 v = _mm256_fmadd_ps(_mm256_cvtepi32_ps(acc[r][q]), s[q], _mm256_mul_ps(z[q], sum));
                tot[r][q] = _mm256_fmadd_ps(dr, v, tot[r][q]);
            }
        }
    }
    for (int r = 0; r < R; r++) {
        float f[32];
        for (int q = 0; q < 4; q++) _mm256_storeu_ps(f + 8 * q, tot[r][q]);
        if (out_f32) {
            memcpy((float *)out + r * N + n0, f, sizeof f);
        } else {
            bf16 *o = (bf16 *)out + r * N + n0;
            for (int i = 0; i < 32; i++) o[i] = bf16_out(f[i]);
        }
    }
}

/* 32 activations (bf16) → int8 q = rint(x · 127 / absmax), their scale absmax / 127 and the sum of q. */
INLINE void quantise_group(const bf16 *x, int8_t *q, float *d, int32_t *sum) {
    float amax = 0.0f;
    for (int i = 0; i < GROUP; i++) {
        const float a = fabsf(bf16_in(x[i]));
        amax = a > amax ? a : amax;
    }
    const float inv = amax > 0.0f ? 127.0f / amax : 0.0f;
    int32_t total = 0;
    for (int i = 0; i < GROUP; i++) {
        q[i] = (int8_t)lrintf(bf16_in(x[i]) * inv);
        total += q[i];
    }
    *d = amax / 127.0f;
    *sum = total;
}

/* Wᵀ [K, N] bf16 from the vnni layout, the same bits as the AVX-512 build gives (q·scale rounded to bf16,
 * plus zero − 8·scale rounded to bf16, rounded). */
void ulm_dequant_int4_vnni_bf16_t(const uint8_t *packed, const bf16 *scales_zeros, int64_t N, int64_t K, bf16 *out) {
    const int64_t G = K / GROUP;
#pragma omp parallel for schedule(static)
    for (int64_t b = 0; b < N / 32; b++)
        for (int64_t g = 0; g < G; g++) {
            float s[32], z[32];
            for (int i = 0; i < 32; i++) {
                const bf16 *pair = scales_zeros + ((b * G + g) * 32 + i) * 2;
                s[i] = bf16_in(pair[0]);
                z[i] = bf16_in(bf16_out(bf16_in(pair[1]) - 8.0f * s[i]));
            }
            for (int64_t c = g * GROUP / 4; c < (g + 1) * GROUP / 4; c++) {
                const uint8_t *quad = packed + b * 16 * K + c * 64;
                for (int j = 0; j < 16; j++)
                    for (int t = 0; t < 4; t++)
                        for (int h = 0; h < 2; h++) {
                            const int i = 16 * h + j; /* the output within the block */
                            const float q = (float)((quad[4 * j + t] >> (4 * h)) & 15);
                            out[(4 * c + t) * N + b * 32 + i] = bf16_out(bf16_in(bf16_out(q * s[i])) + z[i]);
                        }
            }
        }
}

#endif /* the AVX-512 or AVX2 helpers */

/* x [M, K] bf16 → out [M, N] (fp32 when out_f32, else bf16) against W in the vnni layout (packed, and
 * scales_zeros [N / 32, K / 32, 32, 2]). 0, or -1 without memory. */
int ulm_int4_vnni_mm(const bf16 *x, int64_t M, int64_t K, const uint8_t *packed, const bf16 *scales_zeros,
                     int64_t N, void *out, int out_f32) {
    const int64_t G = K / GROUP;
    int8_t *xq = malloc((size_t)(M * K) + sizeof(float) * (size_t)(2 * M * G));
    if (xq == NULL) return -1;
    float *d = (float *)(xq + ((M * K + 3) & ~(int64_t)3));
    int32_t *xs = (int32_t *)(d + M * G);
    for (int64_t m = 0; m < M; m++)
        for (int64_t g = 0; g < G; g++) quantise_group(x + m * K + g * GROUP, xq + m * K + g * GROUP, d + m * G + g,
                                                        xs + m * G + g);
    const size_t width = out_f32 ? sizeof(float) : sizeof(bf16);
#pragma omp parallel for schedule(static)
    for (int64_t b = 0; b < N / 32; b++) {
        const uint8_t *w = packed + b * 16 * K;
        const bf16 *sz = scales_zeros + b * G * 64;
        for (int64_t m0 = 0; m0 < M; m0 += ROWS) {
            const int R = M - m0 < ROWS ? (int)(M - m0) : ROWS;
            const int8_t *xr = xq + m0 * K;
            const float *dr = d + m0 * G;
            const int32_t *sr = xs + m0 * G;
            void *o = (char *)out + (size_t)(m0 * N) * width;
            switch (R) {
            case 1: block_rows(1, xr, dr, sr, K, w, sz, N, b * 32, o, out_f32); break;
            case 2: block_rows(2, xr, dr, sr, K, w, sz, N, b * 32, o, out_f32); break;
            case 3: block_rows(3, xr, dr, sr, K, w, sz, N, b * 32, o, out_f32); break;
            default: block_rows(4, xr, dr, sr, K, w, sz, N, b * 32, o, out_f32); break;
            }
        }
    }
    free(xq);
    return 0;
}

#else

int ulm_int4_vnni(void) { return 0; }

#endif
