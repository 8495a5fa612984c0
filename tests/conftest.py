"""Suite-wide: under CI (DTMM_REQUIRE_TOOLS=1) a test may not be skipped for a missing tool."""

import os

import pytest


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("DTMM_REQUIRE_TOOLS") == "1" and report.skipped and call.excinfo is not None:
        reason = str(call.excinfo.value)
        if "missing tools" in reason or "not installed" in reason:
            report.outcome = "failed"
            report.longrepr = f"required tool missing under CI: {reason}"
