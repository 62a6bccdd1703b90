/* biotrain device export: the training loop.
 *
 * Reads the initial persistent state (weights, norm buffers, momentum, accumulated gradients),
 * the calibration samples (kept outside the arena, as in external L3 memory) and the schedule
 * (per step: learning rate and sample indices), runs the steps, and writes the loss of every
 * step, the final state and the performance counters. Files go through the C library (plain
 * stdio on the host, semihosting under qemu, the SDK's host file access on GAP9) or, on the RTL
 * testbench, through its memory-mapped file device (rtl.h): the same reads and writes either way.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "step.h"
#if defined(BT_RTL)
#include "rtl.h"
#endif


static float *g_x;     /* samples, BT_SAMPLE_FLOATS floats each */
static int64_t *g_y;   /* labels */
static int32_t g_n;    /* number of samples */

void bt_exit(int code) {
    fflush(stdout);
#if defined(BT_GAP9)
    pmsis_exit(code);
#elif defined(BT_RTL)
    bt_rtl_exit(code);
#elif defined(BT_RV32)
    /* the qemu virt machine's test device: 0x5555 = pass, (code << 16) | 0x3333 = fail with code */
    volatile uint32_t *test_dev = (volatile uint32_t *)0x100000;
    *test_dev = code ? (((uint32_t)code << 16) | 0x3333u) : 0x5555u;
    for (;;) {
    }
#else
    exit(code);
#endif
}

void fail(const char *what, int code) {
    printf("biotrain device program: %s\n", what);
    bt_exit(code);
}

#if defined(BT_RTL)
typedef int bt_file;
static bt_file open_or_fail(const char *path, const char *mode) {
    int h = bt_rtl_open(path, mode[0] == 'w');
    if (h < 0) fail(path, 10);
    return h;
}
static size_t bt_fread(void *dst, size_t n, bt_file f) { return bt_rtl_read(f, dst, n); }
static size_t bt_fwrite(const void *src, size_t n, bt_file f) { return bt_rtl_write(f, src, n); }
static void bt_fclose(bt_file f) { bt_rtl_close(f); }
#else
typedef FILE *bt_file;
static bt_file open_or_fail(const char *path, const char *mode) {
    FILE *f = fopen(path, mode);
    if (!f) fail(path, 10);
    return f;
}
static size_t bt_fread(void *dst, size_t n, bt_file f) { return fread(dst, 1, n, f); }
static size_t bt_fwrite(const void *src, size_t n, bt_file f) { return fwrite(src, 1, n, f); }
static void bt_fclose(bt_file f) { fclose(f); }
#endif

static void read_exact(bt_file f, void *dst, size_t nbytes, const char *what) {
    uint8_t *p = (uint8_t *)dst;
    while (nbytes) {
        size_t chunk = nbytes > 65536 ? 65536 : nbytes;
        if (bt_fread(p, chunk, f) != chunk) fail(what, 11);
        p += chunk;
        nbytes -= chunk;
    }
}

static void write_exact(bt_file f, const void *src, size_t nbytes, const char *what) {
    if (nbytes && bt_fwrite(src, nbytes, f) != nbytes) fail(what, 12);
}

/* every core copies its share of the micro-batch (the samples are read-only once loaded), row by row */
void load_x(const run_t *r, l2t_t dst) {
    BT_CHUNK(NUMEL(dst), e_lo, e_hi);
    for (int e = e_lo; e < e_hi;) {
        const int row = e / dst.d[3], c0 = e - row * dst.d[3];
        const int c1 = e_hi - row * dst.d[3] < dst.d[3] ? e_hi - row * dst.d[3] : dst.d[3];
        const int b = row % dst.d[2], a = (row / dst.d[2]) % dst.d[1], i = row / (dst.d[2] * dst.d[1]);
        const float *src = g_x + (size_t)r->idx[i] * BT_SAMPLE_FLOATS + ((size_t)a * dst.d[2] + b) * dst.d[3];
        for (int c = c0; c < c1; c++) BT_L2_STORE(dst, i, a, b, c, src[c]); /* rounded in a 16-bit program */
        e += c1 - c0;
    }
}

