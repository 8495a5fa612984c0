"""CheckIntegerOnly: refuse to compile an int8 model that still computes in float.

After :class:`LowerQDQToInteger`, an int8 model must contain no float tensor. A leftover means an
op chain we could not lower; compiling it anyway would silently change the model's numerics
(float rounding instead of TFLite's fixed point) and need an FPU, so this pass stops the compile
and names the op.
"""

from __future__ import annotations

import tvm
from tvm import relax

from dtmm_tvm.errors import UnsupportedOpError

from ._match import is_op


@tvm.transform.module_pass(opt_level=0, name="CheckIntegerOnly")
class CheckIntegerOnly:
    """Raise :class:`~dtmm_tvm.errors.UnsupportedOpError` on any float binding of an int8 model.

    A model counts as int8 when every parameter of ``main`` is an integer tensor.
    """

    def transform_module(self, mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
        main = mod["main"]
        if any("float" in str(getattr(p.ty, "dtype", "")) for p in main.params):
            return mod
        for var, value in relax.analysis.get_var2val(main).items():
            dtype = str(getattr(value.ty, "dtype", ""))
            if "float" in dtype:
                what = value.op.name if isinstance(value, relax.Call) and isinstance(value.op, tvm.ir.Op) else type(value).__name__
                if is_op(value, "relax.call_tir"):
                    what = f"call_tir {value.args[0].name_hint}"
                raise UnsupportedOpError(
                    f"op '{what}' (binding '{var.name}', {dtype} {list(value.ty.shape)}) has no integer "
                    "lowering in this int8 model; compiling it would change the model's numerics"
                )
        return mod
