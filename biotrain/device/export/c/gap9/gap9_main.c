/* biotrain device export: GAP9 entry point (PMSIS), written for this project.
 *
 * The fabric controller reads the data files (the GAP SDK routes stdio file access to the host,
 * on the board through the debug bridge and on GVSoC through its semihosting), opens the cluster
 * and sends it one task: the whole schedule, run SPMD on the 8 compute cores. Every core walks
 * the same generated step; each kernel takes its share of the outer loop and the cores meet at a
 * barrier after every kernel (kernels.h, prof.h). The arena is one static array in L2 (PI_L2);
 * the cores read and write it in place (no L1 tiling / DMA double buffering in this glue, which
 * the cost model assumes: see docs/device.md).
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
