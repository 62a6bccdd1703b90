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

/* SPMD over the cores of a cluster (GAP9 build): every core runs the whole step, each kernel takes
 * its share of the outer loop (BT_CHUNK), and the cores meet at a barrier after each kernel. On one
 * core (host, rv32) the share is the whole loop and the barrier does nothing. */
#if defined(BT_GAP9)
#include "pmsis.h"
#define BT_NCORES 8
#define BT_CORE() ((int)pi_core_id())
#define BT_BARRIER() pi_cl_team_barrier()
#else
#define BT_NCORES 1
#define BT_CORE() 0
#define BT_BARRIER() \
    do { \
    } while (0)
#endif
#define BT_CHUNK(n, lo, hi) \
    const int bt_c_##lo = ((n) + BT_NCORES - 1) / BT_NCORES; \
    const int lo = BT_CORE() * bt_c_##lo < (n) ? BT_CORE() * bt_c_##lo : (n); \
    const int hi = lo + bt_c_##lo < (n) ? lo + bt_c_##lo : (n)
#define BT_SERIAL if (BT_CORE() == 0)

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

/* convolution: direct loops, any groups/stride/padding/dilation */
void k_conv2d(ten_t y, ten_t x, ten_t w, const ten_t *bias, int sh, int sw, int ph, int pw, int dh, int dw,
              int groups);
void k_conv2d_bwd(ten_t dy, ten_t x, ten_t w, ten_t *dx, ten_t *dwt, int acc_dw, ten_t *db, int acc_db,
                  int sh, int sw, int ph, int pw, int dh, int dw, int groups);

/* linear algebra on the last two dimensions */
void k_mm(ten_t y, ten_t a, ten_t b, int acc);
void k_addmm(ten_t y, ten_t bias_bc, ten_t a, ten_t b);

/* normalisation */
void k_group_norm(ten_t y, ten_t x, ten_t gamma, ten_t beta, ten_t mean, ten_t rstd, int groups, float eps);
void k_group_norm_bwd(ten_t dy, ten_t x, ten_t mean, ten_t rstd, ten_t gamma, ten_t *dx, ten_t *dgamma,
                      int acc_g, ten_t *dbeta, int acc_b, int groups);
void k_batch_norm_train(ten_t y, ten_t x, ten_t gamma, ten_t beta, ten_t *rmean, ten_t *rvar, ten_t smean,
                        ten_t sinvstd, float momentum, float eps);
void k_batch_norm_eval(ten_t y, ten_t x, ten_t gamma, ten_t beta, ten_t rmean, ten_t rvar, float eps);
void k_batch_norm_bwd(ten_t dy, ten_t x, ten_t gamma, ten_t smean, ten_t sinvstd, ten_t *dx, ten_t *dgamma,
                      int acc_g, ten_t *dbeta, int acc_b);
void k_batch_norm_eval_bwd(ten_t dy, ten_t x, ten_t gamma, ten_t rmean, ten_t rvar, ten_t *dx, ten_t *dgamma,
                           int acc_g, ten_t *dbeta, int acc_b, float eps);

/* pooling */
void k_avg_pool(ten_t y, ten_t x, int kh, int kw, int sh, int sw, float divisor, int relu);
void k_avg_pool_bwd(ten_t dx, ten_t dy, int kh, int kw, int sh, int sw, float divisor);

/* loss: log-softmax over the last dimension of [N, K] and the mean negative log-likelihood */
void k_log_softmax(ten_t y, ten_t x);
void k_log_softmax_bwd(ten_t dx, ten_t dy, ten_t out);
void k_nll_loss(ten_t loss, ten_t total_weight, ten_t logp, const int64_t *target, int ignore_index);
void k_nll_loss_bwd(ten_t dx, ten_t dloss, const int64_t *target, ten_t total_weight, int ignore_index);

#endif
