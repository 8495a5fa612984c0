"""The archive: layout and metadata of docs/architecture.md, atomic and non-overwriting writes."""

import json
import tarfile

import numpy as np
import pytest

import codegen_models as models
from dtmm_tvm.codegen import mlf, read_metadata, write_archive
from dtmm_tvm.errors import DTMMError, ModelError, OutputExistsError, UnsupportedOpError

FILES = {
    "metadata.json",
    "codegen/host/include/tvmgen_default.h",
    "codegen/host/src/default_lib0.c",
    "codegen/host/src/default_lib1.c",
    "codegen/host/src/default_lib2.c",
    "tvmgen_default.cmake",
    "tvmgen_default.mk",
}

EXTRA = {
    "model": {"name": "chain", "source": "chain.tflite", "sha256": "0" * 64},
    "target": "dtmm/cortex-m4",
    "mode": "dense",
    "inputs": [{"name": "input", "shape": [1, models.N], "dtype": "int8",
                "quantization": {"scale": 0.0039, "zero_point": -128}}],
    "outputs": {"output": {"quantization": {"scale": 0.5, "zero_point": 3}}},
}


@pytest.fixture(scope="module")
def chain_mod():
    return models.int8_chain()[0]


def test_layout_and_metadata(chain_mod, tmp_path):
    out = tmp_path / "model.tar"
    meta = write_archive(chain_mod, out, EXTRA)
    with tarfile.open(out) as tar:
        names = {m.name for m in tar.getmembers() if m.isfile()}
        assert names == FILES
        header = tar.extractfile("codegen/host/include/tvmgen_default.h").read().decode()
    assert meta == read_metadata(out)
    assert meta["schema"] == "dtmm-mlf/1" and meta["entry"] == "tvmgen_default_run"
    assert meta["model"] == EXTRA["model"] and meta["target"] == "dtmm/cortex-m4" and meta["mode"] == "dense"
    (inp,) = meta["inputs"]
    assert inp["name"] == "input" and inp["c_name"] == "x" and inp["bytes"] == models.N
    assert inp["quantization"] == {"scale": 0.0039, "zero_point": -128}
    assert meta["outputs"][0]["quantization"] == {"scale": 0.5, "zero_point": 3}
    assert meta["arena"]["bytes"] == 128
    assert {b["name"] for b in meta["arena"]["buffers"]} == {"lv", "lv1", "lv2"}
    assert all({"offset", "bytes", "first_use", "last_use"} <= set(b) for b in meta["arena"]["buffers"])
    assert meta["constants_bytes"] == models.N * 5
    assert [f["name"] for f in meta["functions"]] == ["add_sat", "scale_shift", "relu_acc"]
    assert [layer["function"] for layer in meta["layers"]] == ["add_sat", "add_sat"]
    assert f"#define TVMGEN_DEFAULT_X_SIZE {models.N}" in header
    assert f"#define TVMGEN_DEFAULT_OUTPUT_SIZE {models.N}" in header
    assert "struct tvmgen_default_inputs {\n  void* x;\n};" in header
    assert "int32_t tvmgen_default_run(struct tvmgen_default_inputs* inputs, struct tvmgen_default_outputs* outputs);" in header
    json.dumps(meta)  # serializable


def test_model_library_format_fields(chain_mod, tmp_path):
    """metadata.json carries MLF's fields (TVM's export_model_library_format, v7) next to ours;
    the header carries shapes and quantization."""
    out = tmp_path / "model.tar"
    meta = write_archive(chain_mod, out, EXTRA)
    assert meta["version"] == 7 and list(meta["modules"]) == ["default"]
    module = meta["modules"]["default"]
    assert module["executors"] == ["aot"] and module["style"] == "full-model"
    assert module["target"] == ["c -keys=dtmm,arm_cpu,cpu -mcpu=cortex-m4"]
    (main,) = module["memory"]["functions"]["main"]
    assert main["workspace_size_bytes"] == meta["arena"]["bytes"] == 128
    assert main["constants_size_bytes"] == meta["constants_bytes"]
    assert main["inputs"] == {"input": {"size": models.N, "dtype": "int8"}}
    pools = {p["pool_name"]: p["size_bytes"] for p in module["memory"]["pools"]}
    assert pools == {"tvmgen_default_arena": 128, "constants": models.N * 5}
    # One entry per operator call of the runner, in call order, with the layers it computes.
    assert [(s["function"], s["layers"]) for s in meta["runner_steps"]] == [
        ("add_sat", ["add_0"]), ("scale_shift", []), ("add_sat", ["add_0"]), ("relu_acc", [])]
    with tarfile.open(out) as tar:
        header = tar.extractfile("codegen/host/include/tvmgen_default.h").read().decode()
        runner = tar.extractfile("codegen/host/src/default_lib2.c").read().decode()
        cmake = tar.extractfile("tvmgen_default.cmake").read().decode()
    assert "#define TVMGEN_DEFAULT_X_SCALE 0.0039f" in header and "#define TVMGEN_DEFAULT_X_ZERO_POINT -128" in header
    assert "#define TVMGEN_DEFAULT_OUTPUT_SHAPE {1, %d}" % models.N in header
    assert "#define TVMGEN_DEFAULT_WORKSPACE_SIZE 128" in header
    assert "section(TVMGEN_DEFAULT_ARENA_SECTION)" in runner
    assert runner.count("TVMGEN_DEFAULT_MARK(") == len(meta["runner_steps"]) + 1 + 2  # + the two #defines
    assert "${CMAKE_CURRENT_LIST_DIR}/codegen/host/src/default_lib2.c" in cmake


