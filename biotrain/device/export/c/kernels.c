/* biotrain device export: fp32 training kernels (written for this project).
 *
 * Plain loops over strided 4-D views; one core, no SIMD. Reductions keep a float accumulator.
 * Kernels that may run in place (output over an input that dies at the op, as the memory plan
 * allows) read every input element before writing the output element at the same index, or
 * finish their reductions first.
 */
#include "kernels.h"

#include <math.h>

#define V(t, i) ((t).p[(i) * (t).s[3]])             /* element i of a 1-D tensor */
#define M2(t, i, j) ((t).p[(i) * (t).s[2] + (j) * (t).s[3]]) /* element (i, j) of a 2-D tensor */

/* The row segment of flat element e of a tensor of sizes d, up to flat element end: its row
 * (i0, i1, i2) and columns [j0, j1). Divisions once per row, not per element. */
static inline void seg4(int d1, int d2, int d3, int e, int end, int *i0, int *i1, int *i2, int *j0, int *j1) {
    const int row = e / d3;
    *j0 = e - row * d3;
    *j1 = end - row * d3 < d3 ? end - row * d3 : d3;
    *i2 = row % d2;
    *i1 = (row / d2) % d1;
    *i0 = row / (d2 * d1);
}

/* this core's share of all the elements of t, flattened (balanced to one element whatever the
 * shape), walked row segment by row segment: FOR_ROWS gives (i0, i1, i2) and columns [j0, j1),
 * FOR4P every element (i0, i1, i2, i3) */
/* the next row after (i0, i1, i2): a carry, no division (sizes by value: the tensor's address is
 * never taken, so the compiler keeps its pointer and strides in registers) */
static inline void next_seg(int d1, int d2, int d3, int e, int end, int *i0, int *i1, int *i2, int *j0, int *j1) {
    *j0 = 0;
    *j1 = end - e < d3 ? end - e : d3;
    if (++*i2 < d2) return;
    *i2 = 0;
    if (++*i1 < d1) return;
    *i1 = 0;
    ++*i0;
}

#define FOR_ROWS(t) \
    BT_CHUNK(NUMEL(t), e_lo, e_hi); \
    for (int e_ = e_lo, i0 = 0, i1 = 0, i2 = 0, j0 = 0, j1 = 0, f_ = 1; \
         e_ < e_hi && ((f_ ? seg4((t).d[1], (t).d[2], (t).d[3], e_, e_hi, &i0, &i1, &i2, &j0, &j1) \
                           : next_seg((t).d[1], (t).d[2], (t).d[3], e_, e_hi, &i0, &i1, &i2, &j0, &j1)), 1); \
         e_ += j1 - j0, f_ = 0)
#define FOR4P(t) \
    FOR_ROWS(t) \
    for (int i3 = j0; i3 < j1; i3++)

#define FOR4(t) \
    for (int i0 = 0; i0 < (t).d[0]; i0++) \
        for (int i1 = 0; i1 < (t).d[1]; i1++) \
            for (int i2 = 0; i2 < (t).d[2]; i2++) \
                for (int i3 = 0; i3 < (t).d[3]; i3++)

uint64_t bt_dma_bytes, bt_dma_copies;
uint32_t bt_l1_touched;

/* the highest byte of bt_l1 a view reaches, + 1 (0 outside L1); store16.c checks its copies too */
uint32_t bt_l1_end(ten_t t) {
    const uint8_t *p = (const uint8_t *)t.p;
    if (p < bt_l1 || p >= bt_l1 + bt_l1_bytes || NUMEL(t) == 0) return 0; /* an L2 view */
    int last = 0;
    for (int k = 0; k < 4; k++) last += (t.d[k] - 1) * t.s[k];
    return (uint32_t)(p - bt_l1) + 4u * (uint32_t)last + 4u;
}

#if defined(BT_GAP9)
/* The cluster DMA: one 1-D transfer per row of contiguous columns between L2 (ext) and L1 (loc),
 * then wait for all of them; a view without contiguous rows is copied by the core. */
