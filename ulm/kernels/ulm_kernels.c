/* µLM's native CPU kernels, compiled on first use by ulm/kernels/native.py and called through ctypes.
 *
 * Decode-step attention: one new query per row against that row's cached keys, grouped-query (the
 * Hq / Hkv query heads of a KV head read its keys once). Scores, softmax and the weighted sum run in fp32
 * (bf16 inputs widened; outputs rounded to nearest even, as torch rounds). ulm_attend_* run on one thread
 * (microseconds of work, less than a thread hand-off costs); the fused layer step shares its work over
 * OpenMP threads in units of (row, KV head, span of keys).
 *
 * ulm_attend_bf16 / ulm_attend_f32: attention alone, on tensors torch has laid out.
 *   q      [B, Hq, hd]       strides qs_b, qs_h (elements); the last dim contiguous
 *   k, v   [B, Hkv, S, hd]   strides ks_b, ks_h, ks_t (v: vs_*); the last dim contiguous
 *   spans  [B, 2] int64      row b attends to key positions lo ≤ t < hi (its causal/sliding window)
 *   out    [B, Hq, hd]       contiguous
 *
 * ulm_decode_layer_bf16: one layer's whole step after the q/k/v matmul: rotary embedding of q and k
 * (rounded exactly as torch's bf16 `x·cos + rotate_half(x)·sin`), the new k and v written into the cache,
 * attention. `layer` holds what is fixed while a cache is used (see ulm_layer); meta [B, 3] int64 holds
 * each row's (cache row, lo, hi): the new token sits at position hi − 1.
 *   qkv    [B, (Hq + 2·Hkv)·hd]   the fused projection's output, rows [q heads | k heads | v heads]
 *   out    [B, Hq·hd]
 *
 * Every function returns 0, or -1 when a row has no key (hi ≤ lo) or scratch memory cannot be had.
 *
 * ulm_dequant_int4_bf16_t unpacks torch's CPU int4 weight layout to bf16 (for the prefill's dense GEMMs);
 * ulm_refine_logits is the fast LM head's exact second pass over its candidates. See each below.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ulm_bf16.h"
#include "ulm_math.h"
#include "ulm_kernels.h"

/* 16 floats: one AVX-512 register, two AVX ones, four SSE ones; GCC and clang lower it to what -march has. */
typedef float f32x16 __attribute__((vector_size(64)));
typedef float f32x8 __attribute__((vector_size(32)));
typedef float f32x4 __attribute__((vector_size(16)));
typedef uint16_t u16x16 __attribute__((vector_size(32)));
typedef uint32_t u32x16 __attribute__((vector_size(64)));

#define MAX_CHUNKS 16 /* head dims up to 256 take the vector path */

INLINE float f32_in(float f) { return f; }
INLINE float f32_out(float f) { return f; }

INLINE f32x16 load16_bf16(const bf16 *p) {
    u16x16 h;
    memcpy(&h, p, sizeof h);
    u32x16 w = __builtin_convertvector(h, u32x16) << 16;
    f32x16 f;
    memcpy(&f, &w, sizeof f);
    return f;
}

INLINE f32x16 load16_f32(const float *p) {
    f32x16 f;
    memcpy(&f, p, sizeof f);
    return f;
}

/* The sum of the 16 lanes, as a tree of halves (a fixed order: deterministic). */
INLINE float hsum(f32x16 v) {
    f32x8 h8 = __builtin_shufflevector(v, v, 0, 1, 2, 3, 4, 5, 6, 7)
             + __builtin_shufflevector(v, v, 8, 9, 10, 11, 12, 13, 14, 15);
    f32x4 h4 = __builtin_shufflevector(h8, h8, 0, 1, 2, 3) + __builtin_shufflevector(h8, h8, 4, 5, 6, 7);
    return (h4[0] + h4[2]) + (h4[1] + h4[3]);
}

