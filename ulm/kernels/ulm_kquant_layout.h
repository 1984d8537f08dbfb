/* Where things are within one tile block of the tile layout (ulm_kquant.c describes it): shared by the
 * repack (ulm_kquant.c) and the kernels that read it (ulm_kquant_mm.c). A tile block is 32 rows × one GGUF
 * block, laid out so that the kernels read it front to back, one stream: a header (scales), then the
 * values, the high bits of each stretch of values just before its nibbles. Offsets in bytes. */
#ifndef ULM_KQUANT_LAYOUT_H
#define ULM_KQUANT_LAYOUT_H

#include <stdint.h>

#define KQ_D 0        /* every type: d [32] f16 */
#define KQ_DMIN 64    /* Q4_K, Q5_K: dmin [32] f16 */
#define KQ_SCALES 128 /* Q4_K, Q5_K: the 12 scale bytes, plane by plane [12][32] */
#define KQ_SUB 512    /* Q4_K, Q5_K: 8 sub-blocks of 32 k from here, each [Q5_K: masks [8 quads][2] u64][quads [8][64]] */
#define Q4K_SUB 512
#define Q5K_SUB 640
#define Q4K_BLOCK 4608
#define Q5K_BLOCK 5632
#define Q6K_GROUPS 64 /* Q6_K: 8 groups of 32 k from here, each [scales [2][32] int8][4 × pair] */
#define Q6K_GROUP 832
#define Q6K_PAIR 192  /* a pair of quads: [2-bit fields [64]][quad 2p [64]][quad 2p + 1 [64]] */
#define Q6K_BLOCK 6720
#define Q80_Q 64      /* Q8_0: bytes q + 128 [8 quads][2 halves][64] */
#define Q80_BLOCK 1088
#define Q50_QH 64     /* Q5_0: fifth-bit masks [8 quads][2 halves] u64 */
#define Q50_QS 192    /* Q5_0: nibble quads [8][64] */
#define Q50_BLOCK 704

/* Q4_K (five = 0) / Q5_K: nibble quad c (of 64), and the fifth-bit mask of its half h (Q5_K) */
static inline int64_t kq_quad(int five, int64_t c) {
    return KQ_SUB + (five ? Q5K_SUB : Q4K_SUB) * (c / 8) + (five ? 128 : 0) + 64 * (c % 8);
}
static inline int64_t kq_mask(int64_t c, int h) { return KQ_SUB + Q5K_SUB * (c / 8) + 16 * (c % 8) + 8 * h; }

/* Q6_K: pair p (of 32: quads 2p, 2p + 1), and the int8 scales of sub-block u (of 16, 16 k each) */
static inline int64_t q6k_pair(int64_t p) { return Q6K_GROUPS + Q6K_GROUP * (p / 4) + 64 + Q6K_PAIR * (p % 4); }
static inline int64_t q6k_scales(int64_t u) { return Q6K_GROUPS + Q6K_GROUP * (u / 2) + 32 * (u % 2); }

#endif
