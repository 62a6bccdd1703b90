/* biotrain device export: the cores of the cluster (written for this project).
 *
 * The barrier every kernel ends with, without the A extension (the CV32E40P core has none) and
 * without a hardware barrier unit: per-core arrival flags with sense reversal. Core c flips its
 * sense and writes it into its own flag; core 0 waits until every flag holds its sense, then
 * writes the sense into the release word; the others wait for it. Each word has one writer, so
 * plain stores and fences suffice. A waiting hart sleeps in wfi and is woken by a software
 * interrupt (the qemu virt CLINT's msip; no trap is taken, mstatus.MIE stays 0), so a waiting hart
 * costs no emulated instructions and qemu's round-robin moves on to a hart with work: the run is
 * deterministic. Instructions spent in the barrier are counted per core (bt_wait_instr) and
 * reported apart from the kernels (barrier_wait). On GAP9 the wait is the event unit's hardware
 * barrier (pi_cl_team_barrier) instead; on one core the barrier does nothing.
 */
#include <stdint.h>

#include "step.h"

uint64_t bt_prof[BT_N_KINDS][BT_N_COUNTERS];
uint64_t bt_core_prof[BT_NCORES][BT_N_KINDS + 1]; /* instructions per core: every kind, then barrier_wait */
uint32_t bt_wait_instr[BT_NCORES];                /* instructions spent in bt_barrier, per core */

#if defined(BT_GAP9)
void bt_barrier(void) {
    const uint32_t i0 = (uint32_t)pi_perf_read(PI_PERF_INSTR);
    pi_cl_team_barrier();
    bt_wait_instr[BT_CORE()] += (uint32_t)pi_perf_read(PI_PERF_INSTR) - i0;
}
#elif BT_NCORES == 1 || defined(BT_SOLO_CORE)
void bt_barrier(void) {}
#else
#define BT_MSIP ((volatile uint32_t *)0x2000000u) /* qemu virt CLINT: one msip word per hart */
#define BT_RELEASE_MAGIC 0x42540001u

volatile uint32_t bt_release;                /* start.S: the worker harts wait for BT_RELEASE_MAGIC */
uint8_t bt_stacks[BT_NCORES - 1][1u << 14] __attribute__((aligned(16))); /* worker stacks (start.S) */
static volatile uint32_t bt_arrive[BT_NCORES]; /* core c's sense when it reached the barrier */
static volatile uint32_t bt_go;                /* core 0's sense once all have arrived */
static uint32_t bt_sense[BT_NCORES];           /* each core's current sense (its own entry only) */

static inline void bt_fence(void) { __asm__ volatile("fence rw, rw" ::: "memory"); }

/* sleep until a software interrupt; clear it before the caller looks at its flag again, so a
 * wake-up sent after that look is never lost */
static inline void bt_sleep(int me) {
    __asm__ volatile("wfi" ::: "memory");
    BT_MSIP[me] = 0;
    bt_fence();
}

static inline uint32_t bt_instret32(void) {
    uint32_t v;
    __asm__ volatile("csrr %0, instret" : "=r"(v));
    return v;
}

void bt_barrier(void) {
    const uint32_t i0 = bt_instret32();
    const int me = BT_CORE();
    const uint32_t s = bt_sense[me] ^= 1u;
    bt_fence(); /* this core's writes before its arrival */
    if (me == 0) {
        for (int c = 1; c < BT_NCORES; c++)
            while (bt_arrive[c] != s) bt_sleep(0);
        bt_go = s;
        bt_fence();
        for (int c = 1; c < BT_NCORES; c++) BT_MSIP[c] = 1;
    } else {
        bt_arrive[me] = s;
        bt_fence();
        BT_MSIP[0] = 1;
        while (bt_go != s) bt_sleep(me);
    }
    bt_fence(); /* the others' writes before this core's next reads */
    bt_wait_instr[me] += bt_instret32() - i0;
}

/* hart 0, once the inputs are loaded: switch its own wake-up on and let the workers go */
void bt_start_workers(void) {
    __asm__ volatile("csrs mie, %0" ::"r"(8u));
    bt_fence();
    bt_release = BT_RELEASE_MAGIC;
    bt_fence();
    for (int c = 1; c < BT_NCORES; c++) BT_MSIP[c] = 1;
}

/* start.S: a worker hart, released */
void bt_worker_main(int hart) {
    (void)hart;
    bt_run_steps();
    for (;;) __asm__ volatile("wfi");
}
#endif

#if BT_NCORES == 1 || defined(BT_SOLO_CORE) || !defined(BT_RV32) || defined(BT_GAP9)
void bt_start_workers(void) {}
#endif

void bt_prof_begin(bt_prof_t *p) {
    p->wait = bt_wait_instr[BT_CORE()];
    bt_counters(p->c);
}

void bt_prof_end(bt_prof_t *p, int kind) {
    uint32_t c1[BT_N_COUNTERS];
    const int me = BT_CORE();
    BT_BARRIER();
    bt_counters(c1);
    const uint32_t w = bt_wait_instr[me] - p->wait;
    bt_core_prof[me][kind] += (uint32_t)(c1[C_INSTRET] - p->c[C_INSTRET]) - w;
    bt_core_prof[me][BT_N_KINDS] += w;
#if defined(BT_RTL) /* the RTL counts clock cycles: the trace holds them */
    BT_TRACE((uint32_t)kind, (uint32_t)(c1[C_CYCLES] - p->c[C_CYCLES]));
#else
    BT_TRACE((uint32_t)kind, (uint32_t)(c1[C_INSTRET] - p->c[C_INSTRET]));
#endif
#if defined(BT_SOLO_CORE) /* the only core running: its own counters are the books */
    for (int i = 0; i < BT_N_COUNTERS; i++) bt_prof[kind][i] += (uint32_t)(c1[i] - p->c[i]);
#else
    BT_SERIAL for (int i = 0; i < BT_N_COUNTERS; i++) bt_prof[kind][i] += (uint32_t)(c1[i] - p->c[i]);
#endif
}
