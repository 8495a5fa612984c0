"""One job runner for sweeps and measurements: threads on this machine, or Ray tasks.

:func:`executor` gives an object with ``submit(fn, *args)`` and ``as_completed(futures)``:
without an address a :class:`ThreadExecutor` (``workers`` threads) or, with ``use_ray``, a local
Ray started with the machine's cores; with ``ray="auto"`` or ``"HOST:PORT"`` the Ray cluster
there (``pip install 'dtmm-tvm[cluster]'``). ``dtmm tune`` submits its QEMU runs to it;
:func:`run_jobs` runs a sweep's jobs through it.

:func:`run_jobs` is idempotent: every job is keyed by a hash of its function and inputs
(:func:`job_key`); a key already recorded as ``"ok"`` in the JSON-lines results file is skipped;
every finished job (ok or failed) is appended to that one file as soon as it finishes (the driver
is the only writer). A failing job is recorded with its error and does not stop the others.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import socket
import sys
import time
import traceback
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from ..errors import DTMMError


#: Ray waits a fixed 30 s for its raylet; on a loaded machine a start is retried this often.
STARTUP_ATTEMPTS = 3


class SweepError(DTMMError):
    """A sweep that cannot start: bad sweep file, unknown name, Ray missing or unreachable."""


def job_key(fn: str, inputs: dict) -> str:
    """A stable hash of a job's function and inputs (JSON, keys sorted)."""
    text = json.dumps({"fn": fn, "inputs": inputs}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def read_results(path) -> list:
    """The records of a JSON-lines results file (a torn last line is ignored)."""
    path = Path(path)
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def finished_keys(path) -> set:
    return {r["key"] for r in read_results(path) if r.get("status") == "ok" and "key" in r}


# ---- executors ---------------------------------------------------------------------------------
class ThreadExecutor:
    """``workers`` threads on this machine (subprocess-bound work: builds, QEMU)."""

    kind = "threads"

    def __init__(self, workers: int = 2):
        self._pool = ThreadPoolExecutor(max_workers=max(1, int(workers)))

    def submit(self, fn, *args, **kwargs):
        return self._pool.submit(fn, *args, **kwargs)

    def result(self, future):
        return future.result()

    def as_completed(self, futures):
        return as_completed(list(futures))

    def close(self):
        self._pool.shutdown(wait=True)


def _project_paths() -> list:
    """Paths a Ray worker needs to import this project (and ``bench``) as the driver does."""
    root = str(Path(__file__).resolve().parents[2])
    paths = [root] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    return list(dict.fromkeys(paths))


def _call(fn, args, kwargs):
    return fn(*args, **kwargs)


def _check_reachable(address: str) -> None:
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise SweepError(f"Ray address '{address}': expected HOST:PORT or 'auto'")
    try:
        with socket.create_connection((host, int(port)), timeout=3):
            pass
    except OSError as err:
        raise SweepError(f"Ray address {address} is unreachable ({err.strerror or err})") from None


class RayExecutor:
    """Ray tasks (1 CPU each) on a local Ray or the cluster at ``address``."""

    kind = "ray"

    def __init__(self, address: str | None = None, num_cpus: int | None = None):
        try:
            import ray
        except ImportError:
            raise SweepError("Ray is not installed: pip install 'dtmm-tvm[cluster]'") from None
        self.ray = ray
        self.address = address
        self._owns = False
        if not ray.is_initialized():
            if address not in (None, "auto", "local"):
                _check_reachable(address)
            kwargs = dict(include_dashboard=False, log_to_driver=False, configure_logging=False,
                          runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join(_project_paths())}})
            for attempt in range(STARTUP_ATTEMPTS):
                try:
                    if address in (None, "local"):
                        ray.init(num_cpus=num_cpus or os.cpu_count() or 1, **kwargs)
                    else:
                        ray.init(address=address, **kwargs)
                    break
                except (ConnectionError, RuntimeError, ValueError) as err:
                    first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
                    raise SweepError(f"cannot connect to Ray at {address or 'local'}: {first}") from None
                except Exception as err:  # noqa: BLE001 - Ray's fixed 30 s raylet start-up wait, on a loaded machine
                    ray.shutdown()
                    if "timed out during startup" not in str(err) or attempt == STARTUP_ATTEMPTS - 1:
                        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
                        raise SweepError(f"Ray did not start ({address or 'local'}): {first}") from None
            self._owns = True
        self._remote = ray.remote(num_cpus=1, max_retries=0)(_call)

    def submit(self, fn, *args, **kwargs):
        return self._remote.remote(fn, args, kwargs)

    def result(self, future):
        return self.ray.get(future)

    def as_completed(self, futures):
        pending = list(futures)
        while pending:
            done, pending = self.ray.wait(pending, num_returns=1)
            yield from done

    @property
    def cpus(self) -> int:
        return int(self.ray.cluster_resources().get("CPU", 1))

    def close(self):
        if self._owns:
            self.ray.shutdown()


