"""int8 -> int8 SOFTMAX as a TIR PrimFunc, bit-exact with TFLM's gemmlowp path.

The gemmlowp fixed-point functions are the ones in :mod:`dtmm_tvm.quant.softmax`, run against
:class:`TirFixedPoint` instead of the numpy backend: the same code builds the numpy reference and
the TIR expressions. :class:`TirFixedPoint` materializes every reused intermediate in a small scratch buffer so
the expression stays linear in size (a naive tree would duplicate subexpressions exponentially) and
the C code reads as a sequence of ``t[k] = ...;`` lines. The ADD and MEAN builders reuse it for
their requantization.
"""

from __future__ import annotations

import math

import tvm
from tvm import tirx
from tvm.script import tirx as T

from ..quant import softmax as qs
from ..quant.softmax import SoftmaxParams

_I32, _I64 = "int32", "int64"


def _c32(v: int):
    return tirx.const(int(v), _I32)


def _c64(v: int):
    return tirx.const(int(v), _I64)


class TirFixedPoint:
    """gemmlowp int32 fixed-point primitives as TIR expressions with ``Let``-bound intermediates.

    Create one instance per output expression, build the value with the methods (same interface
    as :class:`dtmm_tvm.quant.softmax.NumpyFixedPoint`) while a ``@T.prim_func`` body is parsed.
    """

    def __init__(self, scratch32, scratch64):
        self._buffers = {"int32": scratch32, "int64": scratch64}
        self._used = {"int32": 0, "int64": 0}

    # -- bookkeeping -------------------------------------------------------------------------
    def bind(self, value):
        """Materialize ``value`` in the next scratch slot and return a load of it.

        Must be called while TVMScript parses a kernel body (the builders call the helpers from
        inside ``@T.prim_func``): the store goes into the current frame, right before the
        statement whose value is being built. Scratch slots rather than ``Bind`` variables:
        TVM's arithmetic analyzer substitutes bound values into each other, which is exponential
        on a chain of ~100 fixed-point steps; a buffer load is opaque to it.
        """
        if isinstance(value, (tirx.Var, tirx.IntImm, tvm.ir.expr.TensorLoad)):
            return value
        dtype = str(value.ty)
        slot = self._used[dtype]
        buffer = self._buffers[dtype]
        if slot >= int(buffer.shape[0]):
            raise RuntimeError(f"fixed-point scratch for {dtype} too small ({buffer.shape[0]} slots)")
        self._used[dtype] = slot + 1
        T.buffer_store(buffer, value, [slot])
        return tirx.BufferLoad(buffer, [_c32(slot)])

    @property
    def slots_used(self) -> dict[str, int]:
        """Scratch slots taken so far, by dtype."""
        return dict(self._used)

    @staticmethod
    def wrap(expr):
        """The value expression itself (its intermediates are already materialized)."""
        return expr

    # -- arithmetic (int32 raw values) -------------------------------------------------------
    @staticmethod
    def const(v):
        return _c32(v)

    @staticmethod
    def add(a, b):
        return a + b

    @staticmethod
    def sub(a, b):
        return a - b

    def mul(self, a, b):
        """SaturatingRoundingDoublingHighMul (the FixedPoint product)."""
        a, b = self.bind(a), self.bind(b)
        ab = self.bind(tirx.Cast(_I64, a) * tirx.Cast(_I64, b))
        nudge = tirx.Select(ab >= _c64(0), _c64(1 << 30), _c64(1 - (1 << 30)))
        high = tirx.Cast(_I32, tirx.truncdiv(ab + nudge, _c64(1 << 31)))

        # a * b == 2**62 only for a == b == INT32_MIN, the one saturating case. (Testing the
        # product, not a and b, also keeps TVM's simplifier from folding `a == INT32_MIN` into an
        # out-of-range literal when a is itself a sum.)
        if isinstance(a, tirx.IntImm) or isinstance(b, tirx.IntImm):
            if qs.INT32_MIN not in (getattr(a, "value", None), getattr(b, "value", None)):
                return high
        return tirx.Select(ab == _c64(1 << 62), _c32(qs.INT32_MAX), high)

    @staticmethod
    def bit_and(a, mask: int):
        return a & _c32(mask)

    @staticmethod
    def shl(a, n: int):
        return a << _c32(n) if n else a

    def rdbpot(self, x, exponent: int):
        """RoundingDivideByPOT by an immediate exponent in [0, 31]."""
        if exponent == 0:
            return x
        x = self.bind(x)
        mask = (1 << exponent) - 1
        remainder = x & _c32(mask)
        threshold = _c32(mask >> 1) + tirx.Select(x < _c32(0), _c32(1), _c32(0))
        return (x >> _c32(exponent)) + tirx.Select(remainder > threshold, _c32(1), _c32(0))

    def rdbpot_var(self, x, exponent):
        """RoundingDivideByPOT by a run-time exponent in [0, 31] (mask built in int64)."""
        x, exponent = self.bind(x), self.bind(exponent)
        mask = self.bind((_c64(1) << tirx.Cast(_I64, exponent)) - _c64(1))
        remainder = tirx.Cast(_I64, x) & mask
        threshold = (mask >> _c64(1)) + tirx.Select(x < _c32(0), _c64(1), _c64(0))
        return (x >> exponent) + tirx.Select(remainder > threshold, _c32(1), _c32(0))

    def mul_pot(self, a, exponent: int):
        """SaturatingRoundingMultiplyByPOT<exponent>."""
        if exponent == 0:
            return a
        if exponent < 0:
            return self.rdbpot(a, -exponent)
        a = self.bind(a)
        threshold = (1 << (31 - exponent)) - 1
        return tirx.Select(
            a > _c32(threshold),
            _c32(qs.INT32_MAX),
            tirx.Select(a < _c32(-threshold), _c32(qs.INT32_MIN), a << _c32(exponent)),
        )

    def rounding_half_sum(self, a, b):
        total = self.bind(tirx.Cast(_I64, a) + tirx.Cast(_I64, b))
        sign = tirx.Select(total >= _c64(0), _c64(1), _c64(-1))
        return tirx.Cast(_I32, tirx.truncdiv(total + sign, _c64(2)))

    @staticmethod
    def select(cond, a, b):
        return tirx.Select(cond, a, b)

    @staticmethod
    def eq0(a):
        return a == _c32(0)

    @staticmethod
    def ne0(a):
        return a != _c32(0)

    @staticmethod
    def lt(a, b):
        return a < b

    def clz(self, x):
        """Count leading zeros of a positive int32 (as uint32) by binary search; no intrinsics."""
        v = self.bind(tirx.Cast(_I64, x))
        n = _c32(0)
        for step in (16, 8, 4, 2, 1):
            small = v < _c64(1 << (32 - step))
            n = self.bind(n + tirx.Select(small, _c32(step), _c32(0)))
            v = self.bind(tirx.Select(small, v << _c64(step), v))
        return n

    @staticmethod
    def shl_minus_one(x, n):
        """``int32((uint32(x) << n) - (1u << 31))`` for a positive ``x`` and ``n = clz(x)``."""
        return tirx.Cast(_I32, (tirx.Cast(_I64, x) << tirx.Cast(_I64, n)) - _c64(1 << 31))

    @staticmethod
    def clamp(a, lo: int, hi: int):
        return tirx.max(tirx.min(a, _c32(hi)), _c32(lo))

    # -- requantization used by the other int8 kernels ---------------------------------------
    def multiply_by_quantized_multiplier(self, x, multiplier: int, shift: int):
        """TFLM's double-rounding MultiplyByQuantizedMultiplier with immediate parameters."""
        left, right = max(shift, 0), max(-shift, 0)
        return self.rdbpot(self.mul(self.shl(x, left), _c32(multiplier)), right)


