"""Jobs of the benchmark: build one artifact for one core, run it on QEMU, measure it.

A job runs in a worker process (``run_job`` is picklable); the parent computes the TFLM
reference outputs and compares. Every figure comes from :func:`dtmm_tvm.micro.run_artifact`:
instructions per inference from QEMU ``-icount`` (max over the inputs), flash and RAM from the
linked ELF and the model's object files.
"""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .columns import CORES, build_artifact


@dataclass
class Job:
    kind: str  # "micro" | "e2e"
    name: str  # model name
    model: str  # .tflite path
    column: str  # dense | dtmm | naive | tvm
    core: str  # m4 | m7 | m55
    workdir: str
    inputs: np.ndarray
    cflags: str = ""  # extra C flags of the board build (bench-only phase switches)

    @property
    def key(self) -> tuple:
        return (self.kind, self.name, self.core, self.column, self.cflags)

    @property
    def cost(self) -> float:
        """Rough relative cost, to start long jobs first."""
        size = Path(self.model).stat().st_size
        return size * {"tvm": 4.0, "naive": 1.5, "dense": 1.2, "dtmm": 1.0}[self.column] \
            * (3.0 if self.kind in ("e2e", "ref") else 1.0)


def run_job(job: Job) -> dict:
    """Build and run one job; never raises (errors are part of the record)."""
    from dtmm_tvm.micro import run_artifact

    board, target = CORES[job.core]
    tar = Path(job.workdir) / f"{job.name.replace(':', '-')}-{job.column}-{job.core}{'-p' if job.cflags else ''}.tar"
    rec: dict = {"ok": False, "board": board, "target": target}
    try:
        t0 = time.monotonic()
        meta = build_artifact(job.column, job.model, tar, target)
        t1 = time.monotonic()
        res = run_artifact(tar, board, job.inputs, timeout_s=600,
                           build_dir=Path(job.workdir) / "projects", extra_cflags=job.cflags)
        t2 = time.monotonic()
    except Exception as err:  # a failed column is reported, the rest of the benchmark goes on
        rec["error"] = f"{type(err).__name__}: {str(err).strip().splitlines()[0][:400] if str(err).strip() else ''}"
        rec["traceback"] = traceback.format_exc()[-2000:]
        return rec
    finally:
        tar.unlink(missing_ok=True)
    layers = meta.get("layers", [])
    outputs = res.outputs if not isinstance(res.outputs, list) else res.outputs[0]
    rec.update({
        "ok": True,
        "instructions": int(res.instructions),
        "instructions_per_inference": [int(v) for v in res.instructions_per_inference],
        "flash": {"total": int(res.flash_bytes), **{k: int(v) for k, v in res.flash.items()}},
        "ram": {"total": int(res.ram_bytes), "static": int(res.ram["data"] + res.ram["bss"]),
                **{k: int(v) for k, v in res.ram.items()}},
        "constants_bytes": int(meta.get("constants_bytes", 0)),
        "arena_bytes": int(meta.get("arena", {}).get("bytes", 0)),
        "macs": int(sum(int(l.get("macs", 0)) for l in layers)),
        "kept_macs": int(sum(int(l.get("kept_macs", l.get("macs", 0))) for l in layers)),
        "stored_weight_bytes": int(sum(int(l.get("stored_weight_bytes", 0)) for l in layers)),
        "layer_formats": sorted({l.get("format", "?") for l in layers if "format" in l}),
        "layer_formats_all": [l.get("format", "?") for l in layers if l.get("op") == "conv2d"],
        "build_s": round(t1 - t0, 2),
        "run_s": round(t2 - t1, 2),
        "outputs": np.asarray(outputs),
    })
    return rec
