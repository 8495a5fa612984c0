#!/usr/bin/env bash
# One entry point that sets everything up on a fresh Debian machine, then runs a job.
#   ./run.sh demo    compile the bundled pruned model dense and with DTMM, run both on an
#                    emulated Cortex-M4, check against TFLM, print the side-by-side table
#   ./run.sh test    the test suite
#   ./run.sh bench   the benchmarks (results in bench/results/)
#   ./run.sh fuzz N  N fresh front-door fuzz cases, the regression corpus, differential kernel
#                    tests on the host and on QEMU per core; prints the hardening figures
set -euo pipefail
cd "$(dirname "$0")"

APT_PACKAGES="gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm dataset-fashion-mnist bubblewrap chromium ccache"
VENV=.venv

setup_system() {
    local missing=""
    command -v arm-none-eabi-gcc >/dev/null || missing=1
    command -v qemu-system-arm >/dev/null || missing=1
    command -v bwrap >/dev/null || missing=1
    command -v chromium >/dev/null || missing=1  # headless, renders dtmm report in tests
    command -v ccache >/dev/null || missing=1  # reuses the kernels' objects across firmware builds
    [ -d /usr/share/datasets/fashion-mnist ] || missing=1
    [ -f /usr/lib/arm-none-eabi/newlib/libc.a ] || [ -d /usr/lib/arm-none-eabi/newlib ] || missing=1
    if [ -n "$missing" ]; then
        local sudo=""
        [ "$(id -u)" = 0 ] || sudo=sudo
        echo "== installing system packages: $APT_PACKAGES" >&2
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends $APT_PACKAGES >&2
    fi
}

setup_python() {
    if [ ! -x "$VENV/bin/python" ]; then
        echo "== creating $VENV" >&2
        python3 -m venv "$VENV"
    fi
    # Re-install only when the project's requirements changed since the last install.
    local stamp="$VENV/.dtmm-installed"
    if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
        echo "== installing Python packages (TVM 0.27 and friends)" >&2
        "$VENV/bin/python" -m pip install -q --upgrade pip >&2
        "$VENV/bin/python" -m pip install -q -e ".[test,bench]" >&2
        touch "$stamp"
    fi
}

job=${1:-demo}
shift || true
setup_system
setup_python
case "$job" in
    demo)  exec "$VENV/bin/python" -m dtmm_tvm.demo "$@" ;;
    test)
        # pytest exits 5 when it collected no test: that is a failure here, never a pass.
        set +e
        "$VENV/bin/python" -m pytest -q -n auto --dist loadfile --durations=30 "$@"
        status=$?
        [ $status = 5 ] && echo "pytest collected no tests" >&2 && exit 1
        exit $status ;;
    bench) exec "$VENV/bin/python" -m bench "$@" ;;
    fuzz)  exec "$VENV/bin/python" tests/fuzz/report.py "$@" ;;
    *) echo "usage: ./run.sh [demo|test|bench|fuzz] [args...]" >&2; exit 2 ;;
esac
