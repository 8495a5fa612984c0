"""The sweep runner on a real local Ray cluster (``ray start --head`` in a temp dir, stopped at
the end): jobs keyed by their inputs, a failing job recorded without stopping the others,
re-runs skip finished jobs, results in one JSON-lines file; bad input is one line, exit 2."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

# The test cluster is private to this test (loopback only, own temp dir, stopped at the end): no
# token authentication, so another Ray on the machine (its token) cannot interfere.
os.environ["RAY_AUTH_MODE"] = "disabled"
ray = pytest.importorskip("ray", reason="ray not installed (pip install 'dtmm-tvm[cluster]')")

from dtmm_tvm.sweep.runner import RayExecutor, SweepError, ThreadExecutor, job_key, read_results, run_jobs

ROOT = Path(__file__).resolve().parents[2]
FN = "tests.sweep.jobs:square"


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port, proc, timeout=150.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True
        except OSError:
            time.sleep(0.5)
    return False


@pytest.fixture(scope="module")
def ray_head():
    """A local Ray head (``ray start --head --block`` in its own process group, own port and temp
    dir), stopped at the end by killing that process group only."""
    exe = Path(sys.executable).with_name("ray")
    if not exe.exists():
        pytest.skip("the ray CLI is not installed next to this Python")
    port = _free_port()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
               RAY_USAGE_STATS_ENABLED="0")
    short = Path(tempfile.mkdtemp(prefix="r", dir="/tmp"))   # unix socket paths must stay short
    cmd = [str(exe), "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={port}", "--num-cpus=2", f"--temp-dir={short}",
           "--include-dashboard=false", "--disable-usage-stats"]
    log = open(short / "start.log", "w")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        if not _wait_port(port, proc):
            pytest.fail(f"ray start did not come up: {(short / 'start.log').read_text()[-500:]}")
        yield f"127.0.0.1:{port}"
    finally:
        if ray.is_initialized():
            ray.shutdown()
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                proc.wait(timeout=5)
                break
            except subprocess.TimeoutExpired:
                continue
        log.close()
        shutil.rmtree(short, ignore_errors=True)


def test_sweep_on_a_ray_cluster_failure_recorded_and_rerun_skips(ray_head, tmp_path):
    jobs = [{"x": 2}, {"x": 3}, {"x": 4, "fail": True}]
    out = tmp_path / "results.jsonl"
    ex = RayExecutor(ray_head)   # one connection for both runs (each ray.init costs seconds)
    s1 = run_jobs(FN, jobs, out, executor_=ex)
    assert (s1["ran"], s1["ok"], s1["skipped"]) == (3, 2, 0)
    assert len(s1["failed"]) == 1 and "job 4 was told to fail" in s1["failed"][0]["error"]
    recs = read_results(out)
    assert sorted((r["inputs"]["x"], r["status"]) for r in recs) == [(2, "ok"), (3, "ok"), (4, "failed")]
    assert {r["key"] for r in recs} == {job_key(FN, j) for j in jobs}
    assert {r["result"]["square"] for r in recs if r["status"] == "ok"} == {4, 9}
    # re-run (the same cluster): the finished jobs are skipped, the failed one runs again
    s2 = run_jobs(FN, jobs + [{"x": 5}], out, executor_=ex)
    ex.close()
    assert (s2["skipped"], s2["ran"], s2["ok"], len(s2["failed"])) == (2, 2, 1, 1)
    assert len(read_results(out)) == 5


def test_threads_give_the_same_records(tmp_path):
    out = tmp_path / "r.jsonl"
    s = run_jobs(FN, [{"x": 7}, {"x": 1, "fail": True}], out, use_ray=False, executor_=ThreadExecutor(2))
    assert s["ok"] == 1 and len(s["failed"]) == 1
    assert {json.loads(l)["status"] for l in out.read_text().splitlines()} == {"ok", "failed"}


def test_bad_address_and_bad_function_are_one_line(tmp_path):
    with pytest.raises(SweepError, match="unreachable"):
        run_jobs(FN, [{"x": 1}], tmp_path / "r.jsonl", ray=f"127.0.0.1:{_free_port()}")
    with pytest.raises(SweepError, match="HOST:PORT"):
        run_jobs(FN, [{"x": 1}], tmp_path / "r.jsonl", ray="nonsense")
    with pytest.raises(SweepError, match="not found"):
        run_jobs("tests.sweep.jobs:nope", [{"x": 1}], tmp_path / "r.jsonl", use_ray=False)


BAD_SWEEPS = [
    ("data: digits\nmodels: [m.keras\n", "malformed YAML"),
    ("data: digits\nmodels: [m.keras]\nmethods: [magic]\nbudgets: [{flash_fraction: 0.5}]\n", "unknown method"),
    ("data: digits\nmodels: [nope.keras]\nbudgets: [{flash_fraction: 0.5}]\n", "model 'nope.keras' not found"),
    ("data: digits\nmodels: [m.keras]\nbudgets: [{flash_fraction: -1}]\n", "positive number"),
]


def test_cli_sweep_bad_input_one_line_exit_2(tmp_path, capsys):
    from dtmm_tvm.cli.main import main

    (tmp_path / "m.keras").write_text("x")
    for i, (text, msg) in enumerate(BAD_SWEEPS):
        (tmp_path / f"s{i}.yaml").write_text(text)
        assert main(["prune", "--sweep", str(tmp_path / f"s{i}.yaml")]) == 2
        err = capsys.readouterr().err
        lines = err.strip().splitlines()
        assert len(lines) == 1 and msg in lines[0] and "Traceback" not in err


@pytest.mark.skipif(os.environ.get("DTMM_SWEEP_E2E") != "1",
                    reason="slow: set DTMM_SWEEP_E2E=1 (dtmm tune's QEMU runs as tasks on the Ray test cluster)")
def test_tune_measures_on_the_ray_cluster(ray_head):
    """``dtmm tune --ray``: the QEMU measurements run as tasks of the same runner (artifacts sent
    as bytes); every candidate is measured and none differs from the default."""
    missing = [t for t in ("arm-none-eabi-gcc", "qemu-system-arm", "make") if shutil.which(t) is None]
    if missing:
        pytest.skip(f"missing tools: {', '.join(missing)}")
    from dtmm_tvm.tuning import tune_model

    fixture = ROOT / "tests" / "fixtures" / "models" / "fully_connected.tflite"
    records = tune_model(fixture, target="dtmm/cortex-m4", trials=2, progress=False, ray=ray_head)
    if ray.is_initialized():
        ray.shutdown()
    assert records.layers
    for entry in records.layers.values():
        assert all(c["error"] is None and c["instructions"] > 0 for c in entry["candidates"]), entry["candidates"]


def test_pruning_measure_job_without_its_pruned_file_is_a_one_line_failure(tmp_path):
    """bench/pruning's pruned .tflite files are not committed: in a clean clone a measurement
    whose prune job ran elsewhere fails with a message naming the file, and the others go on."""
    out = tmp_path / "r.jsonl"
    missing = str(tmp_path / "gone.tflite")
    s = run_jobs("bench.pruning.jobs:measure_job",
                 [{"tflite": missing, "tflite_sha256": "0" * 64, "target": "dtmm/cortex-m4", "code_version": "x"}],
                 out, use_ray=False, executor_=ThreadExecutor(1))
    assert s["ok"] == 0 and len(s["failed"]) == 1
    rec = json.loads(out.read_text().splitlines()[0])
    assert rec["status"] == "failed" and "gone.tflite" in rec["error"] and "new --out" in rec["error"]


def test_the_pruning_experiment_runs_on_a_ray_cluster_address(ray_head, tmp_path, capsys):
    """A bounded slice of the issue-9 experiment, ``python -m bench.pruning --ray ADDRESS`` (the
    full grid and its results: bench/results/pruning/): DS-CNN on Fashion-MNIST, base model
    trained briefly, DTMM and filter pruning at 60% of its flash, fine-tuned, exported int8,
    compiled for the M4 and run on QEMU, all as tasks on the cluster; the report is written from
    the JSON lines and a re-run skips every finished job."""
    pytest.importorskip("tensorflow", reason="tensorflow not installed (pip install 'dtmm-tvm[train]')")
    missing = [t for t in ("arm-none-eabi-gcc", "qemu-system-arm") if shutil.which(t) is None]
    if missing:
        pytest.skip(f"missing tools: {', '.join(missing)}")
    from bench.pruning.__main__ import main

    out = tmp_path / "out"
    args = ["--ray", ray_head, "--models", "dscnn", "--methods", "dtmm,filter", "--fractions", "0.6",
            "--targets", "dtmm/cortex-m4", "--base-epochs", "1", "--base-images", "2000", "--epochs", "1",
            "--train-images", "1000", "--out", str(out)]
    assert main(args) == 0
    recs = read_results(out / "results.jsonl")
    prunes = {r["inputs"]["method"]: r for r in recs if r["fn"].endswith("prune_job")}
    measures = [r for r in recs if r["fn"].endswith("measure_job")]
    assert sorted(prunes) == ["dense", "dtmm", "filter"] and all(r["status"] == "ok" for r in recs)
    assert len(measures) == 3 and all(m["result"]["bit_exact_vs_tflm"] for m in measures)
    rows = {r["method"]: r for r in json.loads((out / "summary.json").read_text())["rows"]}
    for method in ("dtmm", "filter"):
        row = rows[method]
        assert row["fraction"] == 0.6 and 0.0 < row["accuracy"] <= 1.0
        # the flash budget holds on the compiled artifact, not only in the cost model
        assert row["budget_met_on_artifact"] and row["m4_constants_bytes"] < rows["dense"]["m4_constants_bytes"]
        assert row["m4_instructions"] > 0
    md = (out / "results.md").read_text()
    assert "| dscnn | dtmm | 0.6 |" in md and "| dscnn | filter | 0.6 |" in md
    assert all((out / f"accuracy_vs_{x}.png").stat().st_size > 0 for x in ("flash", "m4_instructions"))
    capsys.readouterr()
    assert main(args) == 0
    assert "jobs: 0 ran (0 failed), 6 already done" in capsys.readouterr().out
    assert len(read_results(out / "results.jsonl")) == len(recs)
