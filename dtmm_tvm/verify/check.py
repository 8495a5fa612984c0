"""``dtmm compile --verify``: prove a compiled model computes what its reference computes.

The model is lowered by the same pipeline for the host (target ``dtmm/portable`` where it exists,
otherwise ``dtmm/cortex-m4``, whose micro-kernels take their portable C paths off-target) with the
per-layer weight formats decided for the *shipped* target (its cost model; ``target=``), so the
verified program is the one that ships except for the kernels' ISA path; the
generated C is built with the host's gcc and run on N inputs, and its outputs are compared with
the reference: TensorFlow Lite Micro for .tflite (bit for bit for int8), ONNX Runtime for .onnx.

When outputs differ, the first differing operator is found by building the model once more with
every kernel's output exposed as an extra output and matching those tensors by value against the
reference's intermediate tensors (TFLM preserves every tensor; ONNX Runtime gets every node output
as a graph output). Values, not names or shapes, decide the match: a kernel output matches a
reference tensor when their bytes are equal (after a flatten, since reshapes are views here), or
when it holds an order-preserving subset of the reference's channels (DropZeroFilters removes
all-zero filters). An operator whose output no kernel reproduces is forgiven when a consumer's
output matches again (it was fused into that consumer); the first one left is the one named.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DTMMError, ModelError

#: Float outputs: |ours - reference| <= FLOAT_ATOL * max(1, max|reference|) + FLOAT_RTOL * |reference|.
FLOAT_RTOL = 1e-4
FLOAT_ATOL = 1e-5
DEFAULT_COUNT = 8


class VerificationError(DTMMError):
    """The compiled model's outputs differ from the reference's."""


@dataclass
class VerifyReport:
    """What ``--verify`` compared and found."""

    model: str
    reference: str  # "TFLM" | "ONNX Runtime"
    host_target: str
    inputs: int
    outputs: list = field(default_factory=list)  # per output: {"name", "max_abs_diff", "mismatches", "values"}
    first_differing_op: str | None = None
    decision_target: str | None = None  # whose cost model chose the per-layer formats verified
    decisions: dict = field(default_factory=dict)  # layer name -> weight format, as verified

    def to_json(self) -> dict:
        """What was verified, for the archive's metadata.json (``"verified"``)."""
        return {"reference": self.reference, "host_target": self.host_target, "inputs": self.inputs,
                "bit_exact": all(o["exact"] for o in self.outputs), "decision_target": self.decision_target,
                "decisions": dict(self.decisions)}

    @property
    def ok(self) -> bool:
        return all(o["mismatches"] == 0 for o in self.outputs)

    def summary(self) -> str:
        exact = all(o["exact"] for o in self.outputs)
        how = "bit-exact" if exact else f"within float tolerance (max |diff| {max(o['max_abs_diff'] for o in self.outputs):.3g})"
        formats = ""
        if self.decisions:
            formats = (f"; layer formats as decided for {self.decision_target or self.host_target}: "
                       + ", ".join(f"{k} {v}" for k, v in self.decisions.items()))
        return (f"verified on the host ({self.host_target} C, portable kernels): {self.inputs} input(s), "
                f"{len(self.outputs)} output(s) {how} with {self.reference}{formats}")


def host_target() -> str:
    """The target whose C builds on the host: ``dtmm/portable`` once registered, else the M4's."""
    from ..target import TARGET_TAGS

    return "dtmm/portable" if "dtmm/portable" in TARGET_TAGS else "dtmm/cortex-m4"


# ---------------------------------------------------------------------------------------------
# inputs
# ---------------------------------------------------------------------------------------------
def random_inputs(specs: list, count: int = DEFAULT_COUNT, seed: int = 0) -> list:
    """``count`` random inputs per model input: int8 over the full range (the first two at -128 and
    127, which exercise padding offsets and saturation), float32 uniform in [-1, 1]."""
    rng = np.random.default_rng(seed)
    arrays = []
    for spec in specs:
        shape = (count,) + tuple(spec.shape)
        if np.dtype(spec.dtype).kind in "iu":
            info = np.iinfo(np.dtype(spec.dtype))
            x = rng.integers(info.min, info.max + 1, size=shape).astype(spec.dtype)
            if count >= 3:
                x[0], x[1] = info.min, info.max
        else:
            x = rng.uniform(-1.0, 1.0, size=shape).astype(spec.dtype)
        arrays.append(x)
    return arrays


