"""dtmm_requant_fast.h (the hoisted requantization of the DSP / portable conv and depthwise
kernels) equals the shared dtmm_requantize (TFLM MultiplyByQuantizedMultiplier) on edge values:
accumulators near INT32_MIN / INT32_MAX, multipliers at 0, 2^30 and 2^31 - 1, shifts -31..+8,
and the clamped store with full and narrow activation ranges. Host gcc, portable C formula;
the DSP instruction sequence runs in every M4/M7 QEMU test of the conv and depthwise kernels."""
import shutil
import subprocess

import numpy as np
import pytest

from dtmm_tvm.kernels import header_files

PROGRAM = r"""
#include <stdio.h>
#include "dtmm_kernels.h"
#include "dtmm_requant_fast.h"
int main(void) {
  int32_t acc[4], m, sh, lo, hi, off;
  long bad = 0, n = 0;
  while (scanf("%d %d %d %d %d %d %d %d %d", &acc[0], &acc[1], &acc[2], &acc[3], &m, &sh, &off, &lo, &hi) == 9) {
    int8_t out[8] = {0};
    dtmm_rq_store(acc, 4, m, sh, out, 2, off, lo, hi);
    for (int s = 0; s < 4; ++s) {
      int32_t v = dtmm_requantize(acc[s], m, sh) + off;
      v = v < lo ? lo : (v > hi ? hi : v);
      ++n;
      if (out[2 * s] != (int8_t)v) {
        if (bad < 5) printf("acc %d m %d sh %d: %d != %d\n", acc[s], m, sh, out[2 * s], v);
        ++bad;
      }
    }
  }
  printf("checked %ld bad %ld\n", n, bad);
  return bad != 0;
}
"""


def _cases(rng):
    edge_acc = [-2**31, -2**31 + 1, -2**30, -65537, -1, 0, 1, 65535, 2**30, 2**31 - 2, 2**31 - 1]
    mults = [0, 1, 2**30, 2**30 + 12345, 2**31 - 1]
    rows = []
    for m in mults + [int(v) for v in rng.integers(2**30, 2**31, 6)]:
        for sh in list(range(-31, 9)):
            accs = edge_acc + [int(v) for v in rng.integers(-2**31, 2**31, 9, dtype=np.int64)]
            if sh > 0:  # TFLM's left shift of a large accumulator overflows: keep it in range
                accs = [a >> sh for a in accs]
            for lo, hi, off in [(-128, 127, 0), (-128, 127, -128), (-20, 100, 7), (0, 127, 127)]:
                for i in range(0, len(accs), 4):
                    a = (accs[i:i + 4] + accs[:4])[:4]
                    rows.append(" ".join(map(str, a + [m, sh, off, lo, hi])))
    return rows


def test_fast_requant_equals_tflm_arithmetic(tmp_path):
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("host gcc not installed")
    for name, text in header_files().items():
        (tmp_path / name).write_text(text)
    (tmp_path / "t.c").write_text(PROGRAM)
    exe = tmp_path / "t"
    proc = subprocess.run([gcc, "-std=c99", "-O2", "-Wall", "-Werror", "-I", str(tmp_path), str(tmp_path / "t.c"),
                           "-o", str(exe), "-lm"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    rows = _cases(np.random.default_rng(11))
    run = subprocess.run([str(exe)], input="\n".join(rows) + "\n", capture_output=True, text=True)
    assert run.returncode == 0, run.stdout
    assert f"checked {4 * len(rows)} bad 0" in run.stdout