/* s[0:n] ← softmax(s[0:n]) */
INLINE void softmax(float *s, int64_t n) {
    float top = s[0], total = 0.0f;
    for (int64_t t = 1; t < n; t++) top = s[t] > top ? s[t] : top;
    for (int64_t t = 0; t < n; t++) s[t] = exp_nonpositive(s[t] - top);
    for (int64_t t = 0; t < n; t++) total += s[t];
    const float inv = 1.0f / total;
    for (int64_t t = 0; t < n; t++) s[t] *= inv;
}

/* One KV head: the g queries qf [g, hd] (fp32, already scaled) against the n keys and values that start
 * at kr and vr (position strides ks_t, vs_t), into dst [g, hd]. score: scratch [g, n]. hd % 16 == 0 takes
 * the vector path, which keeps the g queries and g sums in registers where the caller inlines it with
 * g and hd constant (`SPECIALISED`); any other hd takes the scalar path. */
#define DEFINE_GROUP(NAME, T, IN, OUT, LOAD16)                                                                 \
    INLINE void NAME(const float *qf, const T *kr, int64_t ks_t, const T *vr, int64_t vs_t, int64_t n,         \
                     float *score, T *dst, int64_t g, int64_t hd) {                                            \
        if (hd % 16 == 0 && g * (hd / 16) <= MAX_CHUNKS * 8) {                                                 \
            const int64_t C = hd / 16;                                                                         \
            f32x16 row[MAX_CHUNKS], q[MAX_CHUNKS * 8], acc[MAX_CHUNKS * 8];                                    \
            for (int64_t i = 0; i < g * C; i++) q[i] = load16_f32(qf + 16 * i);                                \
            for (int64_t t = 0; t < n; t++) {                                                                  \
                for (int64_t c = 0; c < C; c++) row[c] = LOAD16(kr + t * ks_t + 16 * c);                       \
                for (int64_t j = 0; j < g; j++) {                                                              \
                    f32x16 sum = row[0] * q[j * C];                                                            \
                    for (int64_t c = 1; c < C; c++) sum += row[c] * q[j * C + c];                              \
                    score[j * n + t] = hsum(sum);                                                              \
                }                                                                                              \
            }                                                                                                  \
            for (int64_t j = 0; j < g; j++) softmax(score + j * n, n);                                         \
            for (int64_t i = 0; i < g * C; i++) acc[i] = (f32x16){0};                                          \
            for (int64_t t = 0; t < n; t++) {                                                                  \
                for (int64_t c = 0; c < C; c++) row[c] = LOAD16(vr + t * vs_t + 16 * c);                       \
                for (int64_t j = 0; j < g; j++)                                                                \
                    for (int64_t c = 0; c < C; c++) acc[j * C + c] += score[j * n + t] * row[c];               \
            }                                                                                                  \
            for (int64_t i = 0; i < g * C; i++)                                                                \
                for (int l = 0; l < 16; l++) dst[16 * i + l] = OUT(acc[i][l]);                                 \
            return;                                                                                            \
        }                                                                                                      \
        for (int64_t t = 0; t < n; t++)                                                                        \
            for (int64_t j = 0; j < g; j++) {                                                                  \
                float s = 0.0f;                                                                                \
                for (int64_t d = 0; d < hd; d++) s += qf[j * hd + d] * IN(kr[t * ks_t + d]);                   \
                score[j * n + t] = s;                                                                          \
            }                                                                                                  \
        for (int64_t j = 0; j < g; j++) {                                                                      \
            float *w = score + j * n;                                                                          \
            softmax(w, n);                                                                                     \
            for (int64_t d = 0; d < hd; d++) {                                                                 \
                float s = 0.0f;                                                                                \
                for (int64_t t = 0; t < n; t++) s += w[t] * IN(vr[t * vs_t + d]);                              \
                dst[j * hd + d] = OUT(s);                                                                      \
            }                                                                                                  \
        }                                                                                                      \
    }

/* CALL(g, hd) with g and hd as constants for the common shapes (head dim 64 or 128, 1 to 8 query heads per
 * KV head), so the compiler keeps the group's queries and sums in registers; as variables otherwise. */
