"""Tiny job functions for the runner tests (importable by Ray workers)."""


def square(x: int, fail: bool = False) -> dict:
    if fail:
        raise ValueError(f"job {x} was told to fail")
    return {"square": x * x}