static int dma_rows(ten_t dst, ten_t src) {
    if (dst.s[3] != 1 || src.s[3] != 1) return 0;
    const int to_l1 = bt_l1_end(dst) != 0;
    const ten_t loc = to_l1 ? dst : src, ext = to_l1 ? src : dst;
    pi_cl_dma_cmd_t cmd;
    for (int i0 = 0; i0 < dst.d[0]; i0++)
        for (int i1 = 0; i1 < dst.d[1]; i1++)
            for (int i2 = 0; i2 < dst.d[2]; i2++)
                pi_cl_dma_cmd((uint32_t)&AT(ext, i0, i1, i2, 0), (uint32_t)&AT(loc, i0, i1, i2, 0),
                              4u * (uint32_t)dst.d[3], to_l1 ? PI_CL_DMA_DIR_EXT2LOC : PI_CL_DMA_DIR_LOC2EXT, &cmd);
    pi_cl_dma_flush();
    return 1;
}
#endif

/* The DMA stand-in: one core (the orchestrating one, core 0) copies a strided 4-D view; on GAP9
 * the cluster DMA moves it. Dimensions broadcast in the destination (stride 0) are copied once. */
void bt_dma(ten_t dst, ten_t src) {
    for (int k = 0; k < 4; k++)
        if (dst.s[k] == 0) dst.d[k] = src.d[k] = 1;
#if defined(BT_GAP9)
    if (!dma_rows(dst, src))
#endif
        FOR4(dst) AT(dst, i0, i1, i2, i3) = AT(src, i0, i1, i2, i3);
    bt_dma_bytes += 4u * (uint32_t)NUMEL(dst);
    bt_dma_copies++;
    const uint32_t e = bt_l1_end(dst) > bt_l1_end(src) ? bt_l1_end(dst) : bt_l1_end(src);
    if (e > bt_l1_touched) bt_l1_touched = e;
    if (e > bt_l1_bytes) fail("a tile reaches beyond the L1 region (BT_L1_BYTES): the L1 plan is broken", 18);
}

void k_fill(ten_t y, float v) { FOR4P(y) AT(y, i0, i1, i2, i3) = v; }

void k_copy(ten_t y, ten_t x) { FOR4P(y) AT(y, i0, i1, i2, i3) = AT(x, i0, i1, i2, i3); }

void k_binary(int op, ten_t y, ten_t a, ten_t b, float alpha) {
    FOR4P(y) {
        float u = AT(a, i0, i1, i2, i3), v = AT(b, i0, i1, i2, i3), r;
        switch (op) {
            case EW_ADD: r = u + alpha * v; break;
            case EW_SUB: r = u - alpha * v; break;
            case EW_MUL: r = u * v; break;
            default: r = u / v; break;
        }
        AT(y, i0, i1, i2, i3) = r;
    }
}

void k_binary_scalar(int op, ten_t y, ten_t a, float s) {
    FOR4P(y) {
        float u = AT(a, i0, i1, i2, i3), r;
        switch (op) {
            case EW_ADD: r = u + s; break;
            case EW_SUB: r = u - s; break;
            case EW_MUL: r = u * s; break;
            default: r = u / s; break;
        }
        AT(y, i0, i1, i2, i3) = r;
    }
}

void k_relu(ten_t y, ten_t x) {
    FOR4P(y) {
        float v = AT(x, i0, i1, i2, i3);
        AT(y, i0, i1, i2, i3) = v > 0.0f ? v : 0.0f;
    }
}

void k_threshold_bwd(ten_t dx, ten_t dy, ten_t x, float thr) {
    FOR4P(dx) {
        float g = AT(dy, i0, i1, i2, i3);
        AT(dx, i0, i1, i2, i3) = AT(x, i0, i1, i2, i3) <= thr ? 0.0f : g;
    }
}

void k_pad(ten_t y, ten_t x, int pad_h, int pad_w, float value) {
    FOR4P(y) {
        int h = i2 - pad_h, w = i3 - pad_w;
        int in = h >= 0 && h < x.d[2] && w >= 0 && w < x.d[3];
        AT(y, i0, i1, i2, i3) = in ? AT(x, i0, i1, h, w) : value;
    }
}

