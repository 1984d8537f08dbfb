/* e^x for x ≤ 0, branch-free so that loops of it vectorise: the attention's softmax, the silu, the sampler.
 * Shared by ulm_kernels.c and ulm_sample.c. */
#ifndef ULM_EXP_H
#define ULM_EXP_H

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

#endif