#define SPECIALISED(CALL, g, hd)                                                                               \
    do {                                                                                                       \
        if (hd == 64 && g == 1) CALL(1, 64); else if (hd == 64 && g == 2) CALL(2, 64);                         \
        else if (hd == 64 && g == 3) CALL(3, 64); else if (hd == 64 && g == 4) CALL(4, 64);                    \
        else if (hd == 64 && g == 5) CALL(5, 64); else if (hd == 64 && g == 6) CALL(6, 64);                    \
        else if (hd == 64 && g == 7) CALL(7, 64); else if (hd == 64 && g == 8) CALL(8, 64);                    \
        else if (hd == 128 && g == 1) CALL(1, 128); else if (hd == 128 && g == 2) CALL(2, 128);                \
        else if (hd == 128 && g == 3) CALL(3, 128); else if (hd == 128 && g == 4) CALL(4, 128);                \
        else CALL(g, hd);                                                                                      \
    } while (0)

DEFINE_GROUP(group_bf16, bf16, bf16_in, bf16_out, load16_bf16)
DEFINE_GROUP(group_f32, float, f32_in, f32_out, load16_f32)

/* The longest span of meta rows (stride `width`, lo and hi at offsets 1 and 2 of each), or -1 if one is empty. */
static int64_t longest_span(const int64_t *meta, int64_t width, int64_t B) {
    int64_t longest = 0;
    for (int64_t b = 0; b < B; b++) {
        const int64_t n = meta[b * width + 2] - meta[b * width + 1];
        if (n <= 0) return -1;
        longest = n > longest ? n : longest;
    }
    return longest;
}

/* group_*(...) on the local variables of the functions below */
#define CALL_BF16(G, HD) group_bf16(qf, kr, ks_t, vr, vs_t, n, score, dst, G, HD)
#define CALL_F32(G, HD) group_f32(qf, kr, ks_t, vr, vs_t, n, score, dst, G, HD)
/* bf16 (the fast mode's decode) runs the specialised shapes; fp32 (the exact mode, the reference) the generic code */
#define DISPATCH_BF16(g, hd) SPECIALISED(CALL_BF16, g, hd)
#define DISPATCH_F32(g, hd) CALL_F32(g, hd)

#define DEFINE_ATTEND(NAME, T, IN, DISPATCH)                                                                      \
    int NAME(const T *q, int64_t qs_b, int64_t qs_h, const T *k, int64_t ks_b, int64_t ks_h, int64_t ks_t,    \
             const T *v, int64_t vs_b, int64_t vs_h, int64_t vs_t, T *out, const int64_t *spans, int64_t B,   \
             int64_t Hq, int64_t Hkv, int64_t hd, float scale) {                                               \
        const int64_t g = Hq / Hkv, longest = longest_span(spans - 1, 2, B);                                   \
        if (longest < 0) return -1;                                                                            \
        float *qf = malloc(sizeof(float) * (size_t)(g * hd + g * longest));                                    \
        if (qf == NULL) return -1;                                                                             \
        for (int64_t b = 0; b < B; b++) {                                                                      \
            const int64_t lo = spans[2 * b], n = spans[2 * b + 1] - lo;                                        \
            for (int64_t h = 0; h < Hkv; h++) {                                                                \
                for (int64_t j = 0; j < g; j++)                                                                \
                    for (int64_t d = 0; d < hd; d++) qf[j * hd + d] = IN(q[b * qs_b + (h * g + j) * qs_h + d]) * scale; \
                const T *kr = k + b * ks_b + h * ks_h + lo * ks_t, *vr = v + b * vs_b + h * vs_h + lo * vs_t;  \
                T *dst = out + (b * Hq + h * g) * hd;                                                          \
                float *score = qf + g * hd;                                                                    \
                DISPATCH(g, hd);                                                                               \
            }                                                                                                  \
        }                                                                                                      \
        free(qf);                                                                                              \
        return 0;                                                                                              \
    }

DEFINE_ATTEND(ulm_attend_bf16, bf16, bf16_in, DISPATCH_BF16)
DEFINE_ATTEND(ulm_attend_f32, float, f32_in, DISPATCH_F32)

