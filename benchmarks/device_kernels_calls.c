/* Instructions of single convolution kernel calls on one rv32 core (qemu -icount): every
 * convolution of the two models at the reference shapes (one sample; MI-BMINet's temporal and
 * depthwise convolutions on their zero-padded inputs), forward, weight gradient and input gradient,
 * and a few tiny shapes for the per-call cost. Built and run by benchmarks/device_kernels.py. */
#include <stdio.h>
#include <stdlib.h>
#include "kernels.h"

uint8_t bt_l1[16];
const uint32_t bt_l1_bytes = 16;
void bt_barrier(void) {}
void fail(const char *what, int code) { printf("%s\n", what); exit(code); }
static float pool[1 << 20];
static int used;
static ten_t mk(int d0, int d1, int d2, int d3) {
    ten_t t = {pool + used, {d0, d1, d2, d3}, {d1 * d2 * d3, d2 * d3, d3, 1}};
    for (int i = 0; i < d0 * d1 * d2 * d3; i++) t.p[i] = (float)((i * 37) % 11) * 0.1f - 0.5f;
    used += d0 * d1 * d2 * d3;
    return t;
}
static FILE *out; /* calls.txt in qemu's directory (semihosting) */
static inline uint32_t instret(void) { uint32_t v; __asm__ volatile("csrr %0, instret" : "=r"(v)); return v; }

static void conv(const char *name, int Ci, int Co, int H, int W, int Kh, int Kw, int groups) {
    used = 0;
    const int Ho = H - Kh + 1, Wo = W - Kw + 1, cig = Ci / groups;
    ten_t x = mk(1, Ci, H, W), w = mk(Co, cig, Kh, Kw), y = mk(1, Co, Ho, Wo), dx = mk(1, Ci, H, W), dw = mk(Co, cig, Kh, Kw);
    const double macs = (double)Co * Ho * Wo * cig * Kh * Kw;
    uint32_t t0 = instret();
    k_conv2d(y, x, w, NULL, 1, 1, 0, 0, 1, 1, groups);
    uint32_t t1 = instret();
    k_conv2d_bwd(y, x, w, NULL, &dw, 0, NULL, 0, 1, 1, 0, 0, 1, 1, groups);
    uint32_t t2 = instret();
    k_conv2d_bwd(y, y, w, &dx, NULL, 0, NULL, 0, 1, 1, 0, 0, 1, 1, groups);
    uint32_t t3 = instret();
    fprintf(out, "%s|%.0f|%lu|%lu|%lu\n", name, macs, (unsigned long)(t1 - t0), (unsigned long)(t2 - t1),
           (unsigned long)(t3 - t2));
}

int main(void) {
    out = fopen("calls.txt", "w");
    if (!out) return 1;
    conv("mi spatial 8x1 1->32 T1900", 1, 32, 8, 1900, 8, 1, 1);
    conv("mi temporal dw 1x128 T2027", 32, 32, 1, 2027, 1, 128, 32);
    conv("mi depthwise dw 1x16 T252", 32, 32, 1, 252, 1, 16, 32);
    conv("mi pointwise 1x1 32->32 T237", 32, 32, 1, 237, 1, 1, 1);
    conv("epi conv1 1x4 1->4 T1000", 1, 4, 2, 1000, 1, 4, 1);
    conv("epi conv2 1x16 4->16 T124", 4, 16, 2, 124, 1, 16, 1);
    conv("epi conv3 1x8 16->16 T27", 16, 16, 2, 27, 1, 8, 1);
    conv("epi spatial 2x1 16->16 T20", 16, 16, 2, 20, 2, 1, 1);
    conv("epi mix 1x1 16->16 T20", 16, 16, 1, 20, 1, 1, 1);
    conv("small spatial 4x1 1->4 T64", 1, 4, 4, 64, 4, 1, 1);
    conv("small pointwise 1x1 4->4 T8", 4, 4, 1, 8, 1, 1, 1);
    conv("small dw 1x8 T71", 4, 4, 1, 71, 1, 8, 4);
    conv("tiny 1x1 1->1 T8", 1, 1, 1, 8, 1, 1, 1);
    conv("tiny 1x1 1->1 T16", 1, 1, 1, 16, 1, 1, 1);
    conv("tiny 1x1 1->2 T8", 1, 2, 1, 8, 1, 1, 1);
    fclose(out);
    *(volatile uint32_t *)0x100000 = 0x5555u;
    for (;;) {
    }
}
