/* The convolution kernels (kernels.c: forward, weight and input gradients, every fast path and the
 * generic loops) against a direct double-precision reference, on random shapes (groups 1 and
 * depthwise, padding, height and width strides and dilations, padded and strided views) and the
 * models' shapes. Built by test_device_conv_kernels.py with -DBT_SOLO_CORE=bt_solo: the test runs
 * every core's share in turn, so the work split of BT_NCORES cores is checked too. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include "kernels.h"
#define FOR4(t) for (int i0 = 0; i0 < (t).d[0]; i0++) for (int i1 = 0; i1 < (t).d[1]; i1++) for (int i2 = 0; i2 < (t).d[2]; i2++) for (int i3 = 0; i3 < (t).d[3]; i3++)

int bt_solo;
uint8_t bt_l1[16];
const uint32_t bt_l1_bytes = 16;
void bt_barrier(void) {}
void fail(const char *what, int code) { fprintf(stderr, "%s\n", what); exit(code); }

static unsigned rs = 1;
static float rnd(void) { rs = rs * 1103515245u + 12345u; return ((rs >> 8) & 0xffff) / 32768.0f - 1.0f; }

/* a tensor with padded strides: innermost stride s3, extra room per row */
static ten_t mk(int d0, int d1, int d2, int d3, int s3, int fill) {
    ten_t t;
    t.d[0] = d0; t.d[1] = d1; t.d[2] = d2; t.d[3] = d3;
    t.s[3] = s3; t.s[2] = d3 * s3 + 3; t.s[1] = t.s[2] * d2 + 1; t.s[0] = t.s[1] * d1 + 2;
    int n = t.s[0] * d0 + 8;
    t.p = malloc(sizeof(float) * n);
    for (int i = 0; i < n; i++) t.p[i] = fill ? rnd() : 12345.0f;
    return t;
}

static int fails, checks;
static void cmp(const char *what, ten_t a, double *ref, int *argsv) {
    double worst = 0, mx = 1e-6;
    int idx = 0;
    FOR4(a) { double r = fabs(ref[idx++]); if (r > mx) mx = r; }
    idx = 0;
    FOR4(a) {
        double r = ref[idx++], v = AT(a, i0, i1, i2, i3);
        double e = fabs(v - r) / mx;
        if (e > worst) worst = e;
    }
    checks++;
    if (worst > 1e-4) {
        fails++;
        printf("FAIL %s err %g args", what, worst);
        for (int i = 0; i < 14; i++) printf(" %d", argsv[i]);
        printf("\n");
    }
}

