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

/* index (i0..i3) of flat element e of a tensor of sizes d */
static inline void unflat(const int d[4], int e, int *i0, int *i1, int *i2, int *i3) {
    *i3 = e % d[3];
    e /= d[3];
    *i2 = e % d[2];
    e /= d[2];
    *i1 = e % d[1];
    *i0 = e / d[1];
}

/* the next index in row-major order (no division per element) */
static inline int next4(const int d[4], int *i0, int *i1, int *i2, int *i3) {
    if (++*i3 < d[3]) return 1;
    *i3 = 0;
    if (++*i2 < d[2]) return 1;
    *i2 = 0;
    if (++*i1 < d[1]) return 1;
    *i1 = 0;
    ++*i0;
    return 1;
}

/* this core's share of all the elements of t, flattened: balanced to one element whatever the shape */
#define FOR4P(t) \
    BT_CHUNK(NUMEL(t), e_lo, e_hi); \
    int i0, i1, i2, i3; \
    unflat((t).d, e_lo, &i0, &i1, &i2, &i3); \
    for (int e_ = e_lo; e_ < e_hi; e_++, next4((t).d, &i0, &i1, &i2, &i3))

#define FOR4(t) \
    for (int i0 = 0; i0 < (t).d[0]; i0++) \
        for (int i1 = 0; i1 < (t).d[1]; i1++) \
            for (int i2 = 0; i2 < (t).d[2]; i2++) \
                for (int i3 = 0; i3 < (t).d[3]; i3++)

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

/* Statistics per (sample, group) over its channels and positions, two passes (mean, then the
 * centred variance) as the single-core kernel did; the cores share the elements in every pass. */
void k_group_norm(ten_t y, ten_t x, ten_t gamma, ten_t beta, ten_t mean, ten_t rstd, int groups, float eps) {
    const int N = x.d[0], C = x.d[1], cpg = C / groups, S = N * groups;
    const float cnt = (float)(cpg * x.d[2] * x.d[3]);
    float mu[BT_RED_MAX], r[BT_RED_MAX];
    {
        float *part = red_begin(0, S);
        FOR4P(x) part[i0 * groups + i1 / cpg] += AT(x, i0, i1, i2, i3);
    }
    red_total(0, S, mu);
    for (int i = 0; i < S; i++) mu[i] /= cnt;
    {
        float *part = red_begin(1, S);
        FOR4P(x) {
            const float d = AT(x, i0, i1, i2, i3) - mu[i0 * groups + i1 / cpg];
            part[i0 * groups + i1 / cpg] += d * d;
        }
    }
    red_total(1, S, r);
    for (int i = 0; i < S; i++) r[i] = 1.0f / sqrtf(r[i] / cnt + eps);
    BT_SERIAL for (int i = 0; i < S; i++) {
        M2(mean, i / groups, i % groups) = mu[i];
        M2(rstd, i / groups, i % groups) = r[i];
    }
    FOR4P(y) { /* y may overwrite x: every core has read all of x for the statistics */
        const int k = i0 * groups + i1 / cpg;
        AT(y, i0, i1, i2, i3) = (AT(x, i0, i1, i2, i3) - mu[k]) * r[k] * V(gamma, i1) + V(beta, i1);
    }
}

/* Per (sample, channel): sum dy and sum dy * xhat (the cores share the elements), then the
 * parameter gradients and the per-group means, then dx (the cores share its elements). */
