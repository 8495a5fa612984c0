"""``--verify`` builds for the host with the per-layer weight formats of the target build that
ships (its cost model), not the host's own bytes-only choice, and the archive refuses to record a
verification of other formats."""

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "tests" / "fixtures" / "fashion_filterlet" / "fashion_cnn_filterlet_int8.tflite"  # 60-85% filterlet-sparse


def test_verify_builds_the_targets_formats_not_the_bytes_choice():
    pytest.importorskip("tflite_micro")
    from dtmm_tvm.compiler import lower_model
    from dtmm_tvm.frontend.loader import load_model
    from dtmm_tvm.target import resolve_target
    from dtmm_tvm.verify import verify_model
    from dtmm_tvm.verify.check import layer_formats

    report = verify_model(DEMO, count=2, target="dtmm/cortex-m55")
    assert report.ok and report.decision_target == "dtmm/cortex-m55"
    with resolve_target("dtmm/cortex-m55"):
        shipped = lower_model(load_model(DEMO))
    assert report.decisions == layer_formats(shipped) and len(report.decisions) == 4
    # The M55's cost model keeps layers dense that the fewest bytes would make filterlet-sparse:
    # the host's own (bytes) choice would have verified another program.
    chosen_by_bytes = {}
    for _, func in shipped.functions_items():
        import json

        attr = func.attrs.get("dtmm.layer") if func.attrs is not None else None
        layer = json.loads(str(attr)) if attr is not None else {}
        for entry in layer if isinstance(layer, list) else [layer]:
            if "format_choice" in entry:
                sizes = entry["format_choice"]["bytes"]
                chosen_by_bytes[entry["name"]] = min(sizes, key=lambda f: (sizes[f], f))
    assert any(report.decisions[name] != fmt for name, fmt in chosen_by_bytes.items())
    assert "layer formats as decided for dtmm/cortex-m55" in report.summary()
    assert report.to_json()["decisions"] == report.decisions


def test_archive_refuses_a_verification_of_other_formats():
    from dtmm_tvm.compiler import _check_verified_formats
    from dtmm_tvm.verify.check import VerificationError

    metadata = {"target": "dtmm/cortex-m4", "layers": [
        {"name": "conv2d_0", "format": "dense", "format_choice": {}},
        {"name": "conv2d_1", "format": "filterlet_u8", "format_choice": {}}, {"name": "max_pool2d_0"}]}
    _check_verified_formats({"decisions": {"conv2d_0": "dense", "conv2d_1": "filterlet_u8"}}, metadata)
    with pytest.raises(VerificationError, match="other layer formats"):
        _check_verified_formats({"decisions": {"conv2d_0": "dense", "conv2d_1": "filterlet_bitmask"}}, metadata)