_TRACKED: list[TirFixedPoint] = []


def _track(fx: TirFixedPoint) -> TirFixedPoint:
    """Remember the helper so the builder can size the scratch buffers afterwards."""
    _TRACKED.append(fx)
    return fx


def scratch_slots(build):
    """Run ``build(n32, n64)`` with generous scratch, return the slots actually needed."""
    _TRACKED.clear()
    build(256, 128)
    n32 = max([fx.slots_used["int32"] for fx in _TRACKED] + [1])
    n64 = max([fx.slots_used["int64"] for fx in _TRACKED] + [1])
    _TRACKED.clear()
    return n32, n64


def _row_max_diff(value, row_max, params: SoftmaxParams):
    """``x - max`` clamped to ``[diff_min, 0]`` (out-of-range entries are masked later)."""
    return tirx.max(value - row_max, _c32(params.diff_min))


def _sum_term(value, row_max, params: SoftmaxParams, t32, t64):
    """This element's contribution to ``sum_of_exps`` (Q12.19), or 0 below ``diff_min``."""
    fx = _track(TirFixedPoint(t32, t64))
    exp_q0 = qs.exp_on_negative_values(qs.rescaled_diff(_row_max_diff(value, row_max, params), params, fx), fx)
    term = tirx.Select(value - row_max >= _c32(params.diff_min), qs.exp_term(exp_q0, fx), _c32(0))
    return fx.wrap(term)


