"""The figures budgets are checked on, read off compiled artifacts, and the search calibrated on them.

The cost model predicts; the artifact decides. :class:`ArtifactMeasurer` compiles an int8 model
for the target and reads its stored constants (flash), its arena (SRAM) and, on the target's
board under QEMU, one inference's instructions. Budgets given as fractions of the dense model
are resolved against the unpruned model compiled with ``--dense`` and measured the same way.

:func:`search_on_the_artifact` compiles the searched plan before fine-tuning (fine-tuning keeps
the plan's masks, so these are the final model's figures) and, where the artifact misses a budget
the cost model said it met, searches again with that budget scaled by predicted / measured.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from .search import Budget, BudgetError

#: Tightening on top of the predicted / measured scale, so a re-search lands inside the budget.
SLACK = 0.995


def quantize_input(tflite: bytes, x: np.ndarray) -> np.ndarray:
    """``x`` (float) quantized with the int8 model's input scale and zero point."""
    from ..frontend.tflite_reader import read_tflite

    g = read_tflite(tflite, name="model")
    t = g.tensor(g.inputs[0])
    return np.clip(np.round(x / float(t.scale[0])) + int(t.zero_point[0]), -128, 127).astype(np.int8)


class ArtifactMeasurer:
    """Compiles int8 models for ``target`` into one temporary directory (a context manager) and
    measures them; ``x1`` is one float input example (instructions do not depend on its values);
    ``dense``: the dense model's figures from an earlier measurer (not measured again)."""

    def __init__(self, target: str, x1: np.ndarray, dense_tflite: bytes | None = None,
                 fractions: tuple = (None, None), dense: dict | None = None):
        from ..target import DEFAULT_BOARD, resolve_target, target_tag

        self.tag = target_tag(resolve_target(target))
        self.board = DEFAULT_BOARD[self.tag]
        self.x1 = x1[:1]
        self.dense_tflite = dense_tflite
        self.fractions = fractions
        self.dense: dict = dict(dense or {})   # the dense model's figures, measured once
        self._tmp = None
        self._count = 0

    def __enter__(self):
        self._tmp = tempfile.TemporaryDirectory(prefix="dtmm-measure-")
        return self

    def __exit__(self, *exc):
        self._tmp.cleanup()

    def compile(self, tflite: bytes, mode: str = "dtmm") -> tuple:
        """``(metadata, artifact path)`` of ``tflite`` compiled for the target."""
        from ..compiler import compile_model

        self._count += 1
        directory = Path(self._tmp.name)
        model = directory / f"m{self._count}.tflite"
        model.write_bytes(tflite)
        art = directory / f"m{self._count}.tar"
        return compile_model(model, art, target=self.tag, mode=mode), art

    def run(self, art: Path, metadata: dict, inputs: np.ndarray, **kwargs):
        from ..micro import run_artifact

        spec = metadata["inputs"][0]
        return run_artifact(art, self.board, inputs.reshape((len(inputs),) + tuple(spec["shape"])),
                            timeout_s=3600, **kwargs)

    def figures(self, tflite: bytes, instructions: bool, mode: str = "dtmm") -> dict:
        """``constants_bytes``, ``arena_bytes`` and (``instructions``) one inference's instructions."""
        metadata, art = self.compile(tflite, mode)
        out = {"constants_bytes": int(metadata["constants_bytes"]), "arena_bytes": int(metadata["arena"]["bytes"])}
        if instructions:
            out["instructions"] = int(self.run(art, metadata, quantize_input(tflite, self.x1)).instructions)
        return out

    def checked_budget(self, budget: Budget) -> Budget:
        """``budget`` (resolved on the cost model's dense figures) with its fractions re-resolved
        on the compiled dense model: flash at most the fraction of its stored constants,
        instructions the fraction of its measured instructions."""
        flash_fraction, instructions_fraction = self.fractions
        if self.dense_tflite is None or (flash_fraction is None and instructions_fraction is None):
            return budget
        if not self.dense:
            self.dense = {"dense_" + k: v for k, v in
                          self.figures(self.dense_tflite, instructions_fraction is not None, mode="dense").items()}
        flash, instructions = budget.flash_bytes, budget.instructions
        if flash_fraction is not None:
            limit = int(flash_fraction * self.dense["dense_constants_bytes"])
            flash = min(limit, flash or limit)
        if instructions_fraction is not None:
            instructions = int(instructions_fraction * self.dense["dense_instructions"])
        return Budget(flash, budget.sram_bytes, instructions)


def misses(budget: Budget, figures: dict) -> list:
    """The budgets ``figures`` (an artifact's) exceed, one phrase each."""
    bad = []
    if budget.flash_bytes is not None and figures["constants_bytes"] > budget.flash_bytes:
        bad.append(f"flash {figures['constants_bytes']} B > budget {budget.flash_bytes} B")
    if budget.sram_bytes is not None and figures["arena_bytes"] > budget.sram_bytes:
        bad.append(f"SRAM (arena) {figures['arena_bytes']} B > budget {budget.sram_bytes} B")
    if budget.instructions is not None and figures.get("instructions", 0) > budget.instructions:
        bad.append(f"{figures['instructions']} instructions > budget {budget.instructions}")
    return bad


def search_on_the_artifact(result, measure, checked: Budget, search, rounds: int, say=lambda e, i: None):
    """``(result, log)``: the search ``result`` whose plan's artifact meets ``checked``.

    ``measure(plan)`` gives the plan's artifact figures (:meth:`ArtifactMeasurer.figures`);
    ``search(budget)`` searches again. Each budget the artifact missed is scaled by the cost
    model's prediction over the measurement (and :data:`SLACK`); one that held is kept. After
    ``rounds`` compilations the last plan is returned as it is (the final check refuses it).
    """
    log = []
    for round_ in range(rounds):
        figures = measure(result.plan)
        predicted = {"constants_bytes": result.cost.flash_bytes, "arena_bytes": result.cost.sram_bytes,
                     "instructions": result.cost.instructions}
        bad = misses(checked, figures)
        log.append({"round": round_ + 1, "search_budget": {"flash_bytes": result.budget.flash_bytes,
                                                           "sram_bytes": result.budget.sram_bytes,
                                                           "instructions": result.budget.instructions},
                    "predicted": {k: predicted[k] for k in figures}, "measured": figures, "missed": bad})
        say("calibrate", {"round": round_ + 1, "missed": bad})
        if not bad or round_ + 1 == rounds:
            break

        def scaled(current, limit, key):
            if limit is None or figures[key] <= limit:
                return current
            return int(min(current, limit * predicted[key] / figures[key]) * SLACK)

        tighter = Budget(scaled(result.budget.flash_bytes, checked.flash_bytes, "constants_bytes"),
                         scaled(result.budget.sram_bytes, checked.sram_bytes, "arena_bytes"),
                         scaled(result.budget.instructions, checked.instructions, "instructions"))
        try:
            result = search(tighter)
        except BudgetError as err:
            raise BudgetError(f"the compiled plan missed its budget ({'; '.join(bad)}), and with the budget "
                              f"scaled to the cost model's error on it: {err}", smallest=err.smallest,
                              budget=err.budget) from None
    return result, log