def load_inputs_file(path: str | Path, specs: list) -> list:
    """Inputs from ``.npy`` (one model input) or ``.npz`` (keyed by input name, or in order)."""
    path = Path(path)
    try:
        loaded = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise DTMMError(f"{path}: cannot read inputs ({err})") from None
    if isinstance(loaded, np.ndarray):
        if len(specs) != 1:
            raise DTMMError(f"{path}: the model has {len(specs)} inputs; give an .npz keyed by input name")
        arrays = [loaded]
    else:
        with loaded:
            keys = list(loaded.keys())
            if all(s.name in keys for s in specs):
                arrays = [loaded[s.name] for s in specs]
            elif len(keys) == len(specs):
                arrays = [loaded[k] for k in keys]
            else:
                raise DTMMError(f"{path}: keys {keys} do not name the model inputs {[s.name for s in specs]}")
    out = []
    for spec, array in zip(specs, arrays):
        shape = tuple(spec.shape)
        if array.dtype != np.dtype(spec.dtype):
            raise DTMMError(f"{path}: dtype {array.dtype}, but model input '{spec.name}' is {spec.dtype}")
        if array.shape[1:] == shape:
            out.append(array)
        elif shape and shape[0] == 1 and array.shape[1:] == shape[1:]:
            out.append(array.reshape((array.shape[0],) + shape))
        elif array.shape == shape:
            out.append(array[None])
        else:
            raise DTMMError(f"{path}: shape {list(array.shape)} does not stack inputs of shape {list(shape)}")
    if len({a.shape[0] for a in out}) != 1:
        raise DTMMError(f"{path}: the inputs disagree on N")
    return out


# ---------------------------------------------------------------------------------------------
# comparison
# ---------------------------------------------------------------------------------------------
def _float_close(ours: np.ndarray, ref: np.ndarray) -> np.ndarray:
    scale = max(1.0, float(np.max(np.abs(ref)))) if ref.size else 1.0
    return np.abs(ours.astype(np.float64) - ref.astype(np.float64)) <= FLOAT_ATOL * scale + FLOAT_RTOL * np.abs(ref)


def compare(ours: np.ndarray, ref: np.ndarray) -> dict:
    """Mismatch count and largest difference of two stacked outputs (exact for integers)."""
    ours = np.asarray(ours).reshape(ref.shape)
    diff = np.abs(ours.astype(np.float64) - ref.astype(np.float64))
    exact = np.dtype(ref.dtype).kind in "iub"
    bad = diff != 0 if exact else ~_float_close(ours, ref)
    return {"mismatches": int(bad.sum()), "values": int(ref.size), "max_abs_diff": float(diff.max()) if diff.size else 0.0,
            "exact": exact or bool(diff.max(initial=0) == 0), "bad_inputs": int(bad.reshape(len(ref), -1).any(1).sum())}


def _values_match(ours: np.ndarray, ref: np.ndarray) -> bool:
    """Do a kernel output and a reference tensor (both stacked over N) hold the same values?"""
    n = ref.shape[0]
    if ours.dtype != ref.dtype and not (ours.dtype.kind == ref.dtype.kind == "f"):
        return False
    exact = ref.dtype.kind in "iub"

    def same(a, b):
        return np.array_equal(a, b) if exact else bool(np.all(_float_close(a, b)))

    if ours.size == ref.size:
        if same(ours.reshape(n, -1), ref.reshape(n, -1)):
            return True
        # ONNX references are NCHW; our ONNX builds compute NHWC inside.
        if ref.ndim == 5 and same(ours.reshape(n, -1), ref.transpose(0, 1, 3, 4, 2).reshape(n, -1)):
            return True
    # An order-preserving subset of the channels (last axis): filters dropped by DropZeroFilters.
    if ours.ndim == ref.ndim and ours.ndim >= 2 and ours.shape[:-1] == ref.shape[:-1] \
            and ours.shape[-1] < ref.shape[-1]:
        ref_cols = ref.reshape(-1, ref.shape[-1])
        our_cols = ours.reshape(-1, ours.shape[-1])
        j = 0
        for i in range(ref_cols.shape[1]):
            if j < our_cols.shape[1] and same(our_cols[:, j], ref_cols[:, i]):
                j += 1
        return j == our_cols.shape[1]
    return False


@dataclass
class RefOp:
    """One reference operator: where it is, what it reads and writes (tensor ids)."""

    index: int
    opcode: str
    name: str
    inputs: list
    outputs: list


