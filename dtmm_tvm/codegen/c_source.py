"""PrimFunc -> plain C: no TVM runtime, no packed API, no workspace allocator.

``tvm.tirx.build(mod, "c")`` wraps every function in TVM's packed calling convention. For a
microcontroller we want ``void tvmgen_default_<name>(int8_t* x, ..., int8_t* out)`` instead, so
:func:`build_c_kernels` does what the notes in ``/work/shared/notes/tvm-0.27.md`` recommend:

1. every ``BufferType`` parameter becomes a typed pointer parameter plus a ``DeclBuffer`` that
   binds the original buffer to it (parameter order is kept);
2. the TIR lowering passes of :data:`LOWERING_PASSES` run, i.e. TVM's default s_tir pipeline
   *without* ``AnnotateEntryFunc``, ``SplitHostDevice``, ``MakePackedAPI`` and
   ``LowerTVMBuiltin`` (and without the GPU-only passes), followed by a dead-let removal so the
   C compiles warning-free with ``-Wall``;
3. every remaining internal allocation larger than :data:`STACK_SCRATCH_THRESHOLD_BYTES`
   (padding buffers, fused intermediates of legalized ops) is rewritten into an extra pointer
   parameter appended after the PrimFunc's own parameters. Its byte size is reported in
   :attr:`CKernel.scratch` so the AOT planner can place it in the arena instead of the C stack;
4. the global function ``target.build.c`` prints the module, and the TVM include prelude is
   replaced by ``<stdint.h>``, ``<stdbool.h>`` and ``<math.h>``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Mapping

import tvm
import tvm_ffi
from tvm import s_tir, tirx

from ..errors import ModelError, UnsupportedOpError

__all__ = [
    "STACK_SCRATCH_THRESHOLD_BYTES",
    "CKernel",
    "CSource",
    "ScratchBuffer",
    "build_c_kernels",
    "c_type",
    "dtype_bytes",
    "lowering_passes",
    "primfunc_to_c",
    "sanitize_identifier",
]

#: Internal allocations of at most this many bytes stay C locals (on the stack): scalar
#: accumulators and 1-element temporaries. Moving them to the arena would cost a pointer
#: parameter and a memory round trip per access for no RAM saving worth reporting.
STACK_SCRATCH_THRESHOLD_BYTES = 16

_C_TYPES = {
    "int8": "int8_t",
    "uint8": "uint8_t",
    "int16": "int16_t",
    "uint16": "uint16_t",
    "int32": "int32_t",
    "uint32": "uint32_t",
    "int64": "int64_t",
    "uint64": "uint64_t",
    "float32": "float",
    "float64": "double",
    "bool": "bool",
}

# Lines of TVM's C prelude that only make sense inside the TVM runtime.
_PRELUDE_DROP = re.compile(
    r"^(// tvm target:.*|#define TVM_EXPORTS|#include \"tvm/.*\"|void\* __tvm_ffi__library_ctx = NULL;)$"
)
# A local array declaration as printed by CodeGenC: `  int32_t acc_ptr[1];`.
_STACK_ARRAY = re.compile(r"^(\s+)([A-Za-z_][\w ]*?) (\w+)\[(\d+)\];$", re.M)
# Runtime entry points that must never appear in a kernel for the MCU.
_RUNTIME_SYMBOLS = re.compile(r"\b(TVMBackend\w+|TVMAPI\w+|TVMFFI\w+|__tvm_ffi_\w+)\b")


def sanitize_identifier(name: str) -> str:
    """Turn an arbitrary name into a C identifier.

    Parameters
    ----------
    name : str
        Any string (a Relax variable name, a GlobalVar name, a tensor name from a model file).

    Returns
    -------
    str
        ``name`` with every character outside ``[A-Za-z0-9_]`` replaced by ``_`` and a leading
        ``_`` added when it would start with a digit (or be empty).
    """
    ident = re.sub(r"[^A-Za-z0-9_]", "_", str(name))
    if not ident or ident[0].isdigit():
        ident = "_" + ident
    return ident


def c_type(dtype: str) -> str:
    """C element type for a TVM dtype string.

    Raises
    ------
    UnsupportedOpError
        For dtypes with no plain C equivalent (float16, bfloat16, vector types, ...).
    """
    try:
        return _C_TYPES[str(dtype)]
    except KeyError:
        raise UnsupportedOpError(
            f"dtype {dtype!r} has no plain C type; supported: {sorted(_C_TYPES)}"
        ) from None


def dtype_bytes(dtype: str) -> int:
    """Size in bytes of one element of ``dtype`` as stored in C (``bool`` takes one byte)."""
    dt = tvm.runtime.DataType(str(dtype))
    return max(1, (dt.bits * dt.lanes + 7) // 8)


def lowering_passes() -> list:
    """The TIR lowering passes used for plain C, in order.

    This is TVM 0.27's ``s_tir`` default pipeline (``tvm/s_tir/pipeline.py``) plus the host
    finalization pass ``LowerIntrin``, minus ``AnnotateEntryFunc``, ``SplitHostDevice``,
    ``MakePackedAPI`` and ``LowerTVMBuiltin`` (they produce the packed API and workspace calls),
    minus the GPU-only passes (thread binding, shared memory, PTX, VTCM), and with
    ``VectorizeLoop(False)`` because Cortex-M C code has no vector types: vectorized loops are
    turned back into serial loops.
    """
    return [
        s_tir.transform.CanonicalizeLoop(),
        s_tir.transform.LowerCrossThreadReduction(),
        s_tir.transform.LowerInitBlock(),
        s_tir.transform.PlanAndUpdateBufferAllocationLocation(),
        s_tir.transform.ConvertBlocksToOpaque(),
        s_tir.transform.CompactBufferAllocation(),
        s_tir.transform.LowerMatchBuffer(),
        s_tir.transform.StmtSimplify(),
        s_tir.transform.LowerOpaqueBlock(),
        tirx.transform.FlattenBuffer(),
        tirx.transform.BF16ComputeLegalize(),
        tirx.transform.NarrowDataType(32),
        s_tir.transform.LoopPartition(),
        tirx.transform.VectorizeLoop(False),
        tirx.transform.StorageRewrite(),
        s_tir.transform.HoistIfThenElse(),
        tirx.transform.UnrollLoop(),
        s_tir.transform.RenormalizeSplitPattern(),
        tirx.transform.StmtSimplify(),
        tirx.transform.RemoveNoOp(),
        s_tir.transform.RewriteUnsafeSelect(),
        tirx.transform.CommonSubexprElim(),
        tirx.transform.FP8ComputeLegalize(),
        tirx.transform.VerifyMemory(),
        tirx.transform.FP8StorageLegalize(),
        tirx.transform.BF16StorageLegalize(),
        tirx.transform.LowerIntrin(),
    ]


@dataclass(frozen=True)
class ScratchBuffer:
    """Kernel-internal storage moved from the C stack to the arena.

    Attributes
    ----------
    name : str
        The C parameter name (the TIR allocation name plus ``_scratch``).
    dtype : str
        Element dtype of the allocation.
    bytes : int
        Size in bytes the caller must provide (16-byte aligned by the planner).
    """

    name: str
    dtype: str
    bytes: int


@dataclass(frozen=True)
class CKernel:
    """One generated C function.

    Attributes
    ----------
    name : str
        The PrimFunc's name in the IRModule (before prefixing).
    symbol : str
        The C symbol, ``<prefix><sanitized name>``.
    prototype : str
        The exact declaration, e.g. ``void tvmgen_default_add(int8_t* a, int8_t* b);``.
    return_type : str
        ``"void"`` or ``"int32_t"`` (non-zero means failure).
    param_dtypes : list of str
        Element dtype of every pointer parameter, in call order: the PrimFunc's parameters
        first, then one per entry of ``scratch``.
    num_buffer_params : int
        How many of the parameters are the PrimFunc's own buffers.
    scratch : list of ScratchBuffer
        Extra trailing parameters: arena scratch the kernel needs for the duration of a call.
    """

    name: str
    symbol: str
    prototype: str
    return_type: str
    param_dtypes: list
    num_buffer_params: int
    scratch: list = field(default_factory=list)

    @property
    def scratch_bytes(self) -> int:
        """Total scratch bytes (without alignment padding)."""
        return sum(s.bytes for s in self.scratch)


@dataclass(frozen=True)
class CSource:
    """Plain C text for a set of kernels, ready to be written as ``default_lib0.c``.

    Attributes
    ----------
    code : str
        Complete translation unit: includes, then every kernel definition.
    kernels : dict of str to CKernel
        By PrimFunc name, in the order they were given.
    c_kernels : list of str
        Hand-written C micro-kernels (``dtmm_tvm/kernels/<name>.c``) the kernels call, the union
        of the PrimFuncs' ``"dtmm.c_kernels"`` attributes in first-use order. When non-empty,
        ``code`` includes ``dtmm_kernels.h`` and the archive must ship those files
        (:func:`dtmm_tvm.codegen.aot.build_aot` does).
    """

    code: str
    kernels: dict
    c_kernels: list = field(default_factory=list)


def _pointerize_params(func: tirx.PrimFunc, symbol: str) -> tuple[tirx.PrimFunc, list]:
    """Replace BufferType params by typed pointer params bound with DeclBuffer."""
    ptrs, decls, dtypes = [], [], []
    for param in func.params:
        ty = param.ty
        if not isinstance(ty, tirx.BufferType):
            raise UnsupportedOpError(
                f"PrimFunc {symbol!r}: scalar parameter {param.name!r} of type {ty}; only buffer "
                "parameters can be called from the static AOT runner"
            )
        dtype = str(ty.dtype)
        c_type(dtype)  # reject unsupported dtypes early, naming the function below
        for dim in ty.shape:
            if not isinstance(dim, tvm.tirx.IntImm):
                raise ModelError(
                    f"PrimFunc {symbol!r}: parameter {param.name!r} has a dynamic shape "
                    f"{list(ty.shape)}; only static shapes can be compiled"
                )
        ptr = tirx.Var(sanitize_identifier(param.name), tvm.ir.PointerType(ty.dtype))
        ptrs.append(ptr)
        decls.append(tirx.DeclBuffer(param, data=ptr))
        dtypes.append(dtype)
    body = tirx.SeqStmt(decls + [func.body])
    attrs = {k: v for k, v in func.attrs.items()} if func.attrs is not None else {}
    attrs["global_symbol"] = symbol
    new = tirx.PrimFunc(ptrs, body, ret_type=func.ret_type)
    for key, value in attrs.items():
        new = new.with_attr(key, value)
    return new, dtypes


def _alloc_bytes(buffer) -> int | None:
    """Static byte size of an allocated (flattened) buffer, None if it is symbolic."""
    n = 1
    for dim in buffer.ty.shape:
        if not isinstance(dim, tvm.tirx.IntImm):
            return None
        n *= int(dim.value)
    return n * dtype_bytes(str(buffer.ty.dtype))


def _is_pure(expr) -> bool:
    """Whether an expression has no calls with side effects (extern/packed/builtin calls)."""
    impure = []

    def on_call(call):
        op = call.op
        name = op.name if isinstance(op, tvm.ir.Op) else ""
        if not name or any(t in name for t in ("extern", "packed", "tvm_", "call_", "address_of")):
            impure.append(name or str(op))

    tvm_ffi.structural_walk(expr, (tvm.ir.Call, on_call))
    return not impure


def _drop_unused_lets(mod: tvm.IRModule, symbol: str) -> tvm.IRModule:
    """Remove let bindings whose variable is never read.

    CommonSubexprElim leaves lets such as ``int32_t kh = cse_v1;`` whose uses it replaced; the
    C compiler would flag every one with -Wunused-variable. Removing one can orphan another
    (``cse_v1``), so repeat until nothing changes.
    """
    for _ in range(16):
        func = mod[symbol]
        used = set()

        def on_var(var, kind):
            if kind == tvm_ffi.DefRegionKind.NONE:
                used.add(var)

        tvm_ffi.structural_walk(func.body, with_def_region_kind=(tvm.ir.Var, on_var))
        dropped = []

        def on_bind(node):
            if node.var in used or not _is_pure(node.value):
                return node
            dropped.append(node.var.name)
            return tirx.Evaluate(tirx.const(0, "int32"))

        body = tvm_ffi.structural_map(func.body, (tirx.Bind, on_bind))
        if not dropped:
            break
        mod = tirx.transform.RemoveNoOp()(tvm.IRModule({symbol: func.with_body(body)}))
    return mod


def _move_allocs_to_params(func: tirx.PrimFunc, symbol: str, threshold: int):
    """Rewrite every AllocBuffer bigger than ``threshold`` bytes into a trailing pointer param."""
    scratch: list[ScratchBuffer] = []
    ptrs: list = []
    used = {p.name for p in func.params}

    def on_alloc(node, mutator):
        buf = node.buffer
        scope = str(buf.ty.storage_scope)
        if scope not in ("global", "local"):
            raise UnsupportedOpError(
                f"PrimFunc {symbol!r}: buffer {buf.name!r} uses memory scope {scope!r}; "
                "a Cortex-M C kernel has only global memory"
            )
        nbytes = _alloc_bytes(buf)
        if nbytes is None:
            raise ModelError(
                f"PrimFunc {symbol!r}: internal buffer {buf.name!r} has a dynamic size "
                f"{list(buf.ty.shape)}; only static allocations can be placed in the arena"
            )
        if nbytes <= threshold and scope == "global":
            return node
        # CodeGenC rejects "local" allocations, and scratch must be a plain global buffer bound
        # to a pointer: re-declare the buffer as global and remap every later use to it.
        new_buf = tirx.decl_buffer(buf.ty.shape, buf.ty.dtype, buf.name, scope="global")
        mutator.var_remap_set(buf, new_buf)
        if nbytes <= threshold:
            return tirx.AllocBuffer(new_buf, node.annotations)
        name = sanitize_identifier(buf.name) + "_scratch"
        base, k = name, 1
        while name in used:
            name, k = f"{base}{k}", k + 1
        used.add(name)
        ptr = tirx.Var(name, tvm.ir.PointerType(buf.ty.dtype))
        ptrs.append(ptr)
        scratch.append(ScratchBuffer(name=name, dtype=str(buf.ty.dtype), bytes=nbytes))
        # The buffer keeps its accesses; only its storage now comes from the caller (the arena).
        return tirx.DeclBuffer(new_buf, data=ptr)

    body = tvm_ffi.structural_mutate(func.body, (tirx.AllocBuffer, on_alloc))
    if not ptrs:
        return func.with_body(body), scratch
    new = tirx.PrimFunc(list(func.params) + ptrs, body, ret_type=func.ret_type, attrs=func.attrs)
    return new, scratch


def _strip_prelude(code: str) -> tuple[str, set]:
    """Drop TVM's runtime prelude; return (body, set of system include lines)."""
    includes = set()
    out = []
    lines = code.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        # `#ifdef __cplusplus / extern "C" / #endif` guards around every declaration.
        if line == "#ifdef __cplusplus" and i + 2 < len(lines) and lines[i + 2] == "#endif":
            i += 3
            continue
        if _PRELUDE_DROP.match(line):
            i += 1
            continue
        if line.startswith("#include <"):
            includes.add(line.strip())
            i += 1
            continue
        out.append(line.replace("TVM_DLL ", ""))
        i += 1
    return "\n".join(out).strip("\n") + "\n", includes