/* x rotated at the position whose tables are cos, sin into dst (bf16, rounded per op as torch does). */
INLINE void rope_bf16(const bf16 *x, const bf16 *cos, const bf16 *sin, int64_t hd, bf16 *dst) {
    const int64_t half = hd / 2;
    for (int64_t d = 0; d < hd; d++) {
        const float a = bf16_in(bf16_out(bf16_in(x[d]) * bf16_in(cos[d])));
        const float b = bf16_in(bf16_out(bf16_in(x[d < half ? d + half : d - half]) * bf16_in(sin[d])));
        dst[d] = bf16_out(a + b);
    }
}

/* Σ x[0:n] in 16 lanes (vectorises), the lanes then summed in a fixed order. */
INLINE float sum_of(const float *x, int64_t n) {
    f32x16 acc = {0};
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) acc += load16_f32(x + i);
    float total = hsum(acc);
    for (; i < n; i++) total += x[i];
    return total;
}

#define BLOCK 64    /* keys scored at a time (the score scratch: g · BLOCK floats) */
#define MAX_SPLIT 8 /* work units per (row, KV head) at most */
#define PREFETCH 8  /* keys ahead */

/* How many work units a row's n keys are split into, and the keys per unit (a multiple of BLOCK): units of
 * at least BLOCK keys, at most MAX_SPLIT of them. A function of n alone, so a row's arithmetic never
 * depends on its batch. */
INLINE int64_t unit_keys(int64_t n) {
    const int64_t blocks = (n + BLOCK - 1) / BLOCK, split = blocks < MAX_SPLIT ? blocks : MAX_SPLIT;
    return (blocks + split - 1) / split * BLOCK;
}

/* One work unit of the fused step's attention: the g queries qf [g, hd] (fp32, scaled) against n keys and
 * values starting at kr, vr (position strides ks_t, vs_t), as a partial softmax: per query, the largest
 * score m[j], l[j] = Σ e^(s − m) and acc[j, hd] = Σ e^(s − m)·v. The keys go BLOCK at a time, the sums
 * rescaled when the running maximum grows (flash attention's online softmax). hd % 16 == 0 keeps the g
 * queries' sums in registers (inlined with g and hd constant: `SPECIALISED`); any other hd runs scalar
 * loops. */
