"""Model loading: validation with clear errors, then TVM's importers."""
