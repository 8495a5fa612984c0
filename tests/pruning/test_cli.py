"""``dtmm prune`` / ``dtmm fit-cost-model`` command lines: one-line errors, nothing written."""

from dtmm_tvm.cli.main import build_parser, main


def test_prune_missing_model_is_one_line_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "out.tflite"
    assert main(["prune", str(tmp_path / "nope.keras"), "--data", "digits", "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nope.keras: no such file" in err[0]
    assert not out.exists()


def test_prune_refuses_to_overwrite(tmp_path, capsys):
    model = tmp_path / "m.keras"
    model.write_bytes(b"x")
    out = tmp_path / "out.tflite"
    out.write_bytes(b"keep")
    assert main(["prune", str(model), "--data", "digits", "-o", str(out)]) == 2
    assert "exists" in capsys.readouterr().err
    assert out.read_bytes() == b"keep"
    assert main(["prune", str(model), "--data", "digits", "-o", str(model), "--force"]) == 2
    assert model.read_bytes() == b"x"


def test_fit_cost_model_is_registered():
    args = build_parser().parse_args(["fit-cost-model", "--target", "dtmm/cortex-m55", "--conv-points", "4"])
    assert args.conv_points == 4 and args.target == "dtmm/cortex-m55"