def executor(ray: str | None = None, workers: int = 2, use_ray: bool = False):
    """Threads (default), a local Ray (``use_ray``), or the Ray cluster at ``ray``."""
    if ray is not None or use_ray:
        return RayExecutor(ray, num_cpus=None if ray else os.cpu_count())
    return ThreadExecutor(workers)


# ---- jobs --------------------------------------------------------------------------------------
def resolve(fn: str):
    """``"package.module:function"`` -> the function."""
    mod, _, name = fn.partition(":")
    try:
        return getattr(importlib.import_module(mod), name)
    except (ImportError, AttributeError) as err:
        raise SweepError(f"job function '{fn}' not found ({err})") from None


def _run_job(fn: str, inputs: dict) -> dict:
    """Runs in a worker: never raises (a failure is a record)."""
    started = time.time()
    try:
        result = resolve(fn)(**inputs)
        return {"status": "ok", "result": result, "seconds": round(time.time() - started, 1)}
    except Exception as err:  # noqa: BLE001 - any job failure is recorded, the sweep goes on
        msg = str(err).strip().splitlines()[0][:300] if str(err).strip() else ""
        return {"status": "failed", "error": f"{type(err).__name__}: {msg}",
                "traceback": traceback.format_exc()[-2000:], "seconds": round(time.time() - started, 1)}


def run_jobs(fn: str, jobs: list, results_path, *, ray: str | None = None, use_ray: bool = True, workers: int = 2,
             progress=None, executor_=None) -> dict:
    """Run ``fn(**inputs)`` for every ``inputs`` in ``jobs`` (see the module docstring).

    Returns ``{"ran": n, "skipped": n, "failed": [records], "ok": n}``. ``progress(record)``
    is called for every finished job.
    """
    resolve(fn)  # a bad function name fails before anything runs
    results_path = Path(results_path)
    results_path.parent.mkdir(parents=True, exist_ok=True)
    done = finished_keys(results_path)
    todo, seen = [], set()
    for inputs in jobs:
        key = job_key(fn, inputs)
        if key in done or key in seen:
            continue
        seen.add(key)
        todo.append((key, inputs))
    summary = {"ran": 0, "skipped": len(jobs) - len(todo), "failed": [], "ok": 0}
    if not todo:
        return summary
    ex = executor_ or executor(ray, workers, use_ray)
    try:
        futures = {}
        for key, inputs in todo:
            futures[ex.submit(_run_job, fn, inputs)] = (key, inputs)
        with results_path.open("a") as out:
            for fut in ex.as_completed(list(futures)):
                key, inputs = futures[fut]
                try:
                    rec = ex.result(fut)
                except Exception as err:  # noqa: BLE001 - a worker that died
                    rec = {"status": "failed", "error": f"{type(err).__name__}: {str(err)[:300]}"}
                rec = {"key": key, "fn": fn, "inputs": inputs, **rec,
                       "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
                out.write(json.dumps(rec, default=str) + "\n")
                out.flush()
                summary["ran"] += 1
                if rec["status"] == "ok":
                    summary["ok"] += 1
                else:
                    summary["failed"].append(rec)
                if progress:
                    progress(rec)
    finally:
        if executor_ is None:
            ex.close()
    return summary


def print_failures(summary: dict, stream=None) -> None:
    stream = stream or sys.stderr
    for rec in summary["failed"]:
        print(f"job {rec['key']} failed: {rec['error']}", file=stream)
