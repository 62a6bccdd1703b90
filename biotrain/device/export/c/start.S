/* biotrain device export: the entry of every hart of the rv32 build (qemu virt, -bios none).
 *
 * qemu starts every hart at the start of RAM, where this section is linked ahead of picolibc's
 * crt0 (Makefile: -nostartfiles, this file first). Hart 0 goes on to picolibc's _start (data, bss,
 * TLS, then main). The others must not run that one-time start-up: each takes its own stack from
 * bt_stacks, switches its FPU and software-interrupt wake-up on, and sleeps (wfi) until hart 0 has
 * loaded the inputs and sets bt_release (cores.c), then runs the step (bt_worker_main). Harts
 * beyond the build's BT_NCORES park. A BT_SOLO_CORE build runs alone on whatever hart id it has.
 */
#ifndef BT_NCORES
#define BT_NCORES 1
#endif
#define BT_STACK_SHIFT 14 /* 16 KiB of stack per worker hart */
#define BT_RELEASE_MAGIC 0x42540001

    .section .text.init.enter, "ax"
    .global bt_entry
bt_entry:
#if BT_NCORES == 1 || defined(BT_SOLO_CORE)
    j _start
#else
    csrr t0, mhartid
    beqz t0, _start
    li t1, BT_NCORES
    bgeu t0, t1, bt_park
    .option push
    .option norelax
    la gp, __global_pointer$
    .option pop
    la sp, bt_stacks
    slli t1, t0, BT_STACK_SHIFT /* hart h's stack is [(h-1) << shift, h << shift): its top is here */
    add sp, sp, t1
    li t1, 0x2000 /* mstatus.FS = initial: the FPU on */
    csrs mstatus, t1
    csrw fcsr, zero
    li t1, 8 /* mie.MSIE: a software interrupt (CLINT msip) wakes wfi; mstatus.MIE stays 0: no trap */
    csrs mie, t1
    li t3, BT_RELEASE_MAGIC
1:  la t1, bt_release
    lw t2, 0(t1)
    beq t2, t3, 2f
    wfi
    li t1, 0x2000000 /* CLINT msip of this hart: cleared before looking again */
    slli t2, t0, 2
    add t1, t1, t2
    sw zero, 0(t1)
    fence rw, rw
    j 1b
2:  fence rw, rw
    la tp, __tls_base /* hart 0's thread-local block (errno): workers call no library code that sets it */
    mv a0, t0
    call bt_worker_main
bt_park:
    wfi
    j bt_park
#endif
