/* Small math the kernels share (ulm_kernels.c, ulm_sample.c), written so that loops of it vectorise: e^x for
 * x ≤ 0 (the attention's softmax, the silu, the sampler) and the largest value of a row. */
#ifndef ULM_MATH_H
#define ULM_MATH_H

#include <math.h>
#include <stdint.h>

#include "ulm_bf16.h"

/* e^x for x ≤ 0 (scores after the max is subtracted): 2^n · 2^f with f in [-½, ½], degree-7 Taylor of
 * 2^f (relative error < 1e-8), clamped at e^-87. Branch-free, so the loop over a row vectorises. */
INLINE float exp_nonpositive(float x) {
    x = x < -87.0f ? -87.0f : x;
    float t = x * 1.4426950408889634f;
    float n = rintf(t);
    float f = (t - n) * 0.6931471805599453f;
    float p = 1.0f + f * (1.0f + f * (0.5f + f * (1.6666667e-1f + f * (4.1666667e-2f + f * (8.3333333e-3f
              + f * (1.3888889e-3f + f * 1.9841270e-4f))))));
    union { int32_t i; float f; } s = { .i = ((int32_t)n + 127) << 23 };
    return p * s.f;
}

/* The largest of x[0:n] (n ≥ 1), in 16 lanes so that it vectorises. */
INLINE float max_of(const float *x, int64_t n) {
    float lane[16], top = x[0];
    int64_t i = 0;
    if (n >= 16) {
        for (int j = 0; j < 16; j++) lane[j] = x[j];
        for (i = 16; i + 16 <= n; i += 16)
            for (int j = 0; j < 16; j++) lane[j] = x[i + j] > lane[j] ? x[i + j] : lane[j];
        top = lane[0];
        for (int j = 1; j < 16; j++) top = lane[j] > top ? lane[j] : top;
    }
    for (; i < n; i++) top = x[i] > top ? x[i] : top;
    return top;
}

#endif
