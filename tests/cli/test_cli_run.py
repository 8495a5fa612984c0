"""``dtmm compile`` then ``dtmm run --json``: the documented flow, with both input stackings."""

import json

import numpy as np
import pytest

from dtmm_tvm.cli.main import main
from dtmm_tvm.reference import run_tflm

from .test_bad_input import FIXTURES


@pytest.mark.parametrize("with_batch_dim", [True, False])
def test_compile_run_json(tmp_path, capsys, with_batch_dim):
    model = FIXTURES / "conv_kernels.tflite"
    artifact = tmp_path / "m.tar"
    assert main(["compile", str(model), "--target", "dtmm/cortex-m4", "-o", str(artifact)]) == 0
    capsys.readouterr()
    from dtmm_tvm.codegen import read_metadata

    shape = read_metadata(artifact)["inputs"][0]["shape"]
    x = np.random.default_rng(1).integers(-128, 128, size=[3] + shape).astype(np.int8)
    inputs = tmp_path / "in.npy"
    np.save(inputs, x if with_batch_dim else x.reshape([3] + shape[1:]))
    outputs = tmp_path / "out.npy"
    assert main(["run", str(artifact), "--board", "mps2-an386", "--inputs", str(inputs), "--outputs", str(outputs),
                 "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    for key in ("instructions", "flash_bytes", "ram_bytes", "board"):
        assert key in record
    assert record["board"] == "mps2-an386" and record["instructions"] > 1000
    got = np.load(outputs)
    expected = run_tflm(model.read_bytes(), x)
    assert got.shape[0] == 3
    np.testing.assert_array_equal(got.reshape(expected.shape), expected)


def test_inspect_reports_dense_vs_packed(capsys):
    assert main(["inspect", str(FIXTURES / "sparsity_ladder.tflite"), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 5
    assert all(r["packed_bytes"] < r["dense_bytes"] for r in rows if r["filterlet_sparsity"] >= 0.5)
