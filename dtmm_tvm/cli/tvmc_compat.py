"""tvmc's spellings for ``dtmm compile`` / ``dtmm run``: targets, pass configs, input shapes.

``--target "c -mcpu=cortex-m4"`` (how tvmc named a microcontroller target) maps to our tag
``dtmm/cortex-m4``; ``--pass-config name=value`` and ``--disabled-pass NAME`` become a TVM
``PassContext`` around the compile; ``--input-shapes "name:[1,28,28,1]"`` is checked against
the model (our models have static shapes: a different shape is refused, not silently ignored).
"""

from __future__ import annotations

import json
import re

from ..errors import DTMMError


def map_target(spec: str) -> str:
    """``dtmm/cortex-m4``, ``cortex-m4`` or tvmc's ``c -mcpu=cortex-m4 [-keys=...]`` -> a tag name."""
    spec = spec.strip()
    if not spec.startswith(("c ", "c\t")) and spec != "c":
        return spec
    options = dict(re.findall(r"(?:^|\s)-{1,2}([\w.][\w.-]*)=(\S+)", spec))
    mcpu = options.get("mcpu")
    if not mcpu:
        raise DTMMError(f"target {spec!r}: name the core with -mcpu (e.g. \"c -mcpu=cortex-m4\")")
    unknown = sorted(set(options) - {"mcpu", "keys", "march", "model", "mattr", "mfloat-abi"})
    if unknown:
        raise DTMMError(f"target {spec!r}: options {unknown} are not supported; dtmm targets take -mcpu")
    return f"dtmm/{mcpu}"


def _value(text: str):
    try:
        return json.loads(text)
    except ValueError:
        return {"true": True, "false": False}.get(text.lower(), text)


def pass_context(pass_config: list, disabled_pass: list):
    """The PassContext of ``--pass-config name=value`` (repeatable) and ``--disabled-pass A,B``."""
    import tvm

    config = {}
    for item in pass_config or []:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise DTMMError(f"--pass-config {item!r}: expected name=value (e.g. tir.disable_vectorize=true)")
        config[name.strip()] = _value(value.strip())
    disabled = [p.strip() for group in disabled_pass or [] for p in group.split(",") if p.strip()]
    try:
        return tvm.transform.PassContext(opt_level=3, config=config, disabled_pass=disabled)
    except Exception as err:  # TVM names the bad key or value
        first = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
        raise DTMMError(f"--pass-config: {first}") from None


def parse_input_shapes(text: str) -> dict:
    """tvmc's ``"name:[1,28,28,1] other:[1,10]"`` (or ``name:1x28x28x1``) -> {name: shape}."""
    shapes = {}
    for name, dims in re.findall(r"([^\s:]+(?::\d+)?):\s*(\[[^\]]*\]|[\dx]+)", text or ""):
        values = re.findall(r"-?\d+", dims)
        shapes[name] = tuple(int(v) for v in values)
    if text and not shapes:
        raise DTMMError(f"--input-shapes {text!r}: expected name:[d0,d1,...] per input")
    return shapes


def check_input_shapes(model_path: str, shapes: dict) -> None:
    """Refuse shapes that differ from the model's (its shapes are static)."""
    if not shapes:
        return
    from ..frontend.loader import load_model

    model = load_model(model_path)
    known = {spec.name: tuple(spec.shape) for spec in model.inputs}
    for name, shape in shapes.items():
        if name not in known:
            raise DTMMError(f"--input-shapes: {model_path} has no input {name!r}; inputs: {sorted(known)}")
        if tuple(shape) != known[name]:
            raise DTMMError(f"--input-shapes: input {name!r} of {model_path} has the static shape "
                            f"{list(known[name])}, not {list(shape)}; reshaping a model is not supported")