def test_module_name_prefixes_everything(chain_mod, tmp_path):
    out = tmp_path / "kws.tar"
    meta = write_archive(chain_mod, out, EXTRA, module_name="kws")
    assert meta["entry"] == "tvmgen_kws_run" and meta["module_name"] == "kws" and list(meta["modules"]) == ["kws"]
    with tarfile.open(out) as tar:
        files = {m.name: tar.extractfile(m).read().decode() for m in tar.getmembers() if m.isfile()}
    assert set(files) == {"metadata.json", "codegen/host/include/tvmgen_kws.h", "codegen/host/src/kws_lib0.c",
                          "codegen/host/src/kws_lib1.c", "codegen/host/src/kws_lib2.c", "tvmgen_kws.cmake",
                          "tvmgen_kws.mk"}
    header = files["codegen/host/include/tvmgen_kws.h"]
    assert "#ifndef TVMGEN_KWS_H_" in header and "TVMGEN_KWS_X_SIZE" in header
    assert "int32_t tvmgen_kws_run(struct tvmgen_kws_inputs* inputs, struct tvmgen_kws_outputs* outputs);" in header
    code = "".join(files.values())
    assert "tvmgen_default" not in code and "TVMGEN_DEFAULT" not in code
    with pytest.raises(ModelError, match="not a C identifier"):
        write_archive(chain_mod, tmp_path / "bad.tar", EXTRA, module_name="my-model")


def test_refuses_to_overwrite(chain_mod, tmp_path):
    out = tmp_path / "model.tar"
    out.write_bytes(b"precious")
    with pytest.raises(OutputExistsError):
        write_archive(chain_mod, out, EXTRA)
    assert out.read_bytes() == b"precious"
    write_archive(chain_mod, out, EXTRA, overwrite=True)
    assert read_metadata(out)["model"]["name"] == "chain"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.tar"]


def test_failure_leaves_nothing(chain_mod, tmp_path, monkeypatch):
    with pytest.raises(UnsupportedOpError):
        write_archive(models.unlegalized(), tmp_path / "bad.tar", EXTRA)
    with pytest.raises(ModelError):  # caller metadata contradicting the compiled input
        write_archive(chain_mod, tmp_path / "bad.tar", {"inputs": [{"dtype": "float32", "shape": [1, 64]}]})

    def broken(*args, **kwargs):
        raise OSError("disk full")

    # A failure while writing: the temporary file is removed, no .tar appears.
    monkeypatch.setattr(mlf.os, "fsync", broken)
    with pytest.raises(DTMMError, match="disk full"):  # one clear error, not an OSError traceback
        write_archive(chain_mod, tmp_path / "bad.tar", EXTRA)
    assert list(tmp_path.iterdir()) == []


def test_annotate_hook(chain_mod, tmp_path):
    def annotate(md):
        md["layers"].append({"name": "extra"})

    meta = write_archive(chain_mod, tmp_path / "a.tar", EXTRA, annotate=annotate)
    assert read_metadata(tmp_path / "a.tar")["layers"][-1] == {"name": "extra"} == meta["layers"][-1]


def test_read_metadata_errors(tmp_path):
    from dtmm_tvm.errors import DTMMError

    with pytest.raises(DTMMError):
        read_metadata(tmp_path / "missing.tar")
    (tmp_path / "junk.tar").write_bytes(np.arange(100, dtype=np.uint8).tobytes())
    with pytest.raises(DTMMError):
        read_metadata(tmp_path / "junk.tar")
