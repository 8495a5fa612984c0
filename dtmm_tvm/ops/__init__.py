"""TIR kernel builders, one op per file; each returns a PrimFunc in destination-passing style."""
