/* biotrain device export: GAP9 entry point (PMSIS), written for this project.
 *
 * The fabric controller reads the data files (the GAP SDK routes stdio file access to the host,
 * on the board through the debug bridge and on GVSoC through its semihosting), opens the cluster
 * and sends it one task: the whole schedule, run SPMD on the 8 compute cores. Every core walks
 * the same generated step, the one qemu runs with -smp 8 (kernels.h, prof.h, cores.c): each
 * kernel takes its share of a flattened loop, the cores meet at the team barrier after every
 * kernel (bt_barrier: pi_cl_team_barrier), and every kernel computes on L1 copies of its operands
 * (bt_l1, PI_CL_L1, BT_L1_BYTES: the tile plan of export/l1.py), moved between the L2 arena
 * (bt_arena, PI_L2) and L1 by core 0 through the cluster DMA (kernels.c bt_dma: pi_cl_dma_cmd per
 * row, pi_cl_dma_flush) where qemu's stand-in copies. Its transfers are issued and waited for in
 * the same call: the double-buffered slots are there, the overlap of a fetch with the compute is
 * not (yet).
 */
#include <stdio.h>

#include "pmsis.h"
#include "step.h"

static void cluster_core(void *arg) {
    (void)arg;
    bt_run_steps(); /* every core: the kernels split their loops by pi_core_id() */
}

static void cluster_entry(void *arg) {
    pi_perf_conf((1 << PI_PERF_CYCLES) | (1 << PI_PERF_INSTR));
    pi_perf_reset();
    pi_perf_start();
    pi_cl_team_fork(BT_NCORES, cluster_core, arg);
    pi_perf_stop();
}

static void bt_gap9_main(void) {
    struct pi_device cluster;
    struct pi_cluster_conf conf;
    struct pi_cluster_task task;

    bt_load_inputs();
    pi_cluster_conf_init(&conf);
    conf.id = 0;
    pi_open_from_conf(&cluster, &conf);
    if (pi_cluster_open(&cluster)) fail("cannot open the cluster", 20);
    pi_cluster_task(&task, cluster_entry, NULL);
    pi_cluster_send_task_to_cl(&cluster, &task);
    pi_cluster_close(&cluster);
    if (bt_check_losses()) fail("a step returned NaN: its batch size does not fit the program, or it diverged", 17);
    bt_write_outputs();
    printf("biotrain device program: done on %d cluster cores\n", BT_NCORES);
    pmsis_exit(0);
}

int main(void) { return pmsis_kickoff((void *)bt_gap9_main); }
