/* biotrain device export: per-kernel-kind instruction counters.
 *
 * rv32 (qemu): the guest's own instret/cycle CSRs around every kernel call (run qemu with
 * -icount shift=0 so that instret counts retired instructions). GAP9: the PMSIS performance
 * counters of the core that runs the call. Host: no counting.
 */
#ifndef BT_PROF_H
#define BT_PROF_H

#include <stdint.h>

enum { K_CONV_FWD, K_CONV_BWD, K_DW_FWD, K_DW_BWD, K_LINEAR_FWD, K_LINEAR_BWD, K_NORM_FWD, K_NORM_BWD,
       K_ELEMENTWISE, K_DATA, BT_N_KINDS };

extern uint64_t bt_prof_instret[BT_N_KINDS];

#if defined(BT_RV32)
static inline uint64_t bt_instret(void) {
    uint32_t hi, lo, hi2;
    do {
        __asm__ volatile("rdinstreth %0" : "=r"(hi));
        __asm__ volatile("rdinstret %0" : "=r"(lo));
        __asm__ volatile("rdinstreth %0" : "=r"(hi2));
    } while (hi != hi2);
    return ((uint64_t)hi << 32) | lo;
}
static inline uint64_t bt_cycles(void) {
    uint32_t hi, lo, hi2;
    do {
        __asm__ volatile("rdcycleh %0" : "=r"(hi));
        __asm__ volatile("rdcycle %0" : "=r"(lo));
        __asm__ volatile("rdcycleh %0" : "=r"(hi2));
    } while (hi != hi2);
    return ((uint64_t)hi << 32) | lo;
}
#elif defined(BT_GAP9)
#include "pmsis.h"
static inline uint64_t bt_instret(void) { return (uint64_t)pi_perf_read(PI_PERF_INSTR); }
static inline uint64_t bt_cycles(void) { return (uint64_t)pi_perf_read(PI_PERF_CYCLES); }
#else
static inline uint64_t bt_instret(void) { return 0; }
static inline uint64_t bt_cycles(void) { return 0; }
#endif

/* around every kernel call of the step: count (core 0), and on a cluster wait for all cores */
#define PROF(k, call) \
    do { \
        uint64_t bt_t0_ = bt_instret(); \
        call; \
        BT_BARRIER(); \
        BT_SERIAL bt_prof_instret[k] += bt_instret() - bt_t0_; \
    } while (0)

#endif
