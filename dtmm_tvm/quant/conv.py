"""TFLite / TFLM integer semantics of CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED in numpy.

The numpy functions here are the reference every TIR kernel in :mod:`dtmm_tvm.ops` is tested
against, and they are themselves tested bit for bit against TFLM. They follow TFLM's integer
reference kernels (``tensorflow/lite/kernels/internal/reference/integer_ops/conv.h``,
``depthwise_conv.h``, ``fully_connected.h``):

- ``acc = sum((x + input_offset) * w)`` over the in-bounds kernel taps, ``input_offset =
  -input_zero_point``; a padded tap contributes nothing (it is skipped, not read as zero);
- ``acc += bias``; ``out = clamp(MultiplyByQuantizedMultiplier(acc, mult, shift) +
  output_zero_point, act_min, act_max)`` with TFLM's default double rounding.

The layer parameters are plain frozen dataclasses so they can key caches of built kernels and be
compared in tests. :func:`conv_layer_from_tflite` reads them, with the multipliers, the
activation range and TFLite's SAME padding, straight from a model read by
:func:`dtmm_tvm.frontend.tflite_reader.read_tflite`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ModelError, UnsupportedOpError
from .fixed_point import activation_range, quantize_multiplier
from .onnx import requantize_records

INT8_MIN = -128
INT8_MAX = 127


# --------------------------------------------------------------------------------------------
# Layer parameters
# --------------------------------------------------------------------------------------------


def _check_requantization(mode: str) -> None:
    from .onnx import REQUANTIZATION_MODES

    if mode not in REQUANTIZATION_MODES:
        raise ValueError(f"requantization must be one of {REQUANTIZATION_MODES}, got {mode!r}")


@dataclass(frozen=True)
class Conv2DParams:
    """Static parameters of one int8 (or float32) 2-D convolution, dense or depthwise.

    Attributes
    ----------
    input_shape
        ``(N, H, W, Cin)``, NHWC.
    weight_shape
        Regular conv: ``(Cout, KH, KW, Cin)`` (OHWI, TFLite's layout). Depthwise: TFLite's
        ``(1, KH, KW, Cin * depth_multiplier)``.
    strides
        ``(stride_h, stride_w)``.
    padding
        Explicit ``(top, left, bottom, right)``; see :func:`same_padding` for TFLite's SAME rule.
    dilation
        ``(dilation_h, dilation_w)``.
    input_zero_point, output_zero_point
        Zero points of the int8 input and output (ignored by float kernels).
    act_min, act_max
        Output clamp in the quantized domain: the fused activation (see :func:`activation_range`).
    depth_multiplier
        Depthwise only: output channels per input channel.
    depthwise
        True for DEPTHWISE_CONV_2D (selects the weight layout above).
    requantization
        ``"tflite"``: TFLM's fixed-point multiplier + shift (double rounding); ``"onnx"``:
        onnxruntime's float32 scale multiply with round half to even
        (:mod:`dtmm_tvm.quant.onnx`). Decides how the per-channel ``(mult, shift)`` records are
        built and read (float32 records carry the tag :data:`~dtmm_tvm.quant.onnx.REQUANT_F32_TAG`).
    """

    input_shape: tuple[int, int, int, int]
    weight_shape: tuple[int, int, int, int]
    strides: tuple[int, int] = (1, 1)
    padding: tuple[int, int, int, int] = (0, 0, 0, 0)
    dilation: tuple[int, int] = (1, 1)
    input_zero_point: int = 0
    output_zero_point: int = 0
    act_min: int = INT8_MIN
    act_max: int = INT8_MAX
    depth_multiplier: int = 1
    depthwise: bool = False
    requantization: str = "tflite"

    def __post_init__(self):
        _check_requantization(self.requantization)
        # Normalize to plain int tuples so params built from numpy values hash and compare equal.
        for name in ("input_shape", "weight_shape", "strides", "padding", "dilation"):
            object.__setattr__(self, name, tuple(int(v) for v in getattr(self, name)))
        for name in ("input_zero_point", "output_zero_point", "act_min", "act_max", "depth_multiplier"):
            object.__setattr__(self, name, int(getattr(self, name)))
        if len(self.input_shape) != 4 or len(self.weight_shape) != 4:
            raise ValueError(f"conv shapes must be 4-D, got input {self.input_shape} weight {self.weight_shape}")
        if len(self.strides) != 2 or len(self.dilation) != 2 or len(self.padding) != 4:
            raise ValueError("strides and dilation take 2 values, padding 4 (top, left, bottom, right)")
        if min(self.strides) < 1 or min(self.dilation) < 1 or min(self.padding) < 0:
            raise ValueError(f"invalid strides {self.strides}, dilation {self.dilation} or padding {self.padding}")
        cin = self.input_shape[3]
        if self.depthwise:
            if self.weight_shape[0] != 1 or self.weight_shape[3] != cin * self.depth_multiplier:
                raise ValueError(
                    f"depthwise weight shape {self.weight_shape} must be (1, KH, KW, Cin*M) = "
                    f"(1, KH, KW, {cin}*{self.depth_multiplier})"
                )
        elif self.weight_shape[3] != cin:
            raise ValueError(f"weight shape {self.weight_shape} (OHWI) does not match input channels {cin}")
        if self.act_min > self.act_max:
            raise ValueError(f"empty activation range [{self.act_min}, {self.act_max}]")
        oh, ow = self._output_hw()
        if oh < 1 or ow < 1:
            raise ValueError(f"conv {self} has an empty output")

    @property
    def kernel_size(self) -> tuple[int, int]:
        """``(KH, KW)``."""
        return self.weight_shape[1], self.weight_shape[2]

    @property
    def out_channels(self) -> int:
        return self.weight_shape[3] if self.depthwise else self.weight_shape[0]

    def _output_hw(self) -> tuple[int, int]:
        _, h, w, _ = self.input_shape
        kh, kw = self.kernel_size
        top, left, bottom, right = self.padding
        oh = (h + top + bottom - self.dilation[0] * (kh - 1) - 1) // self.strides[0] + 1
        ow = (w + left + right - self.dilation[1] * (kw - 1) - 1) // self.strides[1] + 1
        return oh, ow

    @property
    def output_shape(self) -> tuple[int, int, int, int]:
        """``(N, OH, OW, Cout)``, NHWC."""
        oh, ow = self._output_hw()
        return self.input_shape[0], oh, ow, self.out_channels

    @property
    def macs(self) -> int:
        """Multiply-accumulates of the dense operator (padding taps included, as usually quoted)."""
        n, oh, ow, cout = self.output_shape
        kh, kw = self.kernel_size
        per_output = kh * kw * (1 if self.depthwise else self.input_shape[3])
        return n * oh * ow * cout * per_output


@dataclass(frozen=True)
class FullyConnectedParams:
    """Static parameters of one int8 FULLY_CONNECTED.

    Attributes
    ----------
    input_shape
        ``(N, K)``: TFLite flattens every leading input dimension into the batch.
    weight_shape
        ``(O, K)``, TFLite's layout.
    input_zero_point, output_zero_point
        Zero points of input and output.
    act_min, act_max
        Output clamp in the quantized domain.
    weight_zero_point
        Always 0 for TFLite int8 (symmetric weights); kept for TFLM's ``weights_offset`` term.
    requantization
        ``"tflite"`` or ``"onnx"``, as for :class:`Conv2DParams`.
    """

    input_shape: tuple[int, int]
    weight_shape: tuple[int, int]
    input_zero_point: int = 0
    output_zero_point: int = 0
    act_min: int = INT8_MIN
    act_max: int = INT8_MAX
    weight_zero_point: int = 0
    requantization: str = "tflite"

    def __post_init__(self):
        _check_requantization(self.requantization)
        for name in ("input_shape", "weight_shape"):
            object.__setattr__(self, name, tuple(int(v) for v in getattr(self, name)))
        for name in ("input_zero_point", "output_zero_point", "act_min", "act_max", "weight_zero_point"):
            object.__setattr__(self, name, int(getattr(self, name)))
        if len(self.input_shape) != 2 or len(self.weight_shape) != 2:
            raise ValueError(f"fully connected shapes must be 2-D, got {self.input_shape} {self.weight_shape}")
        if self.input_shape[1] != self.weight_shape[1]:
            raise ValueError(f"input {self.input_shape} and weight {self.weight_shape} disagree on K")
        if self.act_min > self.act_max:
            raise ValueError(f"empty activation range [{self.act_min}, {self.act_max}]")

    @property
    def output_shape(self) -> tuple[int, int]:
        """``(N, O)``."""
        return self.input_shape[0], self.weight_shape[0]


# --------------------------------------------------------------------------------------------
# TFLite's parameter rules
# --------------------------------------------------------------------------------------------


def conv_output_multipliers(input_scale, weight_scales, output_scale) -> tuple[np.ndarray, np.ndarray]:
    """Per-output-channel requantization multipliers exactly as TFLite computes them.

    ``effective = double(input_scale) * double(weight_scale[c]) / double(output_scale)``, then
    ``QuantizeMultiplier`` (TFLite's ``PopulateConvolutionQuantizationParams``; the per-tensor
    ``GetQuantizedConvolutionMultipler`` of FULLY_CONNECTED is the same formula with one scale).
    The scales are float32 in the flatbuffer; each is widened to double before multiplying.

    Parameters
    ----------
    input_scale, output_scale
        Per-tensor float32 scales.
    weight_scales
        float32 scale per output channel (or one per-tensor scale).

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        ``int32`` Q31 multipliers and ``int32`` shifts, one per weight scale.
    """
    in_scale = float(np.float32(np.asarray(input_scale).reshape(-1)[0]))
    out_scale = float(np.float32(np.asarray(output_scale).reshape(-1)[0]))
    scales = np.asarray(weight_scales, dtype=np.float32).reshape(-1)
    pairs = [quantize_multiplier(in_scale * float(s) / out_scale) for s in scales]
    mult = np.array([p[0] for p in pairs], dtype=np.int32)
    shift = np.array([p[1] for p in pairs], dtype=np.int32)
    return mult, shift


def _padding_1d(size: int, kernel: int, stride: int, dilation: int, mode: str) -> tuple[int, int]:
    """TFLite's ``ComputePaddingHeightWidth`` along one axis: (before, after)."""
    effective = (kernel - 1) * dilation + 1
    if mode == "SAME":
        out = (size + stride - 1) // stride
    elif mode == "VALID":
        out = (size - effective + stride) // stride
    else:
        raise UnsupportedOpError(f"padding mode {mode!r}")
    total = max((out - 1) * stride + effective - size, 0)
    # TFLite pads total // 2 before and the odd pixel (if any) after.
    return total // 2, total - total // 2


def same_padding(input_hw, kernel_hw, strides, dilation=(1, 1), mode: str = "SAME") -> tuple[int, int, int, int]:
    """Explicit ``(top, left, bottom, right)`` padding of a TFLite ``SAME`` / ``VALID`` conv or pool."""
    top, bottom = _padding_1d(int(input_hw[0]), int(kernel_hw[0]), int(strides[0]), int(dilation[0]), mode)
    left, right = _padding_1d(int(input_hw[1]), int(kernel_hw[1]), int(strides[1]), int(dilation[1]), mode)
    return top, left, bottom, right


# --------------------------------------------------------------------------------------------
# numpy references (TFLM integer reference kernels)
# --------------------------------------------------------------------------------------------


def _per_channel(values, channels: int, dtype) -> np.ndarray:
    """Broadcast a per-tensor value to ``channels`` entries, or check a per-channel one."""
    arr = np.asarray(values, dtype=dtype).reshape(-1)
    if arr.size == 1:
        return np.full(channels, arr[0], dtype=dtype)
    if arr.size != channels:
        raise ValueError(f"expected 1 or {channels} per-channel values, got {arr.size}")
    return arr


def _bias(bias, channels: int) -> np.ndarray:
    if bias is None:  # TFLM skips the add when the optional bias input is absent
        return np.zeros(channels, dtype=np.int64)
    return _per_channel(bias, channels, np.int64)


def _wrap_int32(acc: np.ndarray) -> np.ndarray:
    """The int32 accumulator of the C kernel (wraps like the hardware on overflow)."""
    return acc.astype(np.int64).astype(np.int32).astype(np.int64)


def _taps(x_offset: np.ndarray, params: Conv2DParams):
    """Yield ``(kh, kw, window)``: the strided input slice each kernel tap multiplies.

    ``x_offset`` holds ``x + input_offset`` and is zero-padded here, so a padded tap adds exactly
    nothing, which is what TFLM's bounds check does.
    """
    top, left, bottom, right = params.padding
    padded = np.pad(x_offset, ((0, 0), (top, bottom), (left, right), (0, 0)))
    _, oh, ow, _ = params.output_shape
    kh_size, kw_size = params.kernel_size
    sh, sw = params.strides
    dh, dw = params.dilation
    for kh in range(kh_size):
        for kw in range(kw_size):
            y0, x0 = kh * dh, kw * dw
            window = padded[:, y0 : y0 + (oh - 1) * sh + 1 : sh, x0 : x0 + (ow - 1) * sw + 1 : sw, :]
            yield kh, kw, window


def conv2d(x, w_ohwi, bias_i32, mult, shift, params: Conv2DParams) -> np.ndarray:
    """TFLM's per-channel int8 ``ConvPerChannel``.

    Parameters
    ----------
    x
        int8 ``params.input_shape`` (NHWC).
    w_ohwi
        int8 ``params.weight_shape`` (OHWI).
    bias_i32
        int32 ``[Cout]`` or None (no bias).
    mult, shift
        int32 ``[Cout]`` (or one value) from :func:`conv_output_multipliers`.
    params
        The layer.

    Returns
    -------
    numpy.ndarray
        int8 ``params.output_shape``.
    """
    if params.depthwise:
        raise ValueError("conv2d got depthwise params; use depthwise_conv2d")
    x = np.asarray(x).reshape(params.input_shape)
    w = np.asarray(w_ohwi).reshape(params.weight_shape).astype(np.int64)
    cout = params.out_channels
    acc = np.zeros(params.output_shape, dtype=np.int64)
    for kh, kw, window in _taps(x.astype(np.int64) - params.input_zero_point, params):
        acc += window @ w[:, kh, kw, :].T
    acc = _wrap_int32(acc + _bias(bias_i32, cout))
    return requantize_records(acc, _per_channel(mult, cout, np.int32), _per_channel(shift, cout, np.int32),
                              params.output_zero_point, params.act_min, params.act_max)


def conv2d_float32(x, w_ohwi, params: Conv2DParams) -> np.ndarray:
    """Float32 conv without bias, summing taps in (kh, kw, ci) order in float32.

    The accumulation order is the one the float filterlet kernel uses, so for finite inputs the
    two agree bit for bit (a pruned filterlet only drops ``+0.0`` terms).
    """
    x = np.asarray(x, dtype=np.float32).reshape(params.input_shape)
    w = np.asarray(w_ohwi, dtype=np.float32).reshape(params.weight_shape)
    acc = np.zeros(params.output_shape, dtype=np.float32)
    for kh, kw, window in _taps(x, params):
        for ci in range(params.input_shape[3]):
            acc += window[..., ci : ci + 1] * w[:, kh, kw, ci]
    return acc


def depthwise_conv2d(x, w, bias_i32, mult, shift, params: Conv2DParams) -> np.ndarray:
    """TFLM's per-channel int8 ``DepthwiseConvPerChannel``.

    Output channel ``oc = c * depth_multiplier + m`` reads input channel ``c``.

    Parameters
    ----------
    x
        int8 ``params.input_shape`` (NHWC).
    w
        int8 TFLite depthwise weights ``(1, KH, KW, Cin*M)`` (or the same bytes as ``(KH, KW, Cin*M)``).
    bias_i32, mult, shift
        int32 per output channel (bias may be None).
    params
        The layer (``depthwise=True``).
    """
    if not params.depthwise:
        raise ValueError("depthwise_conv2d needs depthwise params")
    x = np.asarray(x).reshape(params.input_shape)
    kh_size, kw_size = params.kernel_size
    cout = params.out_channels
    w = np.asarray(w).reshape(kh_size, kw_size, cout).astype(np.int64)
    acc = np.zeros(params.output_shape, dtype=np.int64)
    for kh, kw, window in _taps(x.astype(np.int64) - params.input_zero_point, params):
        acc += np.repeat(window, params.depth_multiplier, axis=3) * w[kh, kw]
    acc = _wrap_int32(acc + _bias(bias_i32, cout))
    return requantize_records(acc, _per_channel(mult, cout, np.int32), _per_channel(shift, cout, np.int32),
                              params.output_zero_point, params.act_min, params.act_max)


def fully_connected(x, w, bias_i32, mult, shift, params: FullyConnectedParams) -> np.ndarray:
    """TFLM's int8 ``FullyConnected`` (per-tensor or per-channel multipliers).

    ``acc = sum_k (x + input_offset) * (w + weights_offset) + bias``.

    Parameters
    ----------
    x
        int8 ``(N, K)`` (any shape with ``N * K`` elements).
    w
        int8 ``(O, K)``.
    bias_i32
        int32 ``[O]`` or None.
    mult, shift
        int32, one value (per-tensor) or ``[O]``.
    """
    x = np.asarray(x).reshape(params.input_shape).astype(np.int64) - params.input_zero_point
    w = np.asarray(w).reshape(params.weight_shape).astype(np.int64) - params.weight_zero_point
    o = params.weight_shape[0]
    acc = _wrap_int32(x @ w.T + _bias(bias_i32, o))
    return requantize_records(acc, _per_channel(mult, o, np.int32), _per_channel(shift, o, np.int32),
                              params.output_zero_point, params.act_min, params.act_max)


# --------------------------------------------------------------------------------------------
# Reading a layer out of a TFLite model
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class QuantizedLayer:
    """One int8 CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED with everything a kernel needs.

    ``bias`` is int32 ``[O]`` (zeros when the model has none), ``multiplier`` / ``shift`` are
    int32 ``[O]`` (a per-tensor multiplier is repeated per channel).
    """

    op: str
    params: Conv2DParams | FullyConnectedParams
    weight: np.ndarray
    bias: np.ndarray
    multiplier: np.ndarray
    shift: np.ndarray
    has_bias: bool


def conv_layer_from_tflite(graph, op) -> QuantizedLayer:
    """Build the :class:`QuantizedLayer` of an int8 conv, depthwise conv or FC operator.

    Parameters
    ----------
    graph
        A :class:`dtmm_tvm.frontend.tflite_reader.TFLiteGraph`.
    op
        One of its operators (``CONV_2D``, ``DEPTHWISE_CONV_2D`` or ``FULLY_CONNECTED``).

    Raises
    ------
    ModelError
        When the operator is not int8 or its weights are not constant.
    UnsupportedOpError
        For other operators or unsupported options.
    """
    where = f"{graph.path}: op {op.index} {op.opcode} '{graph.layer_name(op)}'"
    if op.opcode not in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
        raise UnsupportedOpError(f"{where}: not a conv / depthwise conv / fully connected op")
    x_t, w_t, out_t = graph.tensor(op.inputs[0]), graph.tensor(op.inputs[1]), graph.tensor(op.outputs[0])
    b_t = graph.tensor(op.inputs[2]) if len(op.inputs) > 2 and op.inputs[2] >= 0 else None
    if x_t.dtype != "int8" or w_t.dtype != "int8" or out_t.dtype != "int8":
        raise ModelError(f"{where}: expected int8 input/weights/output, got {x_t.dtype}/{w_t.dtype}/{out_t.dtype}")
    if w_t.data is None or (b_t is not None and b_t.data is None):
        raise ModelError(f"{where}: weights and bias must be constant tensors")
    if x_t.scale is None or w_t.scale is None or out_t.scale is None:
        raise ModelError(f"{where}: missing quantization parameters")
    opts = op.options
    act_min, act_max = activation_range(opts.get("FusedActivationFunction", "NONE"), out_t.scale, int(out_t.zero_point[0]))
    in_zp, out_zp = int(x_t.zero_point[0]), int(out_t.zero_point[0])
    weight = np.asarray(w_t.data, dtype=np.int8)

    if op.opcode == "FULLY_CONNECTED":
        o, k = weight.shape
        n = int(np.prod(x_t.shape)) // k
        params = FullyConnectedParams((n, k), (o, k), in_zp, out_zp, act_min, act_max, int(w_t.zero_point[0]))
    else:
        _, h, w, cin = x_t.shape
        kh, kw = weight.shape[1], weight.shape[2]
        strides = (opts["StrideH"], opts["StrideW"])
        dilation = (opts.get("DilationHFactor", 1) or 1, opts.get("DilationWFactor", 1) or 1)
        padding = same_padding((h, w), (kh, kw), strides, dilation, opts["Padding"])
        depthwise = op.opcode == "DEPTHWISE_CONV_2D"
        # Converters have written DepthMultiplier inconsistently; the shapes are authoritative.
        multiplier = weight.shape[3] // cin if depthwise else 1
        params = Conv2DParams(x_t.shape, weight.shape, strides, padding, dilation, in_zp, out_zp,
                              act_min, act_max, multiplier, depthwise)
        o = params.out_channels
        if tuple(out_t.shape) != params.output_shape:
            raise ModelError(f"{where}: output shape {out_t.shape} != computed {params.output_shape}")
    mult, shift = conv_output_multipliers(x_t.scale, w_t.scale, out_t.scale)
    bias = np.zeros(o, dtype=np.int32) if b_t is None else np.asarray(b_t.data, dtype=np.int32).reshape(o)
    return QuantizedLayer(op.opcode, params, weight, bias, _per_channel(mult, o, np.int32),
                          _per_channel(shift, o, np.int32), b_t is not None)