void load_y(const run_t *r, int64_t *dst, int n) {
    BT_SERIAL {
        for (int i = 0; i < n; i++) dst[i] = g_y[r->idx[i]];
    }
}

/* the whole schedule, read before the steps: step s uses g_idx[g_first[s] .. + g_count[s]) */
static int32_t g_steps;
static float *g_lr;
static int32_t *g_count, *g_first, *g_idx;
static float *g_losses;
static uint64_t *g_per_step; /* instructions and cycles of every step */

void bt_load_inputs(void) {
    bt_file f = open_or_fail("init_state.bin", "rb");
    for (int i = 0; i < BT_N_STATES; i++) read_exact(f, bt_arena + bt_states[i].off, bt_states[i].nbytes, "init_state.bin");
    bt_fclose(f);

    int32_t hdr[2];
    f = open_or_fail("samples.bin", "rb");
    read_exact(f, hdr, sizeof hdr, "samples.bin header");
    if (hdr[1] != BT_SAMPLE_FLOATS) fail("samples.bin: sample size differs from the program's input", 13);
    g_n = hdr[0];
    g_x = (float *)malloc((size_t)g_n * BT_SAMPLE_FLOATS * sizeof(float));
    g_y = (int64_t *)malloc((size_t)g_n * sizeof(int64_t));
    if (!g_x || !g_y) fail("out of memory for the samples", 14);
    read_exact(f, g_x, (size_t)g_n * BT_SAMPLE_FLOATS * sizeof(float), "samples.bin data");
    read_exact(f, g_y, (size_t)g_n * sizeof(int64_t), "samples.bin labels");
    bt_fclose(f);

    f = open_or_fail("schedule.bin", "rb");
    read_exact(f, &g_steps, sizeof g_steps, "schedule.bin header");
    const size_t ns = (size_t)(g_steps > 0 ? g_steps : 1);
    g_lr = (float *)malloc(sizeof(float) * ns);
    g_count = (int32_t *)malloc(sizeof(int32_t) * ns);
    g_first = (int32_t *)malloc(sizeof(int32_t) * ns);
    g_losses = (float *)malloc(sizeof(float) * ns);
    g_per_step = (uint64_t *)calloc(2 * ns, sizeof(uint64_t));
    size_t cap = 1024, used = 0;
    g_idx = (int32_t *)malloc(sizeof(int32_t) * cap);
    if (!g_lr || !g_count || !g_first || !g_losses || !g_per_step || !g_idx) fail("out of memory for the schedule", 14);
    for (int s = 0; s < g_steps; s++) {
        read_exact(f, &g_lr[s], sizeof(float), "schedule.bin step");
        read_exact(f, &g_count[s], sizeof(int32_t), "schedule.bin step");
        if (g_count[s] < 1 || g_count[s] > 4096) fail("schedule.bin: bad batch size", 15);
        while (used + (size_t)g_count[s] > cap) {
            cap *= 2;
            g_idx = (int32_t *)realloc(g_idx, sizeof(int32_t) * cap);
            if (!g_idx) fail("out of memory for the schedule", 14);
        }
        g_first[s] = (int32_t)used;
        read_exact(f, g_idx + used, sizeof(int32_t) * (size_t)g_count[s], "schedule.bin indices");
        for (int i = 0; i < g_count[s]; i++)
            if (g_idx[used + i] < 0 || g_idx[used + i] >= g_n) fail("schedule.bin: sample index out of range", 16);
        used += (size_t)g_count[s];
    }
    bt_fclose(f);
}

/* Every step of the schedule. On a cluster every core calls this (SPMD); core 0 keeps the books
 * (losses, and the instructions and cycles of every step as core 0 counts them). */