def build_c_kernels(
    funcs: Mapping[str, tirx.PrimFunc],
    *,
    prefix: str = "tvmgen_default_",
    stack_threshold: int = STACK_SCRATCH_THRESHOLD_BYTES,
    target: tvm.target.Target | None = None,
) -> CSource:
    """Lower PrimFuncs to one plain C translation unit.

    Parameters
    ----------
    funcs : mapping of str to tvm.tirx.PrimFunc
        PrimFuncs by name (usually the GlobalVar names of an IRModule). Each becomes a C
        function ``<prefix><sanitized name>`` whose pointer parameters follow the PrimFunc's
        parameter order, followed by scratch parameters (see :class:`CKernel`).
    prefix : str
        Prefix of every C symbol.
    stack_threshold : int
        Internal allocations of at most this many bytes stay on the C stack; larger ones
        become arena scratch parameters.
    target : tvm.target.Target, optional
        The C target bound to the functions; default ``{"kind": "c"}``.

    Returns
    -------
    CSource
        The code and a :class:`CKernel` description per function.

    Raises
    ------
    UnsupportedOpError
        A PrimFunc has scalar parameters or an unsupported dtype.
    ModelError
        Dynamic shapes, or lowering produced code that needs the TVM runtime.
    """
    from ..kernels import HEADER, c_kernel_names, kernel_source

    target = target or tvm.target.Target({"kind": "c"})
    symbols: dict[str, str] = {}
    c_kernels: list[str] = []
    lowered = {}
    infos = {}
    for name, func in funcs.items():
        if not isinstance(func, tirx.PrimFunc):
            raise TypeError(f"{name!r} is not a tvm.tirx.PrimFunc")
        symbol = prefix + sanitize_identifier(name)
        if symbol in symbols.values():
            raise ModelError(f"two functions map to the same C symbol {symbol!r}")
        symbols[name] = symbol
        for kname in c_kernel_names(func):
            kernel_source(kname)  # unknown names fail here, naming the kernel
            if kname not in c_kernels:
                c_kernels.append(kname)
        pfunc, dtypes = _pointerize_params(func, symbol)
        mod = tvm.IRModule({symbol: pfunc})
        mod = tirx.transform.BindTarget(target)(mod)
        try:
            mod = tvm.transform.Sequential(lowering_passes())(mod)
        except (RuntimeError, ValueError) as err:
            raise ModelError(f"PrimFunc {name!r} could not be lowered to C: {err}") from err
        low = _drop_unused_lets(mod, symbol)[symbol]
        low, scratch = _move_allocs_to_params(low, symbol, stack_threshold)
        lowered[symbol] = low
        infos[name] = (symbol, dtypes + [s.dtype for s in scratch], len(dtypes), scratch)

    if not lowered:
        return CSource(code="#include <stdint.h>\n", kernels={})
    try:
        raw = tvm.get_global_func("target.build.c")(tvm.IRModule(lowered), target).inspect_source()
    except (RuntimeError, ValueError) as err:
        raise ModelError(f"C code generation failed for {sorted(funcs)}: {err}") from err
    body, includes = _strip_prelude(raw)
    # Stack arrays left (<= threshold bytes) are accumulators whose init is an `if (k == 0)`
    # inside the reduction loop (LowerInitBlock); gcc cannot prove that and warns
    # -Wmaybe-uninitialized. Zero-initializing a few bytes is cheaper than any restructuring.
    body = _STACK_ARRAY.sub(r"\1\2 \3[\4] = {0};", body)
    found = _RUNTIME_SYMBOLS.search(body)
    if found:
        raise ModelError(
            f"generated kernel code still needs the TVM runtime ({found.group(0)}); "
            "the kernels must not allocate workspace or call packed functions"
        )

    kernels = {}
    for name, (symbol, dtypes, nbuf, scratch) in infos.items():
        match = re.search(r"^([A-Za-z_][\w ]*?)\s+" + re.escape(symbol) + r"\(([^)]*)\)\s*\{", body, re.M)
        if match is None:
            raise ModelError(f"C code generation produced no definition for {symbol!r}")
        ret = match.group(1).strip()
        kernels[name] = CKernel(
            name=name,
            symbol=symbol,
            prototype=f"{ret} {symbol}({match.group(2)});",
            return_type=ret,
            param_dtypes=dtypes,
            num_buffer_params=nbuf,
            scratch=list(scratch),
        )
    # Forward declarations TVM prints before each definition are redundant with definitions
    # but harmless; drop them so the file reads as one definition per kernel.
    for k in kernels.values():
        body = body.replace(k.prototype + "\n", "", 1)
    if c_kernels:
        # CodeGenC declares every T.call_extern callee from its argument types (no const, void*
        # for NULL); the micro-kernel header declares them properly, so drop TVM's versions.
        from ..kernels import header_files

        declared = set()
        for text in header_files().values():
            declared |= set(re.findall(r"\b([A-Za-z_]\w*)\s*\(", text))
        body = re.sub(
            r"^[A-Za-z_][\w ]*?[\w*]\s*\**\s*([A-Za-z_]\w*)\([^)]*\);\n",
            lambda m: "" if m.group(1) in declared else m.group(0),
            body,
            flags=re.M,
        )
    wanted = {"#include <stdint.h>", "#include <stdbool.h>", "#include <math.h>"}
    head = "\n".join(sorted(wanted | includes))
    if c_kernels:
        head += f'\n#include "{HEADER}"  /* micro-kernels: {", ".join(c_kernels)} */'

    code = (
        "/* Generated by dtmm_tvm.codegen: plain C kernels, no TVM runtime. */\n"
        f"{head}\n\n{body}"
    )
    return CSource(code=code, kernels=kernels, c_kernels=c_kernels)


def primfunc_to_c(
    func: tirx.PrimFunc,
    name: str,
    *,
    prefix: str = "tvmgen_default_",
    stack_threshold: int = STACK_SCRATCH_THRESHOLD_BYTES,
) -> tuple[str, CKernel]:
    """Lower a single PrimFunc to a plain C translation unit.

    Parameters
    ----------
    func : tvm.tirx.PrimFunc
        The kernel (destination-passing style, buffer parameters only).
    name : str
        Its name; the C symbol is ``prefix + sanitize_identifier(name)``.
    prefix, stack_threshold
        See :func:`build_c_kernels`.

    Returns
    -------
    tuple of (str, CKernel)
        The C source and the kernel description.
    """
    src = build_c_kernels({name: func}, prefix=prefix, stack_threshold=stack_threshold)
    return src.code, src.kernels[name]
