/* biotrain device export: fp32 training kernels (written for this project).
 *
 * Loops over strided 4-D views, each core on its share; no SIMD. The convolutions keep blocks of
 * sums in registers (fast paths for the models' unit-stride shapes, generic loops for the rest);
 * the other kernels walk row segments with row pointers. Kernels that may run in place (output
 * over an input that dies at the op, as the memory plan allows) read every input element before
 * writing the output element at the same index, or finish their reductions first.
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

/* Element-wise kernels walk their share row segment by row segment with row pointers and the
 * innermost strides (no index arithmetic per element); an operation is chosen once per row. */
#define ROWP(t) (&AT(t, i0, i1, i2, j0)) /* the first element of a FOR_ROWS segment */

/* y[i] = F(a[i], b[i]) for i < n, strides ys, as, bs (pointers and ints in scope by these names);
 * the contiguous case unrolled by 4 */
#define EW_LOOP(F)                                                                         \
    do {                                                                                   \
        if (ys == 1 && as == 1 && bs == 1) {                                               \
            int i = 0;                                                                     \
            for (; i + 4 <= n; i += 4) {                                                   \
                const float u0 = a[i], u1 = a[i + 1], u2 = a[i + 2], u3 = a[i + 3];        \
                const float v0 = b[i], v1 = b[i + 1], v2 = b[i + 2], v3 = b[i + 3];        \
                y[i] = F(u0, v0), y[i + 1] = F(u1, v1), y[i + 2] = F(u2, v2), y[i + 3] = F(u3, v3); \
            }                                                                              \
            for (; i < n; i++) y[i] = F(a[i], b[i]);                                       \
        } else if (ys == 1 && as == 1 && bs == 0) { /* b broadcast along the row */        \
            const float v = *b;                                                            \
            for (int i = 0; i < n; i++) y[i] = F(a[i], v);                                 \
        } else {                                                                           \
            for (int i = 0; i < n; i++, y += ys, a += as, b += bs) *y = F(*a, *b);         \
        }                                                                                  \
    } while (0)

#define EW_ADD_F(u, v) ((u) + alpha * (v))
#define EW_SUB_F(u, v) ((u) - alpha * (v))
#define EW_MUL_F(u, v) ((u) * (v))
#define EW_DIV_F(u, v) ((u) / (v))
#define EW_FIRST_F(u, v) (u)
#define EW_THR_F(u, v) ((v) <= thr ? 0.0f : (u))

static void bin_row(int op, float *y, int ys, const float *a, int as, const float *b, int bs, int n, float alpha) {
    switch (op) {
        case EW_ADD: EW_LOOP(EW_ADD_F); break;
        case EW_SUB: EW_LOOP(EW_SUB_F); break;
        case EW_MUL: EW_LOOP(EW_MUL_F); break;
        default: EW_LOOP(EW_DIV_F); break;
    }
}

void k_fill(ten_t y, float v) {
    FOR_ROWS(y) {
        float *p = ROWP(y);
        for (int i = j0; i < j1; i++, p += y.s[3]) *p = v;
    }
}

void k_copy(ten_t y, ten_t x) {
    FOR_ROWS(y) {
        float *yp = ROWP(y);
        const float *xp = ROWP(x);
        for (int i = j0; i < j1; i++, yp += y.s[3], xp += x.s[3]) *yp = *xp;
    }
}

void k_binary(int op, ten_t y, ten_t a, ten_t b, float alpha) {
    FOR_ROWS(y) bin_row(op, ROWP(y), y.s[3], ROWP(a), a.s[3], ROWP(b), b.s[3], j1 - j0, alpha);
}

void k_binary_scalar(int op, ten_t y, ten_t a, float s) {
    FOR_ROWS(y) bin_row(op, ROWP(y), y.s[3], ROWP(a), a.s[3], &s, 0, j1 - j0, 1.0f);
}

static void relu_row(float *y, int ys, const float *a, int as, int n) {
    for (int i = 0; i < n; i++, y += ys, a += as) *y = *a > 0.0f ? *a : 0.0f;
}

/* y = b <= thr ? 0 : a */
static void thr_row(float *y, int ys, const float *a, int as, const float *b, int bs, int n, float thr) {
    EW_LOOP(EW_THR_F);
}

void k_relu(ten_t y, ten_t x) { FOR_ROWS(y) relu_row(ROWP(y), y.s[3], ROWP(x), x.s[3], j1 - j0); }

void k_threshold_bwd(ten_t dx, ten_t dy, ten_t x, float thr) {
    FOR_ROWS(dx) thr_row(ROWP(dx), dx.s[3], ROWP(dy), dy.s[3], ROWP(x), x.s[3], j1 - j0, thr);
}

