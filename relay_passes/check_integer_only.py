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
        floats = [(var, value) for var, value in relax.analysis.get_var2val(main).items()
                  if "float" in str(getattr(value.ty, "dtype", ""))]
        # Name the op that computes in float, not the dequantize that feeds it.
        compute = [(v, e) for v, e in floats if not is_op(e, "relax.dequantize") and not is_op(e, "relax.quantize")]
        if floats:
            var, value = (compute or floats)[0]
            what = value.op.name if isinstance(value, relax.Call) and isinstance(value.op, tvm.ir.Op) else type(value).__name__
            if is_op(value, "relax.call_tir"):
                what = f"call_tir {value.args[0].name_hint}"
            shape = [int(d) for d in value.ty.shape]
            raise UnsupportedOpError(
                f"op '{what}' (binding '{var.name}', {value.ty.dtype} {shape}) has no integer "
                "lowering in this int8 model; compiling it would change the model's numerics"
            )
        return mod
