"""Issue 9: pruning methods on the same compiler and boards (python -m bench.pruning)."""