def locate_first_difference(ref_ops: list, ref_tensors: dict, graph_inputs: set, probes: list) -> str | None:
    """Name the first reference operator whose output no kernel reproduces (see the module doc).

    Parameters
    ----------
    ref_ops : list of RefOp
        In execution order.
    ref_tensors : dict
        Tensor id -> stacked values computed by the reference.
    graph_inputs : set
        Tensor ids of the model inputs.
    probes : list of (binding, kernel, numpy.ndarray)
        Every kernel output of our build, stacked over the same inputs.
    """
    def matched(tensor_id) -> bool:
        ref = ref_tensors.get(tensor_id)
        return ref is not None and any(_values_match(p, ref) for _, _, p in probes)

    good = set(graph_inputs)
    suspects: dict = {}  # tensor id -> RefOp that wrote it without any kernel reproducing it
    for op in ref_ops:
        live = [t for t in op.inputs if t in ref_tensors or t in graph_inputs]
        if all(matched(t) for t in op.outputs if t in ref_tensors):
            good.update(op.outputs)
            # Whatever unmatched chain fed this op was fused into it.
            stack = [t for t in live if t in suspects]
            while stack:
                op_in = suspects.pop(stack.pop(), None)
                if op_in is None:  # a tensor read twice along the chain: already forgiven
                    continue
                stack += [t for t in op_in.inputs if t in suspects]
            continue
        for t in op.outputs:
            suspects[t] = op
    if not suspects:
        return None
    first = min(suspects.values(), key=lambda o: o.index)
    ref = ref_tensors.get(first.outputs[0]) if first.outputs else None
    detail = ""
    if ref is not None:
        same_size = [(b, k, p.reshape(ref.shape)) for b, k, p in probes if p.size == ref.size]
        if same_size:
            # The kernel output nearest in mean absolute difference is the one meant to compute it.
            def distance(p):
                return float(np.mean(np.abs(p.astype(np.float64) - ref.astype(np.float64))))

            binding, kernel, p = min(same_size, key=lambda s: distance(s[2]))
            bad = (p != ref) if ref.dtype.kind in "iub" else ~_float_close(p, ref)
            diff = float(np.max(np.abs(p.astype(np.float64) - ref.astype(np.float64))))
            detail = (f"; nearest kernel output {kernel} ('{binding}'): {int(bad.sum())}/{ref.size} values differ, "
                      f"max |diff| {diff:g}")
    return f"operator {first.index} {first.opcode} (output '{first.name}'){detail}"


# ---------------------------------------------------------------------------------------------
# builds
# ---------------------------------------------------------------------------------------------
def _lower_for_host(model, mode: str, threshold, decision_target=None, optimize: str = "speed"):
    from ..compiler import lower_model
    from ..target import resolve_target

    with resolve_target(host_target()):
        return lower_model(model, sparse=(mode == "dtmm"), threshold=threshold, optimize=optimize,
                           decision_target=decision_target)


def target_tag_of(target) -> str | None:
    """The tag of a target given by tag or alias (None stays None: the host's own decisions)."""
    if target is None:
        return None
    from ..target import resolve_target, target_tag

    return target_tag(resolve_target(target))


def layer_formats(lowered) -> dict:
    """Layer name -> weight format of every conv that had a format to choose (``"format_choice"``)."""
    import json

    from tvm import tirx

    out = {}
    for _, func in lowered.functions_items():
        attr = func.attrs.get("dtmm.layer") if isinstance(func, tirx.PrimFunc) and func.attrs is not None else None
        if attr is None:
            continue
        layers = json.loads(str(attr))
        for layer in layers if isinstance(layers, list) else [layers]:
            if isinstance(layer, dict) and "format_choice" in layer:
                out[layer["name"]] = layer.get("format", "dense")
    return dict(sorted(out.items()))


