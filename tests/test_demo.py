"""The README's main command, on a few images: it runs, and every build is bit-exact with TFLM."""

from dtmm_tvm.demo import main


def test_demo_runs_and_reports_bit_exact_builds(capsys):
    assert main(["--count", "4"]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines()
            if line.startswith(("unpruned model, ", "pruned model, ")) and " vs " not in line]
    assert [row.split(",")[0] for row in rows] == ["unpruned model", "pruned model", "pruned model"]
    assert all(row.rstrip().endswith("yes") for row in rows)
    assert "pruned model, TVM + DTMM vs unpruned model, TVM dense (--dense): flash" in out
    assert "verified on the host" in out and "bit-exact with TFLM" in out  # dtmm compile --verify's check
