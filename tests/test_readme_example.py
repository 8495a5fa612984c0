"""The README's Python example runs on the bundled model (it used to stop with "IRModule contains
duplicate global symbol: conv2d_filterlet_float32": two float filterlet convs shared one symbol)."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_readme_python_example_on_the_bundled_model():
    import tvm
    from tvm import relax

    import dtmm_tvm.pipeline  # noqa: F401  registers the named pipeline "dtmm"
    from dtmm_tvm.frontend.loader import load_model
    from relay_passes import FilterletSparseConv

    mod = load_model(ROOT / "tests" / "fixtures" / "fashion_filterlet" / "fashion_cnn_filterlet_int8.tflite").mod
    pipeline = tvm.transform.Sequential([FilterletSparseConv(threshold=0.1), relax.get_pipeline("default")])
    rewritten = FilterletSparseConv(threshold=0.1)(mod)
    symbols = [f.attrs["global_symbol"] for _, f in rewritten.functions.items()
               if isinstance(f, tvm.tirx.PrimFunc) and f.attrs is not None and "global_symbol" in f.attrs]
    assert len([s for s in symbols if s.startswith("conv2d_filterlet_f32_")]) >= 2
    assert len(symbols) == len(set(symbols))
    ex = tvm.compile(mod, target="llvm", relax_pipeline=pipeline)
    assert ex is not None
    mcu = relax.get_pipeline("dtmm", sparse=True)(mod)
    assert "main" in [gv.name_hint for gv in mcu.functions]
