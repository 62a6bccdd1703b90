/* biotrain device export: fp32 training kernels (written for this project).
 *
 * Every tensor is a strided 4-D view into the program's arena: leading dimensions of smaller
 * tensors have size 1. Strides let a kernel read or write a tensor that lives in the interior of
 * a zero-padded buffer, a transposed weight, or a broadcast operand, exactly as the memory plan
 * placed it, without copies.
 */
#ifndef BT_KERNELS_H
#define BT_KERNELS_H

#include <stdint.h>

typedef struct {
    float *p;   /* first element */
    int d[4];   /* sizes */
    int s[4];   /* strides, in elements */
} ten_t;

/* SPMD over the cores of a cluster: every core runs the whole step, each kernel takes its share of
 * a flattened loop (BT_CHUNK: contiguous, sizes differ by at most one), and the cores meet at a
 * barrier after each kernel (prof.h's PROF) and wherever a kernel reads what other cores wrote.
 * BT_NCORES is compile-time (one build per core count): GAP9 8 cluster cores; rv32 under qemu
 * 1..8 harts (-DBT_NCORES=N, cores.c starts them); host and RTL 1. -DBT_SOLO_CORE=k: the
 * build of an N-core program in which one hart runs only core k's share, barriers compiled out, to
 * count (qemu) or time (RTL) that share alone: the kernels' control flow does not depend on the
 * data, so its counts are core k's in the N-core run (its results are not the step's). */
#ifndef BT_NCORES
#if defined(BT_GAP9)
#define BT_NCORES 8
#else
#define BT_NCORES 1
#endif
#endif
#if BT_NCORES < 1 || BT_NCORES > 8
#error "BT_NCORES: 1 to 8 cores (a GAP9 cluster has 8 compute cores)"
#endif
#if defined(BT_SOLO_CORE)
#define BT_CORE() (BT_SOLO_CORE)
#elif defined(BT_GAP9)
#include "pmsis.h"
#define BT_CORE() ((int)pi_core_id())
#elif defined(BT_RV32)
#define BT_CORE() bt_core_id()
static inline int bt_core_id(void) {
    uint32_t h;
    __asm__ volatile("csrr %0, mhartid" : "=r"(h));
    return (int)h;
}
#else
#if BT_NCORES > 1
#error "the host build runs one core: BT_NCORES must be 1 (multi-core runs are the rv32 build on qemu -smp N)"
#endif
#define BT_CORE() 0
#endif
void bt_barrier(void); /* cores.c: every core waits until all have arrived */
#define BT_BARRIER() bt_barrier()
#define BT_CHUNK(n, lo, hi) \
    const int bt_n_##lo = (n), bt_q_##lo = bt_n_##lo / BT_NCORES, bt_r_##lo = bt_n_##lo % BT_NCORES; \
    const int lo = BT_CORE() * bt_q_##lo + (BT_CORE() < bt_r_##lo ? BT_CORE() : bt_r_##lo); \
    const int hi = lo + bt_q_##lo + (BT_CORE() < bt_r_##lo ? 1 : 0)
#define BT_SERIAL if (BT_CORE() == 0)
#define BT_RED_MAX 256 /* partial sums per core of a parallel reduction (norm statistics: codegen checks) */

/* L1 tiles (codegen, l1.py): the cluster's shared L1 is bt_l1 (BT_L1_BYTES, step.c); a kernel's
 * operands are copied there from the L2 arena and back by the DMA stand-in bt_dma (core 0; on
 * GAP9 the cluster DMA). bt_win4: samples [n0, n1) and columns [lo, hi) of a view; BT_SLOT: slot s (0, 1) of a
 * double-buffered window. -DBT_L1_FAULT_OVERLAP (tests only) makes slot 1 overlap slot 0. */
extern uint8_t bt_l1[];
extern const uint32_t bt_l1_bytes; /* its size (step.c) */
void fail(const char *what, int code); /* main.c: report and end the program */
#define L1T(off, d0, d1, d2, d3, s0, s1, s2, s3) \
    ((ten_t){(float *)(bt_l1 + (off)), {d0, d1, d2, d3}, {s0, s1, s2, s3}})
static inline ten_t bt_win4(ten_t v, int n0, int n1, int lo, int hi) {
    v.p += n0 * v.s[0] + lo * v.s[3];
    v.d[0] = n1 - n0;
    v.d[3] = hi - lo;
    return v;
}
void bt_dma(ten_t dst, ten_t src);
extern uint64_t bt_dma_bytes;  /* bytes bt_dma moved */
extern uint64_t bt_dma_copies; /* copies bt_dma made (one DMA transfer set-up each) */
extern uint32_t bt_l1_touched; /* the highest L1 byte bt_dma wrote or read, + 1 */
uint32_t bt_l1_end(ten_t t);    /* the highest byte of bt_l1 a view reaches, + 1 (0: not in L1) */
#if defined(BT_L1_FAULT_OVERLAP)
#define BT_SLOT(off, cap, s) ((off) + (s) * ((cap) / 16 * 8))
#else
#define BT_SLOT(off, cap, s) ((off) + (s) * (cap))
#endif

