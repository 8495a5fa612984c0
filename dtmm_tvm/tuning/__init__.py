"""Per-layer schedule tuning, measured on the emulated boards (microTVM's ``autotune`` for dtmm).

- :func:`tune_model` (tuner): for each conv / depthwise / fully connected layer of a compiled
  model, build a one-layer artifact per candidate schedule (the op's ``schedule_space``), run it
  on a board and keep the candidate with the fewest instructions whose outputs equal the
  default schedule's. ``dtmm tune`` is its CLI.
- :class:`TuningRecords`, :func:`apply_records`, :func:`lookup_schedule` live in
  :mod:`dtmm_tvm.schedules` (below the ops, which consult them); import them from there.
  ``dtmm compile --tuning-records`` and ``compile_model(tuning_records=...)`` use them.

Import order: tuning -> compiler / ops -> schedules; nothing below imports this package.
"""


def tune_model(*args, **kwargs):
    """See :func:`dtmm_tvm.tuning.tuner.tune_model`."""
    from .tuner import tune_model as _tune_model

    return _tune_model(*args, **kwargs)


__all__ = ["tune_model"]