static inline int clamp_i(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

/* per row: the value, then the source columns in range, then the value */
void k_pad(ten_t y, ten_t x, int pad_h, int pad_w, float value) {
    FOR_ROWS(y) {
        float *p = ROWP(y);
        const int h = i2 - pad_h, s3 = y.s[3], in_h = h >= 0 && h < x.d[2];
        const int a = in_h ? clamp_i(pad_w, j0, j1) : j1, b = in_h ? clamp_i(pad_w + x.d[3], a, j1) : j1;
        for (int i = j0; i < a; i++) p[(i - j0) * s3] = value;
        if (b > a) {
            const float *q = &AT(x, i0, i1, h, a - pad_w);
            for (int i = a; i < b; i++, q += x.s[3]) p[(i - j0) * s3] = *q;
        }
        for (int i = b; i < j1; i++) p[(i - j0) * s3] = value;
    }
}

/* only the border is written: rows outside [h0, h1) whole, the columns outside [w0, w1) of the others */
void k_zero_border(ten_t full, int h0, int h1, int w0, int w1) {
    FOR_ROWS(full) {
        float *p = ROWP(full);
        const int s3 = full.s[3], in_h = i2 >= h0 && i2 < h1;
        const int a = in_h ? (w0 < j1 ? w0 : j1) : j1, b = in_h ? (w1 > j0 ? w1 : j0) : j1;
        for (int i = j0; i < a; i++) p[(i - j0) * s3] = 0.0f;
        for (int i = b > a ? b : a; i < j1; i++) p[(i - j0) * s3] = 0.0f;
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

/* ---- Convolutions ----
 * The cores share the output elements (forward, input gradient) or the weight elements (weight
 * gradient), flattened, as every kernel does; each core walks its share row segment by row
 * segment. Fast paths (width stride and dilation 1, the time axis contiguous in the operands it
 * sweeps: every convolution of the models) keep a block of sums in registers over taps known to
 * be in range, with the inputs of a block loaded once; the few outputs near a border take their
 * clipped tap range one by one. No bounds check runs per tap. Anything else takes the generic
 * per-element loops (conv_*_el). Control flow depends on the shapes only. */

#if defined(__FP_FAST_FMAF)
#define FMA(a, b, c) __builtin_fmaf(a, b, c) /* one fmadd.s (rv32 F); not picolibc's inline asm, which the compiler cannot schedule */
#else
#define FMA(a, b, c) ((a) * (b) + (c))
#endif
#define BT_INLINE static inline __attribute__((always_inline))

/* the convolution family's arguments, built once per call; y: the output (forward) or dy */
typedef struct {
    ten_t y, x, w;
    int sh, sw, ph, pw, dh, dw;
    int cig, cog; /* input and output channels per group */
} conv_args_t;

static conv_args_t conv_args(ten_t y, ten_t x, ten_t w, int sh, int sw, int ph, int pw, int dh, int dw, int groups) {
    conv_args_t c = {y, x, w, sh, sw, ph, pw, dh, dw, w.d[1], y.d[1] / groups};
    return c;
}

static inline int max_i(int a, int b) { return a > b ? a : b; }
static inline int min_i(int a, int b) { return a < b ? a : b; }
static inline int ceil_div(int a, int b) { return a >= 0 ? (a + b - 1) / b : -((-a) / b); } /* b > 0 */

/* -- generic per-element loops (any stride, padding, dilation, groups) -- */

static float conv_fwd_el(const conv_args_t *c, int n, int co, int oh, int ow, float acc) {
    const ten_t x = c->x, w = c->w;
    const int H = x.d[2], W = x.d[3], Kh = w.d[2], Kw = w.d[3], c0 = (co / c->cog) * c->cig;
    for (int ci = 0; ci < c->cig; ci++)
        for (int kh = 0; kh < Kh; kh++) {
            const int ih = oh * c->sh - c->ph + kh * c->dh;
            if (ih < 0 || ih >= H) continue;
            for (int kw = 0; kw < Kw; kw++) {
                const int iw = ow * c->sw - c->pw + kw * c->dw;
                if (iw < 0 || iw >= W) continue;
                acc += AT(x, n, c0 + ci, ih, iw) * AT(w, co, ci, kh, kw);
            }
        }
    return acc;
}

/* weight gradient element (co, ci, kh, kw) */
static float conv_wg_el(const conv_args_t *c, int co, int ci, int kh, int kw) {
    const ten_t dy = c->y, x = c->x;
    const int N = dy.d[0], Ho = dy.d[2], Wo = dy.d[3], H = x.d[2], W = x.d[3], c0 = (co / c->cog) * c->cig;
    float acc = 0.0f;
    for (int n = 0; n < N; n++)
        for (int oh = 0; oh < Ho; oh++) {
            const int ih = oh * c->sh - c->ph + kh * c->dh;
            if (ih < 0 || ih >= H) continue;
            for (int ow = 0; ow < Wo; ow++) {
                const int iw = ow * c->sw - c->pw + kw * c->dw;
                if (iw < 0 || iw >= W) continue;
                acc += AT(dy, n, co, oh, ow) * AT(x, n, c0 + ci, ih, iw);
            }
        }
    return acc;
}

/* input gradient element (n, ci, ih, iw): a gather over the output gradient */
static float conv_ig_el(const conv_args_t *c, int n, int ci, int ih, int iw) {
    const ten_t dy = c->y, w = c->w;
    const int Ho = dy.d[2], Wo = dy.d[3], Kh = w.d[2], Kw = w.d[3], g = ci / c->cig, cl = ci - g * c->cig;
    float acc = 0.0f;
    for (int co = g * c->cog; co < (g + 1) * c->cog; co++)
        for (int kh = 0; kh < Kh; kh++) {
            const int th = ih + c->ph - kh * c->dh;
            if (th < 0 || th % c->sh) continue;
            const int oh = th / c->sh;
            if (oh >= Ho) continue;
            for (int kw = 0; kw < Kw; kw++) {
                const int tw = iw + c->pw - kw * c->dw;
                if (tw < 0 || tw % c->sw) continue;
                const int ow = tw / c->sw;
                if (ow >= Wo) continue;
                acc += AT(dy, n, co, oh, ow) * AT(w, co, cl, kh, kw);
            }
        }
    return acc;
}

/* -- register blocks --
 * BLK8_4: s_j += sum_{i<4} b[i*bs] * a[j+i] for j < 8 (11 a and 4 b loads, 32 multiply-adds);
 * BLK8_1: s_j += b[0] * a[j]. BLK4_*: the same for j < 4. The output-stationary sums use them
 * with b the weights (a tap block), the tap-stationary ones with b the output gradient (a column
 * block) and s the weight-gradient taps. */
#define ROW4(s, a0, a1, a2, a3) \
    s = FMA(a0, b0, s);         \
    s = FMA(a1, b1, s);         \
    s = FMA(a2, b2, s);         \
    s = FMA(a3, b3, s)
#define LOADB4(b, bs) const float b0 = (b)[0], b1 = (b)[(bs)], b2 = (b)[2 * (bs)], b3 = (b)[3 * (bs)]
#define BLK8_4(a, b, bs)                                                                               \
    do {                                                                                               \
        LOADB4(b, bs);                                                                                 \
        const float a0 = (a)[0], a1 = (a)[1], a2 = (a)[2], a3 = (a)[3], a4 = (a)[4], a5 = (a)[5];      \
        const float a6 = (a)[6], a7 = (a)[7], a8 = (a)[8], a9 = (a)[9], a10 = (a)[10];                 \
        ROW4(s0, a0, a1, a2, a3); ROW4(s1, a1, a2, a3, a4); ROW4(s2, a2, a3, a4, a5);                 \
        ROW4(s3, a3, a4, a5, a6); ROW4(s4, a4, a5, a6, a7); ROW4(s5, a5, a6, a7, a8);                 \
        ROW4(s6, a6, a7, a8, a9); ROW4(s7, a7, a8, a9, a10);                                          \
    } while (0)
#define BLK8_1(a, b)                                                                                   \
    do {                                                                                               \
        const float b0 = (b)[0];                                                                       \
        s0 = FMA((a)[0], b0, s0); s1 = FMA((a)[1], b0, s1); s2 = FMA((a)[2], b0, s2);                  \
        s3 = FMA((a)[3], b0, s3); s4 = FMA((a)[4], b0, s4); s5 = FMA((a)[5], b0, s5);                  \
        s6 = FMA((a)[6], b0, s6); s7 = FMA((a)[7], b0, s7);                                            \
    } while (0)
#define BLK4_4(a, b, bs)                                                                               \
    do {                                                                                               \
        LOADB4(b, bs);                                                                                 \
        const float a0 = (a)[0], a1 = (a)[1], a2 = (a)[2], a3 = (a)[3], a4 = (a)[4], a5 = (a)[5];      \
        const float a6 = (a)[6];                                                                       \
        ROW4(s0, a0, a1, a2, a3); ROW4(s1, a1, a2, a3, a4); ROW4(s2, a2, a3, a4, a5);                 \
        ROW4(s3, a3, a4, a5, a6);                                                                      \
    } while (0)
#define BLK4_1(a, b)                                                                                   \
    do {                                                                                               \
        const float b0 = (b)[0];                                                                       \
        s0 = FMA((a)[0], b0, s0); s1 = FMA((a)[1], b0, s1); s2 = FMA((a)[2], b0, s2);                  \
        s3 = FMA((a)[3], b0, s3);                                                                      \
    } while (0)

/* s + sum_{i<n} a[i] * b[i*bs] */
BT_INLINE float dot_bs(const float *a, const float *b, int n, const int bs, float s) {
    const float *e4 = a + (n & ~3), *e = a + n;
    for (; a != e4; a += 4, b += 4 * bs) {
        s = FMA(a[0], b[0], s);
        s = FMA(a[1], b[bs], s);
        s = FMA(a[2], b[2 * bs], s);
        s = FMA(a[3], b[3 * bs], s);
    }
    for (; a != e; a++, b += bs) s = FMA(a[0], b[0], s);
    return s;
}

/* -- output-stationary rows (forward, input gradient) --
 * out[o] = init + sum over tap rows (u, k) of sum_{t<K} a_uk[o + off + t] * b_uk[t * bs], where
 * a_uk = a + u a_su + k a_sk is a row of A columns and b_uk = b + u b_su + k b_sk its K taps
 * (bs = 1: forward; bs = -1: input gradient, the taps reversed). Output o's taps are all in range
 * when -off <= o < A - off - K + 1 (the interior). */
typedef struct {
    const float *a, *b;
    int a_su, a_sk, b_su, b_sk, nu, nk, K, A, off;
    float init;
} os_row_t;

/* the tap rows of output o from tap t on (bs in scope) */
#define OS_ROWS_T(r, o, t, ...)                                                           \
    const float *au = (r)->a + (o) + (r)->off + (t), *bu = (r)->b + (t) * bs;             \
    for (int u = 0; u < (r)->nu; u++, au += (r)->a_su, bu += (r)->b_su) {                \
        const float *ak = au, *bk = bu;                                                  \
        for (int k = 0; k < (r)->nk; k++, ak += (r)->a_sk, bk += (r)->b_sk) __VA_ARGS__ \
    }
#define OS_ROWS(r, o, ...) OS_ROWS_T(r, o, 0, __VA_ARGS__)

/* y[0], y[ys], ... = the 8 values: immediate offsets when contiguous */
#define STORE8(y, ys, v0, v1, v2, v3, v4, v5, v6, v7)                                               \
    do {                                                                                            \
        float *q_ = (y);                                                                            \
        if ((ys) == 1) {                                                                            \
            q_[0] = v0, q_[1] = v1, q_[2] = v2, q_[3] = v3, q_[4] = v4, q_[5] = v5, q_[6] = v6, q_[7] = v7; \
        } else {                                                                                    \
            *q_ = v0, q_ += (ys), *q_ = v1, q_ += (ys), *q_ = v2, q_ += (ys), *q_ = v3, q_ += (ys);  \
            *q_ = v4, q_ += (ys), *q_ = v5, q_ += (ys), *q_ = v6, q_ += (ys), *q_ = v7;              \
        }                                                                                           \
    } while (0)

/* 8 outputs o..o+7 over taps [tb, te), in range for all of them, into y[0], y[ys], ... */
BT_INLINE void os_block8(const os_row_t *r, int o, float *y, int ys, const int bs, int tb, int te) {
    float s0 = r->init, s1 = s0, s2 = s0, s3 = s0, s4 = s0, s5 = s0, s6 = s0, s7 = s0;
    const int K = te - tb, K8 = K & ~7, K4 = K & ~3; /* taps [tb, te) */
    if (K == 1) { /* 1-wide kernels: the taps are the rows */
        OS_ROWS_T(r, o, tb, BLK8_1(ak, bk);)
    } else {
        OS_ROWS_T(r, o, tb, {
            const float *a = ak, *b = bk, *b8 = bk + K8 * bs, *b4 = bk + K4 * bs, *be = bk + K * bs;
            for (; b != b8; a += 8, b += 8 * bs) { /* 8 taps: the inputs of the second half reused */
                BLK8_4(a, b, bs);
                BLK8_4(a + 4, b + 4 * bs, bs);
            }
            for (; b != b4; a += 4, b += 4 * bs) BLK8_4(a, b, bs);
            for (; b != be; a++, b += bs) BLK8_1(a, b);
        })
    }
    STORE8(y, ys, s0, s1, s2, s3, s4, s5, s6, s7);
}

/* 16 interior outputs of a 1-wide kernel (K == 1): per tap row one weight, 16 inputs */
BT_INLINE void os_block16_k1(const os_row_t *r, int o, float *y, int ys) {
    float s0 = r->init, s1 = s0, s2 = s0, s3 = s0, s4 = s0, s5 = s0, s6 = s0, s7 = s0;
    float t0 = s0, t1 = s0, t2 = s0, t3 = s0, t4 = s0, t5 = s0, t6 = s0, t7 = s0;
    const int bs = 1; /* one tap per row: its direction does not matter */
    OS_ROWS(r, o, {
        const float b0 = *bk;
        s0 = FMA(ak[0], b0, s0), s1 = FMA(ak[1], b0, s1), s2 = FMA(ak[2], b0, s2), s3 = FMA(ak[3], b0, s3);
        s4 = FMA(ak[4], b0, s4), s5 = FMA(ak[5], b0, s5), s6 = FMA(ak[6], b0, s6), s7 = FMA(ak[7], b0, s7);
        t0 = FMA(ak[8], b0, t0), t1 = FMA(ak[9], b0, t1), t2 = FMA(ak[10], b0, t2), t3 = FMA(ak[11], b0, t3);
        t4 = FMA(ak[12], b0, t4), t5 = FMA(ak[13], b0, t5), t6 = FMA(ak[14], b0, t6), t7 = FMA(ak[15], b0, t7);
    })
    STORE8(y, ys, s0, s1, s2, s3, s4, s5, s6, s7);
    STORE8(y + 8 * ys, ys, t0, t1, t2, t3, t4, t5, t6, t7);
}

BT_INLINE void os_block4(const os_row_t *r, int o, float *y, int ys, const int bs) {
    float s0 = r->init, s1 = s0, s2 = s0, s3 = s0;
    const int K4 = r->K & ~3, K = r->K;
    OS_ROWS(r, o, {
        const float *a = ak, *b = bk, *b4 = bk + K4 * bs, *be = bk + K * bs;
        for (; b != b4; a += 4, b += 4 * bs) BLK4_4(a, b, bs);
        for (; b != be; a++, b += bs) BLK4_1(a, b);
    })
    y[0] = s0, y[ys] = s1, y[2 * ys] = s2, y[3 * ys] = s3;
}

/* s + output o over taps [t0, t1) */
BT_INLINE float os_taps(const os_row_t *r, int o, int t0, int t1, const int bs, float s) {
    if (t0 >= t1) return s;
    OS_ROWS_T(r, o, t0, s = dot_bs(ak, bk, t1 - t0, bs, s);)
    return s;
}

/* one output over its taps in range */
BT_INLINE float os_one(const os_row_t *r, int o, const int bs) {
    return os_taps(r, o, max_i(0, -r->off - o), min_i(r->K, r->A - r->off - o), bs, r->init);
}

/* 8 outputs near a border: a block over the taps all of them have in range, then each output's
 * own taps outside those */
static void os_block8_clip(const os_row_t *r, int o, float *y, int ys, const int bs) {
    const int tb = max_i(0, -r->off - o), te = max_i(tb, min_i(r->K, r->A - r->off - o - 7));
    os_block8(r, o, y, ys, bs, tb, te);
    for (int j = 0; j < 8; j++, y += ys) {
        const int t0 = max_i(0, -r->off - o - j), t1 = min_i(r->K, r->A - r->off - o - j);
        *y = os_taps(r, o + j, max_i(te, t0), t1, bs, os_taps(r, o + j, t0, min_i(tb, t1), bs, *y));
    }
}
static void os_block8_clip_fwd(const os_row_t *r, int o, float *y, int ys) { os_block8_clip(r, o, y, ys, 1); }
static void os_block8_clip_rev(const os_row_t *r, int o, float *y, int ys) { os_block8_clip(r, o, y, ys, -1); }

/* outputs [o0, o1) of the row into y (at o0, stride ys): border outputs one by one, the interior
 * in blocks of 8 (then 4) */
BT_INLINE void os_segment(const os_row_t *r, int o0, int o1, float *y, int ys, const int bs) {
    const int lo = -r->off, hi = min_i(o1, r->A - r->off - r->K + 1);
    void (*const clip8)(const os_row_t *, int, float *, int) = bs > 0 ? os_block8_clip_fwd : os_block8_clip_rev;
    const int wide = r->K >= 32; /* border blocks pay for their per-output rests on long kernels only */
    int o = o0;
    for (; wide && o + 8 <= o1 && o < lo; o += 8, y += 8 * ys) clip8(r, o, y, ys);
    for (; o < o1 && o < lo; o++, y += ys) *y = os_one(r, o, bs);
    if (r->K == 1)
        for (; o + 16 <= hi; o += 16, y += 16 * ys) os_block16_k1(r, o, y, ys);
    for (; o + 8 <= hi; o += 8, y += 8 * ys) os_block8(r, o, y, ys, bs, 0, r->K);
    if (o + 4 <= hi) os_block4(r, o, y, ys, bs), o += 4, y += 4 * ys;
    for (; wide && o + 8 <= o1; o += 8, y += 8 * ys) clip8(r, o, y, ys);
    for (; o < o1; o++, y += ys) *y = os_one(r, o, bs);
}

static void os_segment_fwd(const os_row_t *r, int o0, int o1, float *y, int ys) { os_segment(r, o0, o1, y, ys, 1); }
static void os_segment_rev(const os_row_t *r, int o0, int o1, float *y, int ys) { os_segment(r, o0, o1, y, ys, -1); }

/* -- tap-stationary rows (weight gradient) --
 * For taps t of one weight row: sum over rows (u, k) of sum_o g_uk[o] * x_uk[o + off + t], o in
 * [0, O) with o + off + t in [0, A); g_uk = g + u g_su + k g_sk (the output gradient), x_uk likewise. */
typedef struct {
    const float *g, *x;
    int g_su, g_sk, x_su, x_sk, nu, nk, O, A, off;
} ts_row_t;

#define TS_ROWS(r, ...)                                                                        \
    const float *gu = (r)->g, *xu = (r)->x;                                                    \
    for (int u = 0; u < (r)->nu; u++, gu += (r)->g_su, xu += (r)->x_su) {                      \
        const float *gk = gu, *xk = xu;                                                        \
        for (int k = 0; k < (r)->nk; k++, gk += (r)->g_sk, xk += (r)->x_sk) __VA_ARGS__       \
    }

/* tap t over the columns in range outside [lo, hi) (which lies inside its range) */
static float ts_edge(const ts_row_t *r, int t, int lo, int hi) {
    const int v0 = max_i(0, -r->off - t), v1 = min_i(r->O, r->A - r->off - t);
    const int e1 = min_i(v1, lo), e2 = max_i(v0, hi);
    float s = 0.0f;
    if (v0 >= e1 && e2 >= v1) return s;
    TS_ROWS(r, {
        if (v0 < e1) s = dot_bs(gk + v0, xk + v0 + r->off + t, e1 - v0, 1, s);
        if (e2 < v1) s = dot_bs(gk + e2, xk + e2 + r->off + t, v1 - e2, 1, s);
    })
    return s;
}

/* the columns every tap of [t, t + T) has in range: [lo, hi), hi >= lo; returns whether some
 * tap has columns in range outside them (near a border) */
static inline int ts_interior(const ts_row_t *r, int t, int T, int *lo, int *hi) {
    *lo = min_i(r->O, max_i(0, -r->off - t));
    *hi = max_i(*lo, min_i(r->O, r->A - r->off - t - T + 1));
    return t < -r->off || r->A - r->off - t - T + 1 < r->O;
}

/* out[j * os] (+)= s[j] + the tap's border columns, j < T */
static void ts_store(const ts_row_t *r, int t, int T, const float *s, int edges, int lo, int hi, float *out, int os,
                     int acc) {
    for (int j = 0; j < T; j++, out += os) {
        const float v = edges ? s[j] + ts_edge(r, t + j, lo, hi) : s[j];
        *out = acc ? *out + v : v;
    }
}

/* taps t..t+7 into out[0], out[os], ... (added to what is there when acc) */
static void ts_block8(const ts_row_t *r, int t, float *out, int os, int acc) {
    float s0 = 0.0f, s1 = 0.0f, s2 = 0.0f, s3 = 0.0f, s4 = 0.0f, s5 = 0.0f, s6 = 0.0f, s7 = 0.0f;
    int lo, hi;
    const int edges = ts_interior(r, t, 8, &lo, &hi);
    const int n8 = (hi - lo) & ~7, n4 = (hi - lo) & ~3;
    TS_ROWS(r, {
        const float *g = gk + lo, *a = xk + lo + r->off + t, *g8 = g + n8, *g4 = g + n4, *ge = gk + hi;
        for (; g != g8; g += 8, a += 8) { /* 8 columns: the inputs of the second half reused */
            BLK8_4(a, g, 1);
            BLK8_4(a + 4, g + 4, 1);
        }
        for (; g != g4; g += 4, a += 4) BLK8_4(a, g, 1);
        for (; g != ge; g++, a++) BLK8_1(a, g);
    })
    const float s[8] = {s0, s1, s2, s3, s4, s5, s6, s7};
    ts_store(r, t, 8, s, edges, lo, hi, out, os, acc);
}

static void ts_block4(const ts_row_t *r, int t, float *out, int os, int acc) {
    float s0 = 0.0f, s1 = 0.0f, s2 = 0.0f, s3 = 0.0f;
    int lo, hi;
    const int edges = ts_interior(r, t, 4, &lo, &hi);
    const int n4 = (hi - lo) & ~3;
    TS_ROWS(r, {
        const float *g = gk + lo, *a = xk + lo + r->off + t, *g4 = g + n4, *ge = gk + hi;
        for (; g != g4; g += 4, a += 4) BLK4_4(a, g, 1);
        for (; g != ge; g++, a++) BLK4_1(a, g);
    })
    const float s[4] = {s0, s1, s2, s3};
    ts_store(r, t, 4, s, edges, lo, hi, out, os, acc);
}

static void ts_one(const ts_row_t *r, int t, float *out, int acc) {
    const float v = ts_edge(r, t, 0, 0); /* an empty interior: every column in range */
    *out = acc ? *out + v : v;
}

/* taps [t0, t1) of the weight row at out (stride os): blocks of 8, then 4, then one by one */
static void ts_segment(const ts_row_t *r, int t0, int t1, float *out, int os, int acc) {
    int t = t0;
    for (; t + 8 <= t1; t += 8, out += 8 * os) ts_block8(r, t, out, os, acc);
    if (t + 4 <= t1) ts_block4(r, t, out, os, acc), t += 4, out += 4 * os;
    for (; t < t1; t++, out += os) ts_one(r, t, out, acc);
}

/* -- the three halves -- */

/* whether the fast paths apply: unit width stride and dilation, the time axis contiguous */
static inline int conv_fast(const conv_args_t *c, const ten_t *a) {
    return c->sw == 1 && c->dw == 1 && a->s[3] == 1 && c->w.s[3] == 1;
}

/* forward output row (n, co, oh): its tap rows over the input channels of co's group and the
 * kernel rows that land inside the input */
static void fwd_row(const conv_args_t *c, int n, int co, int oh, float init, os_row_t *r) {
    const ten_t *x = &c->x, *w = &c->w;
    const int ih0 = oh * c->sh - c->ph, dh = c->dh, Kh = w->d[2];
    const int k0 = max_i(0, ceil_div(-ih0, dh)), k1 = min_i(Kh, max_i(0, ceil_div(x->d[2] - ih0, dh)));
    const int c0 = (co / c->cog) * c->cig;
    r->nk = max_i(0, k1 - k0);
    r->a = r->nk ? &AT(*x, n, c0, ih0 + k0 * dh, 0) : x->p;
    r->b = r->nk ? &AT(*w, co, 0, k0, 0) : w->p;
    r->a_su = x->s[1], r->a_sk = dh * x->s[2], r->b_su = w->s[1], r->b_sk = w->s[2];
    r->nu = c->cig, r->K = w->d[3], r->A = x->d[3], r->off = -c->pw, r->init = init;
}

void k_conv2d(ten_t y, ten_t x, ten_t w, const ten_t *bias, int sh, int sw, int ph, int pw, int dh, int dw,
              int groups) {
    const conv_args_t c = conv_args(y, x, w, sh, sw, ph, pw, dh, dw, groups);
    const int fast = conv_fast(&c, &x);
    FOR_ROWS(y) { /* every output element is independent: the cores share them all */
        const float init = bias ? V(*bias, i1) : 0.0f;
        if (fast) {
            os_row_t r;
            fwd_row(&c, i0, i1, i2, init, &r);
            os_segment_fwd(&r, j0, j1, &AT(y, i0, i1, i2, j0), y.s[3]);
        } else {
            for (int i3 = j0; i3 < j1; i3++) AT(y, i0, i1, i2, i3) = conv_fwd_el(&c, i0, i1, i2, i3, init);
        }
    }
}

/* input-gradient row (n, ci, ih), height stride 1: tap rows over the output channels of ci's
 * group and the kernel rows whose output row exists; the taps reversed */
static void ig_row(const conv_args_t *c, int n, int ci, int ih, os_row_t *r) {
    const ten_t *dy = &c->y, *w = &c->w;
    const int g = ci / c->cig, cl = ci - g * c->cig, th = ih + c->ph, dh = c->dh, Kw = w->d[3];
    const int k0 = max_i(0, ceil_div(th - dy->d[2] + 1, dh)), k1 = min_i(w->d[2], th < 0 ? 0 : th / dh + 1);
    r->nk = max_i(0, k1 - k0);
    r->a = r->nk ? &AT(*dy, n, g * c->cog, th - k0 * dh, 0) : dy->p;
    r->b = r->nk ? &AT(*w, g * c->cog, cl, k0, Kw - 1) : w->p;
    r->a_su = dy->s[1], r->a_sk = -dh * dy->s[2], r->b_su = w->s[0], r->b_sk = w->s[2];
    r->nu = c->cog, r->K = Kw, r->A = dy->d[3], r->off = c->pw - Kw + 1, r->init = 0.0f;
}

/* weight-gradient row (co, ci, kh): tap rows over the samples and the output rows whose input
 * row exists */
static void wg_row(const conv_args_t *c, int co, int ci, int kh, ts_row_t *r) {
    const ten_t *dy = &c->y, *x = &c->x;
    const int t = c->ph - kh * c->dh, c0 = (co / c->cog) * c->cig;
    const int o0 = max_i(0, ceil_div(t, c->sh)), o1 = min_i(dy->d[2], max_i(0, ceil_div(x->d[2] + t, c->sh)));
    r->nk = max_i(0, o1 - o0);
    r->g = r->nk ? &AT(*dy, 0, co, o0, 0) : dy->p;
    r->x = r->nk ? &AT(*x, 0, c0 + ci, o0 * c->sh - t, 0) : x->p;
    r->g_su = dy->s[0], r->g_sk = dy->s[2], r->x_su = x->s[0], r->x_sk = c->sh * x->s[2];
    r->nu = dy->d[0], r->O = dy->d[3], r->A = x->d[3], r->off = -c->pw;
}

/* Weight gradient of a 1-wide kernel without padding (pointwise, spatial): an output channel's
 * weights are taps t = (ci, kh), each a whole input row against the output gradient's row; 4 taps
 * at a time share the loads of the output gradient. nt taps from t of output channel co. */
static void wg_k1_taps(const conv_args_t *c, ten_t *dwt, int acc, int co, int t, int nt) {
    const ten_t *dy = &c->y, *x = &c->x;
    const int Kh = c->w.d[2], c0 = (co / c->cog) * c->cig, Wo = dy->d[3], n4 = Wo & ~3;
    int off[4];
    for (int j = 0; j < nt; j++) off[j] = (c0 + (t + j) / Kh) * x->s[1] + ((t + j) % Kh) * c->dh * x->s[2];
    float s0 = 0.0f, s1 = 0.0f, s2 = 0.0f, s3 = 0.0f;
    for (int n = 0; n < dy->d[0]; n++)
        for (int oh = 0; oh < dy->d[2]; oh++) {
            const float *g = &AT(*dy, n, co, oh, 0), *xb = x->p + n * x->s[0] + oh * c->sh * x->s[2];
            int o = 0;
            if (nt == 4) {
                const float *p0 = xb + off[0], *p1 = xb + off[1], *p2 = xb + off[2], *p3 = xb + off[3];
                for (; o < n4; o += 4, g += 4, p0 += 4, p1 += 4, p2 += 4, p3 += 4) {
                    const float g0 = g[0], g1 = g[1], g2 = g[2], g3 = g[3];
                    s0 = FMA(g0, p0[0], s0), s0 = FMA(g1, p0[1], s0), s0 = FMA(g2, p0[2], s0), s0 = FMA(g3, p0[3], s0);
                    s1 = FMA(g0, p1[0], s1), s1 = FMA(g1, p1[1], s1), s1 = FMA(g2, p1[2], s1), s1 = FMA(g3, p1[3], s1);
                    s2 = FMA(g0, p2[0], s2), s2 = FMA(g1, p2[1], s2), s2 = FMA(g2, p2[2], s2), s2 = FMA(g3, p2[3], s2);
                    s3 = FMA(g0, p3[0], s3), s3 = FMA(g1, p3[1], s3), s3 = FMA(g2, p3[2], s3), s3 = FMA(g3, p3[3], s3);
                }
                for (; o < Wo; o++, g++, p0++, p1++, p2++, p3++)
                    s0 = FMA(*g, *p0, s0), s1 = FMA(*g, *p1, s1), s2 = FMA(*g, *p2, s2), s3 = FMA(*g, *p3, s3);
            } else {
                s0 = dot_bs(g, xb + off[0], Wo, 1, s0);
            }
        }
    const float s[4] = {s0, s1, s2, s3};
    for (int j = 0; j < nt; j++) {
        float *out = &AT(*dwt, co, (t + j) / Kh, (t + j) % Kh, 0);
        *out = acc ? *out + s[j] : s[j];
    }
}

static void wg_k1(const conv_args_t *c, ten_t *dwt, int acc) {
    const int T = c->cig * c->w.d[2]; /* taps per output channel */
    BT_CHUNK(NUMEL(*dwt), e_lo, e_hi);
    for (int e = e_lo; e < e_hi;) {
        const int co = e / T, t = e - co * T, nt = e_hi - e < 4 ? e_hi - e : 4;
        const int n = T - t < nt ? T - t : nt; /* within one output channel */
        wg_k1_taps(c, dwt, acc, co, t, n == 4 ? 4 : 1);
        e += n == 4 ? 4 : 1;
    }
}

static void conv_wg(const conv_args_t *c, ten_t *dwt, int acc) {
    const int fast = conv_fast(c, &c->x) && c->y.s[3] == 1;
    if (fast && c->w.d[3] == 1 && c->ph == 0 && c->pw == 0 && c->x.d[3] >= c->y.d[3]) {
        wg_k1(c, dwt, acc);
        return;
    }
    FOR_ROWS(*dwt) {
        if (fast) {
            ts_row_t r;
            wg_row(c, i0, i1, i2, &r);
            ts_segment(&r, j0, j1, &AT(*dwt, i0, i1, i2, j0), dwt->s[3], acc);
        } else {
            for (int i3 = j0; i3 < j1; i3++) {
                const float v = conv_wg_el(c, i0, i1, i2, i3);
                AT(*dwt, i0, i1, i2, i3) = acc ? AT(*dwt, i0, i1, i2, i3) + v : v;
            }
        }
    }
}

static void conv_ig(const conv_args_t *c, ten_t dx) {
    const int fast = conv_fast(c, &c->y) && c->sh == 1;
    FOR_ROWS(dx) {
        if (fast) {
            os_row_t r;
            ig_row(c, i0, i1, i2, &r);
            os_segment_rev(&r, j0, j1, &AT(dx, i0, i1, i2, j0), dx.s[3]);
        } else {
            for (int i3 = j0; i3 < j1; i3++) AT(dx, i0, i1, i2, i3) = conv_ig_el(c, i0, i1, i2, i3);
        }
    }
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

/* The weight and bias gradients first (the cores share their elements), a barrier, then the input
 * gradient (the cores share its elements): dx may overwrite x (the depthwise case the planner
 * allows) because no core writes dx before every core has read x. */
void k_conv2d_bwd(ten_t dy, ten_t x, ten_t w, ten_t *dx, ten_t *dwt, int acc_dw, ten_t *db, int acc_db,
                  int sh, int sw, int ph, int pw, int dh, int dw, int groups) {
    const conv_args_t c = conv_args(dy, x, w, sh, sw, ph, pw, dh, dw, groups);
    if (dwt) conv_wg(&c, dwt, acc_dw);
    if (db) {
        BT_CHUNK(dy.d[1], co_lo, co_hi);
        for (int co = co_lo; co < co_hi; co++) conv_bwd_bias(dy, db, acc_db, co);
    }
    if (!dx) return;
    BT_BARRIER();
    conv_ig(&c, *dx);
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

/* Row sums for the norms' statistics: four partial sums over a contiguous row (the loads and adds
 * of one element no longer wait for the previous sum), one over a strided one. */
static float row_sum(const float *p, int s, int n) {
    float a0 = 0.0f, a1 = 0.0f, a2 = 0.0f, a3 = 0.0f;
    int i = 0;
    if (s == 1)
        for (; i + 4 <= n; i += 4, p += 4) a0 += p[0], a1 += p[1], a2 += p[2], a3 += p[3];
    for (; i < n; i++, p += s) a0 += *p;
    return (a0 + a1) + (a2 + a3);
}

/* sum of (p[i] - m)^2 */
static float row_sumsq(const float *p, int s, int n, float m) {
    float a0 = 0.0f, a1 = 0.0f, a2 = 0.0f, a3 = 0.0f;
    int i = 0;
    if (s == 1)
        for (; i + 4 <= n; i += 4, p += 4) {
            const float v0 = p[0] - m, v1 = p[1] - m, v2 = p[2] - m, v3 = p[3] - m;
            a0 = FMA(v0, v0, a0), a1 = FMA(v1, v1, a1), a2 = FMA(v2, v2, a2), a3 = FMA(v3, v3, a3);
        }
    for (; i < n; i++, p += s) a0 = FMA(*p - m, *p - m, a0);
    return (a0 + a1) + (a2 + a3);
}

/* sum of g[i] and of g[i] * (x[i] - m), two partial sums each over contiguous rows */
static void row_sum2(const float *g, int gs, const float *x, int xs, int n, float m, float *sg, float *sgx) {
    float a0 = 0.0f, a1 = 0.0f, b0 = 0.0f, b1 = 0.0f;
    int i = 0;
    if (gs == 1 && xs == 1)
        for (; i + 2 <= n; i += 2, g += 2, x += 2) {
            const float g0 = g[0], g1 = g[1];
            a0 += g0, a1 += g1;
            b0 = FMA(g0, x[0] - m, b0), b1 = FMA(g1, x[1] - m, b1);
        }
    for (; i < n; i++, g += gs, x += xs) a0 += *g, b0 = FMA(*g, *x - m, b0);
    *sg = a0 + a1;
    *sgx = b0 + b1;
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
            const float *p = ROWP(x);
            part[k] += pass == 0 ? row_sum(p, x.s[3], j1 - j0) : row_sumsq(p, x.s[3], j1 - j0, mu[k]);
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
        float *q = ROWP(y);
        const float *p = ROWP(x);
        for (int i3 = j0; i3 < j1; i3++, q += y.s[3], p += x.s[3]) *q = FMA(*p - m, sc, be);
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
            float sdy, sdyx;
            row_sum2(ROWP(dy), dy.s[3], ROWP(x), x.s[3], j1 - j0, m, &sdy, &sdyx);
            part[k] += sdy;
            part[P + k] += sdyx * rs;
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
        float *q = &AT(*dx, i0, i1, i2, j0);
        const float *g = ROWP(dy), *p = ROWP(x);
        const int qs = dx->s[3], gs = dy.s[3], ps = x.s[3];
        if (groups > 0) {
            for (int i3 = j0; i3 < j1; i3++, q += qs, g += gs, p += ps) {
                const float xh = (*p - m) * r;
                *q = r * (ga * *g - a - xh * b);
            }
        } else {
            for (int i3 = j0; i3 < j1; i3++, q += qs, g += gs, p += ps) {
                const float xh = (*p - m) * r;
                *q = ga * r * (*g - a - xh * b);
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
    const int xs2 = x.s[2], xs3 = x.s[3];
    FOR_ROWS(y) {
        float *p = ROWP(y);
        const float *q = &AT(x, i0, i1, i2 * sh, j0 * sw);
        for (int i3 = j0; i3 < j1; i3++, p += y.s[3], q += sw * xs3) {
            float s = 0.0f;
            for (int a = 0; a < kh; a++) {
                const float *r = q + a * xs2;
                if (relu)
                    for (int b = 0; b < kw; b++, r += xs3) s += *r > 0.0f ? *r : 0.0f;
                else
                    for (int b = 0; b < kw; b++, r += xs3) s += *r;
            }
            *p = s * inv;
        }
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