#define AT(t, a, b, c, e) ((t).p[(a) * (t).s[0] + (b) * (t).s[1] + (c) * (t).s[2] + (e) * (t).s[3]])
#define NUMEL(t) ((t).d[0] * (t).d[1] * (t).d[2] * (t).d[3])

enum { EW_ADD = 0, EW_SUB = 1, EW_MUL = 2, EW_DIV = 3 };

/* element-wise and data movement */
void k_fill(ten_t y, float v);
void k_copy(ten_t y, ten_t x);
void k_binary(int op, ten_t y, ten_t a, ten_t b, float alpha);      /* y = a op alpha*b (b broadcast) */
void k_binary_scalar(int op, ten_t y, ten_t a, float s);            /* y = a op s */
void k_relu(ten_t y, ten_t x);
void k_threshold_bwd(ten_t dx, ten_t dy, ten_t x, float thr);       /* dx = x <= thr ? 0 : dy */
void k_pad(ten_t y, ten_t x, int pad_h, int pad_w, float value);    /* negative pads crop */
void k_zero_border(ten_t full, int h0, int h1, int w0, int w1);     /* zero outside [h0,h1)x[w0,w1) */
void k_sum(ten_t y, ten_t ybc, ten_t x, float scale, int relu, int acc); /* y (+)= scale*sum(x); ybc: y broadcast to x */
void k_i64_add(int64_t *p, int n, int64_t v);

/* convolution, any groups/stride/padding/dilation: register-blocked direct loops (kernels.c) */
void k_conv2d(ten_t y, ten_t x, ten_t w, const ten_t *bias, int sh, int sw, int ph, int pw, int dh, int dw,
              int groups);
void k_conv2d_bwd(ten_t dy, ten_t x, ten_t w, ten_t *dx, ten_t *dwt, int acc_dw, ten_t *db, int acc_db,
                  int sh, int sw, int ph, int pw, int dh, int dw, int groups);

/* linear algebra on the last two dimensions */
void k_mm(ten_t y, ten_t a, ten_t b, int acc);
void k_addmm(ten_t y, ten_t bias_bc, ten_t a, ten_t b);

/* normalisation, in passes over tiles of the time axis (kernels.c); full_w: the whole time length */
void k_group_norm(ten_t y, ten_t x, ten_t gamma, ten_t beta, ten_t mean, ten_t rstd, int groups, float eps,
                  int full_w, int pass, int first, int last);
void k_group_norm_bwd(ten_t dy, ten_t x, ten_t mean, ten_t rstd, ten_t gamma, ten_t *dx, ten_t *dgamma,
                      int acc_g, ten_t *dbeta, int acc_b, int groups, int full_w, int pass, int first, int last);
void k_batch_norm_train(ten_t y, ten_t x, ten_t gamma, ten_t beta, ten_t *rmean, ten_t *rvar, ten_t smean,
                        ten_t sinvstd, float momentum, float eps, int full_w, int pass, int first, int last);
void k_batch_norm_eval(ten_t y, ten_t x, ten_t gamma, ten_t beta, ten_t rmean, ten_t rvar, float eps);
void k_batch_norm_bwd(ten_t dy, ten_t x, ten_t gamma, ten_t smean, ten_t sinvstd, ten_t *dx, ten_t *dgamma,
                      int acc_g, ten_t *dbeta, int acc_b, int full_w, int pass, int first, int last);
void k_batch_norm_eval_bwd(ten_t dy, ten_t x, ten_t gamma, ten_t rmean, ten_t rvar, ten_t *dx, ten_t *dgamma,
                           int acc_g, ten_t *dbeta, int acc_b, float eps, int pass, int first, int last);

/* pooling */
void k_avg_pool(ten_t y, ten_t x, int kh, int kw, int sh, int sw, float divisor, int relu);
void k_avg_pool_bwd(ten_t dx, ten_t dy, int kh, int kw, int sh, int sw, float divisor);

/* loss: log-softmax over the last dimension of [N, K] and the mean negative log-likelihood */
void k_log_softmax(ten_t y, ten_t x);
void k_log_softmax_bwd(ten_t dx, ten_t dy, ten_t out);
void k_nll_loss(ten_t loss, ten_t total_weight, ten_t logp, const int64_t *target, int ignore_index);
void k_nll_loss_bwd(ten_t dx, ten_t dloss, const int64_t *target, ten_t total_weight, int ignore_index);

#endif