INLINE void attend_span(const float *qf, const bf16 *kr, int64_t ks_t, const bf16 *vr, int64_t vs_t, int64_t n,
                        float *m, float *l, float *acc, int64_t g, int64_t hd) {
    float score[g * BLOCK];
    const int vector = hd % 16 == 0 && g * (hd / 16) <= MAX_CHUNKS * 8;
    const int64_t C = hd / 16;
    f32x16 row[MAX_CHUNKS], sum[MAX_CHUNKS * 8]; /* the queries are read from qf (L1): registers hold the sums */
    if (vector)
        for (int64_t i = 0; i < g * C; i++) sum[i] = (f32x16){0};
    else
        for (int64_t i = 0; i < g * hd; i++) acc[i] = 0.0f;
    for (int64_t t0 = 0; t0 < n; t0 += BLOCK) {
        const int64_t w = n - t0 < BLOCK ? n - t0 : BLOCK;
        const bf16 *kb = kr + t0 * ks_t, *vb = vr + t0 * vs_t;
        if (vector)
            for (int64_t t = 0; t < w; t++) {
                /* the next keys and this block's values on their way while the scores are computed */
                __builtin_prefetch(kb + (t + PREFETCH) * ks_t);
                __builtin_prefetch(kb + (t + PREFETCH) * ks_t + hd - 1);
                __builtin_prefetch(vb + t * vs_t);
                __builtin_prefetch(vb + t * vs_t + hd - 1);
                for (int64_t c = 0; c < C; c++) row[c] = load16_bf16(kb + t * ks_t + 16 * c);
                for (int64_t j = 0; j < g; j++) {
                    f32x16 dot = row[0] * load16_f32(qf + j * hd);
                    for (int64_t c = 1; c < C; c++) dot += row[c] * load16_f32(qf + j * hd + 16 * c);
                    score[j * BLOCK + t] = hsum(dot);
                }
            }
        else
            for (int64_t t = 0; t < w; t++)
                for (int64_t j = 0; j < g; j++) {
                    float dot = 0.0f;
                    for (int64_t d = 0; d < hd; d++) dot += qf[j * hd + d] * bf16_in(kb[t * ks_t + d]);
                    score[j * BLOCK + t] = dot;
                }
        for (int64_t j = 0; j < g; j++) {
            float *p = score + j * BLOCK;
            const float top = max_of(p, w);
            if (t0 == 0 || top > m[j]) {
                const float rescale = t0 == 0 ? 0.0f : exp_nonpositive(m[j] - top);
                m[j] = top;
                l[j] = t0 == 0 ? 0.0f : l[j] * rescale;
                if (vector)
                    for (int64_t c = 0; c < C; c++) sum[j * C + c] *= rescale;
                else
                    for (int64_t d = 0; d < hd; d++) acc[j * hd + d] *= rescale;
            }
            for (int64_t t = 0; t < w; t++) p[t] = exp_nonpositive(p[t] - m[j]);
            l[j] += sum_of(p, w);
        }
        if (vector)
            for (int64_t t = 0; t < w; t++) {
                for (int64_t c = 0; c < C; c++) row[c] = load16_bf16(vb + t * vs_t + 16 * c);
                for (int64_t j = 0; j < g; j++)
                    for (int64_t c = 0; c < C; c++) sum[j * C + c] += score[j * BLOCK + t] * row[c];
            }
        else
            for (int64_t j = 0; j < g; j++)
                for (int64_t d = 0; d < hd; d++) {
                    float total = 0.0f;
                    for (int64_t t = 0; t < w; t++) total += score[j * BLOCK + t] * bf16_in(vb[t * vs_t + d]);
                    acc[j * hd + d] += total;
                }
    }
    if (vector)
        for (int64_t i = 0; i < g * C; i++) memcpy(acc + 16 * i, &sum[i], sizeof sum[i]);
}

#define CALL_SPAN(G, HD) attend_span(qf, kr, ks_t, vr, vs_t, n, m, l, acc, G, HD)

/* ulm_decode_layer_bf16 (see the top of the file). Three phases over OpenMP threads: each row's rotary
 * embedding and cache write; attention in work units of (row, KV head, a span of keys: `unit_keys`), so
 * that one long row keeps every thread busy (flash-decoding's split), each thread taking consecutive
 * spans of a head (contiguous memory for the prefetcher); then each (row, KV head)'s units merged. A unit's result
 * depends only on its row's keys, so a row's output does not depend on its batch or the thread count. */