def probe_module(lowered):
    """The same module with every kernel output also returned: ``(mod, [(binding, kernel)])``.

    The original outputs come first, in order, then one output per tensor-valued binding of
    ``main`` (call_tir results and views).
    """
    import tvm
    from tvm import relax

    mod = relax.transform.ToNonDataflow()(lowered)
    main = mod["main"]
    body = main.body
    probes, names = [], []
    for block in body.blocks:
        for binding in block.bindings:
            var, value = binding.var, binding.value
            if not isinstance(var.ty, relax.TensorType) or not isinstance(value, relax.Call):
                continue
            op = value.op
            if isinstance(op, tvm.ir.Op) and op.name == "relax.call_tir":
                kernel = value.args[0].name_hint
            elif isinstance(op, tvm.ir.Op):
                kernel = op.name
            else:
                continue
            probes.append(var)
            names.append((var.name, kernel))
    ret = body.body
    outs = list(ret.fields) if isinstance(ret, relax.Tuple) else [ret]
    fields = outs + probes
    new_body = relax.SeqExpr(body.blocks, relax.Tuple(fields))
    func = relax.Function(main.params, new_body, relax.TupleType([f.ty for f in fields]), attrs=main.attrs)
    mod = mod.clone() if hasattr(mod, "clone") else mod
    mod.update_func(mod.get_global_var("main"), func)
    return mod, names, len(outs)


def _host_build(lowered, directory: Path, output_names=None):
    from ..codegen import build_aot
    from .host import HostModel

    directory.mkdir(parents=True, exist_ok=True)
    return HostModel(build_aot(lowered, output_names=output_names), directory)


# ---------------------------------------------------------------------------------------------
# references
# ---------------------------------------------------------------------------------------------
def _require_reference(model) -> None:
    """Fail before any build when the reference package is missing: never a silent pass."""
    import importlib

    if model.format == "tflite":
        from ..reference import TFLMUnavailableError

        try:
            importlib.import_module("tflite_micro.python.tflite_micro.runtime")
        except ImportError:
            raise TFLMUnavailableError(
                f"{model.path}: cannot verify: TensorFlow Lite Micro, the reference for .tflite models, is not "
                "installed (pip install tflite-micro, the [reference] extra); nothing was compared") from None
    else:
        from ..reference.onnxrt import OnnxRuntimeUnavailableError

        try:
            importlib.import_module("onnxruntime")
        except ImportError:
            raise OnnxRuntimeUnavailableError(
                f"{model.path}: cannot verify: ONNX Runtime, the reference for .onnx models, is not installed "
                "(pip install onnxruntime); nothing was compared") from None


def _reference(model, inputs: list, trace: bool):
    """(name, outputs, ops, tensors, graph input ids) of the model's reference run."""
    if model.format == "tflite":
        from ..reference import run_tflm, trace_tflm

        if not trace and len(model.outputs) == 1:
            return "TFLM", [run_tflm(model.raw, inputs)], [], {}, set()
        result = trace_tflm(model.raw, inputs)
        graph = model.tflite
        ops = [RefOp(op.index, op.opcode, graph.layer_name(op), [t for t in op.inputs if t >= 0],
                     [t for t in op.outputs if t >= 0]) for op in graph.operators]
        return "TFLM", result["outputs"], ops, result["tensors"], set(graph.inputs)
    from ..reference.onnxrt import trace_onnxruntime

    result = trace_onnxruntime(model.raw, inputs, trace=trace)
    return "ONNX Runtime", result["outputs"], result["ops"], result["tensors"], set(result["graph_inputs"])


