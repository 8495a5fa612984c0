"""Small helpers the passes share for walking Relax dataflow by value.

TVM imports TFLite int8 models as float quantize/dequantize chains spread over several bindings;
matching a chain means following each argument Var back to the call that defined it.
"""

from __future__ import annotations

import json

import numpy as np
import tvm
from tvm import relax


def is_op(expr, name: str) -> bool:
    """True when ``expr`` is a call of the Relax operator ``name`` (e.g. ``"relax.quantize"``)."""
    return isinstance(expr, relax.Call) and isinstance(expr.op, tvm.ir.Op) and expr.op.name == name


def is_const(expr) -> bool:
    return isinstance(expr, tvm.ir.GenericConst)


def const_value(expr) -> np.ndarray:
    """The numpy contents of a Relax constant."""
    return expr.value.numpy()


def scalar(expr) -> float | int | None:
    """A constant's single value (shape () or (1,)), else None."""
    if not is_const(expr):
        return None
    value = const_value(expr)
    return value.reshape(-1)[0].item() if value.size == 1 else None


def static_shape(expr) -> tuple[int, ...]:
    return tuple(int(d) for d in expr.ty.shape)


def dtype_of(expr) -> str:
    """A tensor's dtype; ``""`` for tuples and other non-tensor values."""
    return str(getattr(expr.ty, "dtype", ""))


class ValueResolver:
    """Follows bound Vars of one function to the expressions that define them."""

    def __init__(self, func: relax.Function):
        self._var2val = relax.analysis.get_var2val(func)

    def __call__(self, expr):
        seen = 0
        while isinstance(expr, relax.Var) and expr in self._var2val and seen < 64:
            expr = self._var2val[expr]
            seen += 1
        return expr


def prim_func_of(mod: tvm.IRModule, call) -> tuple[tvm.ir.GlobalVar, tvm.tirx.PrimFunc] | tuple[None, None]:
    """The PrimFunc a ``call_tir`` calls, or (None, None) for any other call."""
    if not is_op(call, "relax.call_tir"):
        return None, None
    gvar = call.args[0]
    func = mod[gvar] if gvar in mod.functions else None
    return (gvar, func) if isinstance(func, tvm.tirx.PrimFunc) else (None, None)


def func_attr_json(func, key: str) -> dict | None:
    """A JSON-string PrimFunc attribute as a dict (our kernels carry their parameters this way)."""
    if func is None or func.attrs is None or key not in func.attrs:
        return None
    return json.loads(str(func.attrs[key]))


def drop_unreferenced_prim_funcs(mod: tvm.IRModule) -> tvm.IRModule:
    """Remove PrimFuncs no Relax function calls any more (kernels a rewrite replaced), so they
    never reach the C output. Relax's DeadCodeElimination keeps them."""
    called = set()
    for _, func in mod.functions_items():
        if isinstance(func, relax.Function):
            for value in relax.analysis.get_var2val(func).values():
                if is_op(value, "relax.call_tir"):
                    called.add(value.args[0].name_hint)
    for gvar, func in list(mod.functions_items()):
        if isinstance(func, tvm.tirx.PrimFunc) and gvar.name_hint not in called:
            del mod[gvar]
    return mod
