/* biotrain device export: the DMA stand-in of a 16-bit program (store16.h): arena views hold
 * 16-bit values, L1 copies fp32; core 0 converts while it copies. Compiled empty in an fp32
 * program. */
#include "step.h"

#if defined(BT_STORE16) && BT_STORE16

static void l1_check(ten_t t) {
    const uint32_t e = bt_l1_end(t);
    if (e > bt_l1_touched) bt_l1_touched = e;
    if (e > bt_l1_bytes) fail("a tile reaches beyond the L1 region (BT_L1_BYTES): the L1 plan is broken", 18);
}

/* dimensions broadcast in the destination (stride 0) are copied once, as bt_dma does */
void bt_dma_in(ten_t dst, l2t_t src) {
    for (int k = 0; k < 4; k++)
        if (dst.s[k] == 0) dst.d[k] = src.d[k] = 1;
    for (int a = 0; a < dst.d[0]; a++)
        for (int b = 0; b < dst.d[1]; b++)
            for (int c = 0; c < dst.d[2]; c++)
                for (int e = 0; e < dst.d[3]; e++) AT(dst, a, b, c, e) = BT_FROM16(L2AT(src, a, b, c, e));
    bt_dma_bytes += 2u * (uint32_t)NUMEL(dst);
    bt_dma_copies++;
    l1_check(dst);
}

void bt_dma_out(l2t_t dst, ten_t src) {
    for (int k = 0; k < 4; k++)
        if (dst.s[k] == 0) dst.d[k] = src.d[k] = 1;
    for (int a = 0; a < dst.d[0]; a++)
        for (int b = 0; b < dst.d[1]; b++)
            for (int c = 0; c < dst.d[2]; c++)
                for (int e = 0; e < dst.d[3]; e++) L2AT(dst, a, b, c, e) = BT_TO16(AT(src, a, b, c, e));
    bt_dma_bytes += 2u * (uint32_t)NUMEL(dst);
    bt_dma_copies++;
    l1_check(src);
}

#else
typedef int bt_store16_unused; /* an fp32 program: nothing to convert (ISO C wants a declaration) */
#endif
