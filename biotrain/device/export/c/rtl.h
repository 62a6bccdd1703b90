/* biotrain device export: the RTL testbench's devices (biotrain/device/rtl/tb.cpp).
 *
 * The program on the CV32E40P testbench has no operating system and no semihosting: it prints
 * through a console register, ends through an exit register, and reads and writes its data files
 * through a file device whose commands move the bytes between the host file and memory. The
 * core's counters are switched on here (they are inhibited at reset).
 */
#ifndef BT_RTL_H
#define BT_RTL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define BT_RTL_EXIT (*(volatile uint32_t *)0x00100000u)
#define BT_RTL_CONSOLE (*(volatile uint32_t *)0x10000000u)
#define BT_RTL_FILE ((volatile uint32_t *)0x20000000u) /* ARG0, ARG1, ARG2, CMD, RESULT */

static inline uint32_t bt_rtl_file_cmd(uint32_t cmd, uint32_t a0, uint32_t a1, uint32_t a2) {
    BT_RTL_FILE[0] = a0;
    BT_RTL_FILE[1] = a1;
    BT_RTL_FILE[2] = a2;
    BT_RTL_FILE[3] = cmd;
    return BT_RTL_FILE[4];
}
static inline int bt_rtl_open(const char *path, int write) {
    return (int)bt_rtl_file_cmd(1, (uint32_t)(uintptr_t)path, (uint32_t)write, 0);
}
static inline size_t bt_rtl_read(int h, void *dst, size_t n) {
    return bt_rtl_file_cmd(2, (uint32_t)h, (uint32_t)(uintptr_t)dst, (uint32_t)n);
}
static inline size_t bt_rtl_write(int h, const void *src, size_t n) {
    return bt_rtl_file_cmd(3, (uint32_t)h, (uint32_t)(uintptr_t)src, (uint32_t)n);
}
static inline void bt_rtl_close(int h) { (void)bt_rtl_file_cmd(4, (uint32_t)h, 0, 0); }

static inline void bt_rtl_exit(int code) {
    BT_RTL_EXIT = code ? (((uint32_t)code << 16) | 0x3333u) : 0x5555u;
    for (;;) {
    }
}

/* mhpmevent3..6 select: load-use stalls (event 2), jump-register stalls (3), FPU stalls: type
 * conflict, contention, dependency (12, 13, 14), instruction-fetch waits (4); then every counter
 * is enabled (mcountinhibit = 0) */
static inline void bt_counters_init(void) {
    __asm__ volatile("csrw mhpmevent3, %0" ::"r"(1u << 2));
    __asm__ volatile("csrw mhpmevent4, %0" ::"r"(1u << 3));
    __asm__ volatile("csrw mhpmevent5, %0" ::"r"((1u << 12) | (1u << 13) | (1u << 14)));
    __asm__ volatile("csrw mhpmevent6, %0" ::"r"(1u << 4));
    __asm__ volatile("csrw mcountinhibit, zero");
}

/* picolibc's stdio writes through this stream to the console register */
static int bt_rtl_putc(char c, FILE *f) {
    (void)f;
    BT_RTL_CONSOLE = (uint8_t)c;
    return (unsigned char)c;
}
static FILE bt_rtl_stdio = FDEV_SETUP_STREAM(bt_rtl_putc, NULL, NULL, _FDEV_SETUP_WRITE);
FILE *const stdin = &bt_rtl_stdio;
FILE *const stdout = &bt_rtl_stdio;
FILE *const stderr = &bt_rtl_stdio;

#endif
