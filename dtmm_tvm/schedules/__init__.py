"""Kernel schedules: the knobs of each micro-kernel, their per-target defaults and search spaces,
and the tuned-schedule lookup the kernel builders consult.

Below :mod:`dtmm_tvm.ops` in the import order (ops import this package; :mod:`dtmm_tvm.tuning`
imports ops, schedules and the compiler; nothing here imports upward):

- :mod:`.conv` (:class:`ConvSchedule`), :mod:`.depthwise` (:class:`DepthwiseSchedule`),
  :mod:`.fully_connected` (:class:`FullyConnectedSchedule`);
- :mod:`.records`: :class:`TuningRecords` (schema ``dtmm-tuning/1``) and the dispatch context
  :func:`apply_records` / :func:`lookup_schedule` (like autotvm's ``ApplyHistoryBest``).
"""

from .conv import ConvSchedule
from .depthwise import DepthwiseSchedule
from .fully_connected import FullyConnectedSchedule
from .records import (
    SCHEMA,
    TUNABLE_OPS,
    TuningRecords,
    TuningRecordsError,
    apply_records,
    current_records,
    layer_key,
    lookup_schedule,
    params_json,
    schedule_classes,
    schedule_from_json,
    schedule_str,
    schedule_to_json,
)

__all__ = ["ConvSchedule", "DepthwiseSchedule", "FullyConnectedSchedule", "SCHEMA", "TUNABLE_OPS",
           "TuningRecords", "TuningRecordsError", "apply_records", "current_records", "layer_key",
           "lookup_schedule", "params_json", "schedule_classes", "schedule_from_json", "schedule_str",
           "schedule_to_json"]
