"""``dtmm``: compile filterlet-pruned models for Cortex-M and run them on emulated boards.

Every subcommand module exposes ``add_parser(subparsers)`` and ``run(args) -> int``. A user error
(``DTMMError``) is printed as one line on stderr with exit status 2; nothing else is caught, so a
bug still shows its traceback.
"""

from __future__ import annotations

import argparse
import sys

from ..errors import DTMMError
from . import compile as compile_cmd
from . import inspect as inspect_cmd
from . import run as run_cmd
from . import tune as tune_cmd
from . import fit_cost_model as fit_cost_model_cmd
from . import prune as prune_cmd

SUBCOMMANDS = (compile_cmd, run_cmd, inspect_cmd, tune_cmd, fit_cost_model_cmd, prune_cmd)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dtmm", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", required=True)
    for module in SUBCOMMANDS:
        module.add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except DTMMError as err:
        print(f"dtmm {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"dtmm {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
