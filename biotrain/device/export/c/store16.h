/* biotrain device export: 16-bit storage of the L2 arena (bf16 or fp16), fp32 compute in L1.
 *
 * A 16-bit program (step.h defines BT_STORE16: 1 = bf16, 2 = fp16) keeps every floating-point
 * tensor of the arena in 2 bytes; the kernels still compute in fp32 on their L1 copies, and the
 * DMA stand-in converts on the way: 16-bit to fp32 into L1, fp32 rounded to nearest-even on the
 * way back. So a value is rounded exactly where the device stores it, as the host emulation
 * (biotrain/adaptation/precision.py) rounds it. An arena view is an l2t_t (16-bit elements);
 * in an fp32 program l2t_t is ten_t and nothing here changes it.
 *
 * Conversions are software (integer operations): Debian's rv32 GCC 12 has no _Float16 and the
 * CV32E40P package's FPU has its 16-bit formats off. The host build checks them against
 * _Float16 where the compiler has it (tests/device/test_device_store16.py).
 */
#ifndef BT_STORE16_H
#define BT_STORE16_H

#include <stdint.h>
#include <string.h>

#include "kernels.h"

#if defined(BT_STORE16) && BT_STORE16
typedef struct {
    uint16_t *p; /* first element */
    int d[4];    /* sizes */
    int s[4];    /* strides, in 16-bit elements */
} l2t_t;
#define BT_L2_ELEM 2
#else
typedef ten_t l2t_t;
#define BT_L2_ELEM 4
#endif

/* fp32 -> bf16, round to nearest even (NaN stays NaN) */
static inline uint16_t bt_f32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

static inline float bt_bf16_to_f32(uint16_t h) {
    const uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* fp32 -> fp16 (IEEE binary16), round to nearest even: overflow to infinity, gradual underflow */
static inline uint16_t bt_f32_to_fp16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    const uint32_t sign = (u >> 16) & 0x8000u, a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return (uint16_t)(sign | 0x7e00u);   /* NaN */
    if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u);  /* >= 65520: infinity */
    if (a >= 0x38800000u)                                      /* normal: rebias, round 13 bits off */
        return (uint16_t)(sign | ((a - 0x38000000u + 0xfffu + ((a >> 13) & 1u)) >> 13));
    if (a < 0x33000000u) return (uint16_t)sign;                /* <= 2^-25: rounds to zero */
    const int sh = 126 - (int)(a >> 23);                       /* subnormal: mantissa >> (14..24) */
    const uint32_t m = (a & 0x7fffffu) | 0x800000u, q = m >> sh, rem = m & ((1u << sh) - 1u), half = 1u << (sh - 1);
    return (uint16_t)(sign | (q + (rem > half || (rem == half && (q & 1u)))));
}

static inline float bt_fp16_to_f32(uint16_t h) {
    const uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
    uint32_t u;
    if (e == 0) { /* zero or subnormal: m * 2^-24, exact in fp32 */
        float f = (float)m * 5.9604644775390625e-8f;
        memcpy(&u, &f, 4);
        u |= sign;
    } else if (e == 31) {
        u = sign | 0x7f800000u | (m << 13);
    } else {
        u = sign | ((e + 112u) << 23) | (m << 13);
    }
    float f;
    memcpy(&f, &u, 4);
    return f;
}

#if defined(BT_STORE16) && BT_STORE16 == 1
#define BT_TO16(f) bt_f32_to_bf16(f)
#define BT_FROM16(h) bt_bf16_to_f32(h)
#elif defined(BT_STORE16) && BT_STORE16 == 2
#define BT_TO16(f) bt_f32_to_fp16(f)
#define BT_FROM16(h) bt_fp16_to_f32(h)
#endif

#if defined(BT_STORE16) && BT_STORE16
#define L2AT(t, a, b, c, e) ((t).p[(a) * (t).s[0] + (b) * (t).s[1] + (c) * (t).s[2] + (e) * (t).s[3]])
/* store / load one value of an arena view or at an arena address */
#define BT_L2_STORE(t, a, b, c, e, v) (L2AT(t, a, b, c, e) = BT_TO16(v))
#define BT_L2_LOAD_AT(addr) BT_FROM16(*(const uint16_t *)(addr))
/* samples [n0, n1) and columns [lo, hi) of an arena view (bt_win4 of kernels.h, 16-bit elements) */
static inline l2t_t bt_win4h(l2t_t v, int n0, int n1, int lo, int hi) {
    v.p += n0 * v.s[0] + lo * v.s[3];
    v.d[0] = n1 - n0;
    v.d[3] = hi - lo;
    return v;
}
void bt_dma_in(ten_t dst, l2t_t src);  /* arena (16-bit) -> L1 (fp32) */
void bt_dma_out(l2t_t dst, ten_t src); /* L1 (fp32) -> arena (16-bit), rounded */
#else
#define BT_L2_STORE(t, a, b, c, e, v) (AT(t, a, b, c, e) = (v))
#define BT_L2_LOAD_AT(addr) (*(const float *)(addr))
#endif

#endif