int ulm_decode_layer_bf16(const ulm_layer *L, const int64_t *meta, int64_t B, const bf16 *qkv, bf16 *out) {
    const int64_t Hq = L->Hq, Hkv = L->Hkv, hd = L->hd, g = Hq / Hkv, width = (Hq + 2 * Hkv) * hd;
    if (longest_span(meta, 3, B) < 0) return -1;
    /* units of row b: Hkv · spans(b), numbered from first[b]; each keeps m [g], l [g], acc [g, hd] */
    int64_t *first = malloc(sizeof(int64_t) * (size_t)(B + 1));
    if (first == NULL) return -1;
    first[0] = 0;
    for (int64_t b = 0; b < B; b++) {
        const int64_t n = meta[3 * b + 2] - meta[3 * b + 1];
        first[b + 1] = first[b] + Hkv * ((n + unit_keys(n) - 1) / unit_keys(n));
    }
    const int64_t units = first[B], part = g * (hd + 2);
    float *qs = malloc(sizeof(float) * (size_t)(B * Hq * hd + units * part)); /* rotated, scaled queries; units' */
    if (qs == NULL) {
        free(first);
        return -1;
    }
    float *parts = qs + B * Hq * hd;
#pragma omp parallel if (units > 1)
    {
#pragma omp for schedule(static)
        for (int64_t b = 0; b < B; b++) {
            const int64_t row = meta[3 * b], pos = meta[3 * b + 2] - 1;
            const bf16 *x = qkv + b * width, *cos = L->cos + pos * hd, *sin = L->sin + pos * hd;
            bf16 rotated[hd];
            for (int64_t h = 0; h < Hq; h++) {
                rope_bf16(x + h * hd, cos, sin, hd, rotated);
                for (int64_t d = 0; d < hd; d++) qs[(b * Hq + h) * hd + d] = bf16_in(rotated[d]) * L->scale;
            }
            for (int64_t h = 0; h < Hkv; h++) {
                rope_bf16(x + (Hq + h) * hd, cos, sin, hd, L->k + row * L->ks_r + h * L->ks_h + pos * L->ks_t);
                memcpy(L->v + row * L->vs_r + h * L->vs_h + pos * L->vs_t, x + (Hq + Hkv + h) * hd, sizeof(bf16) * hd);
            }
        }
        /* every row's keys are written (a prefill's rows attend to each other's) before any unit reads them */
#pragma omp for schedule(static)
        for (int64_t u = 0; u < units; u++) {
            int64_t b = 0;
            while (first[b + 1] <= u) b++;
            const int64_t spans = (first[b + 1] - first[b]) / Hkv, h = (u - first[b]) / spans, c = (u - first[b]) % spans;
            const int64_t span = unit_keys(meta[3 * b + 2] - meta[3 * b + 1]);
            const int64_t row = meta[3 * b], lo = meta[3 * b + 1] + c * span, hi = meta[3 * b + 2];
            const int64_t n = hi - lo < span ? hi - lo : span, ks_t = L->ks_t, vs_t = L->vs_t;
            const float *qf = qs + (b * Hq + h * g) * hd;
            const bf16 *kr = L->k + row * L->ks_r + h * L->ks_h + lo * ks_t;
            const bf16 *vr = L->v + row * L->vs_r + h * L->vs_h + lo * vs_t;
            float *m = parts + u * part, *l = m + g, *acc = l + g;
            SPECIALISED(CALL_SPAN, g, hd);
        }
        /* merge: out = Σ e^(m − top)·acc / Σ e^(m − top)·l over the units of each (row, KV head) */
#pragma omp for schedule(static)
        for (int64_t bh = 0; bh < B * Hkv; bh++) {
            const int64_t b = bh / Hkv, h = bh % Hkv, spans = (first[b + 1] - first[b]) / Hkv;
            const float *unit = parts + (first[b] + h * spans) * part;
            for (int64_t j = 0; j < g; j++) {
                float top = unit[j];
                for (int64_t c = 1; c < spans; c++) top = unit[c * part + j] > top ? unit[c * part + j] : top;
                float o[hd], total = 0.0f;
                for (int64_t d = 0; d < hd; d++) o[d] = 0.0f;
                for (int64_t c = 0; c < spans; c++) {
                    const float *m = unit + c * part, *l = m + g, *acc = l + g + j * hd;
                    const float w = exp_nonpositive(m[j] - top);
                    total += w * l[j];
                    for (int64_t d = 0; d < hd; d++) o[d] += w * acc[d];
                }
                const float inv = 1.0f / total;
                bf16 *dst = out + (b * Hq + h * g + j) * hd;
                for (int64_t d = 0; d < hd; d++) dst[d] = bf16_out(o[d] * inv);
            }
        }
    }
    free(first);
    free(qs);
    return 0;
}

/* ulm_dequant_int4_bf16_t: the bf16 weight, transposed ([K, N]), of torch's CPU int4 packing (what
 * `Int4Linear.dense` unpacks, as Wᵀ: the GEMM reads either layout as fast). Each block of 64 output rows is
 * stored as [K, 32] bytes, byte (k, i) holding row i's 4-bit value in its low nibble and row i + 32's in
 * its high nibble, so one k's 32 bytes give 64 consecutive entries of Wᵀ's row k. scales_zeros
 * [K / group, N, 2] (bf16) hold each group's scale and zero, w = (q − 8)·scale + zero, rounded as torch's
 * bf16 ops round q·scale + (zero − 8·scale). N % 64 == 0, K % group == 0. Groups are shared out over
 * OpenMP threads (torch's own pool: the library links the libgomp torch has loaded). Returns 0, or -1
 * without memory. */
