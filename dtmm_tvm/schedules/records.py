"""Tuning records: the best measured schedule per layer, and the dispatch context that applies them.

Like autotvm's ``ApplyHistoryBest``: inside ``with apply_records(records):`` every kernel builder
called with ``schedule=None`` asks :func:`lookup_schedule` first and falls back to its per-target
default when the records have nothing for that layer (or were tuned for another target).

A layer is identified by its operator and its static parameters only (``Conv2DParams`` /
``FullyConnectedParams``, plus ``kept_filterlets`` for the filterlet-sparse conv), hashed from
their canonical JSON: the same layer in another model reuses the record, a changed layer
misses it and gets the default. Schema ``dtmm-tuning/1`` (see :meth:`TuningRecords.to_json`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import threading
from contextlib import contextmanager
from pathlib import Path

from ..errors import DTMMError
from .conv import ConvSchedule
from .depthwise import DepthwiseSchedule
from .fully_connected import FullyConnectedSchedule

SCHEMA = "dtmm-tuning/1"

#: Operators whose builders consult the records, with the schedule class each one takes.
TUNABLE_OPS = {
    "conv2d": "ConvSchedule",
    "conv2d_filterlet": "ConvSchedule",
    "conv2d_compact": "ConvSchedule",
    "depthwise_conv2d": "DepthwiseSchedule",
    "fully_connected": "FullyConnectedSchedule",
}


class TuningRecordsError(DTMMError):
    """A tuning records file is unreadable, invalid, or does not match the compilation."""


def schedule_classes() -> dict:
    """Schedule dataclass name -> class."""
    return {c.__name__: c for c in (ConvSchedule, DepthwiseSchedule, FullyConnectedSchedule)}


def _jsonable(value):
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if hasattr(value, "item") and not isinstance(value, (int, float, bool, str)):
        return value.item()  # numpy scalars
    return value


def params_json(params) -> dict:
    """The static parameters of a layer as plain JSON (a dataclass or an already-parsed dict)."""
    raw = dataclasses.asdict(params) if dataclasses.is_dataclass(params) else dict(params)
    if raw.get("requantization") == "tflite":
        del raw["requantization"]  # the default: keys of TFLite layers stay what they were
    return _jsonable(raw)


def layer_key(op: str, params, **extra) -> str:
    """``"<op>/<16 hex digits>"``: a stable hash of the op's static parameters (and ``extra``,
    e.g. ``kept_filterlets``), independent of field order and of Python's hash seed."""
    canonical = {"op": op, "params": params_json(params), **({"extra": _jsonable(extra)} if extra else {})}
    digest = hashlib.sha256(json.dumps(canonical, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    return f"{op}/{digest[:16]}"


def schedule_to_json(schedule) -> dict:
    """``{"type": "ConvSchedule", "fields": {...}}``."""
    return {"type": type(schedule).__name__, "fields": _jsonable(dataclasses.asdict(schedule))}


def schedule_from_json(data, where: str = "schedule"):
    """Inverse of :func:`schedule_to_json`; raises :class:`TuningRecordsError` naming ``where``."""
    if not isinstance(data, dict) or not isinstance(data.get("type"), str) or not isinstance(data.get("fields"), dict):
        raise TuningRecordsError(f"{where}: expected {{\"type\": ..., \"fields\": {{...}}}}, got {data!r}")
    classes = schedule_classes()
    cls = classes.get(data["type"])
    if cls is None:
        raise TuningRecordsError(f"{where}: unknown schedule type {data['type']!r}; known: {', '.join(classes)}")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data["fields"]) - known
    if unknown:
        raise TuningRecordsError(f"{where}: {data['type']} has no field(s) {sorted(unknown)}")
    try:
        return cls(**data["fields"])
    except (TypeError, ValueError) as err:
        raise TuningRecordsError(f"{where}: invalid {data['type']}: {err}") from None


def schedule_str(schedule) -> str:
    """Compact form for progress lines and metadata: every knob (``micro_kernel`` only when off)."""
    cls = type(schedule)
    knobs = [f"{f.name}={getattr(schedule, f.name)}" for f in dataclasses.fields(cls)
             if not (f.name == "micro_kernel" and getattr(schedule, f.name))]
    return f"{cls.__name__}({', '.join(knobs)})"


class TuningRecords:
    """Tuning results of one model (or several) for one target and board.

    Attributes
    ----------
    target : str
        dtmm target tag (``dtmm/cortex-m4``); records apply only to that target.
    board : str
        Board the instruction counts were measured on.
    layers : dict
        Layer key (:func:`layer_key`) -> entry; see :meth:`to_json` for the entry's fields.
    source : str or None
        File the records were read from (for messages).
    """

    def __init__(self, target: str, board: str, layers: dict | None = None, info: dict | None = None,
                 source: str | None = None):
        self.target = target
        self.board = board
        self.layers = dict(layers or {})
        self.info = dict(info or {})
        self.source = source

    # -- queries -------------------------------------------------------------------------
    def best(self, key: str):
        """The best schedule object recorded for ``key``, or None."""
        entry = self.layers.get(key)
        if not entry or not entry.get("best"):
            return None
        return schedule_from_json(entry["best"]["schedule"], f"{self.source or 'records'}: layer {key}")

    # -- (de)serialization ---------------------------------------------------------------
    def to_json(self) -> dict:
        """The file contents::

            {"schema": "dtmm-tuning/1", "target": "dtmm/cortex-m4", "board": "mps2-an386",
             "info": {"model": ..., "trials": N, "seed": S, ...},
             "layers": {"<op>/<hash>": {
                 "op": "conv2d", "layers": ["conv2d_0"], "params": {...}, "extra": {...},
                 "space_size": 17,
                 "default": {"schedule": {"type": "ConvSchedule", "fields": {...}}, "instructions": 1234},
                 "best":    {"schedule": {...}, "instructions": 1100},
                 "candidates": [{"schedule": {...}, "instructions": 1234, "error": null}, ...]}}}

        ``best`` is the fewest-instruction candidate whose outputs equal the default's (ties go
        to the default); a candidate with an ``error`` (different outputs, build or run failure)
        is never chosen.
        """
        return {"schema": SCHEMA, "target": self.target, "board": self.board, "info": self.info,
                "layers": self.layers}

    def save(self, path: str | os.PathLike, force: bool = True) -> None:
        path = Path(path)
        if path.exists() and not force:
            from ..errors import OutputExistsError

            raise OutputExistsError(f"{path}: exists; pass --force to replace it")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.part")
        tmp.write_text(json.dumps(self.to_json(), indent=2) + "\n")
        os.replace(tmp, path)

    @classmethod
    def from_json(cls, data, source: str = "records") -> "TuningRecords":
        """Validate and load; every problem is a :class:`TuningRecordsError` naming ``source``."""
        if not isinstance(data, dict):
            raise TuningRecordsError(f"{source}: not a tuning records file (expected a JSON object)")
        if data.get("schema") != SCHEMA:
            raise TuningRecordsError(f"{source}: unsupported schema {data.get('schema')!r}; expected {SCHEMA!r}")
        for field in ("target", "board"):
            if not isinstance(data.get(field), str):
                raise TuningRecordsError(f"{source}: missing or invalid {field!r}")
        layers = data.get("layers")
        if not isinstance(layers, dict):
            raise TuningRecordsError(f"{source}: 'layers' must be an object keyed by layer key")
        for key, entry in layers.items():
            where = f"{source}: layer {key}"
            if not isinstance(entry, dict) or entry.get("op") not in TUNABLE_OPS:
                raise TuningRecordsError(f"{where}: missing or unknown 'op' (one of {', '.join(TUNABLE_OPS)})")
            if not key.startswith(entry["op"] + "/"):
                raise TuningRecordsError(f"{where}: key does not start with its op {entry['op']!r}")
            best = entry.get("best")
            if best is not None:
                if not isinstance(best, dict) or not isinstance(best.get("instructions"), int):
                    raise TuningRecordsError(f"{where}: 'best' needs 'schedule' and integer 'instructions'")
                schedule = schedule_from_json(best.get("schedule"), f"{where}: best")
                expected = TUNABLE_OPS[entry["op"]]
                if type(schedule).__name__ != expected:
                    raise TuningRecordsError(f"{where}: best schedule is a {type(schedule).__name__}, "
                                             f"op {entry['op']} takes a {expected}")
        return cls(data["target"], data["board"], layers, data.get("info") or {}, source=source)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "TuningRecords":
        path = Path(path)
        try:
            text = path.read_text()
        except FileNotFoundError:
            raise TuningRecordsError(f"{path}: no such tuning records file") from None
        except (OSError, UnicodeDecodeError) as err:
            raise TuningRecordsError(f"{path}: cannot read tuning records: {err}") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise TuningRecordsError(f"{path}: not valid JSON ({err})") from None
        return cls.from_json(data, source=str(path))


# -- dispatch context (like autotvm's DispatchContext) ---------------------------------------
class _Context:
    def __init__(self, records: TuningRecords | None):
        self.records = records
        self.hits: dict[str, object] = {}  # layer key -> schedule used


_local = threading.local()


def _stack() -> list:
    if not hasattr(_local, "stack"):
        _local.stack = []
    return _local.stack


@contextmanager
def apply_records(records: TuningRecords | str | os.PathLike | None):
    """Make the kernel builders use ``records``' best schedules (``None``: use the defaults,
    also inside an outer ``apply_records``). Yields a context whose ``hits`` maps every layer key
    that got a tuned schedule to that schedule."""
    if records is not None and not isinstance(records, TuningRecords):
        records = TuningRecords.load(records)
    ctx = _Context(records)
    _stack().append(ctx)
    try:
        yield ctx
    finally:
        _stack().pop()


def current_records() -> TuningRecords | None:
    stack = _stack()
    return stack[-1].records if stack else None


def lookup_schedule(op: str, params, target=None, **extra):
    """The tuned schedule of one layer, or None (then the builder uses its default).

    Called by the kernel builders when ``schedule is None``. Returns None outside
    :func:`apply_records`, for a target other than the records' (or a non-C target), and for a
    layer the records do not have.
    """
    stack = _stack()
    if not stack or stack[-1].records is None:
        return None
    ctx = stack[-1]
    if target is None:
        import tvm

        target = tvm.target.Target.current(allow_none=True)
    if target is None or str(target.kind.name) != "c":
        return None
    from ..target import target_tag

    if target_tag(target) != ctx.records.target:
        return None
    key = layer_key(op, params, **extra)
    schedule = ctx.records.best(key)
    if schedule is not None:
        ctx.hits[key] = schedule
    return schedule
