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

    A model counts as int8 when a parameter of ``main`` is an integer tensor or anything in it was
    quantized (a float32 input QUANTIZEd at the start, a DEQUANTIZE to a float32 output): the only
    float values it may keep are those inputs and the outputs of the DEQUANTIZE kernel.
    """

    def transform_module(self, mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
        main = mod["main"]
        bindings = relax.analysis.get_var2val(main)
        quantized = any(is_op(v, "relax.quantize") or is_op(v, "relax.dequantize")
                        or _dtmm_op(mod, v) in ("quantize", "dequantize") for v in bindings.values())
        if all("float" in str(getattr(p.ty, "dtype", "")) for p in main.params) and not quantized:
            return mod
        floats = [(var, value) for var, value in bindings.items()
                  if "float" in str(getattr(value.ty, "dtype", "")) and _dtmm_op(mod, value) != "dequantize"]
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


def _dtmm_op(mod: tvm.IRModule, value) -> str | None:
    """The ``"dtmm.op"`` of the kernel a ``call_tir`` calls (our integer kernels), else None."""
    if not is_op(value, "relax.call_tir") or value.args[0] not in mod.functions:
        return None
    attrs = mod[value.args[0]].attrs
    return str(attrs["dtmm.op"]) if attrs is not None and "dtmm.op" in attrs else None
