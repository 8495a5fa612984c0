"""DTMM for TVM: filterlet-pruned TinyML models compiled to fast, compact plain C for Cortex-M."""

__version__ = "0.1.0"
