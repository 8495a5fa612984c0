"""Sweeps and measurements as jobs: threads here or Ray tasks (:mod:`dtmm_tvm.sweep.runner`)."""

from .runner import SweepError, executor, job_key, read_results, run_jobs

__all__ = ["SweepError", "executor", "job_key", "read_results", "run_jobs"]
