/* ARM semihosting calls used by the harness. QEMU must run with
 * -semihosting-config enable=on,target=native; file names are relative to QEMU's working dir. */
#include "semihost.h"

#define SYS_OPEN 0x01
#define SYS_CLOSE 0x02
#define SYS_WRITE0 0x04
#define SYS_WRITE 0x05
#define SYS_READ 0x06
#define SYS_GET_CMDLINE 0x15
#define SYS_EXIT_EXTENDED 0x20
#define ADP_STOPPED_APPLICATION_EXIT 0x20026

static int32_t semihost_call(int32_t op, const void* arg) {
  register int32_t r0 __asm__("r0") = op;
  register const void* r1 __asm__("r1") = arg;
  /* "memory": the host reads and writes guest buffers behind the compiler's back. */
  __asm__ volatile("bkpt 0xab" : "+r"(r0) : "r"(r1) : "memory");
  return r0;
}

static uint32_t str_len(const char* s) {
  uint32_t n = 0;
  while (s[n] != '\0') n++;
  return n;
}

int32_t dtmm_sh_open(const char* path, int32_t mode) {
  uint32_t args[3] = {(uint32_t)path, (uint32_t)mode, str_len(path)};
  return semihost_call(SYS_OPEN, args);
}

int32_t dtmm_sh_close(int32_t handle) {
  uint32_t args[1] = {(uint32_t)handle};
  return semihost_call(SYS_CLOSE, args);
}

int32_t dtmm_sh_read(int32_t handle, void* buf, uint32_t len) {
  uint32_t args[3] = {(uint32_t)handle, (uint32_t)buf, len};
  int32_t not_read = semihost_call(SYS_READ, args);
  /* SYS_READ returns the number of bytes NOT read; anything outside [0, len] is an error. */
  if (not_read < 0 || (uint32_t)not_read > len) return -1;
  return (int32_t)(len - (uint32_t)not_read);
}

int32_t dtmm_sh_write(int32_t handle, const void* buf, uint32_t len) {
  uint32_t args[3] = {(uint32_t)handle, (uint32_t)buf, len};
  return semihost_call(SYS_WRITE, args) == 0 ? 0 : -1;
}

int32_t dtmm_sh_cmdline(char* buf, uint32_t len) {
  uint32_t args[2] = {(uint32_t)buf, len};
  if (len == 0u) return -1;
  buf[0] = '\0';
  return semihost_call(SYS_GET_CMDLINE, args) == 0 ? 0 : -1;
}

void dtmm_puts(const char* s) { semihost_call(SYS_WRITE0, s); }

static char* put_u32(char* p, uint32_t v) {
  char tmp[10];
  int n = 0;
  do {
    tmp[n++] = (char)('0' + v % 10u);
    v /= 10u;
  } while (v != 0u);
  while (n > 0) *p++ = tmp[--n];
  return p;
}

static void report(const char* key, uint32_t a, uint32_t b, int two) {
  char line[96];
  char* p = line;
  const char* prefix = "DTMM ";
  while (*prefix) *p++ = *prefix++;
  /* Keys are short literals from the harness; clamp anyway so the line buffer cannot overflow. */
  for (uint32_t i = 0; key[i] != '\0' && i < 48u; i++) *p++ = key[i];
  *p++ = ' ';
  p = put_u32(p, a);
  if (two) {
    *p++ = ' ';
    p = put_u32(p, b);
  }
  *p++ = '\n';
  *p = '\0';
  dtmm_puts(line);
}

void dtmm_report(const char* key, uint32_t a, uint32_t b) { report(key, a, b, 1); }
void dtmm_report1(const char* key, uint32_t a) { report(key, a, 0, 0); }

void dtmm_exit(int32_t status) {
  uint32_t args[2] = {ADP_STOPPED_APPLICATION_EXIT, (uint32_t)status};
  for (;;) semihost_call(SYS_EXIT_EXTENDED, args);
}
