/*
 * Startup for the DTMM QEMU harness (all Cortex-M boards).
 *
 * Vector table + reset handler: enable the FPU (and MVE on v8.1-M, which shares CP10/CP11)
 * before any C code runs, because GCC is free to emit FP/MVE instructions anywhere in C compiled
 * with -mfloat-abi=hard; copy .data from flash, zero .bss, call main, exit via semihosting.
 * Written in assembly so that the copy loops can never be turned into memcpy/memset calls.
 */
    .syntax unified
    .thumb

    .section .vectors, "a", %progbits
    .align 7                      /* VTOR needs 128-byte alignment for <= 32 entries */
    .globl __vectors
__vectors:
    .word __StackTop              /* 0: initial MSP */
    .word Reset_Handler           /* 1: reset */
    .word Fault_Handler           /* 2: NMI */
    .word Fault_Handler           /* 3: HardFault */
    .word Fault_Handler           /* 4: MemManage */
    .word Fault_Handler           /* 5: BusFault */
    .word Fault_Handler           /* 6: UsageFault */
    .word Fault_Handler           /* 7: SecureFault (v8-M) */
    .word 0, 0, 0                 /* 8-10: reserved */
    .word Fault_Handler           /* 11: SVCall */
    .word Fault_Handler           /* 12: DebugMonitor */
    .word 0                       /* 13: reserved */
    .word Fault_Handler           /* 14: PendSV */
    .word Fault_Handler           /* 15: SysTick */
    /* No external interrupts are enabled by the harness, so no IRQ vectors are needed. */

    .text
    .thumb_func
    .globl Reset_Handler
    .type Reset_Handler, %function
Reset_Handler:
    ldr   r0, =__StackTop
    msr   msp, r0
#if defined(__ARM_ARCH_8M_MAIN__) || defined(__ARM_ARCH_8_1M_MAIN__)
    /* v8-M has a stack limit register: a stack overflow faults instead of corrupting .bss. */
    ldr   r0, =__StackLimit
    msr   msplim, r0
#endif
#if defined(__ARM_FP) || defined(__ARM_FEATURE_MVE)
    /* CPACR: full access to CP10 and CP11 (FPU, and MVE on Cortex-M55). */
    ldr   r0, =0xE000ED88
    ldr   r1, [r0]
    orr   r1, r1, #0x00F00000
    str   r1, [r0]
    dsb
    isb
#endif
    /* Copy initialised data from its load address in flash to RAM (word-aligned by the
       linker script). */
    ldr   r1, =__data_load
    ldr   r2, =__data_start
    ldr   r3, =__data_end
    /* Post-indexed loads/stores are Thumb-2: ARMv6-M (Cortex-M0/M0+) advances the pointers
       with separate adds. */
1:  cmp   r2, r3
    bhs   2f
    ldr   r0, [r1]
    str   r0, [r2]
    adds  r1, r1, #4
    adds  r2, r2, #4
    b     1b
2:  /* Zero .bss (includes the model's static arena). */
    ldr   r2, =__bss_start
    ldr   r3, =__bss_end
    movs  r0, #0
3:  cmp   r2, r3
    bhs   4f
    str   r0, [r2]
    adds  r2, r2, #4
    b     3b
4:  bl    main
    bl    dtmm_exit               /* main's return value is the exit status */
5:  b     5b
    .size Reset_Handler, . - Reset_Handler
    .ltorg

/* Every fault and unused exception: report and exit (dtmm_fault in main.c) instead of hanging.
   On v8-M the stack limit is lifted first, so the handler can still run after a stack-limit
   (STKOF) fault. */
    .thumb_func
    .globl Fault_Handler
    .type Fault_Handler, %function
Fault_Handler:
#if defined(__ARM_ARCH_8M_MAIN__) || defined(__ARM_ARCH_8_1M_MAIN__)
    movs  r0, #0
    msr   msplim, r0
#endif
    ldr   r0, =dtmm_fault         /* a register branch: ARMv6-M's B reaches only +-2 KiB */
    bx    r0
    .size Fault_Handler, . - Fault_Handler
    .ltorg
