"""Target tags ``dtmm/cortex-m4``, ``dtmm/cortex-m7``, ``dtmm/cortex-m55``, ``dtmm/cortex-m0plus``,
``dtmm/cortex-m3``, ``dtmm/cortex-m33``, ``dtmm/cortex-m85`` and ``dtmm/portable``.

Kernel paths: M0+ (ARMv6-M) and M3 the portable C, M4/M7/M33 DSP, M55/M85 MVE. QEMU 7.2 has no
Cortex-M0+ and no M85: ``dtmm/cortex-m0plus`` runs on ``microbit`` (nRF51, a Cortex-M0: the same
ARMv6-M instruction set), ``dtmm/cortex-m85`` on ``mps3-an547`` (Cortex-M55: the same Armv8.1-M
+ MVE instructions; gcc 12 has no ``-mcpu=cortex-m85``, gcc >= 13 has). Counts on those boards are
instructions of the same code, not the missing core's cycles.

TVM 0.27 cannot register a new target kind from Python, so a dtmm target is kind ``c`` with the
custom key ``dtmm``; TVM derives ``feature.has_dsp`` / ``feature.has_mve`` from ``mcpu``, and the
micro-kernel choice reads those features. ``dtmm/portable`` has no ``mcpu``: plain C kernels only,
for the host and any core.

An archive is specialized for its target's kernel ISA (:func:`dtmm_tvm.kernels.target_isa`:
``"mve"``, ``"dsp"`` or ``"c"``): scratch sizes, schedules
and folded biases are computed for that ISA's kernel path, so the archive records it and its C
refuses to build for a core without it (see :mod:`dtmm_tvm.codegen.isa_guard`).
"""

from __future__ import annotations

import tvm
from tvm.target import Target

from .errors import DTMMError

TARGET_TAGS = {
    "dtmm/cortex-m4": {"kind": "c", "keys": ["dtmm", "arm_cpu", "cpu"], "mcpu": "cortex-m4"},
    "dtmm/cortex-m7": {"kind": "c", "keys": ["dtmm", "arm_cpu", "cpu"], "mcpu": "cortex-m7"},
    "dtmm/cortex-m55": {"kind": "c", "keys": ["dtmm", "arm_cpu", "cpu"], "mcpu": "cortex-m55"},
    "dtmm/cortex-m0plus": {"kind": "c", "keys": ["dtmm", "arm_cpu", "cpu"], "mcpu": "cortex-m0plus"},
    "dtmm/cortex-m3": {"kind": "c", "keys": ["dtmm", "arm_cpu", "cpu"], "mcpu": "cortex-m3"},
    "dtmm/cortex-m33": {"kind": "c", "keys": ["dtmm", "arm_cpu", "cpu"], "mcpu": "cortex-m33"},
    "dtmm/cortex-m85": {"kind": "c", "keys": ["dtmm", "arm_cpu", "cpu"], "mcpu": "cortex-m85"},
    "dtmm/portable": {"kind": "c", "keys": ["dtmm", "cpu"]},
}

# The emulated board each target runs on by default.
DEFAULT_BOARD = {
    "dtmm/cortex-m4": "mps2-an386",
    "dtmm/cortex-m7": "mps2-an500",
    "dtmm/cortex-m55": "mps3-an547",
    "dtmm/cortex-m0plus": "microbit",
    "dtmm/cortex-m3": "mps2-an385",
    "dtmm/cortex-m33": "mps2-an505",
    "dtmm/cortex-m85": "mps3-an547",
    "dtmm/portable": "mps2-an386",
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
    """The dtmm tag a Target was made from (no ``mcpu``: ``dtmm/portable``)."""
    mcpu = target.attrs.get("mcpu")
    return f"dtmm/{mcpu}" if mcpu else "dtmm/portable"
