/* Byte offsets within one tile block of the tile layout (ulm_kquant.c describes it): shared by the repack
 * (ulm_kquant.c) and the kernels that read it (ulm_kquant_mm.c). A tile block is 32 rows × one GGUF block. */
#ifndef ULM_KQUANT_LAYOUT_H
#define ULM_KQUANT_LAYOUT_H

#define KQ_D 0        /* every type: d [32] f16 */
#define KQ_DMIN 64    /* Q4_K, Q5_K: dmin [32] f16 */
#define KQ_SCALES 128 /* Q4_K, Q5_K: the 12 scale bytes, plane by plane [12][32] */
#define Q4K_QS 512    /* nibble quads [64][64] */
#define Q4K_BLOCK 4608
#define Q5K_QH 512    /* fifth-bit masks [64 quads][2 halves] u64 */
#define Q5K_QS 1536
#define Q5K_BLOCK 5632
#define Q6K_SCALES 64 /* int8 [16 sub-blocks][32] */
#define Q6K_QH 576    /* 2-bit fields [32 quad pairs][64] */
#define Q6K_QL 2624   /* nibble quads [64][64] */
#define Q6K_BLOCK 6720
#define Q80_Q 64      /* bytes q + 128 [8 quads][2 halves][64] */
#define Q80_BLOCK 1088
#define Q50_QH 64     /* fifth-bit masks [8 quads][2 halves] u64 */
#define Q50_QS 192    /* nibble quads [8][64] */
#define Q50_BLOCK 704

#endif