void bt_run_steps(void) {
    for (int s = 0; s < g_steps; s++) {
        run_t r = {g_lr[s], 1.0f, g_idx + g_first[s]};
        const uint64_t i0 = bt_instret(), c0 = bt_cycles();
        const float loss = bt_train_step(&r, g_idx + g_first[s], g_count[s]);
        BT_SERIAL {
            g_losses[s] = loss;
            g_per_step[2 * s] = bt_instret() - i0;
            g_per_step[2 * s + 1] = bt_cycles() - c0;
        }
    }
    BT_BARRIER(); /* every core's counts are final before core 0 writes them */
}

int bt_check_losses(void) {
    for (int s = 0; s < g_steps; s++)
        if (isnan(g_losses[s])) return s + 1;
    return 0;
}

void bt_write_outputs(void) {
    bt_file f = open_or_fail("final_state.bin", "wb");
    for (int i = 0; i < BT_N_STATES; i++) write_exact(f, bt_arena + bt_states[i].off, bt_states[i].nbytes, "final_state.bin");
    bt_fclose(f);
    f = open_or_fail("losses.bin", "wb");
    write_exact(f, g_losses, sizeof(float) * (size_t)g_steps, "losses.bin");
    bt_fclose(f);
    f = open_or_fail("profile.bin", "wb");
    /* header: steps, kernel kinds, counters per kind, cores; then instructions and cycles of every
     * step (uint64 pairs); then every kind's counters (uint64, core 0); then per core the
     * instructions of every kind and of its barrier waits (uint64, kinds + 1 per core) */
    uint32_t ph[4] = {(uint32_t)g_steps, BT_N_KINDS, BT_N_COUNTERS, BT_NCORES};
    write_exact(f, ph, sizeof ph, "profile.bin");
    write_exact(f, g_per_step, sizeof(uint64_t) * 2 * (size_t)g_steps, "profile.bin");
    write_exact(f, bt_prof, sizeof bt_prof, "profile.bin");
    write_exact(f, bt_core_prof, sizeof bt_core_prof, "profile.bin");
    /* then the L1 figures: its bytes, the highest byte the DMA stand-in reached, the bytes it moved */
    const uint64_t l1[4] = {BT_L1_BYTES, bt_l1_touched, bt_dma_bytes, bt_dma_copies};
    write_exact(f, l1, sizeof l1, "profile.bin");
    bt_fclose(f);
}

#if defined(BT_SOLO_CORE)
static uint32_t *g_trace;
static size_t g_trace_n, g_trace_cap;

void bt_trace_add(uint32_t kind, uint32_t count) {
    if (g_trace_n + 2 > g_trace_cap) {
        g_trace_cap = g_trace_cap ? 2 * g_trace_cap : 8192;
        g_trace = (uint32_t *)realloc(g_trace, sizeof(uint32_t) * g_trace_cap);
        if (!g_trace) fail("out of memory for the call trace", 14);
    }
    g_trace[g_trace_n++] = kind;
    g_trace[g_trace_n++] = count;
}

/* trace.bin: the number of kernel calls, then (kind, instructions or RTL cycles) of each (uint32) */
static void bt_write_trace(void) {
    bt_file f = open_or_fail("trace.bin", "wb");
    const uint32_t n = (uint32_t)(g_trace_n / 2);
    write_exact(f, &n, sizeof n, "trace.bin");
    write_exact(f, g_trace, sizeof(uint32_t) * g_trace_n, "trace.bin");
    bt_fclose(f);
}
#endif

#if !defined(BT_GAP9) /* the GAP9 build has its own entry point: gap9/gap9_main.c */
int main(void) {
#if defined(BT_RTL)
    bt_counters_init();
#endif
    bt_load_inputs();
    bt_start_workers(); /* cores.c: the other harts wait for the inputs (rv32, BT_NCORES > 1) */
    bt_run_steps();
#if defined(BT_SOLO_CORE) /* one core's share only: the state is not the step's, its counts are */
    bt_write_trace();
#else
    if (bt_check_losses()) fail("a step returned NaN: its batch size does not fit the program, or it diverged", 17);
#endif
    bt_write_outputs();
    printf("biotrain device program: %d steps done\n", (int)g_steps);
    bt_exit(0);
    return 0;
}
#endif