void k_zero_border(ten_t full, int h0, int h1, int w0, int w1) {
    FOR4P(full) {
        if (i2 < h0 || i2 >= h1 || i3 < w0 || i3 >= w1) AT(full, i0, i1, i2, i3) = 0.0f;
    }
}

void k_sum(ten_t y, ten_t ybc, ten_t x, float divisor, int relu, int acc) {
    BT_SERIAL {} else return; /* a reduction into few outputs: one core */
    if (!acc) FOR4(y) AT(y, i0, i1, i2, i3) = 0.0f;
    FOR4(x) {
        float v = AT(x, i0, i1, i2, i3);
        if (relu && v < 0.0f) v = 0.0f;
        AT(ybc, i0, i1, i2, i3) += v;
    }
    if (divisor != 1.0f) FOR4(y) AT(y, i0, i1, i2, i3) /= divisor;
}

void k_i64_add(int64_t *p, int n, int64_t v) {
    BT_SERIAL {} else return;
    for (int i = 0; i < n; i++) p[i] += v;
}

void k_conv2d(ten_t y, ten_t x, ten_t w, const ten_t *bias, int sh, int sw, int ph, int pw, int dh, int dw,
              int groups) {
    const int H = x.d[2], W = x.d[3], cig = w.d[1], cog = y.d[1] / groups, Kh = w.d[2], Kw = w.d[3];
    FOR4P(y) { /* every output element is independent: the cores share them all */
        const int n = i0, co = i1, oh = i2, ow = i3, c0 = (co / cog) * cig;
        float acc = bias ? V(*bias, co) : 0.0f;
        for (int ci = 0; ci < cig; ci++)
            for (int kh = 0; kh < Kh; kh++) {
                const int ih = oh * sh - ph + kh * dh;
                if (ih < 0 || ih >= H) continue;
                for (int kw = 0; kw < Kw; kw++) {
                    const int iw = ow * sw - pw + kw * dw;
                    if (iw < 0 || iw >= W) continue;
                    acc += AT(x, n, c0 + ci, ih, iw) * AT(w, co, ci, kh, kw);
                }
            }
        AT(y, n, co, oh, ow) = acc;
    }
}

/* Weight gradient element (co, ci, kh, kw); c0: the first input channel of co's group. */
static void conv_bwd_weight(ten_t dy, ten_t x, ten_t *dwt, int acc_dw, int co, int ci, int kh, int kw, int c0,
                            int sh, int sw, int ph, int pw, int dh, int dw) {
    const int N = dy.d[0], Ho = dy.d[2], Wo = dy.d[3], H = x.d[2], W = x.d[3];
    float acc = 0.0f;
    for (int n = 0; n < N; n++)
        for (int oh = 0; oh < Ho; oh++) {
            const int ih = oh * sh - ph + kh * dh;
            if (ih < 0 || ih >= H) continue;
            for (int ow = 0; ow < Wo; ow++) {
                const int iw = ow * sw - pw + kw * dw;
                if (iw < 0 || iw >= W) continue;
                acc += AT(dy, n, co, oh, ow) * AT(x, n, c0 + ci, ih, iw);
            }
        }
    if (acc_dw) AT(*dwt, co, ci, kh, kw) += acc;
    else AT(*dwt, co, ci, kh, kw) = acc;
}

/* Bias gradient of output channel co. */
static void conv_bwd_bias(ten_t dy, ten_t *db, int acc_db, int co) {
    const int N = dy.d[0], Ho = dy.d[2], Wo = dy.d[3];
    float acc = 0.0f;
    for (int n = 0; n < N; n++)
        for (int oh = 0; oh < Ho; oh++)
            for (int ow = 0; ow < Wo; ow++) acc += AT(dy, n, co, oh, ow);
    if (acc_db) V(*db, co) += acc;
    else V(*db, co) = acc;
}

