"""Target tags ``dtmm/cortex-m4``, ``dtmm/cortex-m7``, ``dtmm/cortex-m55``.

TVM 0.27 cannot register a new target kind from Python, so a dtmm target is kind ``c`` with the
custom key ``dtmm``; TVM derives ``feature.has_dsp`` / ``feature.has_mve`` from ``mcpu``, and the
micro-kernel choice reads those features.
"""

from __future__ import annotations

import tvm
from tvm.target import Target

from .errors import DTMMError

TARGET_TAGS = {
    "dtmm/cortex-m4": {"kind": "c", "keys": ["dtmm", "arm_cpu", "cpu"], "mcpu": "cortex-m4"},
    "dtmm/cortex-m7": {"kind": "c", "keys": ["dtmm", "arm_cpu", "cpu"], "mcpu": "cortex-m7"},
    "dtmm/cortex-m55": {"kind": "c", "keys": ["dtmm", "arm_cpu", "cpu"], "mcpu": "cortex-m55"},
}

# The emulated board each target runs on by default.
DEFAULT_BOARD = {
    "dtmm/cortex-m4": "mps2-an386",
    "dtmm/cortex-m7": "mps2-an500",
    "dtmm/cortex-m55": "mps3-an547",
}


def _register_tags() -> None:
    for tag, config in TARGET_TAGS.items():
        try:
            tvm.target.tag.register_tag(tag, config)
        except Exception:  # already registered by an earlier import in this process
            pass


_register_tags()


def resolve_target(name: str) -> Target:
    """A registered dtmm tag (``dtmm/cortex-m4``) or the short form ``cortex-m4`` / ``dtmm``."""
    if name == "dtmm":
        name = "dtmm/cortex-m4"
    if not name.startswith("dtmm/"):
        name = f"dtmm/{name}"
    if name not in TARGET_TAGS:
        raise DTMMError(f"unknown target '{name}'; choose one of: {', '.join(TARGET_TAGS)}")
    return Target(TARGET_TAGS[name])


def target_tag(target: Target) -> str:
    """The dtmm tag a Target was made from."""
    mcpu = str(target.attrs.get("mcpu", "cortex-m4"))
    return f"dtmm/{mcpu}"