def verify_model(model_path, *, mode: str = "dtmm", threshold=None, inputs=None, count: int = DEFAULT_COUNT,
                 seed: int = 0, workdir=None, target: str | None = None, optimize: str = "speed") -> VerifyReport:
    """Build the model's C for the host, run it on ``inputs`` and compare with the reference.

    Parameters
    ----------
    model_path
        The .tflite or .onnx model.
    mode, threshold
        As for :func:`dtmm_tvm.compiler.compile_model`.
    inputs
        A path (.npy / .npz) or a list of stacked arrays, one per model input; default
        ``count`` random inputs (seeded).
    workdir
        Where to build (default: a temporary directory, removed afterwards).
    target, optimize
        The target tag (and ``--optimize``) of the build that ships: its cost model decides every
        conv's weight format here too (default: the host target's, i.e. bytes decide).

    Returns
    -------
    VerifyReport
        When every output equals the reference (int8: bit for bit; float: within tolerance).

    Raises
    ------
    VerificationError
        Naming the output, how many values differ, and the first differing operator.
    TFLMUnavailableError, DTMMError
        The reference package is not installed; inputs or model are unusable.
    """
    from ..frontend.loader import load_model

    model = load_model(model_path)
    _require_reference(model)
    specs = list(model.inputs)
    if inputs is None:
        arrays = random_inputs(specs, count, seed)
    elif isinstance(inputs, (str, Path)):
        arrays = load_inputs_file(inputs, specs)
    else:
        arrays = [np.asarray(a) for a in inputs]
    decision_target = target_tag_of(target)
    lowered = _lower_for_host(model, mode, threshold, decision_target, optimize)
    tmp = tempfile.TemporaryDirectory(prefix="dtmm-verify-", dir=workdir)
    with tmp:
        host = _host_build(lowered, Path(tmp.name) / "model")
        ours = host.run(arrays)
        reference, ref_outputs, *_ = _reference(model, arrays, trace=False)
        report = VerifyReport(model=str(model.path), reference=reference, host_target=host_target(),
                              inputs=int(arrays[0].shape[0]), decision_target=decision_target,
                              decisions=layer_formats(lowered))
        for spec, mine, ref in zip(model.outputs, ours, ref_outputs):
            report.outputs.append({"name": spec.name, **compare(mine, ref)})
        if report.ok:
            return report
        # Find the first differing operator: one more build with every kernel output exposed.
        probe, names, n_out = probe_module(lowered)
        out_names = [f"output{i}" for i in range(n_out)] + [f"probe_{i}" for i in range(len(names))]
        traced = _host_build(probe, Path(tmp.name) / "probe", output_names=out_names).run(arrays)
        _, traced_ref, ref_ops, ref_tensors, graph_inputs = _reference(model, arrays, trace=True)
        probes = [(b, k, t) for (b, k), t in zip(names, traced[n_out:])]
        report.first_differing_op = locate_first_difference(ref_ops, ref_tensors, graph_inputs, probes)
        # ONNX Runtime fuses QDQ groups into integer kernels only when their tensors are not graph
        # outputs: its op-by-op (traced) run can compute other values than its default run.
        reference_moved = any(not np.array_equal(a, b) for a, b in zip(ref_outputs, traced_ref))
    bad = next(o for o in report.outputs if o["mismatches"])
    where = report.first_differing_op or (
        f"none: {reference}'s default run differs from its op-by-op run with every tensor exposed (fused "
        "kernels), and every operator of that run matches this build" if reference_moved else
        "none found (every intermediate tensor matches)")
    unit = " LSB" if bad["exact"] else ""
    raise VerificationError(
        f"{model.path}: --verify failed: output '{bad['name']}' differs from {reference} on "
        f"{bad['bad_inputs']}/{report.inputs} inputs ({bad['mismatches']}/{bad['values']} values, "
        f"max |diff| {bad['max_abs_diff']:g}{unit}); first differing op: {where}")


def check_outputs(model_path, metadata: dict, inputs: list, outputs: list, where: str = "board") -> VerifyReport:
    """Compare outputs computed elsewhere (a board) with the reference run of the same inputs.

    Parameters
    ----------
    model_path
        The model the archive was compiled from; its sha256 must equal the archive's.
    metadata
        The archive's metadata.json.
    inputs, outputs
        Stacked arrays, one per model input / output, in metadata order.

    Raises
    ------
    VerificationError
        An output differs (naming it, how many values and by how much) or the model is not the
        one the archive was compiled from.
    """
    import hashlib

    path = Path(model_path)
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise DTMMError(f"{path}: cannot read the model to check against ({err.strerror})") from None
    expected = metadata.get("model", {}).get("sha256")
    if expected and hashlib.sha256(raw).hexdigest() != expected:
        raise VerificationError(f"{path}: not the model this archive was compiled from "
                                f"({metadata['model'].get('source')}, sha256 {expected[:12]}...)")
    if path.suffix.lower() == ".onnx":
        from ..reference.onnxrt import trace_onnxruntime

        reference, ref_outputs = "ONNX Runtime", trace_onnxruntime(raw, inputs)["outputs"]
    else:
        from ..reference import trace_tflm

        reference, ref_outputs = "TFLM", trace_tflm(raw, inputs)["outputs"]
    report = VerifyReport(model=str(path), reference=reference, host_target=where, inputs=int(inputs[0].shape[0]))
    for spec, mine, ref in zip(metadata["outputs"], outputs, ref_outputs):
        report.outputs.append({"name": spec["name"], **compare(mine, ref)})
    bad = next((o for o in report.outputs if o["mismatches"]), None)
    if bad is not None:
        unit = " LSB" if bad["exact"] else ""
        raise VerificationError(
            f"{where} outputs differ from {reference}: output '{bad['name']}' on {bad['bad_inputs']}/"
            f"{report.inputs} inputs ({bad['mismatches']}/{bad['values']} values, max |diff| "
            f"{bad['max_abs_diff']:g}{unit})")
    return report
