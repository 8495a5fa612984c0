"""Filterlet analysis and compact weight storage."""

from .filterlet import FilterletStats, analyze_filterlets, kept_filterlet_mask
from .storage import (FORMATS, PackedFilterlets, PackedFilterletsBitmask, PackedFilterletsU8, PackedUnstructured,
                      UNSTRUCTURED, choose_format,
                      pack_filterlets, pack_filterlets_as, storage_report)

__all__ = [
    "FORMATS",
    "FilterletStats",
    "PackedFilterletsBitmask",
    "PackedFilterletsU8",
    "PackedUnstructured",
    "UNSTRUCTURED",
    "choose_format",
    "pack_filterlets_as",
    "PackedFilterlets",
    "analyze_filterlets",
    "kept_filterlet_mask",
    "pack_filterlets",
    "storage_report",
]
