"""The arena planner: live buffers never share bytes, reuse happens when lifetimes allow."""

import numpy as np
import pytest

from dtmm_tvm.codegen.planner import ALIGNMENT, BufferRequest, plan_arena, validate_plan


def _assert_no_live_overlap(plan):
    for i, a in enumerate(plan.buffers):
        assert a.offset % ALIGNMENT == 0
        assert a.offset + a.bytes <= plan.bytes
        for b in plan.buffers[i + 1:]:
            if a.first_use <= b.last_use and b.first_use <= a.last_use and a.bytes and b.bytes:
                assert a.offset + a.bytes <= b.offset or b.offset + b.bytes <= a.offset, (a, b)


def test_random_lifetimes_never_overlap():
    rng = np.random.default_rng(0)
    for trial in range(300):
        n = int(rng.integers(1, 25))
        reqs = []
        for k in range(n):
            first = int(rng.integers(0, 20))
            last = first + int(rng.integers(0, 6))
            size = int(rng.choice([0, 1, 3, 16, 17, 100, 1000, int(rng.integers(1, 5000))]))
            reqs.append(BufferRequest(f"b{k}", size, first, last))
        plan = plan_arena(reqs)
        _assert_no_live_overlap(plan)
        validate_plan(plan)
        assert [p.name for p in plan.buffers] == [r.name for r in reqs]
        # Never worse than no reuse at all (each buffer rounded up to the alignment).
        assert plan.bytes <= sum(-(-r.bytes // ALIGNMENT) * ALIGNMENT for r in reqs)
        # Never smaller than what is live at the busiest call.
        for t in range(26):
            live = sum(r.bytes for r in reqs if r.first_use <= t <= r.last_use)
            assert plan.bytes >= live


def test_chain_reuses_memory():
    # A chain a -> b -> c -> d: only neighbours are live together.
    reqs = [BufferRequest(n, 1000, i, i + 1) for i, n in enumerate("abcd")]
    plan = plan_arena(reqs)
    assert plan.bytes < plan.total_buffer_bytes
    assert plan.bytes == 2 * 1008
    assert plan.offset_of("a") == plan.offset_of("c")


def test_best_fit_fills_gap():
    reqs = [
        BufferRequest("big0", 4096, 0, 1),
        BufferRequest("small", 512, 0, 0),
        BufferRequest("big1", 4096, 1, 2),
        BufferRequest("late", 400, 2, 2),
    ]
    plan = plan_arena(reqs)
    validate_plan(plan)
    assert plan.bytes == 4096 * 2


def test_validate_detects_overlap():
    from dtmm_tvm.codegen.planner import ArenaPlan, Placement

    bad = ArenaPlan(bytes=64, buffers=[Placement("a", 0, 32, 0, 1), Placement("b", 16, 32, 1, 2)])
    with pytest.raises(ValueError, match="overlap"):
        validate_plan(bad)


def test_rejects_bad_requests():
    with pytest.raises(ValueError):
        plan_arena([BufferRequest("a", 4, 3, 1)])
    with pytest.raises(ValueError):
        plan_arena([BufferRequest("a", 4, 0, 1), BufferRequest("a", 4, 0, 1)])