void k_group_norm_bwd(ten_t dy, ten_t x, ten_t mean, ten_t rstd, ten_t gamma, ten_t *dx, ten_t *dgamma,
                      int acc_g, ten_t *dbeta, int acc_b, int groups) {
    const int N = x.d[0], C = x.d[1], cpg = C / groups, NC = N * C;
    const float cnt = (float)(cpg * x.d[2] * x.d[3]);
    float tot[BT_RED_MAX], ma[BT_RED_MAX], mb[BT_RED_MAX];
    {
        float *part = red_begin(0, 2 * NC);
        FOR4P(dy) {
            const int g = i1 / cpg, k = i0 * C + i1;
            const float gy = AT(dy, i0, i1, i2, i3), xh = (AT(x, i0, i1, i2, i3) - M2(mean, i0, g)) * M2(rstd, i0, g);
            part[k] += gy;
            part[NC + k] += gy * xh;
        }
    }
    red_total(0, 2 * NC, tot); /* tot[n*C + c] = sum dy, tot[NC + n*C + c] = sum dy * xhat */
    BT_SERIAL for (int c = 0; c < C; c++) {
        float sg = 0.0f, sb = 0.0f;
        for (int n = 0; n < N; n++) {
            sg += tot[NC + n * C + c];
            sb += tot[n * C + c];
        }
        if (dgamma) V(*dgamma, c) = (acc_g ? V(*dgamma, c) : 0.0f) + sg;
        if (dbeta) V(*dbeta, c) = (acc_b ? V(*dbeta, c) : 0.0f) + sb;
    }
    if (!dx) return;
    for (int n = 0; n < N; n++)
        for (int g = 0; g < groups; g++) {
            float sa = 0.0f, sb = 0.0f;
            for (int c = g * cpg; c < (g + 1) * cpg; c++) {
                sa += V(gamma, c) * tot[n * C + c];
                sb += V(gamma, c) * tot[NC + n * C + c];
            }
            ma[n * groups + g] = sa / cnt;
            mb[n * groups + g] = sb / cnt;
        }
    FOR4P(*dx) { /* dx may overwrite dy or x: every core has read them for the sums */
        const int g = i1 / cpg, k = i0 * groups + g;
        const float r = M2(rstd, i0, g), xh = (AT(x, i0, i1, i2, i3) - M2(mean, i0, g)) * r;
        AT(*dx, i0, i1, i2, i3) = r * (V(gamma, i1) * AT(dy, i0, i1, i2, i3) - ma[k] - xh * mb[k]);
    }
}

void k_batch_norm_train(ten_t y, ten_t x, ten_t gamma, ten_t beta, ten_t *rmean, ten_t *rvar, ten_t smean,
                        ten_t sinvstd, float momentum, float eps) {
    const int N = x.d[0], C = x.d[1], H = x.d[2], W = x.d[3];
    const float cnt = (float)(N * H * W);
    BT_CHUNK(C, c_lo, c_hi);
    for (int c = c_lo; c < c_hi; c++) {
        float s = 0.0f, q = 0.0f;
        for (int n = 0; n < N; n++)
            for (int h = 0; h < H; h++)
                for (int w = 0; w < W; w++) s += AT(x, n, c, h, w);
        const float mu = s / cnt;
        for (int n = 0; n < N; n++)
            for (int h = 0; h < H; h++)
                for (int w = 0; w < W; w++) {
                    const float d = AT(x, n, c, h, w) - mu;
                    q += d * d;
                }
        const float var = q / cnt, inv = 1.0f / sqrtf(var + eps);
        V(smean, c) = mu;
        V(sinvstd, c) = inv;
        if (rmean) V(*rmean, c) = (1.0f - momentum) * V(*rmean, c) + momentum * mu;
        if (rvar) V(*rvar, c) = (1.0f - momentum) * V(*rvar, c) + momentum * (cnt > 1.0f ? q / (cnt - 1.0f) : var);
        const float ga = V(gamma, c), be = V(beta, c);
        for (int n = 0; n < N; n++)
            for (int h = 0; h < H; h++)
                for (int w = 0; w < W; w++) AT(y, n, c, h, w) = (AT(x, n, c, h, w) - mu) * inv * ga + be;
    }
}

void k_batch_norm_eval(ten_t y, ten_t x, ten_t gamma, ten_t beta, ten_t rmean, ten_t rvar, float eps) {
    const int N = x.d[0], C = x.d[1], H = x.d[2], W = x.d[3];
    BT_CHUNK(C, c_lo, c_hi);
    for (int c = c_lo; c < c_hi; c++) {
        const float mu = V(rmean, c), inv = 1.0f / sqrtf(V(rvar, c) + eps), ga = V(gamma, c), be = V(beta, c);
        for (int n = 0; n < N; n++)
            for (int h = 0; h < H; h++)
                for (int w = 0; w < W; w++) AT(y, n, c, h, w) = (AT(x, n, c, h, w) - mu) * inv * ga + be;
    }
}

/* One channel's BatchNorm parameter gradients: sum dy (shift) and sum dy * xhat (scale), written or
 * accumulated; x is read only with read_x (a frozen norm without a trained scale gets x for its shape). */