def _reciprocal(sum_of_exps, t32, t64):
    fx = _track(TirFixedPoint(t32, t64))
    reciprocal, _ = qs.get_reciprocal(sum_of_exps, fx)
    return fx.wrap(reciprocal)


def _output_exponent(sum_of_exps, t32, t64):
    """``num_bits_over_unit + 31 - 8``: the final rounding shift to int8."""
    fx = _track(TirFixedPoint(t32, t64))
    _, num_bits_over_unit = qs.get_reciprocal(sum_of_exps, fx)
    return fx.wrap(num_bits_over_unit + _c32(31 - 8))


def _output(value, row_max, reciprocal, exponent, params: SoftmaxParams, t32, t64):
    fx = _track(TirFixedPoint(t32, t64))
    exp_q0 = qs.exp_on_negative_values(qs.rescaled_diff(_row_max_diff(value, row_max, params), params, fx), fx)
    result = tirx.Select(
        value - row_max >= _c32(params.diff_min), qs.output_value(reciprocal, exp_q0, exponent, fx), _c32(-128)
    )
    return tirx.Cast("int8", fx.wrap(result))


def softmax_int8(shape, params: SoftmaxParams, name: str = "softmax_int8") -> tirx.PrimFunc:
    """Build TFLM's int8 softmax over the last axis of a tensor of ``shape``.

    Parameters
    ----------
    shape
        Input (= output) shape; softmax runs over ``shape[-1]``.
    params
        From :func:`dtmm_tvm.quant.softmax.softmax_params`; baked in as immediates.
    name
        The PrimFunc's ``global_symbol``.

    Returns
    -------
    tvm.tirx.PrimFunc
        ``f(x: int8[shape], out: int8[shape])``. Global scratch: 4 int32 (row max, sum of
        exponentials, reciprocal, output shift) plus the fixed-point temporaries (about 40 int32
        and 20 int64 slots, sized exactly at build time).
    """
    shape = tuple(int(d) for d in shape)
    depth = shape[-1]
    rows = math.prod(shape[:-1])
    size = rows * depth
    if depth >= 512:
        # A row of >= 512 equal values sums to >= 2**28 in Q12.19; TFLM then fails its
        # TFLITE_CHECK on the output shift (0 <= exponent <= 31) and aborts.
        raise ValueError(f"softmax depth {depth} can exceed TFLM's int8 range (depth must be < 512)")
    attrs = {"global_symbol": name, "dtmm.op": "softmax", "op_pattern": 8, "tirx.noalias": True}

    def build(n32: int, n64: int):
        @T.prim_func
        def softmax(x: T.Buffer(shape, "int8"), out: T.Buffer(shape, "int8")):
            T.func_attr(attrs)
            xf = T.decl_buffer((size,), "int8", data=x.data)
            of = T.decl_buffer((size,), "int8", data=out.data)
            # [row max, sum of exps, reciprocal, output shift] and the fixed-point temporaries.
            s = T.alloc_buffer((4,), "int32")
            t32 = T.alloc_buffer((n32,), "int32")
            t64 = T.alloc_buffer((n64,), "int64")
            for r in range(rows):
                s[0] = -128
                for c in range(depth):
                    s[0] = T.max(s[0], T.Cast("int32", xf[r * depth + c]))
                s[1] = 0
                for c in range(depth):
                    s[1] = s[1] + _sum_term(T.Cast("int32", xf[r * depth + c]), s[0], params, t32, t64)
                s[2] = _reciprocal(s[1], t32, t64)
                s[3] = _output_exponent(s[1], t32, t64)
                for c in range(depth):
                    of[r * depth + c] = _output(T.Cast("int32", xf[r * depth + c]), s[0], s[2], s[3], params, t32, t64)

        return softmax

    return build(*scratch_slots(build))
