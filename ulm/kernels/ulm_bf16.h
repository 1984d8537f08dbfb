/* bf16 as µLM's native kernels store it (the top half of an IEEE float), and its conversions: widening is
 * exact; narrowing rounds to nearest even, as torch does. Shared by ulm_kernels.c and ulm_int4.c. */
#ifndef ULM_BF16_H
#define ULM_BF16_H

#include <stdint.h>

typedef uint16_t bf16;

#define INLINE static inline __attribute__((always_inline))

INLINE float bf16_in(bf16 h) {
    union { uint32_t u; float f; } v = { .u = (uint32_t)h << 16 };
    return v.f;
}

INLINE bf16 bf16_out(float f) {
    union { float f; uint32_t u; } v = { .f = f };
    if ((v.u & 0x7fffffffu) > 0x7f800000u) return (bf16)((v.u >> 16) | 0x40u); /* NaN stays NaN */
    return (bf16)((v.u + 0x7fffu + ((v.u >> 16) & 1u)) >> 16);
}

/* bf16_out for values known finite (no NaN check, so loops of it vectorise) */
INLINE bf16 bf16_out_finite(float f) {
    union { float f; uint32_t u; } v = { .f = f };
    return (bf16)((v.u + 0x7fffu + ((v.u >> 16) & 1u)) >> 16);
}

#endif
