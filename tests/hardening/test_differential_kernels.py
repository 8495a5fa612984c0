"""Generated kernels bit-exact with the numpy TFLite integer semantics on random layers
(hypothesis; see :mod:`differential`): batches on the host (portable C), one batch per core on
QEMU (M4 DSP, M7, M55 MVE). ``./run.sh fuzz`` runs many more."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parent))
import differential  # noqa: E402

# CI runs a bounded slice; `./run.sh fuzz` raises these (see run.sh).
HOST_BATCHES = int(os.environ.get("DTMM_DIFF_HOST_BATCHES", "1"))
BATCH = int(os.environ.get("DTMM_DIFF_BATCH", "12"))
QEMU_BATCH = int(os.environ.get("DTMM_DIFF_QEMU_BATCH", "4"))
# No shrinking: a batch is expensive to rebuild; a failure is explained case by case instead.
SETTINGS = dict(deadline=None, derandomize=True, database=None, phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck))


@settings(max_examples=HOST_BATCHES, **SETTINGS)
@given(batch=st.lists(differential.cases(), min_size=BATCH, max_size=BATCH))
def test_host_c_bit_exact(batch, tmp_path_factory):
    work = tmp_path_factory.mktemp("diff")
    got = differential.run_on_host(batch, work)
    problem = differential.explain(batch, got, work)
    assert problem is None, problem
    print(f"differential: {len(batch)} cases bit-exact on the host (portable C)")


@pytest.mark.parametrize("target, board", [("dtmm/cortex-m4", "mps2-an386"), ("dtmm/cortex-m7", "mps2-an500"),
                                           ("dtmm/cortex-m55", "mps3-an547")])
def test_qemu_bit_exact_per_core(target, board, tmp_path_factory):
    from dtmm_tvm.errors import DTMMError
    from dtmm_tvm.micro.qemu import require_toolchain

    try:
        require_toolchain()
    except DTMMError as err:
        pytest.skip(f"missing tools: {err}")

    @settings(max_examples=1, **SETTINGS)
    @given(batch=st.lists(differential.cases(), min_size=QEMU_BATCH, max_size=QEMU_BATCH))
    def check(batch):
        got = differential.run_on_board(batch, tmp_path_factory.mktemp("diff"), board, target)
        assert differential.first_mismatch(batch, got) is None, differential.first_mismatch(batch, got)
        print(f"differential: {len(batch)} cases bit-exact on {board} ({target})")

    check()


@pytest.mark.parametrize("kind", ["max", "avg"])
def test_pool_with_a_1x1_window(tmp_path, kind):
    """Found by the differential run: TVM's StmtSimplify made the 1x1-window C clamp a stale
    accumulator; the kernel now has a path of its own for that window."""
    import numpy as np

    from dtmm_tvm.ops.pooling import pool2d_int8
    from dtmm_tvm.quant import pooling as qpool

    params = qpool.Pool2DParams((1, 2, 2, 17), (1, 1, 1, 17), 1, 1, 2, 2, 0, 0, 13, 127)
    x = np.random.default_rng(0).integers(-128, 128, size=params.input_shape).astype(np.int8)
    reference = qpool.max_pool2d_int8 if kind == "max" else qpool.avg_pool2d_int8
    expected = np.asarray(reference(x, params), np.int8)
    case = differential.Case(f"{kind}_pool", "1x1 window", lambda: (pool2d_int8(kind, params), [x]), expected)
    got = differential.run_on_host([case], tmp_path)
    assert np.array_equal(got, expected.reshape(-1))
