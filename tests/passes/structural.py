"""Shared by the pass tests: compare rewritten modules without the layer metadata attributes."""

import tvm


def strip_layer_attrs(mod):
    """``mod`` with every PrimFunc's ``dtmm.layer`` / ``dtmm.params`` attributes removed (in place)."""
    for gv, f in list(mod.functions_items()):
        if isinstance(f, tvm.tirx.PrimFunc):
            mod[gv] = f.without_attr("dtmm.layer").without_attr("dtmm.params")
    return mod