static void bn_param_grads(ten_t dy, ten_t x, int c, float mu, float inv, int read_x, ten_t *dgamma, int acc_g,
                           ten_t *dbeta, int acc_b, float *sdy_out, float *sdyx_out) {
    const int N = dy.d[0], H = dy.d[2], W = dy.d[3];
    float sdy = 0.0f, sdyx = 0.0f;
    for (int n = 0; n < N; n++)
        for (int h = 0; h < H; h++)
            for (int w = 0; w < W; w++) {
                const float gy = AT(dy, n, c, h, w);
                sdy += gy;
                if (read_x) sdyx += gy * (AT(x, n, c, h, w) - mu) * inv;
            }
    if (dgamma) { if (acc_g) V(*dgamma, c) += sdyx; else V(*dgamma, c) = sdyx; }
    if (dbeta) { if (acc_b) V(*dbeta, c) += sdy; else V(*dbeta, c) = sdy; }
    *sdy_out = sdy;
    *sdyx_out = sdyx;
}

void k_batch_norm_bwd(ten_t dy, ten_t x, ten_t gamma, ten_t smean, ten_t sinvstd, ten_t *dx, ten_t *dgamma,
                      int acc_g, ten_t *dbeta, int acc_b) {
    const int N = x.d[0], C = x.d[1], H = x.d[2], W = x.d[3];
    const float cnt = (float)(N * H * W);
    BT_CHUNK(C, c_lo, c_hi);
    for (int c = c_lo; c < c_hi; c++) {
        const float mu = V(smean, c), inv = V(sinvstd, c), ga = V(gamma, c);
        float sdy, sdyx;
        bn_param_grads(dy, x, c, mu, inv, 1, dgamma, acc_g, dbeta, acc_b, &sdy, &sdyx);
        if (!dx) continue;
        const float ma = sdy / cnt, mb = sdyx / cnt;
        for (int n = 0; n < N; n++)
            for (int h = 0; h < H; h++)
                for (int w = 0; w < W; w++) {
                    const float xh = (AT(x, n, c, h, w) - mu) * inv;
                    AT(*dx, n, c, h, w) = ga * inv * (AT(dy, n, c, h, w) - ma - xh * mb);
                }
    }
}

/* Frozen (eval-mode) BatchNorm backward: the running statistics normalise, so dx = dy * gamma * rstd
 * with no reduction; x is read only for the scale's gradient (sum dy * xhat). */
void k_batch_norm_eval_bwd(ten_t dy, ten_t x, ten_t gamma, ten_t rmean, ten_t rvar, ten_t *dx, ten_t *dgamma,
                           int acc_g, ten_t *dbeta, int acc_b, float eps) {
    const int N = dy.d[0], C = dy.d[1], H = dy.d[2], W = dy.d[3];
    BT_CHUNK(C, c_lo, c_hi);
    for (int c = c_lo; c < c_hi; c++) {
        const float mu = V(rmean, c), inv = 1.0f / sqrtf(V(rvar, c) + eps), ga = V(gamma, c);
        float sdy, sdyx;
        if (dgamma || dbeta) bn_param_grads(dy, x, c, mu, inv, dgamma != 0, dgamma, acc_g, dbeta, acc_b, &sdy, &sdyx);
        if (!dx) continue;
        const float s = ga * inv;
        for (int n = 0; n < N; n++)
            for (int h = 0; h < H; h++)
                for (int w = 0; w < W; w++) AT(*dx, n, c, h, w) = s * AT(dy, n, c, h, w);
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
 * cores share the input elements without racing even when windows overlap. */
void k_avg_pool_bwd(ten_t dx, ten_t dy, int kh, int kw, int sh, int sw, float divisor) {
    const float inv = 1.0f / divisor;
    const int Ho = dy.d[2], Wo = dy.d[3];
    FOR4P(dx) {
        float s = 0.0f;
        for (int a = 0; a < kh; a++) {
            const int th = i2 - a;
            if (th < 0 || th % sh || th / sh >= Ho) continue;
            for (int b = 0; b < kw; b++) {
                const int tw = i3 - b;
                if (tw < 0 || tw % sw || tw / sw >= Wo) continue;
                s += AT(dy, i0, i1, th / sh, tw / sw);
            }
        }
        AT(dx, i0, i1, i2, i3) = s * inv;
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
