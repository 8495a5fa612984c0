"""The fuzzer's regression corpus replays clean, and a bounded slice of fresh fuzzing finds
nothing: every input ends in a compiled archive or one clear DTMMError (see frontdoor.py)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import frontdoor  # noqa: E402

CORPUS = sorted(p for p in (HERE / "corpus").iterdir() if p.suffix in (".tflite", ".onnx"))
#: CI slice; `./run.sh fuzz N` runs N cases with a fresh seed.
SLICE_CASES = int(os.environ.get("DTMM_FUZZ_SLICE", "40"))


def test_corpus_is_small_and_present():
    assert len(CORPUS) >= 8
    assert all(p.stat().st_size <= 32 * 1024 for p in CORPUS)


def test_regression_corpus_replays_without_failures():
    results = frontdoor.replay(CORPUS, time_limit=120)
    failures = {Path(p).name: r for p, r in results.items() if r["outcome"] not in ("compiled", "error")}
    assert not failures, failures
    # Each corpus file was a crash or traceback once; now it is refused with one line.
    assert all(r["outcome"] == "error" for r in results.values()), results


def test_bounded_fuzz_slice_finds_nothing():
    summary = frontdoor.fuzz(SLICE_CASES, seed=20261130, jobs=1, time_limit=120)
    print(f"fuzz slice: {summary['cases']} cases, {summary['outcomes']}")
    assert summary["cases"] == SLICE_CASES
    assert not summary["failures"], summary["failures"]
