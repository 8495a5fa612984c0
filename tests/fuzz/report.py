"""``./run.sh fuzz N [--seed S] [--diff-batches B] [--jobs J]``: the hardening figures in one command.

1. N fresh front-door fuzz cases (a new seed unless ``--seed``; see frontdoor.py);
2. the regression corpus (inputs that once crashed or gave a traceback) replayed;
3. differential kernel cases (see tests/hardening/differential.py): ``B`` batches of 24 on the
   host and one batch of 12 per core on QEMU (M4, M7, M55).

Exit status 0 only when there is no failure anywhere.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path[:0] = [str(ROOT), str(HERE), str(ROOT / "tests" / "hardening")]

BOARDS = [("dtmm/cortex-m4", "mps2-an386"), ("dtmm/cortex-m7", "mps2-an500"), ("dtmm/cortex-m55", "mps3-an547")]


def differential_figures(host_batches: int, host_batch: int = 24, qemu_batch: int = 12, seed: int = 0) -> dict:
    import tempfile

    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import strategies as st

    import differential

    figures = {"host": [0, 0]}
    work = Path(tempfile.mkdtemp(prefix="dtmm-diff-"))
    common = dict(deadline=None, database=None, phases=[Phase.generate], suppress_health_check=list(HealthCheck))

    @settings(max_examples=host_batches, **common)
    @given(batch=st.lists(differential.cases(), min_size=host_batch, max_size=host_batch), k=st.integers(0, 2**30))
    def host(batch, k):
        directory = work / f"host{k}-{figures['host'][0]}"
        got = differential.run_on_host(batch, directory)
        problem = differential.explain(batch, got, directory)
        figures["host"][0] += len(batch)
        figures["host"][1] += len(batch) if problem is None else 0
        if problem:
            print(f"  MISMATCH on the host: {problem}", flush=True)

    host()
    for target, board in BOARDS:
        figures[board] = [0, 0]

        @settings(max_examples=1, **common)
        @given(batch=st.lists(differential.cases(), min_size=qemu_batch, max_size=qemu_batch))
        def on_board(batch):
            got = differential.run_on_board(batch, work / board, board, target)
            problem = differential.first_mismatch(batch, got)
            figures[board][0] += len(batch)
            figures[board][1] += len(batch) if problem is None else 0
            if problem:
                print(f"  MISMATCH on {board}: {problem}", flush=True)

        try:
            on_board()
        except Exception as err:  # noqa: BLE001 -- reported as a failure in the table
            print(f"  {board}: {type(err).__name__}: {str(err)[:300]}", flush=True)
    return figures


def main(argv=None) -> int:
    import frontdoor

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cases", type=int, nargs="?", default=1000)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--diff-batches", type=int, default=None, help="host batches of 24 (default: cases / 100)")
    parser.add_argument("--save", type=Path, default=Path("fuzz-failures"))
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else int.from_bytes(os.urandom(4), "little")
    started = time.monotonic()
    print(f"== fuzzing {args.cases} cases, seed {seed}", flush=True)
    summary = frontdoor.fuzz(args.cases, seed, args.jobs, save=args.save)
    corpus = sorted(p for p in (HERE / "corpus").iterdir() if p.suffix in (".tflite", ".onnx"))
    print(f"== replaying the regression corpus ({len(corpus)} inputs)", flush=True)
    replayed = frontdoor.replay(corpus, time_limit=120)
    corpus_bad = sorted(Path(p).name for p, r in replayed.items() if r["outcome"] not in ("compiled", "error"))
    batches = args.diff_batches if args.diff_batches is not None else max(1, args.cases // 100)
    print(f"== differential kernel testing: {batches} host batch(es) of 24, 12 cases per core on QEMU", flush=True)
    diff = differential_figures(batches)
    out = summary["outcomes"]
    failing = sum(v for k, v in out.items() if k not in ("compiled", "error"))
    print()
    print("figure                                         value")
    print(f"fuzz cases run (seed {seed})".ljust(47) + f"{summary['cases']}")
    print("  compiled / clear one-line errors".ljust(47) + f"{out.get('compiled', 0)} / {out.get('error', 0)}")
    print("  tracebacks, crashes, hangs, memory".ljust(47) + f"{failing} ({summary['distinct_failures']} distinct)")
    for key, f in summary["failures"].items():
        print(f"    {f['count']:4d}  {key}  ({f['seed_model']}: {f['mutation'][:80]})")
    print("regression corpus (inputs that once failed)".ljust(47)
          + f"{len(corpus)}, replaying clean: {len(corpus) - len(corpus_bad)}/{len(corpus)}")
    for where, (cases, exact) in diff.items():
        print(f"differential cases, {where}".ljust(47) + f"{cases}, bit-exact: {exact}/{cases}")
    ok = (not summary["failures"] and not corpus_bad
          and all(cases > 0 and cases == exact for cases, exact in diff.values()))
    print(f"all clean: {'yes' if ok else 'NO'}   ({time.monotonic() - started:.0f} s)")
    (args.save).mkdir(exist_ok=True)
    (args.save / "summary.json").write_text(json.dumps({"fuzz": summary, "corpus_failures": corpus_bad,
                                                        "differential": diff}, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
