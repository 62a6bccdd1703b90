/* biotrain device export: per-kernel-kind performance counters.
 *
 * Counters (BT_N_COUNTERS): retired instructions, cycles, and on the RTL target the core's event
 * counters (mhpmcounter3..6, set up by bt_counters_init: load-use stalls, jump-register stalls,
 * FPU stalls (dependency, contention, type conflict), cycles waiting for instruction fetches).
 * rv32 on qemu: the guest's instret/cycle CSRs (qemu -icount shift=0 makes its cycle counter
 * count instructions: the runner reports it as such); events read 0. GAP9: the PMSIS counters
 * of the core that runs the call. Host: no counting.
 */
#ifndef BT_PROF_H
#define BT_PROF_H

#include <stdint.h>

#include "kernels.h"

enum { K_CONV_FWD, K_CONV_BWD, K_DW_FWD, K_DW_BWD, K_LINEAR_FWD, K_LINEAR_BWD, K_NORM_FWD, K_NORM_BWD,
       K_ELEMENTWISE, K_DATA, K_DMA, BT_N_KINDS };
enum { C_INSTRET, C_CYCLES, C_LD_STALL, C_JMP_STALL, C_FPU_STALL, C_IMISS, BT_N_COUNTERS };

extern uint64_t bt_prof[BT_N_KINDS][BT_N_COUNTERS];     /* core 0's counters, barrier included */
extern uint64_t bt_core_prof[BT_NCORES][BT_N_KINDS + 1]; /* cores.c: per core, kinds then barrier_wait */
extern uint32_t bt_wait_instr[BT_NCORES];                /* cores.c: instructions in the barrier */

#if defined(BT_RV32)
#define BT_CSR_READ(name) ({ uint32_t v_; __asm__ volatile("csrr %0, " #name : "=r"(v_)); v_; })
static inline uint64_t bt_read64(uint32_t (*lo)(void), uint32_t (*hi)(void)) {
    uint32_t h, l, h2;
    do {
        h = hi();
        l = lo();
        h2 = hi();
    } while (h != h2);
    return ((uint64_t)h << 32) | l;
}
static inline uint32_t bt_instret_lo(void) { return BT_CSR_READ(instret); }
static inline uint32_t bt_instret_hi(void) { return BT_CSR_READ(instreth); }
static inline uint32_t bt_cycle_lo(void) { return BT_CSR_READ(cycle); }
static inline uint32_t bt_cycle_hi(void) { return BT_CSR_READ(cycleh); }
static inline uint64_t bt_instret(void) { return bt_read64(bt_instret_lo, bt_instret_hi); }
static inline uint64_t bt_cycles(void) { return bt_read64(bt_cycle_lo, bt_cycle_hi); }
/* low 32 bits of every counter: a kernel call is far shorter than 2^32 cycles, so differences
 * of the low words are exact */
static inline void bt_counters(uint32_t c[BT_N_COUNTERS]) {
    c[C_INSTRET] = BT_CSR_READ(instret);
    c[C_CYCLES] = BT_CSR_READ(cycle);
#if defined(BT_RTL)
    c[C_LD_STALL] = BT_CSR_READ(hpmcounter3);
    c[C_JMP_STALL] = BT_CSR_READ(hpmcounter4);
    c[C_FPU_STALL] = BT_CSR_READ(hpmcounter5);
    c[C_IMISS] = BT_CSR_READ(hpmcounter6);
#else
    c[C_LD_STALL] = c[C_JMP_STALL] = c[C_FPU_STALL] = c[C_IMISS] = 0;
#endif
}
#elif defined(BT_GAP9)
#include "pmsis.h"
static inline uint64_t bt_instret(void) { return (uint64_t)pi_perf_read(PI_PERF_INSTR); }
static inline uint64_t bt_cycles(void) { return (uint64_t)pi_perf_read(PI_PERF_CYCLES); }
static inline void bt_counters(uint32_t c[BT_N_COUNTERS]) {
    c[C_INSTRET] = (uint32_t)pi_perf_read(PI_PERF_INSTR);
    c[C_CYCLES] = (uint32_t)pi_perf_read(PI_PERF_CYCLES);
    c[C_LD_STALL] = c[C_JMP_STALL] = c[C_FPU_STALL] = c[C_IMISS] = 0;
}
#else
static inline uint64_t bt_instret(void) { return 0; }
static inline uint64_t bt_cycles(void) { return 0; }
static inline void bt_counters(uint32_t c[BT_N_COUNTERS]) {
    for (int i = 0; i < BT_N_COUNTERS; i++) c[i] = 0;
}
#endif

/* A BT_SOLO_CORE build keeps the kind and the instructions (RTL: the cycles) of every call in order
 * (trace.bin): with every core's trace the runner knows each call's busiest core, hence each
 * core's wait at its barrier, and what the N-core step takes call by call. */
#if defined(BT_SOLO_CORE)
void bt_trace_add(uint32_t kind, uint32_t count);
#define BT_TRACE(k, n) bt_trace_add(k, n)
#else
#define BT_TRACE(k, n) ((void)0)
#endif

/* around every kernel call of the step: every core counts its own instructions (the barrier's
 * apart), core 0 also all its counters; then the cores wait for each other (the next kernel may
 * read any core's share of this one's output). Out of line (cores.c): the generated step has
 * hundreds of these. */
typedef struct {
    uint32_t c[BT_N_COUNTERS];
    uint32_t wait;
} bt_prof_t;
void bt_prof_begin(bt_prof_t *p);
void bt_prof_end(bt_prof_t *p, int kind);
#define PROF(k, ...) \
    do { \
        bt_prof_t bt_p_; \
        bt_prof_begin(&bt_p_); \
        __VA_ARGS__; \
        bt_prof_end(&bt_p_, k); \
    } while (0)

#endif