int ulm_dequant_int4_bf16_t(const uint8_t *packed, const bf16 *scales_zeros, int64_t N, int64_t K, int64_t group,
                            bf16 *out) {
    int failed = 0;
#pragma omp parallel
    {
        float *scale = malloc(sizeof(float) * (size_t)(2 * N)), *zero = scale + N;
        if (scale == NULL) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(static)
        for (int64_t k0 = 0; k0 < K; k0 += group) {
            if (scale == NULL) continue;
            const bf16 *sz = scales_zeros + (k0 / group) * N * 2;
            for (int64_t n = 0; n < N; n++) {
                scale[n] = bf16_in(sz[2 * n]);
                zero[n] = bf16_in(bf16_out_finite(bf16_in(sz[2 * n + 1]) - 8.0f * scale[n]));
            }
            for (int64_t k = k0; k < k0 + group; k++) {
                bf16 *dst = out + k * N;
                for (int64_t block = 0; block < N / 64; block++) {
                    const uint8_t *p = packed + (block * K + k) * 32;
                    const float *s = scale + block * 64, *z = zero + block * 64;
                    bf16 *d = dst + block * 64;
                    for (int64_t i = 0; i < 32; i++) {
                        d[i] = bf16_out_finite(bf16_in(bf16_out_finite((float)(p[i] & 0x0F) * s[i])) + z[i]);
                        d[i + 32] = bf16_out_finite(bf16_in(bf16_out_finite((float)(p[i] >> 4) * s[i + 32])) + z[i + 32]);
                    }
                }
            }
        }
        free(scale);
    }
    return failed ? -1 : 0;
}

/* Σ a·b over n floats, 16 lanes at a time (the lanes summed in a fixed order: deterministic). */
INLINE float dot(const float *a, const float *b, int64_t n) {
    f32x16 acc = {0};
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) acc += load16_f32(a + i) * load16_f32(b + i);
    float s = hsum(acc);
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

/* The dot product of a bf16 row [n] with fp32 h [n]: the same lanes and order as dot() on the widened row. */
INLINE float dot_bf16(const bf16 *a, const float *b, int64_t n) {
    f32x16 acc = {0};
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) acc += load16_bf16(a + i) * load16_f32(b + i);
    float s = hsum(acc);
    for (; i < n; i++) s += bf16_in(a[i]) * b[i];
    return s;
}

/* The k-th largest of x[0:n] (1 ≤ k ≤ n), reordering x: quickselect. */
static float kth_largest(float *x, int64_t n, int64_t k) {
    int64_t lo = 0, hi = n - 1, want = k - 1;
    while (lo < hi) {
        const float pivot = x[lo + (hi - lo) / 2];
        int64_t i = lo, j = hi;
        while (i <= j) {
            while (x[i] > pivot) i++;
            while (x[j] < pivot) j--;
            if (i <= j) {
                const float t = x[i];
                x[i++] = x[j];
                x[j--] = t;
            }
        }
        if (want <= j) hi = j;
        else if (want >= i) lo = i;
        else return x[want];
    }
    return x[want];
}

/* One row of refine_logits; its scratch: [2 · chunks] floats. */
static int64_t refine_row(float *logits, int64_t V, const bf16 *table, int64_t D, const float *h, int64_t k,
                          int64_t chunk, float *scratch) {
    const int64_t chunks = (V + chunk - 1) / chunk;
    float *maxima = scratch, *sorted = scratch + chunks;
    for (int64_t c = 0; c < chunks; c++) {
        const int64_t end = (c + 1) * chunk < V ? (c + 1) * chunk : V;
        maxima[c] = sorted[c] = max_of(logits + c * chunk, end - c * chunk);
    }
    const float threshold = chunks > k ? kth_largest(sorted, chunks, k) : -INFINITY;
    int64_t count = 0;
    for (int64_t c = 0; c < chunks; c++) {
        if (!(maxima[c] >= threshold)) continue;
        const int64_t end = (c + 1) * chunk < V ? (c + 1) * chunk : V;
        for (int64_t i = c * chunk; i < end; i++) {
            if (!(logits[i] >= threshold)) continue;
            logits[i] = dot_bf16(table + i * D, h, D);
            count++;
        }
    }
    return count;
}

