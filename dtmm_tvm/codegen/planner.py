"""Liveness-based packing of activations and kernel scratch into one static arena.

The AOT runner calls kernels in a fixed order, so every arena tensor has a known lifetime: the
index of the call that defines it and the index of the last call that reads it (inclusive).
Two tensors may share bytes only if their lifetimes are disjoint. :func:`plan_arena` places
buffers greedily, largest first, each at the best-fitting gap (the smallest free interval that
holds it) left between the already placed buffers whose lifetimes overlap its own. This is the
"greedy by size" strategy of TFLM's and TVM's static memory planners; it is not optimal (the
problem is NP-hard) but within a few percent on CNN chains.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ArenaPlan", "BufferRequest", "Placement", "plan_arena", "validate_plan", "ALIGNMENT"]

#: Byte alignment of every buffer offset and of the arena size (covers int64/double and lets
#: kernels use 32-bit SIMD loads such as Cortex-M's SMLAD on any buffer).
ALIGNMENT = 16


def _align(n: int, alignment: int) -> int:
    return (n + alignment - 1) // alignment * alignment


@dataclass(frozen=True)
class BufferRequest:
    """A buffer that needs arena space.

    Attributes
    ----------
    name : str
        Unique name (reported in metadata).
    bytes : int
        Size in bytes (>= 0).
    first_use : int
        Index of the call that defines (writes) it.
    last_use : int
        Index of the last call that reads it, inclusive (>= ``first_use``).
    """

    name: str
    bytes: int
    first_use: int
    last_use: int

    def overlaps_in_time(self, other: "BufferRequest | Placement") -> bool:
        """Whether both buffers are live at some call index (inclusive intervals)."""
        return self.first_use <= other.last_use and other.first_use <= self.last_use


@dataclass(frozen=True)
class Placement:
    """A placed buffer: a request plus its byte offset in the arena."""

    name: str
    offset: int
    bytes: int
    first_use: int
    last_use: int

    @property
    def end(self) -> int:
        """One past the last byte."""
        return self.offset + self.bytes

    def to_json(self) -> dict:
        """The metadata.json form (``arena.buffers[i]``)."""
        return {
            "name": self.name,
            "offset": self.offset,
            "bytes": self.bytes,
            "first_use": self.first_use,
            "last_use": self.last_use,
        }


@dataclass(frozen=True)
class ArenaPlan:
    """The result of planning.

    Attributes
    ----------
    bytes : int
        Arena size, a multiple of the alignment (0 if there is nothing to place).
    buffers : list of Placement
        One per request, in request order.
    alignment : int
        Alignment of every offset.
    """

    bytes: int
    buffers: list
    alignment: int = ALIGNMENT

    def offset_of(self, name: str) -> int:
        """Offset of the buffer called ``name``."""
        for p in self.buffers:
            if p.name == name:
                return p.offset
        raise KeyError(name)

    @property
    def total_buffer_bytes(self) -> int:
        """Sum of all buffer sizes: what the arena would need without reuse."""
        return sum(p.bytes for p in self.buffers)


def plan_arena(requests: list, alignment: int = ALIGNMENT) -> ArenaPlan:
    """Pack buffers into one arena so that buffers live at the same time never share bytes.

    Parameters
    ----------
    requests : list of BufferRequest
        Buffers with sizes and inclusive lifetimes ``[first_use, last_use]``. Names must be
        unique.
    alignment : int
        Every offset is a multiple of this (a power of two).

    Returns
    -------
    ArenaPlan
        Offsets in request order and the arena size.

    Raises
    ------
    ValueError
        Duplicate names, negative sizes, inverted lifetimes or a bad alignment (these are
        programming errors of the caller, not user errors).
    """
    if alignment <= 0 or alignment & (alignment - 1):
        raise ValueError(f"alignment must be a power of two, got {alignment}")
    names = set()
    for r in requests:
        if r.name in names:
            raise ValueError(f"duplicate buffer name {r.name!r}")
        names.add(r.name)
        if r.bytes < 0:
            raise ValueError(f"buffer {r.name!r} has negative size {r.bytes}")
        if r.first_use > r.last_use:
            raise ValueError(f"buffer {r.name!r}: first_use {r.first_use} > last_use {r.last_use}")

    # Largest first; ties by earlier definition, then name, so plans are deterministic.
    order = sorted(range(len(requests)), key=lambda i: (-requests[i].bytes, requests[i].first_use,
                                                        requests[i].name))
    placed: list[Placement] = []
    result: dict[int, Placement] = {}
    for i in order:
        req = requests[i]
        if req.bytes == 0:
            # Zero-sized buffers occupy nothing; offset 0 keeps the pointer inside the arena.
            result[i] = Placement(req.name, 0, 0, req.first_use, req.last_use)
            continue
        conflicts = sorted(
            (p for p in placed if p.bytes > 0 and req.overlaps_in_time(p)), key=lambda p: p.offset
        )
        best_offset, best_gap = None, None
        cursor = 0
        for p in conflicts:
            start = _align(cursor, alignment)
            gap = p.offset - start
            if gap >= req.bytes and (best_gap is None or gap < best_gap):
                best_offset, best_gap = start, gap
            cursor = max(cursor, p.end)
        if best_offset is None:
            best_offset = _align(cursor, alignment)  # the open-ended gap above all conflicts
        placement = Placement(req.name, best_offset, req.bytes, req.first_use, req.last_use)
        placed.append(placement)
        result[i] = placement

    buffers = [result[i] for i in range(len(requests))]
    top = max((p.end for p in buffers), default=0)
    plan = ArenaPlan(bytes=_align(top, alignment), buffers=buffers, alignment=alignment)
    validate_plan(plan)
    return plan


def validate_plan(plan: ArenaPlan) -> None:
    """Check that no two buffers with overlapping lifetimes overlap in memory.

    Raises
    ------
    ValueError
        On the first violation (misaligned offset, a buffer past the arena end, or two live
        buffers sharing bytes).
    """
    bufs = plan.buffers
    for p in bufs:
        if p.offset % plan.alignment:
            raise ValueError(f"buffer {p.name!r} offset {p.offset} is not {plan.alignment}-aligned")
        if p.end > plan.bytes:
            raise ValueError(f"buffer {p.name!r} ends at {p.end}, past the arena ({plan.bytes} B)")
    for a_i, a in enumerate(bufs):
        for b in bufs[a_i + 1:]:
            live_together = a.first_use <= b.last_use and b.first_use <= a.last_use
            share_bytes = a.offset < b.end and b.offset < a.end and a.bytes and b.bytes
            if live_together and share_bytes:
                raise ValueError(
                    f"buffers {a.name!r} [{a.offset}, {a.end}) and {b.name!r} [{b.offset}, {b.end})"
                    " are live at the same time and overlap"
                )
