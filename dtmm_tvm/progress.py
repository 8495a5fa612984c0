"""A progress bar: tqdm's when it is installed (the ``[train]`` extra), else one line per step.

Used by ``dtmm fit-cost-model`` and ``dtmm prune``; always on stderr, never on stdout (which
carries ``--json``).
"""

from __future__ import annotations

import sys


class _Lines:
    def __init__(self, total, desc, disable):
        self.total, self.desc, self.disable, self.n, self.post = total, desc, disable, 0, ""

    def update(self, n=1):
        self.n += n
        if not self.disable:
            print(f"{self.desc}: {self.n}/{self.total} {self.post}", file=sys.stderr, flush=True)

    def set_postfix_str(self, text):
        self.post = text

    def set_description(self, desc):
        self.desc = desc

    def close(self):
        pass


def progress_bar(total=None, desc="", disable=False, leave=True):
    try:
        from tqdm import tqdm
    except ImportError:
        return _Lines(total, desc, disable)
    return tqdm(total=total, desc=desc, disable=disable, leave=leave, file=sys.stderr, dynamic_ncols=True)