/* ulm_refine_logits: the fast LM head's second pass over rows of coarse logits [R, V] (fp32, in place): in
 * each row, every logit at or above the k-th largest of the per-chunk maxima (a superset of the top k) is
 * replaced by the exact dot product of its bf16 table row [D] with the row's h [D] (fp32 accumulation).
 * Rows are shared out over OpenMP threads. Returns how many logits were recomputed, or -1 without scratch
 * memory. */
int64_t ulm_refine_logits(float *logits, int64_t R, int64_t V, const bf16 *table, int64_t D, const float *h,
                          int64_t k, int64_t chunk) {
    const int64_t chunks = (V + chunk - 1) / chunk;
    int64_t count = 0;
    int failed = 0;
#pragma omp parallel for schedule(static) reduction(+ : count) if (R > 1)
    for (int64_t r = 0; r < R; r++) {
        float *scratch = malloc(sizeof(float) * (size_t)(2 * chunks));
        if (scratch == NULL) {
#pragma omp atomic write
            failed = 1;
            continue;
        }
        count += refine_row(logits + r * V, V, table, D, h + r * D, k, chunk, scratch);
        free(scratch);
    }
    return failed ? -1 : count;
}

/* ulm_silu_mul_bf16: out [rows, F] = silu(gate) · up for the fused projection's output gu [rows, 2F] (rows
 * [gate | up]), bf16, rounded per op as torch's bf16 `F.silu(gate) * up` rounds (silu itself may differ from
 * torch's in the last bit: its exp is µLM's). Large inputs (a prefill) are shared out over OpenMP threads. */
void ulm_silu_mul_bf16(const bf16 *gu, int64_t rows, int64_t F, bf16 *out) {
#pragma omp parallel for schedule(static) if (rows * F >= 65536)
    for (int64_t r = 0; r < rows; r++) {
        const bf16 *gate = gu + r * 2 * F, *up = gate + F;
        bf16 *dst = out + r * F;
        for (int64_t j = 0; j < F; j++) {
            const float g = bf16_in(gate[j]);
            const float a = -fabsf(g); /* e^a, below e^-87 as e^(a + 87) · e^-87 (into fp32's subnormals) */
            const float e = a < -87.0f ? exp_nonpositive(a + 87.0f) * 1.6458115e-38f : exp_nonpositive(a);
            const float silu = (g >= 0.0f ? g : g * e) / (1.0f + e);
            dst[j] = bf16_out_finite(bf16_in(bf16_out_finite(silu)) * bf16_in(up[j]));
        }
    }
}

/* ulm_rms_norm: y [rows, D] = x / sqrt(mean(x²) + eps) · w over fp32 rows x [rows, D] (contiguous), written
 * as fp32, or as bf16 (rounded to nearest even) when y_bf16: the norm and the cast a matmul's input needs in
 * one pass. (x · inv) · w is rounded as torch's two multiplies round it. Many rows (a prefill) are shared
 * out over OpenMP threads. */
void ulm_rms_norm(const float *x, int64_t rows, int64_t D, const float *w, float eps, void *y, int y_bf16) {
#pragma omp parallel for schedule(static) if (rows >= 64)
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * D;
        const float inv = 1.0f / sqrtf(dot(xr, xr, D) / (float)D + eps);
        if (y_bf16) {
            bf16 *dst = (bf16 *)y + r * D;
            for (int64_t d = 0; d < D; d++) dst[d] = bf16_out(xr[d] * inv * w[d]);
        } else {
            float *dst = (float *)y + r * D;
            for (int64_t d = 0; d < D; d++) dst[d] = xr[d] * inv * w[d];
        }
    }
}
