"""Progress on stderr, never on stdout (which carries ``--json`` and the results).

On a terminal: a tqdm bar. Not on a terminal (a pipe, a log, CI): long searches (``tune``,
``prune``, ``fit-cost-model``) print one plain line per step; the short commands (``compile``,
``run``, ``report``, ``micro build|run``) print nothing, so a script sees only results and at most
one error line, unless ``DTMM_PROGRESS=1`` asks for their lines too. ``--quiet`` or
``DTMM_PROGRESS=0`` turns every kind off.
"""

from __future__ import annotations

import os
import sys
import time


class _Lines:
    """One line per step on stderr (no terminal, or tqdm missing)."""

    def __init__(self, total, desc, disable, mininterval=0.0):
        self.total, self.desc, self.disable, self.n, self.post = total, desc, disable, 0, ""
        self.mininterval, self._last = mininterval, None

    def update(self, n=1):
        self.n += n
        now = time.monotonic()
        due = self._last is None or now - self._last >= self.mininterval or self.n == self.total
        if not self.disable and n and due:
            self._last = now
            of = f"/{self.total}" if self.total else ""
            post = f" {self.post}" if self.post else ""
            print(f"{self.desc} [{self.n}{of}]{post}", file=sys.stderr, flush=True)

    def set_postfix_str(self, text):
        self.post = text

    def set_description(self, desc):
        self.desc = desc

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _on_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def progress_bar(total=None, desc="", disable=False, leave=True, mininterval=0.0, log=True):
    """A bar with tqdm's interface subset ``update``, ``set_description``, ``set_postfix_str``,
    ``close`` (and a context manager).

    Without a terminal: plain lines when ``log`` (or ``DTMM_PROGRESS=1``), at least
    ``mininterval`` seconds apart (the last step always gets its line); else nothing.
    """
    wanted = os.environ.get("DTMM_PROGRESS", "")
    disable = disable or wanted == "0"
    if disable or not _on_terminal():
        return _Lines(total, desc, disable or not (log or wanted == "1"), mininterval)
    try:
        from tqdm import tqdm
    except ImportError:
        return _Lines(total, desc, disable, mininterval)
    return tqdm(total=total, desc=desc, disable=disable, leave=leave, file=sys.stderr, dynamic_ncols=True)


class RunProgress:
    """``build`` then ``run`` stages of a board run, with a bar over the inferences when there
    are several: the ``progress(stage, done, total)`` callback of
    :func:`dtmm_tvm.micro.run_artifact`."""

    def __init__(self, command: str, inferences: int, disable=False):
        self.stages = StageBar(command, ["build", "run"], disable=disable)
        self.command, self.inferences, self.disable, self._bar = command, inferences, disable, None

    def __call__(self, stage, done=None, total=None):
        if stage == "build" or (stage == "run" and self.stages._current != "run"):
            self.stages.stage(stage)
            if stage == "run" and self.inferences > 1:
                self._bar = progress_bar(self.inferences, f"{self.command}: inferences", self.disable,
                                         leave=False, mininterval=2.0, log=False)
        if stage == "run" and done and self._bar is not None:
            self._bar.update(done - self._bar.n)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *exc):
        if self._bar is not None:
            self._bar.close()
        self.stages.__exit__(exc_type, *exc)


class StageBar:
    """Named stages of one command (``compile: import -> passes -> codegen -> archive``).

    ``stage(name)`` closes the previous stage (with its wall time) and starts ``name``; the bar
    counts finished stages. A stage not in ``stages`` is appended (e.g. ``verify``).
    """

    def __init__(self, command: str, stages, disable=False):
        self.command, self.stages, self.disable = command, list(stages), disable
        self._bar = progress_bar(total=len(self.stages), desc=command, disable=disable, log=False)
        self._current, self._t0 = None, 0.0

    def stage(self, name: str) -> None:
        self._finish()
        if name not in self.stages:
            self.stages.append(name)
            if hasattr(self._bar, "total"):
                self._bar.total = len(self.stages)
        self._current, self._t0 = name, time.monotonic()
        self._bar.set_description(f"{self.command}: {name}")
        if hasattr(self._bar, "refresh") and not getattr(self._bar, "disable", True):
            self._bar.refresh()

    def _finish(self) -> None:
        if self._current is not None:
            self._bar.set_postfix_str(f"{time.monotonic() - self._t0:.1f} s")
            self._bar.update(1)
            self._current = None

    def close(self) -> None:
        """End the last stage (a failed command leaves it unfinished on purpose)."""
        self._finish()
        self._bar.close()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *exc):
        if exc_type is None:
            self._finish()
        self._bar.close()
