"""tvmc's spellings: targets, module name, pass configs, input shapes, fill mode, print-top, --version."""

import json
from pathlib import Path

import pytest

from dtmm_tvm.cli.main import main as dtmm
from dtmm_tvm.cli.tvmc_compat import map_target, parse_input_shapes
from dtmm_tvm.errors import DTMMError

MODEL = Path(__file__).resolve().parents[1] / "fixtures" / "models" / "conv_basic.tflite"


@pytest.fixture
def needs_tools():
    import shutil

    missing = [t for t in ("arm-none-eabi-gcc", "qemu-system-arm", "make") if shutil.which(t) is None]
    if missing:
        pytest.skip(f"missing tools: {', '.join(missing)}")


def test_target_spellings():
    assert map_target("c -mcpu=cortex-m4") == "dtmm/cortex-m4"
    assert map_target("c -keys=arm_cpu,cpu -mcpu=cortex-m55") == "dtmm/cortex-m55"
    assert map_target("dtmm/cortex-m7") == "dtmm/cortex-m7"
    with pytest.raises(DTMMError, match="-mcpu"):
        map_target("c -keys=arm_cpu")
    with pytest.raises(DTMMError, match=r"\['link-params'\] are not supported"):
        map_target("c -mcpu=cortex-m4 -link-params=1")
    assert parse_input_shapes("serving_default_args_0:0:[1,16,16,3] b:1x10") == {
        "serving_default_args_0:0": (1, 16, 16, 3), "b": (1, 10)}


def test_compile_and_run_with_tvmc_options(needs_tools, tmp_path, capsys):
    out = tmp_path / "m.tar"
    assert dtmm(["compile", str(MODEL), "--target", "c -mcpu=cortex-m4", "--module-name", "net",
                 "--output-format", "mlf", "--pass-config", "tirx.disable_vectorize=true",
                 "--input-shapes", "serving_default_args_0:0:[1,16,16,3]", "-o", str(out), "--json"]) == 0
    meta = json.loads(capsys.readouterr().out)
    assert meta["target"] == "dtmm/cortex-m4" and meta["entry"] == "tvmgen_net_run" and meta["version"] == 7
    assert dtmm(["run", str(out), "--fill-mode", "zeros", "--print-top", "2"]) == 0
    printed = capsys.readouterr().out
    assert "1 inference(s)" in printed and "top 2:" in printed
    assert dtmm(["run", str(out), "--fill-mode", "random", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["inferences"] == 1


@pytest.mark.parametrize("argv, message", [
    (["--input-shapes", "serving_default_args_0:0:[1,8,8,3]"], "static shape [1, 16, 16, 3], not [1, 8, 8, 3]"),
    (["--pass-config", "no.such.option=1"], "Invalid config option 'no.such.option'"),
    (["--pass-config", "novalue"], "expected name=value"),
    (["--target", "c -mcpu=cortex-m99"], "unknown target 'dtmm/cortex-m99'"),
])
def test_bad_tvmc_options_are_one_line(tmp_path, capsys, argv, message):
    out = tmp_path / "m.tar"
    assert dtmm(["compile", str(MODEL), "-o", str(out), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and not out.exists()


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        dtmm(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.startswith("dtmm 0.1.0 (Apache TVM ")


def test_run_needs_inputs_or_fill_mode(tmp_path, capsys):
    fake = Path(__file__).resolve().parents[1] / "micro" / "fake_artifact"
    assert dtmm(["run", str(fake)]) == 2
    assert "--fill-mode" in capsys.readouterr().err
