"""Filterlet analysis and compact weight storage."""

from .filterlet import FilterletStats, analyze_filterlets, kept_filterlet_mask
from .storage import PackedFilterlets, pack_filterlets, storage_report

__all__ = [
    "FilterletStats",
    "PackedFilterlets",
    "analyze_filterlets",
    "kept_filterlet_mask",
    "pack_filterlets",
    "storage_report",
]
