"""Front-door fuzzer: mutated TFLite and ONNX models through ``dtmm_tvm.compiler.compile_model``.

Every case must end in a compiled archive or one clear ``DTMMError`` (a single line). Anything
else is a failure: a Python traceback (grouped by the innermost frame in our code), a signal
(e.g. a segfault inside TVM), a hang (per-case time limit), or running out of the per-worker
memory limit.

Cases run in worker processes (``--worker``), several per worker: a segfault or a hang inside
TVM's C++ cannot be bounded in-process, so the parent owns the time limit and kills and restarts
a worker that does not answer, and each worker runs under ``RLIMIT_AS``. Cases are generated in
the parent, deterministically from ``--seed`` and the case number, by the mutators in
:mod:`mutators` (structure-aware TFLite/ONNX changes and byte mutations; a plain seeded random
engine, not atheris or hypothesis -- atheris is not on this machine's package index and
hypothesis cannot survive a segfault). Failing inputs are saved (one per distinct failure) to
``--save``; the regression corpus is ``tests/fuzz/corpus/`` (replayed by ``test_fuzz_corpus.py``).

    python tests/fuzz/frontdoor.py 1000 --seed 7 --jobs 2 --save /tmp/fuzz-failures
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import json
import os
import queue
import random
import select
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
SEEDS = [
    "tests/fixtures/ops/conv_1x1_relu.tflite", "tests/fixtures/ops/conv_3x3_same_s2_relu6.tflite",
    "tests/fixtures/ops/conv_dw_3x3_s1_m2_relu.tflite", "tests/fixtures/ops/conv_fc_bias_relu.tflite",
    "tests/fixtures/ops/conv_fc_per_tensor_relu6.tflite", "tests/fixtures/ops/misc_add_bcast_relu6.tflite",
    "tests/fixtures/ops/misc_avgpool_same_s2.tflite", "tests/fixtures/ops/misc_maxpool_valid.tflite",
    "tests/fixtures/ops/misc_mean_keep.tflite", "tests/fixtures/ops/misc_softmax_beta.tflite",
    "tests/fixtures/models/fully_connected.tflite", "tests/fixtures/models/onnx_conv_qdq.onnx",
]
DEFAULT_TIME_LIMIT = 60.0
DEFAULT_MEMORY_LIMIT = 6 * 2**30


# -- worker ------------------------------------------------------------------------------------
def _site(err: BaseException) -> str:
    """Where an unexpected exception came from: the innermost frame in our code, and its type."""
    frames = traceback.extract_tb(err.__traceback__)
    ours = [f for f in frames if "dtmm_tvm" in f.filename or "relay_passes" in f.filename]
    frame = (ours or frames or [None])[-1]
    where = f"{Path(frame.filename).name}:{frame.lineno}" if frame else "?"
    return f"{type(err).__name__} at {where}"


def run_case(path: str, out_dir: str) -> dict:
    """Compile one model in this process; classify the result."""
    from dtmm_tvm.compiler import compile_model
    from dtmm_tvm.errors import DTMMError

    out = os.path.join(out_dir, "model.tar")
    try:
        compile_model(path, out, target="dtmm/cortex-m4", force=True)
        return {"outcome": "compiled"}
    except DTMMError as err:
        message = str(err)
        if "\n" in message.strip() or not message.strip():
            return {"outcome": "failure", "kind": "multi-line error",
                    "site": f"{type(err).__name__}: {message.strip().splitlines()[0][:80] if message.strip() else ''}",
                    "message": message[:2000]}
        return {"outcome": "error", "message": message[:300]}
    except MemoryError as err:
        return {"outcome": "failure", "kind": "memory", "site": _site(err), "message": "MemoryError"}
    except Exception as err:  # noqa: BLE001 -- the point: anything but DTMMError is a finding
        return {"outcome": "failure", "kind": "traceback", "site": _site(err),
                "message": "".join(traceback.format_exception(err))[-3000:]}


def worker_main(memory_limit: int, result_fd: int) -> int:
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (memory_limit, memory_limit))
    results = os.fdopen(result_fd, "w", buffering=1)
    sys.path.insert(0, str(ROOT))
    import dtmm_tvm.compiler  # noqa: F401  (import once, before the first case's clock starts)

    results.write(json.dumps({"ready": True}) + "\n")
    with tempfile.TemporaryDirectory(prefix="dtmm-fuzz-") as out_dir:
        for line in sys.stdin:
            result = run_case(line.strip(), out_dir)
            results.write(json.dumps(result) + "\n")
    return 0


# -- parent ------------------------------------------------------------------------------------
class Worker:
    def __init__(self, memory_limit: int, log):
        read_fd, write_fd = os.pipe()
        env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--worker", "--memory-limit", str(memory_limit),
             "--result-fd", str(write_fd)],
            stdin=subprocess.PIPE, stdout=log, stderr=log, pass_fds=(write_fd,), env=env, text=True,
            start_new_session=True)
        os.close(write_fd)
        self.results = read_fd
        self.buffer = b""
        if self.read(600.0) != {"ready": True}:
            raise RuntimeError("fuzz worker did not start")

    def read(self, timeout: float):
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.results], [], [], left)[0]:
                return None
            chunk = os.read(self.results, 65536)
            if not chunk:
                return "eof"
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return json.loads(line)

    def run(self, path: str, timeout: float) -> dict:
        try:
            self.proc.stdin.write(path + "\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            return {"outcome": "failure", "kind": "crash", "site": "worker gone"}
        result = self.read(timeout)
        if result is None:
            self.kill()
            return {"outcome": "failure", "kind": "hang", "site": f"no result within {timeout:g} s"}
        if result == "eof":
            code = self.proc.wait()
            return {"outcome": "failure", "kind": "crash",
                    "site": f"signal {-code}" if code < 0 else f"exit status {code}"}
        return result

    def kill(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, 9)
            self.proc.wait()
        os.close(self.results)

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None


def make_case(seed: int, index: int, seeds: list[tuple[str, bytes]]) -> tuple[str, bytes, str]:
    """The mutated model of case ``index``: (seed name, bytes, description)."""
    import mutators

    rng = random.Random(f"{seed}/{index}")
    name, raw = seeds[rng.randrange(len(seeds))]
    mutate = mutators.mutate_onnx if name.endswith(".onnx") else mutators.mutate_tflite
    data, what = raw, []
    for _ in range(rng.choice([1, 1, 2])):
        try:
            data, description = mutate(rng, data)
        except Exception:  # an earlier byte mutation left nothing to parse: keep mutating bytes
            data, description = mutators.mutate_bytes(rng, data)
        what.append(description)
        if not data:
            break
    return name, data, "; ".join(what)


def fuzz(cases: int, seed: int, jobs: int = 2, time_limit: float = DEFAULT_TIME_LIMIT,
         memory_limit: int = DEFAULT_MEMORY_LIMIT, save: Path | None = None, verbose: bool = False) -> dict:
    """Run ``cases`` mutated models; return the summary (also printed)."""
    sys.path.insert(0, str(HERE))
    seeds = [(Path(p).name, (ROOT / p).read_bytes()) for p in SEEDS]
    todo: queue.Queue = queue.Queue()
    for i in range(cases):
        todo.put(i)
    outcomes = collections.Counter()
    failures: dict[str, dict] = {}
    lock = threading.Lock()
    workdir = Path(tempfile.mkdtemp(prefix="dtmm-fuzz-cases-"))
    log = open(workdir / "workers.log", "w")
    started = time.monotonic()

    def loop(slot: int):
        worker = Worker(memory_limit, log)
        while True:
            try:
                i = todo.get_nowait()
            except queue.Empty:
                break
            name, data, what = make_case(seed, i, seeds)
            suffix = ".onnx" if name.endswith(".onnx") else ".tflite"
            path = workdir / f"case{slot}{suffix}"
            path.write_bytes(data)
            result = worker.run(str(path), time_limit)
            with lock:
                outcomes[result["outcome"] if result["outcome"] != "failure" else result["kind"]] += 1
                if result["outcome"] == "failure":
                    key = f"{result['kind']}: {result['site']}"
                    first = key not in failures
                    failures.setdefault(key, {"count": 0, "case": i, "seed_model": name, "mutation": what,
                                              "message": result.get("message", "")})["count"] += 1
                    if first and save is not None:
                        save.mkdir(parents=True, exist_ok=True)
                        digest = hashlib.sha1(key.encode()).hexdigest()[:10]
                        (save / f"{result['kind'].replace(' ', '-')}-{digest}{suffix}").write_bytes(data)
                    if verbose:
                        print(f"case {i} ({name}: {what}): {key}", flush=True)
                done = sum(outcomes.values())
                if verbose and done % 100 == 0:
                    print(f"... {done}/{cases} cases, {time.monotonic() - started:.0f} s", flush=True)
            if not worker.alive or result.get("kind") in ("hang", "crash", "memory"):
                worker.kill()
                worker = Worker(memory_limit, log)
        worker.kill()

    threads = [threading.Thread(target=loop, args=(k,)) for k in range(jobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    log.close()
    summary = {"cases": sum(outcomes.values()), "seed": seed, "outcomes": dict(outcomes),
               "distinct_failures": len(failures), "failures": failures,
               "seconds": round(time.monotonic() - started, 1)}
    return summary


def replay(paths: list, time_limit: float = DEFAULT_TIME_LIMIT,
           memory_limit: int = DEFAULT_MEMORY_LIMIT) -> dict:
    """Run saved inputs (e.g. the regression corpus) in one worker; path -> result."""
    results = {}
    with open(os.devnull, "w") as log:
        worker = Worker(memory_limit, log)
        try:
            for path in paths:
                results[str(path)] = result = worker.run(str(path), time_limit)
                if not worker.alive or result.get("kind") in ("hang", "crash", "memory"):
                    worker.kill()
                    worker = Worker(memory_limit, log)
        finally:
            worker.kill()
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cases", type=int, nargs="?", default=200)
    parser.add_argument("--seed", type=int, default=None, help="default: a fresh one (printed)")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--time-limit", type=float, default=DEFAULT_TIME_LIMIT)
    parser.add_argument("--memory-limit", type=int, default=DEFAULT_MEMORY_LIMIT)
    parser.add_argument("--save", type=Path, default=None, help="directory for failing inputs")
    parser.add_argument("--json", type=Path, default=None, help="write the summary here")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--result-fd", type=int, default=3, help=argparse.SUPPRESS)
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    if args.worker:
        return worker_main(args.memory_limit, args.result_fd)
    seed = args.seed if args.seed is not None else int.from_bytes(os.urandom(4), "little")
    summary = fuzz(args.cases, seed, args.jobs, args.time_limit, args.memory_limit, args.save, args.verbose)
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))
    out = summary["outcomes"]
    print(f"fuzz: {summary['cases']} cases (seed {seed}) in {summary['seconds']} s: "
          f"{out.get('compiled', 0)} compiled, {out.get('error', 0)} clear errors, "
          f"{summary['distinct_failures']} distinct failures "
          f"({sum(v for k, v in out.items() if k not in ('compiled', 'error'))} failing cases)")
    for key, f in sorted(summary["failures"].items(), key=lambda kv: -kv[1]["count"]):
        print(f"  {f['count']:5d}  {key}   (case {f['case']}, {f['seed_model']}: {f['mutation'][:100]})")
    return 1 if summary["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