/* Input gradient element (n, c0 + ci, ih, iw) (group g): a gather over the output gradient. */
static void conv_bwd_input(ten_t dy, ten_t w, ten_t dx, int g, int cog, int c0, int ci, int n, int ih, int iw,
                           int sh, int sw, int ph, int pw, int dh, int dw) {
    const int Ho = dy.d[2], Wo = dy.d[3], Kh = w.d[2], Kw = w.d[3];
    float acc = 0.0f;
    for (int co = g * cog; co < (g + 1) * cog; co++)
        for (int kh = 0; kh < Kh; kh++) {
            const int th = ih + ph - kh * dh;
            if (th < 0 || th % sh) continue;
            const int oh = th / sh;
            if (oh >= Ho) continue;
            for (int kw = 0; kw < Kw; kw++) {
                const int tw = iw + pw - kw * dw;
                if (tw < 0 || tw % sw) continue;
                const int ow = tw / sw;
                if (ow >= Wo) continue;
                acc += AT(dy, n, co, oh, ow) * AT(w, co, ci, kh, kw);
            }
        }
    AT(dx, n, c0 + ci, ih, iw) = acc;
}

/* The weight and bias gradients first (the cores share their elements), a barrier, then the input
 * gradient (the cores share its elements): dx may overwrite x (the depthwise case the planner
 * allows) because no core writes dx before every core has read x. */
void k_conv2d_bwd(ten_t dy, ten_t x, ten_t w, ten_t *dx, ten_t *dwt, int acc_dw, ten_t *db, int acc_db,
                  int sh, int sw, int ph, int pw, int dh, int dw, int groups) {
    const int Co = dy.d[1], cig = w.d[1], cog = Co / groups;
    if (dwt) {
        FOR4P(*dwt) conv_bwd_weight(dy, x, dwt, acc_dw, i0, i1, i2, i3, (i0 / cog) * cig, sh, sw, ph, pw, dh, dw);
    }
    if (db) {
        BT_CHUNK(Co, co_lo, co_hi);
        for (int co = co_lo; co < co_hi; co++) conv_bwd_bias(dy, db, acc_db, co);
    }
    if (!dx) return;
    BT_BARRIER();
    FOR4P(*dx) {
        const int g = i1 / cig;
        conv_bwd_input(dy, w, *dx, g, cog, g * cig, i1 - g * cig, i0, i2, i3, sh, sw, ph, pw, dh, dw);
    }
}

void k_mm(ten_t y, ten_t a, ten_t b, int acc) {
    const int Nn = y.d[3], K = a.d[3];
    BT_CHUNK(y.d[2] * Nn, e_lo, e_hi); /* the cores share the output elements */
    for (int e = e_lo; e < e_hi; e++) {
        const int i = e / Nn, j = e % Nn;
        float s = 0.0f;
        for (int k = 0; k < K; k++) s += M2(a, i, k) * M2(b, k, j);
        if (acc) M2(y, i, j) += s;
        else M2(y, i, j) = s;
    }
}

void k_addmm(ten_t y, ten_t bias_bc, ten_t a, ten_t b) {
    const int Nn = y.d[3], K = a.d[3];
    BT_CHUNK(y.d[2] * Nn, e_lo, e_hi);
    for (int e = e_lo; e < e_hi; e++) {
        const int i = e / Nn, j = e % Nn;
        float s = 0.0f;
        for (int k = 0; k < K; k++) s += M2(a, i, k) * M2(b, k, j);
        M2(y, i, j) = M2(bias_bc, i, j) + s;
    }
}

/* Parallel reductions: every core sums its share of the elements into its own row of partial
 * sums; after a barrier every core adds the rows in core order (the same total on every core).
 * Two banks alternate, so a core may start the next reduction while others still read the last. */
static float bt_red[2][BT_NCORES][BT_RED_MAX];

static float *red_begin(int bank, int n) {
    float *part = bt_red[bank][BT_CORE()];
    for (int i = 0; i < n; i++) part[i] = 0.0f;
    return part;
}

static void red_total(int bank, int n, float *tot) {
    BT_BARRIER(); /* every core's partial sums are written */
    for (int i = 0; i < n; i++) {
        float t = 0.0f;
        for (int c = 0; c < BT_NCORES; c++) t += bt_red[bank][c][i];
        tot[i] = t;
    }
}

/* Normalisation, in passes over tiles of the time axis (codegen streams each pass's tiles through
 * L1; untiled, a pass is one call with first = last = 1). The statistics are per (sample, group)
 * for GroupNorm (groups > 0) and per channel over the batch for BatchNorm (groups = 0); full_w is
 * the whole time length (a tile holds part of it). The totals of a pass are kept per core between
 * its calls (bt_st), every core holding the same values. */
