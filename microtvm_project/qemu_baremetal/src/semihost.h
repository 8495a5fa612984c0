/* Minimal ARM semihosting (bkpt 0xab) for the DTMM harness: host file I/O, console, exit. */
#ifndef DTMM_SEMIHOST_H_
#define DTMM_SEMIHOST_H_

#include <stddef.h>
#include <stdint.h>

/* SYS_OPEN modes (ISO C fopen equivalents). */
#define DTMM_SH_MODE_RB 1
#define DTMM_SH_MODE_WB 5

int32_t dtmm_sh_open(const char* path, int32_t mode);
int32_t dtmm_sh_close(int32_t handle);
/* Returns the number of bytes actually read (0 at end of file), or -1 on error. */
int32_t dtmm_sh_read(int32_t handle, void* buf, uint32_t len);
/* Returns 0 when all bytes were written, -1 otherwise. */
int32_t dtmm_sh_write(int32_t handle, const void* buf, uint32_t len);
/* Copies the semihosting command line (QEMU -semihosting-config arg=...) into buf, NUL-terminated; 0 on success, -1 when
 * there is none or it does not fit. */
int32_t dtmm_sh_cmdline(char* buf, uint32_t len);
/* Writes a NUL-terminated string to the host console (QEMU's stderr). */
void dtmm_puts(const char* s);
/* Prints "DTMM <key> <a> <b>\n" with decimal numbers: the machine-readable result lines. */
void dtmm_report(const char* key, uint32_t a, uint32_t b);
void dtmm_report1(const char* key, uint32_t a);
/* Ends the emulation with an exit status (SYS_EXIT_EXTENDED); never returns. */
void dtmm_exit(int32_t status) __attribute__((noreturn));

#endif  /* DTMM_SEMIHOST_H_ */