static void one(int N, int Ci, int Co, int H, int W, int Kh, int Kw, int sh, int sw, int ph, int pw, int dh,
                int dw, int groups, int ncores, int s3, int acc) {
    const int Ho = (H + 2 * ph - dh * (Kh - 1) - 1) / sh + 1, Wo = (W + 2 * pw - dw * (Kw - 1) - 1) / sw + 1;
    if (Ho < 1 || Wo < 1) return;
    const int cig = Ci / groups, cog = Co / groups;
    ten_t x = mk(N, Ci, H, W, s3, 1), w = mk(Co, cig, Kh, Kw, 1, 1), y = mk(N, Co, Ho, Wo, s3, 1);
    ten_t dy = mk(N, Co, Ho, Wo, s3, 1), dx = mk(N, Ci, H, W, s3, 1), dwt = mk(Co, cig, Kh, Kw, s3, 1), b = mk(1, 1, 1, Co, 1, 1);
    ten_t dwt0 = dwt; /* for acc: remember initial values */
    int nd = Co * cig * Kh * Kw;
    double *init = malloc(sizeof(double) * nd);
    { int i = 0; FOR4(dwt) init[i++] = AT(dwt0, i0, i1, i2, i3); }
    int argsv[14] = {N, Ci, Co, H, W, Kh, Kw, sh, sw, ph, pw, dh, dw, groups};
    const ten_t *bias = (Ci + Kw) % 2 ? &b : NULL;
    for (bt_solo = 0; bt_solo < BT_NCORES; bt_solo++) k_conv2d(y, x, w, bias, sh, sw, ph, pw, dh, dw, groups);
    for (bt_solo = 0; bt_solo < BT_NCORES; bt_solo++)
        k_conv2d_bwd(dy, x, w, &dx, &dwt, acc, NULL, 0, sh, sw, ph, pw, dh, dw, groups);
    double *ry = calloc(N * Co * Ho * Wo, sizeof(double)), *rdx = calloc(N * Ci * H * W, sizeof(double));
    double *rdw = calloc(nd, sizeof(double));
    for (int i = 0; i < nd; i++) rdw[i] = acc ? init[i] : 0;
    for (int n = 0; n < N; n++)
        for (int co = 0; co < Co; co++)
            for (int oh = 0; oh < Ho; oh++)
                for (int ow = 0; ow < Wo; ow++) {
                    double s = bias ? AT(b, 0, 0, 0, co) : 0;
                    int g = co / cog;
                    for (int ci = 0; ci < cig; ci++)
                        for (int kh = 0; kh < Kh; kh++)
                            for (int kw = 0; kw < Kw; kw++) {
                                int ih = oh * sh - ph + kh * dh, iw = ow * sw - pw + kw * dw;
                                if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                                double xv = AT(x, n, g * cig + ci, ih, iw), wv = AT(w, co, ci, kh, kw);
                                double gv = AT(dy, n, co, oh, ow);
                                s += xv * wv;
                                rdx[((n * Ci + g * cig + ci) * H + ih) * W + iw] += gv * wv;
                                rdw[((co * cig + ci) * Kh + kh) * Kw + kw] += gv * xv;
                            }
                    ry[((n * Co + co) * Ho + oh) * Wo + ow] = s;
                }
    cmp("fwd", y, ry, argsv);
    cmp("ig", dx, rdx, argsv);
    cmp("wg", dwt, rdw, argsv);
    free(x.p); free(w.p); free(y.p); free(dy.p); free(dx.p); free(dwt.p); free(b.p);
    free(ry); free(rdx); free(rdw); free(init);
}

int main(void) {
    const int kws[] = {1, 2, 3, 4, 5, 7, 8, 9, 12, 16, 17, 21, 33};
    for (int it = 0; it < 6000; it++) {
        rs = it * 7919u + 1;
        int dep = rnd() > 0.2f;
        int Kw = kws[(unsigned)(rnd() * 1000 + 1000) % 13], Kh = 1 + (unsigned)(rnd() * 100 + 100) % 3;
        int Ci = 1 + (unsigned)(rnd() * 100 + 100) % 5, Co = 1 + (unsigned)(rnd() * 100 + 100) % 5;
        int groups = 1;
        if (dep) Co = Ci, groups = Ci;
        int H = Kh + (unsigned)(rnd() * 100 + 100) % 3, W = Kw + (unsigned)(rnd() * 100 + 100) % 40;
        int sh = 1 + (rnd() > 0.6f), sw = 1 + (rnd() > 0.85f), dh = 1 + (rnd() > 0.7f), dw = 1 + (rnd() > 0.85f);
        int ph = (unsigned)(rnd() * 100 + 100) % 2, pw = rnd() > 0.5f ? 0 : (unsigned)(rnd() * 100 + 100) % (Kw + 1);
        int N = 1 + (rnd() > 0.5f), nc = 1 + (unsigned)(rnd() * 100 + 100) % 8, s3 = rnd() > 0.9f ? 2 : 1;
        one(N, Ci, Co, H, W, Kh, Kw, sh, sw, ph, pw, dh, dw, groups, nc, s3, rnd() > 0.5f);
    }
    /* the models' shapes */
    one(1, 1, 32, 8, 200, 8, 1, 1, 1, 0, 0, 1, 1, 1, 8, 1, 0);
    one(1, 32, 32, 1, 300, 1, 128, 1, 1, 0, 0, 1, 1, 32, 8, 1, 1);
    one(1, 32, 32, 1, 40, 1, 16, 1, 1, 0, 0, 1, 1, 32, 8, 1, 1);
    one(1, 32, 32, 1, 40, 1, 1, 1, 1, 0, 0, 1, 1, 1, 8, 1, 1);
    one(1, 4, 16, 2, 124, 1, 16, 1, 1, 0, 0, 1, 1, 1, 8, 1, 1);
    one(1, 16, 16, 2, 20, 2, 1, 1, 1, 0, 0, 1, 1, 1, 8, 1, 1);
    printf("%d checks, %d failures\n", checks, fails);
    return fails != 0;
}
