"""Ahead-of-time C runner for a straight-line Relax ``main``.

Input: an IRModule after the lead's pipeline (LegalizeOps, AnnotateTIROpPattern, FoldConstant,
FuseOps, FuseTIR, DeadCodeElimination), whose ``main`` is a sequence of bindings

    lv = R.call_tir(gv, (args...), out_ty=R.Tensor(shape, dtype))

Output (:class:`AOTModule`): the four files of the microTVM-style C interface
(docs/architecture.md) plus everything metadata.json needs. Storage rules:

* model inputs are read straight from the caller's input buffers;
* a tensor returned by ``main`` is written by its producing kernel straight into the caller's
  output buffer (no copy). Only when that is impossible (the output *is* an input or a constant,
  or two outputs are the same tensor) does the runner ``memcpy`` at the end;
* constants are ``const`` arrays (flash), deduplicated by content;
* every other tensor and every kernel's scratch lives in one static arena, packed by liveness
  (:mod:`dtmm_tvm.codegen.planner`).

Besides ``call_tir`` we accept: views that only change the shape (``relax.reshape``,
``expand_dims``, ``flatten``, ``squeeze`` and ``call_tir`` of a PrimFunc with a pure reshape
pattern) - these alias the bytes of their input and emit no code; tuples and ``TupleGetItem``
(multi-output kernels, tuple returns); plain var-to-var and constant bindings.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

import numpy as np
import tvm
from tvm import relax, s_tir, tirx

from ..errors import ModelError, UnsupportedOpError
from . import planner
from .c_source import CSource, build_c_kernels, c_type, dtype_bytes
from .names import c_identifier, comment_text

__all__ = ["AOTModule", "TensorInfo", "build_aot", "PREFIX", "ENTRY", "DEFAULT_MODULE", "module_names"]

PREFIX = "tvmgen_default_"
ENTRY = "tvmgen_default_run"
_ARENA = PREFIX + "arena"
DEFAULT_MODULE = "default"


def module_names(module_name: str = DEFAULT_MODULE) -> dict:
    """The C names of a module (``--module-name``): prefix, entry, header, guard, arena, sources.

    Every global symbol, the header and its guard carry the name, so several models link into
    one firmware (microTVM's ``tvmgen_<name>_`` convention).
    """
    if not isinstance(module_name, str) or not module_name.isidentifier() or not module_name.isascii():
        raise ModelError(f"module name {module_name!r} is not a C identifier")
    prefix = f"tvmgen_{module_name}_"
    return {"module": module_name, "prefix": prefix, "entry": prefix + "run", "arena": prefix + "arena",
            "header": f"tvmgen_{module_name}.h", "guard": f"TVMGEN_{module_name.upper()}_H_",
            "macro": f"TVMGEN_{module_name.upper()}_", "lib": f"{module_name}_lib"}
_VIEW_OPS = {"relax.reshape", "relax.expand_dims", "relax.flatten", "relax.squeeze"}


@dataclass
class _Storage:
    """Where the bytes of one or more (aliasing) tensors live."""

    kind: str  # "input" | "const" | "arena" | "output"
    key: object  # input index | const symbol | arena buffer name | output index
    bytes: int
    first_use: int = -1
    last_use: int = -1


@dataclass
class _Tensor:
    storage: _Storage
    shape: tuple
    dtype: str

    @property
    def bytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * dtype_bytes(self.dtype)


@dataclass
class _Step:
    func: str  # PrimFunc name in the IRModule
    args: list  # _Tensor per PrimFunc buffer parameter
    scratch: list = field(default_factory=list)  # _Storage per scratch parameter
    binding: str = ""
    n_out: int = 1  # the last n_out args are the call's outputs


@dataclass(frozen=True)
class TensorInfo:
    """One model input or output as seen by the caller.

    Attributes
    ----------
    name : str
        Name in the model (Relax parameter name, or ``output``/``output<i>``).
    c_name : str
        Field name in ``struct tvmgen_default_inputs``/``outputs``.
    shape : tuple of int
    dtype : str
    bytes : int
    """

    name: str
    c_name: str
    shape: tuple
    dtype: str
    bytes: int
    module: str = DEFAULT_MODULE

    @property
    def size_macro(self) -> str:
        """``TVMGEN_<MODULE>_<NAME>_SIZE``."""
        return f"TVMGEN_{self.module.upper()}_{self.c_name.upper()}_SIZE"

    def to_json(self) -> dict:
        """The metadata.json form (quantization is filled in by the caller)."""
        return {
            "name": self.name,
            "c_name": self.c_name,
            "shape": list(self.shape),
            "dtype": self.dtype,
            "bytes": self.bytes,
            "quantization": None,
        }


@dataclass
class AOTModule:
    """Everything generated for one model.

    Attributes
    ----------
    files : dict of str to str
        Archive-relative path -> file text: ``codegen/host/include/tvmgen_default.h`` and
        ``codegen/host/src/default_lib{0,1,2}.c``.
    inputs, outputs : list of TensorInfo
    arena : planner.ArenaPlan
    constants_bytes : int
        Bytes of all (deduplicated) constant arrays.
    functions : list of dict
        ``{"name", "c_name", "calls", "scratch_bytes"}`` per generated kernel.
    layers : list of dict
        Parsed ``"dtmm.layer"`` attributes of the called PrimFuncs, one per call, with
        ``"function"`` filled in.
    kernels : CSource
        The kernels' C and their descriptions.
    """

    files: dict
    inputs: list
    outputs: list
    arena: planner.ArenaPlan
    constants_bytes: int
    functions: list
    layers: list
    kernels: CSource
    module_name: str = DEFAULT_MODULE
    runner_steps: list = field(default_factory=list)

    def metadata(self) -> dict:
        """The generated part of metadata.json (schema ``dtmm-mlf/1``)."""
        return {
            "schema": "dtmm-mlf/1",
            "module_name": self.module_name,
            "runner_steps": self.runner_steps,
            "inputs": [t.to_json() for t in self.inputs],
            "outputs": [t.to_json() for t in self.outputs],
            "arena": {"bytes": self.arena.bytes, "buffers": [p.to_json() for p in self.arena.buffers]},
            "constants_bytes": self.constants_bytes,
            "functions": self.functions,
            "layers": self.layers,
            "entry": module_names(self.module_name)["entry"],
        }


def _static_shape(ty, what: str) -> tuple:
    if not isinstance(ty, relax.TensorType):
        raise ModelError(f"{what} has type {ty}; only tensors can be compiled")
    shape = ty.shape
    if shape is None or not isinstance(shape, relax.ShapeExpr):
        raise ModelError(f"{what} has an unknown shape ({ty}); only static shapes can be compiled")
    dims = []
    for d in shape.values:
        if not isinstance(d, tvm.tirx.IntImm):
            raise ModelError(f"{what} has a dynamic shape {ty}; only static shapes can be compiled")
        dims.append(int(d.value))
    return tuple(dims)


def _is_reshape(func: tirx.PrimFunc) -> bool:
    """Whether the PrimFunc only copies its input in row-major order (a legalized reshape)."""
    # The analysis only understands s_tir bodies (root SBlockRealize); anything else is a kernel.
    if not isinstance(func.body, s_tir.SBlockRealize):
        return False
    try:
        return bool(relax.analysis.has_reshape_pattern(func))
    except (RuntimeError, ValueError):
        return False


class _Builder:
    """Walks main once and records storages, steps and constants."""

    def __init__(self, mod: tvm.IRModule, func_name: str, prefix: str = PREFIX, module: str = DEFAULT_MODULE):
        self.mod = mod
        self.prefix, self.module = prefix, module
        if func_name not in [gv.name_hint for gv in mod.functions.keys()]:
            raise ModelError(f"the module has no function {func_name!r}")
        self.main = mod[func_name]
        if not isinstance(self.main, relax.Function):
            raise ModelError(f"{func_name!r} is not a Relax function")
        self.env: dict = {}  # relax Var -> _Tensor | tuple of _Tensor
        self.steps: list[_Step] = []
        self.arena_storages: list[_Storage] = []
        self.const_storages: dict = {}  # content key -> _Storage
        self.const_arrays: dict = {}  # symbol -> np.ndarray
        self.names: set = set()

    # ---- values -------------------------------------------------------------------------
    def constant(self, const) -> _Tensor:
        arr = const.value.numpy()
        dtype = str(arr.dtype)
        c_type(dtype)
        key = (dtype, arr.tobytes())
        st = self.const_storages.get(key)
        if st is None:
            symbol = f"{self.prefix}const_{len(self.const_storages)}"
            st = _Storage("const", symbol, arr.nbytes)
            self.const_storages[key] = st
            self.const_arrays[symbol] = np.ascontiguousarray(arr)
        return _Tensor(st, tuple(arr.shape), dtype)

    def value(self, expr, where: str):
        if isinstance(expr, tvm.ir.GenericConst):
            return self.constant(expr)
        if isinstance(expr, relax.Var):
            if expr not in self.env:
                raise ModelError(f"{where}: variable {expr.name!r} is used before it is defined")
            return self.env[expr]
        if isinstance(expr, relax.Tuple):
            return tuple(self.value(f, where) for f in expr.fields)
        if isinstance(expr, relax.TupleGetItem):
            tup = self.value(expr.tuple_value, where)
            if not isinstance(tup, tuple):
                raise ModelError(f"{where}: TupleGetItem on a non-tuple")
            return tup[int(expr.index)]
        raise UnsupportedOpError(f"{where}: unsupported expression {type(expr).__name__} in main")

    def tensor(self, expr, where: str) -> _Tensor:
        val = self.value(expr, where)
        if not isinstance(val, _Tensor):
            raise UnsupportedOpError(f"{where}: expected a tensor argument, got a tuple")
        return val

    def new_arena(self, name: str, nbytes: int) -> _Storage:
        st = _Storage("arena", c_identifier(name, self.names, "buf"), nbytes)
        self.arena_storages.append(st)
        return st

    # ---- bindings -----------------------------------------------------------------------
    def view(self, src: _Tensor, shape: tuple, dtype: str, where: str) -> _Tensor:
        out = _Tensor(src.storage, shape, dtype)
        if out.bytes != src.bytes:
            raise ModelError(f"{where}: view changes the size from {src.bytes} to {out.bytes} bytes")
        return out

    def call_tir(self, var, call, where: str):
        gv = call.args[0]
        if not isinstance(gv, tvm.ir.GlobalVar):
            raise UnsupportedOpError(f"{where}: call_tir of a non-global function")
        if len(call.args) > 2:
            raise UnsupportedOpError(f"{where}: call_tir with symbolic TIR arguments (tir_vars)")
        func = self.mod[gv]
        if not isinstance(func, tirx.PrimFunc):
            raise UnsupportedOpError(f"{where}: call_tir target {gv.name_hint!r} is not a PrimFunc")
        args = call.args[1]
        arg_vals = [self.tensor(a, where) for a in (args.fields if isinstance(args, relax.Tuple) else [args])]
        out_ty = var.ty
        out_tys = list(out_ty.fields) if isinstance(out_ty, relax.TupleType) else [out_ty]
        outs = []
        for k, ty in enumerate(out_tys):
            shape = _static_shape(ty, f"{where} output {k}")
            dtype = str(ty.dtype)
            c_type(dtype)
            outs.append((shape, dtype))
        if len(func.params) != len(arg_vals) + len(outs):
            raise ModelError(
                f"{where}: {gv.name_hint!r} takes {len(func.params)} buffers but is called with "
                f"{len(arg_vals)} inputs and {len(outs)} outputs"
            )
        # A call_tir whose PrimFunc only reshapes is a view: alias it, emit no code.
        if len(arg_vals) == 1 and len(outs) == 1 and outs[0][1] == arg_vals[0].dtype \
                and _is_reshape(func):
            return self.view(arg_vals[0], outs[0][0], outs[0][1], where)
        out_tensors = []
        for k, (shape, dtype) in enumerate(outs):
            name = var.name if len(outs) == 1 else f"{var.name}_{k}"
            t = _Tensor(None, shape, dtype)
            t.storage = self.new_arena(name, t.bytes)
            out_tensors.append(t)
        for param, t in zip(func.params, arg_vals + out_tensors):
            pty = param.ty
            nbytes = 1
            for d in pty.shape:
                nbytes *= int(d.value) if isinstance(d, tvm.tirx.IntImm) else -1
            nbytes *= dtype_bytes(str(pty.dtype))
            if nbytes != t.bytes:
                raise ModelError(
                    f"{where}: buffer {param.name!r} of {gv.name_hint!r} has {nbytes} bytes but "
                    f"the tensor passed has {t.bytes}"
                )
        self.steps.append(_Step(gv.name_hint, arg_vals + out_tensors, binding=var.name, n_out=len(out_tensors)))
        return out_tensors[0] if not isinstance(out_ty, relax.TupleType) else tuple(out_tensors)

    def binding(self, b):
        if not isinstance(b, relax.VarBinding):
            raise UnsupportedOpError(f"binding {type(b).__name__} of {b.var.name!r} is not supported")
        var, val = b.var, b.value
        where = f"binding {var.name!r}"
        if isinstance(val, relax.Call):
            op = val.op
            if isinstance(op, tvm.ir.Op) and op.name == "relax.call_tir":
                self.env[var] = self.call_tir(var, val, where)
                return
            if isinstance(op, tvm.ir.Op) and op.name in _VIEW_OPS:
                src = self.tensor(val.args[0], where)
                shape = _static_shape(var.ty, where)
                self.env[var] = self.view(src, shape, str(var.ty.dtype), where)
                return
            name = op.name if isinstance(op, tvm.ir.Op) else getattr(op, "name_hint", str(op))
            raise UnsupportedOpError(
                f"{where}: operator {name!r} has no C lowering here; main must contain only "
                "call_tir after LegalizeOps (plus reshape/expand_dims/flatten/squeeze views)"
            )
        if isinstance(val, relax.If):
            raise UnsupportedOpError(f"{where}: control flow (If) in main is not supported")
        self.env[var] = self.value(val, where)

    def run(self):
        main = self.main
        for p in main.params:
            _static_shape(p.ty, f"input {p.name!r}")
        self.inputs = []
        taken: set = set()
        for i, p in enumerate(main.params):
            shape = _static_shape(p.ty, f"input {p.name!r}")
            dtype = str(p.ty.dtype)
            c_type(dtype)
            t = _Tensor(_Storage("input", i, 0), shape, dtype)
            t.storage.bytes = t.bytes
            self.env[p] = t
            self.inputs.append(TensorInfo(p.name, c_identifier(p.name, taken, f"input{i}"), shape,
                                          dtype, t.bytes, self.module))
        body = main.body
        if not isinstance(body, relax.SeqExpr):
            raise ModelError("main has no binding blocks")
        for block in body.blocks:
            for b in block.bindings:
                self.binding(b)
        ret = self.value(body.body, "return value of main")
        self.ret_tensors = list(ret) if isinstance(ret, tuple) else [ret]
        for t in self.ret_tensors:
            if not isinstance(t, _Tensor):
                raise UnsupportedOpError("main returns a nested tuple; only flat tuples are supported")


def _c_literal(value, dtype: str) -> str:
    if dtype in ("float32", "float64"):
        f = float(value)
        suffix = "f" if dtype == "float32" else ""
        if np.isnan(f):
            return "__builtin_nanf(\"\")" if dtype == "float32" else "__builtin_nan(\"\")"
        if np.isinf(f):
            inf = "__builtin_inff()" if dtype == "float32" else "__builtin_inf()"
            return inf if f > 0 else "-" + inf
        # Exact: hex floats round-trip every binary32/64 value. Trailing zero nibbles dropped.
        mant, exp = f.hex().split("p")
        return mant.rstrip("0") + "p" + exp + suffix
    v = int(value)
    if dtype == "bool":
        return str(int(bool(v)))
    if dtype in ("int32", "int64") and v == -(2 ** (int(dtype[3:]) - 1)):
        return f"({v + 1} - 1)" if dtype == "int32" else f"(INT64_C({v + 1}) - 1)"
    if dtype == "int64":
        return f"INT64_C({v})"
    if dtype == "uint64":
        return f"UINT64_C({v})"
    if dtype == "uint32":
        return f"{v}u"
    return str(v)


def _constants_c(arrays: dict) -> str:
    lines = [
        "/* Generated by dtmm_tvm.codegen: model constants (const -> flash). */",
        "#include <stdint.h>",
        "#include <stdbool.h>",
        "",
    ]
    for symbol, arr in arrays.items():
        dtype = str(arr.dtype)
        flat = arr.reshape(-1)
        per_line = 16 if dtype not in ("float32", "float64") else 6
        # External linkage (not `static`): the runner in default_lib2.c references them.
        lines.append(f"/* shape {list(arr.shape)}, {dtype}, {arr.nbytes} bytes */")
        lines.append(f"const {c_type(dtype)} {symbol}[{max(1, flat.size)}] __attribute__((aligned(16))) = {{")
        for i in range(0, flat.size, per_line):
            lines.append("  " + ", ".join(_c_literal(v, dtype) for v in flat[i:i + per_line]) + ",")
        if flat.size == 0:
            lines.append("  0")
        lines.append("};")
        lines.append("")
    return "\n".join(lines)


def _tensor_macros(kind: str, t: TensorInfo, quantization) -> list:
    """Size, shape and (per-tensor) quantization macros of one input or output."""
    base = t.size_macro[: -len("_SIZE")]
    lines = [f"/* {kind} {comment_text(t.name)}: {t.dtype}{list(t.shape)} */",
             f"#define {t.size_macro} {t.bytes}",
             f"#define {base}_NDIM {len(t.shape)}",
             f"#define {base}_SHAPE {{{', '.join(str(d) for d in t.shape) or '1'}}}"]
    q = quantization or {}
    scale, zero = q.get("scale"), q.get("zero_point")
    if isinstance(scale, (int, float)) and isinstance(zero, int):
        # real = SCALE * (q - ZERO_POINT); %.9g round-trips a float32 scale.
        lines += [f"#define {base}_SCALE {float(scale):.9g}f", f"#define {base}_ZERO_POINT {zero}"]
    elif q:
        lines.append(f"/* {kind} {comment_text(t.name)} is quantized per channel: see metadata.json */")
    return lines


def _header(inputs: list, outputs: list, module: str = DEFAULT_MODULE, quantization: dict | None = None,
            arena_bytes: int | None = None) -> str:
    """The model's C interface. ``quantization`` maps a tensor's c_name -> metadata.json quantization."""
    names = module_names(module)
    prefix, guard, macro = names["prefix"], names["guard"], names["macro"]

    def struct(name, tensors):
        fields = [f"  void* {t.c_name};" for t in tensors] or ["  void* unused; /* no tensors */"]
        return [f"struct {name} {{"] + fields + ["};"]

    quantization = quantization or {}
    lines = [
        "/* Generated by dtmm_tvm.codegen: microTVM-style C interface of the model. */",
        f"#ifndef {guard}",
        f"#define {guard}",
        "#include <stdint.h>",
        "",
        "#ifdef __cplusplus",
        'extern "C" {',
        "#endif",
        "",
    ]
    for t in inputs:
        lines += _tensor_macros("input", t, quantization.get(t.c_name))
    for t in outputs:
        lines += _tensor_macros("output", t, quantization.get(t.c_name))
    if arena_bytes is not None:
        lines += ["",
                  f"/* The working memory: one static arena of {macro}WORKSPACE_SIZE bytes in .bss. Define",
                  f"   {macro}ARENA_SECTION as a section name string to place it (e.g. in a faster RAM). */",
                  f"#define {macro}WORKSPACE_SIZE {arena_bytes}"]
    lines.append("")
    lines += struct(prefix + "inputs", inputs)
    lines.append("")
    lines += struct(prefix + "outputs", outputs)
    lines += [
        "",
        "/* Runs one inference; returns 0 on success. Outputs are written in place. Not reentrant:",
        "   the arena is static, so calls must not overlap (one model per thread at a time). */",
        f"int32_t {names['entry']}(struct {prefix}inputs* inputs, struct {prefix}outputs* outputs);",
        "",
        "#ifdef __cplusplus",
        "}",
        "#endif",
        f"#endif /* {guard} */",
        "",
    ]
    return "\n".join(lines)


def build_aot(
    mod: tvm.IRModule,
    *,
    func_name: str = "main",
    output_names: list | None = None,
    stack_threshold: int | None = None,
    isa: tuple[str, str] | None = None,
    module_name: str = DEFAULT_MODULE,
) -> AOTModule:
    """Generate the kernels, constants, runner and header for a straight-line Relax module.

    Parameters
    ----------
    mod : tvm.IRModule
        Module whose ``main`` consists of call_tir bindings (see the module docstring).
    func_name : str
        The Relax function to compile.
    output_names : list of str, optional
        Names of the outputs; default ``output`` (one output) or ``output0``, ``output1``...
    stack_threshold : int, optional
        Kernel-internal allocations up to this many bytes stay on the stack (default
        :data:`dtmm_tvm.codegen.c_source.STACK_SCRATCH_THRESHOLD_BYTES`).
    isa : (str, str), optional
        ``(target tag, kernel ISA)`` the module was lowered for: every generated C file then
        includes ``dtmm_isa.h`` (:mod:`dtmm_tvm.codegen.isa_guard`), which selects that ISA's
        kernel path and refuses a compiler without it.
    module_name : str
        ``tvmgen_<module_name>_`` prefixes every global symbol, the header name and its guard
        (and the shipped micro-kernels' symbols when not ``"default"``), so several models link
        into one firmware.

    Returns
    -------
    AOTModule

    Raises
    ------
    UnsupportedOpError
        ``main`` contains an operator other than call_tir and shape-only views, control flow,
        or a dtype with no C type; the message names the binding and the operator.
    ModelError
        Dynamic shapes, inconsistent buffer sizes, bad ``dtmm.layer`` attributes.
    """
    names = module_names(module_name)
    prefix, entry, arena = names["prefix"], names["entry"], names["arena"]
    b = _Builder(mod, func_name, prefix, module_name)
    b.run()

    # ---- outputs: write in place when the producing tensor lives in the arena ---------
    n_out = len(b.ret_tensors)
    if output_names is None:
        output_names = ["output"] if n_out == 1 else [f"output{i}" for i in range(n_out)]
    if len(output_names) != n_out:
        raise ModelError(f"{len(output_names)} output names given for {n_out} outputs")
    taken = {t.c_name for t in b.inputs}
    outputs, copies = [], []
    for i, (t, name) in enumerate(zip(b.ret_tensors, output_names)):
        c_name = c_identifier(name, taken, f"output{i}")  # unique: an input may be called "output"
        outputs.append(TensorInfo(name, c_name, t.shape, t.dtype, t.bytes, module_name))
        st = t.storage
        if st.kind == "arena":
            st.kind, st.key = "output", i  # the producing kernel writes the caller's buffer
        else:
            # An input, a constant, or a tensor already claimed by another output: copy it.
            copies.append((i, t))

    # ---- kernels (only the ones called), scratch and liveness ------------------------
    called = []
    for s in b.steps:
        if s.func not in called:
            called.append(s.func)
    kernels = build_c_kernels({n: mod[n] for n in called}, prefix=prefix,
                              **({} if stack_threshold is None else {"stack_threshold": stack_threshold}))
    for idx, s in enumerate(b.steps):
        k = kernels.kernels[s.func]
        for sc in k.scratch:
            st = b.new_arena(f"{s.binding}__{sc.name}", sc.bytes)
            st.first_use = st.last_use = idx
            s.scratch.append(st)
        for t in s.args:
            st = t.storage
            st.first_use = idx if st.first_use < 0 else min(st.first_use, idx)
            st.last_use = max(st.last_use, idx)
    end = len(b.steps)
    for _, t in copies:
        t.storage.last_use = end  # final copies read after the last kernel
        if t.storage.first_use < 0:
            t.storage.first_use = end

    arena_st = [st for st in b.arena_storages if st.kind == "arena"]
    plan = planner.plan_arena(
        [planner.BufferRequest(st.key, st.bytes, st.first_use, st.last_use) for st in arena_st]
    )
    offsets = {p.name: p.offset for p in plan.buffers}

    # ---- runner ----------------------------------------------------------------------
    def ptr(st: _Storage, dtype: str) -> str:
        ct = c_type(dtype)
        if st.kind == "input":
            return f"({ct}*)inputs->{b.inputs[st.key].c_name}"
        if st.kind == "output":
            return f"({ct}*)outputs->{outputs[st.key].c_name}"
        if st.kind == "const":
            return f"({ct}*){st.key}"  # casting away const: kernels never write parameters
        return f"({ct}*)({arena} + {offsets[st.key]})"

    runner = [
        "/* Generated by dtmm_tvm.codegen: AOT runner with a static, liveness-packed arena. */",
        "#include <stdint.h>",
        "#include <stdbool.h>",
        "#include <string.h>",
        f'#include "{names["header"]}"',
        "",
        "/* Built with -DDTMM_PROFILE, the runner calls dtmm_profile_mark(k) before operator k and",
        "   once after the last (the application defines it, e.g. to read a cycle counter). */",
        "#ifdef DTMM_PROFILE",
        "void dtmm_profile_mark(uint32_t index);",
        f"#define {names['macro']}MARK(k) dtmm_profile_mark(k)",
        "#else",
        f"#define {names['macro']}MARK(k) ((void)0)",
        "#endif",
        "",
    ]
    if isa is not None:
        runner.insert(1, '#include "dtmm_isa.h"  /* refuses a compiler for another core */')
    for symbol, arr in b.const_arrays.items():
        runner.append(f"extern const {c_type(str(arr.dtype))} {symbol}[{max(1, arr.size)}];")
    runner.append("")
    for name in called:
        runner.append(kernels.kernels[name].prototype)
    runner.append("")
    if plan.bytes:
        runner.append(f"/* {len(plan.buffers)} buffers, {plan.total_buffer_bytes} bytes unpacked */")
        runner.append(f"#ifdef {names['macro']}ARENA_SECTION")
        runner.append(f"static uint8_t {arena}[{plan.bytes}] __attribute__((aligned(16), "
                      f"section({names['macro']}ARENA_SECTION)));")
        runner.append("#else")
        runner.append(f"static uint8_t {arena}[{plan.bytes}] __attribute__((aligned(16)));")
        runner.append("#endif")
        runner.append("")
    runner.append(f"int32_t {entry}(struct {prefix}inputs* inputs, struct {prefix}outputs* outputs) {{")
    if not b.inputs:
        runner.append("  (void)inputs;")
    if not outputs:
        runner.append("  (void)outputs;")
    for index, s in enumerate(b.steps):
        k = kernels.kernels[s.func]
        args = [ptr(t.storage, dt) for t, dt in zip(s.args, k.param_dtypes)]
        args += [ptr(st, sc.dtype) for st, sc in zip(s.scratch, k.scratch)]
        call = f"{k.symbol}({', '.join(args)})"
        runner.append(f"  /* {comment_text(s.binding)} */")
        runner.append(f"  {names['macro']}MARK({index}u);")
        if k.return_type == "void":
            runner.append(f"  {call};")
        else:
            runner.append(f"  if ({call} != 0) return -1;")
    runner.append(f"  {names['macro']}MARK({len(b.steps)}u);")
    for i, t in copies:
        src = ptr(t.storage, t.dtype)
        runner.append(f"  memcpy(outputs->{outputs[i].c_name}, {src}, {t.bytes});")
    runner += ["  return 0;", "}", ""]

    # ---- metadata pieces ---------------------------------------------------------------
    calls = {}
    layers = []
    runner_steps = []
    for index, s in enumerate(b.steps):
        calls[s.func] = calls.get(s.func, 0) + 1
        outs = []
        for t in s.args[len(s.args) - s.n_out:]:
            st = t.storage
            if st.kind == "arena":
                place = {"arena": {"offset": offsets[st.key], "bytes": st.bytes}}
            elif st.kind == "output":
                place = {"output": outputs[st.key].c_name}
            else:
                place = {st.kind: str(st.key)}
            outs.append({"shape": list(t.shape), "dtype": t.dtype, **place})
        runner_steps.append({"index": index, "binding": s.binding, "function": s.func,
                             "c_name": kernels.kernels[s.func].symbol, "layers": [], "outputs": outs,
                             "scratch_bytes": sum(st.bytes for st in s.scratch)})
        attr = mod[s.func].attrs.get("dtmm.layer") if mod[s.func].attrs is not None else None
        if attr is None:
            continue
        try:
            parsed = json.loads(str(attr))
        except json.JSONDecodeError as err:
            raise ModelError(f"PrimFunc {s.func!r}: attribute dtmm.layer is not valid JSON: {err}") from err
        for layer in parsed if isinstance(parsed, list) else [parsed]:
            if not isinstance(layer, dict):
                raise ModelError(f"PrimFunc {s.func!r}: dtmm.layer must be a JSON object or list")
            layers.append({**layer, "function": layer.get("function", s.func)})
            runner_steps[-1]["layers"].append(layer.get("name"))
    functions = [
        {"name": n, "c_name": kernels.kernels[n].symbol, "calls": calls[n],
         "scratch_bytes": kernels.kernels[n].scratch_bytes}
        for n in called
    ]
    lib = names["lib"]
    kernels_code = kernels.code
    files = {
        f"codegen/host/include/{names['header']}": _header(b.inputs, outputs, module_name,
                                                           arena_bytes=plan.bytes),
        f"codegen/host/src/{lib}0.c": kernels_code,
        f"codegen/host/src/{lib}1.c": _constants_c(b.const_arrays),
        f"codegen/host/src/{lib}2.c": "\n".join(runner),
    }
    if isa is not None:
        from .isa_guard import HEADER as ISA_HEADER, isa_header

        # Only archives with ONNX float32 requantization records compile that path.
        requant_f32 = any(layer.get("requantization") == "onnx" for layer in layers)
        files[f"codegen/host/include/{ISA_HEADER}"] = isa_header(*isa, requant_f32=requant_f32)
        for generated in (f"{lib}0.c", f"{lib}1.c"):
            path = f"codegen/host/src/{generated}"
            files[path] = f'#include "{ISA_HEADER}"\n' + files[path]
    if kernels.c_kernels:
        # Hand-written micro-kernels called by the generated kernels (dtmm_tvm/kernels).
        from ..kernels import header_files, kernel_source

        rename = ""
        if module_name != DEFAULT_MODULE:
            # The micro-kernels ship with every model: rename their global symbols into the
            # module's namespace so two models' copies do not collide at link time.
            rename_header = f"tvmgen_{module_name}_kernel_names.h"
            sources = [*header_files().values(), *(kernel_source(k) for k in kernels.c_kernels)]
            files[f"codegen/host/include/{rename_header}"] = _kernel_renames(sources, prefix)
            rename = f'#include "{rename_header}"\n'
            files[f"codegen/host/src/{lib}0.c"] = rename + kernels_code
        for hname, text in header_files().items():
            files[f"codegen/host/include/{hname}"] = text
        for kname in kernels.c_kernels:
            files[f"codegen/host/src/{kname}.c"] = rename + kernel_source(kname)
    return AOTModule(
        files=files,
        inputs=b.inputs,
        outputs=outputs,
        arena=plan,
        constants_bytes=int(sum(a.nbytes for a in b.const_arrays.values())),
        functions=functions,
        layers=layers,
        kernels=kernels,
        module_name=module_name,
        runner_steps=runner_steps,
    )


_EXPORTED = re.compile(r"^(?!static)[A-Za-z_][\w \t\*]*?\b(dtmm_\w+)\s*\(", re.M)


def _kernel_renames(sources: list, prefix: str) -> str:
    """``#define dtmm_x <prefix>dtmm_x`` for every non-static function the kernels declare."""
    symbols = sorted({m.group(1) for text in sources for m in _EXPORTED.finditer(text)})
    lines = ["/* Generated by dtmm_tvm.codegen: the micro-kernels' symbols in this module's namespace. */",
             "#ifndef " + prefix.upper() + "KERNEL_NAMES_H_", "#define " + prefix.upper() + "KERNEL_NAMES_H_"]
    lines += [f"#define {sym} {prefix}{sym}" for sym in symbols]
    lines += ["#endif", ""]
    return "\n".join(lines)