static float bt_st[2][BT_NCORES][BT_RED_MAX];
static float bt_tot[BT_NCORES][2 * BT_RED_MAX]; /* a pass's totals, per core (not on the small cluster stacks) */

static inline int stat_of(int n, int c, int C, int groups) { return groups > 0 ? n * groups + c / (C / groups) : c; }
static inline int n_stats(int N, int C, int groups) { return groups > 0 ? N * groups : C; }
static inline float stat_count(ten_t x, int groups, int full_w) {
    return (float)((groups > 0 ? x.d[1] / groups : x.d[0]) * x.d[2] * full_w);
}

/* pass 0: sums of x; pass 1: sums of the centred squares; pass 2: y = (x - mean) * rstd * gamma + beta.
 * GroupNorm writes mean and rstd (per sample and group) after pass 1. */
static void norm_fwd_pass(ten_t y, ten_t x, ten_t gamma, ten_t beta, int groups, float eps, int full_w, int pass,
                          int first, int last) {
    const int N = x.d[0], C = x.d[1], S = n_stats(N, C, groups), me = BT_CORE();
    float *mu = bt_st[0][me], *r = bt_st[1][me];
    if (pass < 2) {
        float *part = first ? red_begin(pass, S) : bt_red[pass][me];
        FOR_ROWS(x) {
            const int k = stat_of(i0, i1, C, groups);
            float acc = 0.0f;
            if (pass == 0) {
                for (int i3 = j0; i3 < j1; i3++) acc += AT(x, i0, i1, i2, i3);
            } else {
                const float m = mu[k];
                for (int i3 = j0; i3 < j1; i3++) {
                    const float v = AT(x, i0, i1, i2, i3) - m;
                    acc += v * v;
                }
            }
            part[k] += acc;
        }
        if (!last) return;
        const float cnt = stat_count(x, groups, full_w);
        red_total(pass, S, pass == 0 ? mu : r);
        for (int i = 0; i < S; i++) {
            if (pass == 0) mu[i] /= cnt;
            else r[i] = r[i] / cnt; /* the biased variance, until the caller has used it */
        }
        return;
    }
    FOR_ROWS(y) { /* y may overwrite x: element by element, after the statistics */
        const int k = stat_of(i0, i1, C, groups);
        const float m = mu[k], sc = r[k] * V(gamma, i1), be = V(beta, i1);
        for (int i3 = j0; i3 < j1; i3++) AT(y, i0, i1, i2, i3) = (AT(x, i0, i1, i2, i3) - m) * sc + be;
    }
    (void)eps;
}

void k_group_norm(ten_t y, ten_t x, ten_t gamma, ten_t beta, ten_t mean, ten_t rstd, int groups, float eps,
                  int full_w, int pass, int first, int last) {
    norm_fwd_pass(y, x, gamma, beta, groups, eps, full_w, pass, first, last);
    if (pass != 1 || !last) return;
    const int S = n_stats(x.d[0], x.d[1], groups);
    float *mu = bt_st[0][BT_CORE()], *r = bt_st[1][BT_CORE()];
    for (int i = 0; i < S; i++) r[i] = 1.0f / sqrtf(r[i] + eps);
    BT_SERIAL for (int i = 0; i < S; i++) {
        M2(mean, i / groups, i % groups) = mu[i];
        M2(rstd, i / groups, i % groups) = r[i];
    }
}

void k_batch_norm_train(ten_t y, ten_t x, ten_t gamma, ten_t beta, ten_t *rmean, ten_t *rvar, ten_t smean,
                        ten_t sinvstd, float momentum, float eps, int full_w, int pass, int first, int last) {
    norm_fwd_pass(y, x, gamma, beta, 0, eps, full_w, pass, first, last);
    if (pass != 1 || !last) return;
    const int C = x.d[1];
    const float cnt = stat_count(x, 0, full_w);
    float *mu = bt_st[0][BT_CORE()], *r = bt_st[1][BT_CORE()];
    for (int c = 0; c < C; c++) {
        const float var = r[c];
        BT_SERIAL {
            V(smean, c) = mu[c];
            V(sinvstd, c) = 1.0f / sqrtf(var + eps);
            if (rmean) V(*rmean, c) = (1.0f - momentum) * V(*rmean, c) + momentum * mu[c];
            if (rvar) V(*rvar, c) = (1.0f - momentum) * V(*rvar, c) + momentum * (cnt > 1.0f ? var * cnt / (cnt - 1.0f) : var);
        }
        r[c] = 1.0f / sqrtf(var + eps);
    }
}

