"""The README's main command, on a few images: it runs, and both builds are bit-exact with TFLM."""

from dtmm_tvm.demo import main


def test_demo_runs_and_reports_bit_exact_builds(capsys):
    assert main(["--count", "4"]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith(("TVM dense", "TVM + DTMM"))]
    assert len(rows) == 2 and all(row.rstrip().endswith("yes") for row in rows)
    assert "DTMM vs dense: flash" in out
    assert "verified on the host" in out and "bit-exact with TFLM" in out  # dtmm compile --verify's check