void k_batch_norm_eval(ten_t y, ten_t x, ten_t gamma, ten_t beta, ten_t rmean, ten_t rvar, float eps) {
    FOR_ROWS(y) {
        const float inv = 1.0f / sqrtf(V(rvar, i1) + eps), m = V(rmean, i1), ga = V(gamma, i1), be = V(beta, i1);
        for (int i3 = j0; i3 < j1; i3++) AT(y, i0, i1, i2, i3) = (AT(x, i0, i1, i2, i3) - m) * inv * ga + be;
    }
}

/* Backward, pass 0: per (sample, channel) (GroupNorm) or per channel (BatchNorm) sum dy and
 * sum dy * xhat, then the parameter gradients (core 0) and, per statistic, the two means dx needs;
 * pass 1: dx. mean/rstd: per (sample, group) or per channel (mu_c, rstd_c as 1-D tensors). */
static void norm_bwd_pass(ten_t dy, ten_t x, ten_t mean, ten_t rstd, ten_t gamma, ten_t *dx, ten_t *dgamma,
                          int acc_g, ten_t *dbeta, int acc_b, int groups, int full_w, int pass, int first, int last) {
    const int N = x.d[0], C = x.d[1], P = groups > 0 ? N * C : C, me = BT_CORE();
#define BT_MU(n, c) (groups > 0 ? M2(mean, n, (c) / (C / groups)) : V(mean, c))
#define BT_RS(n, c) (groups > 0 ? M2(rstd, n, (c) / (C / groups)) : V(rstd, c))
    float *ma = bt_st[0][me], *mb = bt_st[1][me];
    if (pass == 0) {
        float *part = first ? red_begin(0, 2 * P) : bt_red[0][me];
        FOR_ROWS(dy) {
            const int k = groups > 0 ? i0 * C + i1 : i1;
            const float m = BT_MU(i0, i1), rs = BT_RS(i0, i1);
            float sdy = 0.0f, sdyx = 0.0f;
            for (int i3 = j0; i3 < j1; i3++) {
                const float gy = AT(dy, i0, i1, i2, i3);
                sdy += gy;
                sdyx += gy * (AT(x, i0, i1, i2, i3) - m) * rs;
            }
            part[k] += sdy;
            part[P + k] += sdyx;
        }
        if (!last) return;
        float *tot = bt_tot[me];
        red_total(0, 2 * P, tot); /* tot[k] = sum dy, tot[P + k] = sum dy * xhat */
        const int NN = groups > 0 ? N : 1;
        BT_SERIAL for (int c = 0; c < C; c++) {
            float sg = 0.0f, sb = 0.0f;
            for (int n = 0; n < NN; n++) {
                sg += tot[P + n * C + c];
                sb += tot[n * C + c];
            }
            if (dgamma) V(*dgamma, c) = (acc_g ? V(*dgamma, c) : 0.0f) + sg;
            if (dbeta) V(*dbeta, c) = (acc_b ? V(*dbeta, c) : 0.0f) + sb;
        }
        const float cnt = stat_count(x, groups, full_w);
        if (groups > 0) {
            for (int n = 0; n < N; n++)
                for (int g = 0; g < groups; g++) {
                    float sa = 0.0f, sb = 0.0f;
                    for (int c = g * (C / groups); c < (g + 1) * (C / groups); c++) {
                        sa += V(gamma, c) * tot[n * C + c];
                        sb += V(gamma, c) * tot[P + n * C + c];
                    }
                    ma[n * groups + g] = sa / cnt;
                    mb[n * groups + g] = sb / cnt;
                }
        } else {
            for (int c = 0; c < C; c++) {
                ma[c] = tot[c] / cnt;
                mb[c] = tot[P + c] / cnt;
            }
        }
        return;
    }
    if (!dx) return;
    FOR_ROWS(*dx) { /* dx may overwrite dy or x: element by element, after the sums */
        const float r = BT_RS(i0, i1), m = BT_MU(i0, i1), ga = V(gamma, i1);
        const int k = groups > 0 ? stat_of(i0, i1, C, groups) : i1;
        const float a = ma[k], b = mb[k];
        if (groups > 0) {
            for (int i3 = j0; i3 < j1; i3++) {
                const float xh = (AT(x, i0, i1, i2, i3) - m) * r;
                AT(*dx, i0, i1, i2, i3) = r * (ga * AT(dy, i0, i1, i2, i3) - a - xh * b);
            }
        } else {
            for (int i3 = j0; i3 < j1; i3++) {
                const float xh = (AT(x, i0, i1, i2, i3) - m) * r;
                AT(*dx, i0, i1, i2, i3) = ga * r * (AT(dy, i0, i1, i2, i3) - a - xh * b);
            }
        }
    }
#undef BT_MU
#undef BT_RS
}

void k_group_norm_bwd(ten_t dy, ten_t x, ten_t mean, ten_t rstd, ten_t gamma, ten_t *dx, ten_t *dgamma,
                      int acc_g, ten_t *dbeta, int acc_b, int groups, int full_w, int pass, int first, int last) {
    norm_bwd_pass(dy, x, mean, rstd, gamma, dx, dgamma, acc_g, dbeta, acc_b, groups, full_w, pass, first, last);
}

void k_batch_norm_bwd(ten_t dy, ten_t x, ten_t gamma, ten_t smean, ten_t sinvstd, ten_t *dx, ten_t *dgamma,
                      int acc_g, ten_t *dbeta, int acc_b, int full_w, int pass, int first, int last) {
    norm_bwd_pass(dy, x, smean, sinvstd, gamma, dx, dgamma, acc_g, dbeta, acc_b, 0, full_w, pass, first, last);
}

/* Frozen (eval-mode) BatchNorm backward: the running statistics normalise, so dx = dy * gamma * rstd
 * with no reduction (pass 1); pass 0 sums the parameter gradients (x read only for the scale's). */
void k_batch_norm_eval_bwd(ten_t dy, ten_t x, ten_t gamma, ten_t rmean, ten_t rvar, ten_t *dx, ten_t *dgamma,
                           int acc_g, ten_t *dbeta, int acc_b, float eps, int pass, int first, int last) {
    const int C = dy.d[1], me = BT_CORE();
    if (pass == 0) {
        float *part = first ? red_begin(0, 2 * C) : bt_red[0][me];
        FOR_ROWS(dy) {
            const float m = V(rmean, i1), inv = 1.0f / sqrtf(V(rvar, i1) + eps);
            float sdy = 0.0f, sdyx = 0.0f;
            for (int i3 = j0; i3 < j1; i3++) {
                const float gy = AT(dy, i0, i1, i2, i3);
                sdy += gy;
                if (dgamma) sdyx += gy * (AT(x, i0, i1, i2, i3) - m) * inv;
            }
            part[i1] += sdy;
            part[C + i1] += sdyx;
        }
        if (!last) return;
        float *tot = bt_tot[me];
        red_total(0, 2 * C, tot);
        BT_SERIAL for (int c = 0; c < C; c++) {
            if (dgamma) V(*dgamma, c) = (acc_g ? V(*dgamma, c) : 0.0f) + tot[C + c];
            if (dbeta) V(*dbeta, c) = (acc_b ? V(*dbeta, c) : 0.0f) + tot[c];
        }
        return;
    }
    if (!dx) return;
    FOR_ROWS(*dx) {
        const float sc = V(gamma, i1) * (1.0f / sqrtf(V(rvar, i1) + eps));
        for (int i3 = j0; i3 < j1; i3++) AT(*dx, i0, i1, i2, i3) = sc * AT(dy, i0, i1, i2, i3);
    }
}

/* average pools multiply by the reciprocal of the window: one division per call, not per
 * element (a division is an iterative unit on the FPU, or a library call without one) */
void k_avg_pool(ten_t y, ten_t x, int kh, int kw, int sh, int sw, float divisor, int relu) {
    const float inv = 1.0f / divisor;
    FOR4P(y) {
        float s = 0.0f;
        for (int a = 0; a < kh; a++)
            for (int b = 0; b < kw; b++) {
                float v = AT(x, i0, i1, i2 * sh + a, i3 * sw + b);
                if (relu && v < 0.0f) v = 0.0f;
                s += v;
            }
        AT(y, i0, i1, i2, i3) = s * inv;
    }
}

/* A gather: each input element sums the output gradients of the windows that cover it, so the
 * cores share the input elements without racing. Windows that do not overlap (the models' pools)
 * cover an element at most once: a row walks its window index without a division per element. */
void k_avg_pool_bwd(ten_t dx, ten_t dy, int kh, int kw, int sh, int sw, float divisor) {
    const float inv = 1.0f / divisor;
    const int Ho = dy.d[2], Wo = dy.d[3];
    FOR_ROWS(dx) {
        if (kh <= sh && kw <= sw) {
            const int oh = i2 / sh, in_h = oh < Ho && i2 - oh * sh < kh;
            int ow = j0 / sw, b = j0 - ow * sw;
            for (int i3 = j0; i3 < j1; i3++) {
                AT(dx, i0, i1, i2, i3) = (in_h && ow < Wo && b < kw) ? AT(dy, i0, i1, oh, ow) * inv : 0.0f;
                if (++b == sw) b = 0, ow++;
            }
            continue;
        }
        for (int i3 = j0; i3 < j1; i3++) {
            float acc = 0.0f;
            for (int a = 0; a < kh; a++) {
                const int th = i2 - a;
                if (th < 0 || th % sh || th / sh >= Ho) continue;
                for (int b = 0; b < kw; b++) {
                    const int tw = i3 - b;
                    if (tw < 0 || tw % sw || tw / sw >= Wo) continue;
                    acc += AT(dy, i0, i1, th / sh, tw / sw);
                }
            }
            AT(dx, i0, i1, i2, i3) = acc * inv;
        }
    }
}

void k_log_softmax(ten_t y, ten_t x) {
    BT_SERIAL {} else return;
    const int N = x.d[2], K = x.d[3];
    for (int i = 0; i < N; i++) {
        float m = M2(x, i, 0), s = 0.0f;
        for (int k = 1; k < K; k++) if (M2(x, i, k) > m) m = M2(x, i, k);
        for (int k = 0; k < K; k++) s += expf(M2(x, i, k) - m);
        const float lse = m + logf(s);
        for (int k = 0; k < K; k++) M2(y, i, k) = M2(x, i, k) - lse;
    }
}

void k_log_softmax_bwd(ten_t dx, ten_t dy, ten_t out) {
    BT_SERIAL {} else return;
    const int N = out.d[2], K = out.d[3];
    for (int i = 0; i < N; i++) {
        float s = 0.0f;
        for (int k = 0; k < K; k++) s += M2(dy, i, k);
        for (int k = 0; k < K; k++) M2(dx, i, k) = M2(dy, i, k) - expf(M2(out, i, k)) * s;
    }
}

void k_nll_loss(ten_t loss, ten_t total_weight, ten_t logp, const int64_t *target, int ignore_index) {
    BT_SERIAL {} else return;
    const int N = logp.d[2];
    float s = 0.0f, cnt = 0.0f;
    for (int i = 0; i < N; i++) {
        if (target[i] == ignore_index) continue;
        s -= M2(logp, i, (int)target[i]);
        cnt += 1.0f;
    }
    loss.p[0] = s / cnt;
    total_weight.p[0] = cnt;
}

void k_nll_loss_bwd(ten_t dx, ten_t dloss, const int64_t *target, ten_t total_weight, int ignore_index) {
    BT_SERIAL {} else return;
    const int N = dx.d[2];
    FOR4(dx) AT(dx, i0, i1, i2, i3) = 0.0f;
    for (int i = 0; i < N; i++) {
        if (target[i] == ignore_index) continue;
        M2(dx, i, (int)target[i]) = -dloss.p[0] / total_weight.p[0];
    }
}
