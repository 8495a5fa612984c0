"""``dtmm micro create-project|build|flash|run``: the old ``tvmc micro`` verbs, through the
Project API (the template's server as its own process, JSON-RPC over pipes, the board's UART as
transport)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from ..errors import OutputExistsError


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("micro", help="generate, build, flash and run a project through the Project API")
    verbs = parser.add_subparsers(dest="verb", required=True)
    create = verbs.add_parser("create-project", help="generate a project from an archive and the template")
    create.add_argument("project_dir", help="the directory to create (must not exist or be empty)")
    create.add_argument("artifact", help="the archive written by 'dtmm compile' (or a Model Library Format tar)")
    create.add_argument("--board", required=True, help="board to generate for (e.g. mps2-an386)")
    create.add_argument("--template", default=None, help="project template directory (default: the bundled QEMU one)")
    create.add_argument("--extra-cflags", default="", help="extra C compiler flags for model and harness")
    create.add_argument("--profile", action="store_true", help="build with a timer read around every operator")
    create.add_argument("--force", action="store_true", help="replace PROJECT_DIR if it is a generated project")
    build = verbs.add_parser("build", help="compile and link a generated project")
    build.add_argument("project_dir")
    build.add_argument("--quiet", action="store_true", help="no progress on stderr")
    flash = verbs.add_parser("flash", help="program the board (QEMU: check the image it loads)")
    flash.add_argument("project_dir")
    run = verbs.add_parser("run", help="run inferences over the board's transport and measure them")
    run.add_argument("project_dir")
    run.add_argument("--inputs", required=True, help=".npy with N inputs stacked on a new first axis")
    run.add_argument("--outputs", default=None, help=".npy to write the N outputs to")
    run.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for each reply from the board")
    run.add_argument("--json", action="store_true", help="print the measurement record as one JSON object")
    run.add_argument("--force", action="store_true", help="replace OUTPUTS if it exists")
    run.add_argument("--quiet", action="store_true", help="no progress on stderr")
    parser.set_defaults(handler=main)


def _progress_bar(total: int, quiet: bool):
    """A bar over the inferences of a run of several (see dtmm_tvm.progress: a terminal gets a
    tqdm bar, a pipe nothing unless DTMM_PROGRESS=1), else None."""
    if total < 2:
        return None
    from ..progress import progress_bar

    return progress_bar(total, "micro run: inferences", disable=quiet, mininterval=2.0, log=False)


def main(args) -> int:
    from ..micro import session

    if args.verb == "create-project":
        cflags = (args.extra_cflags + (" -DDTMM_PROFILE" if args.profile else "")).strip()
        path = session.create_project(args.artifact, args.project_dir, args.board,
                                      options={"extra_cflags": cflags}, force=args.force,
                                      template=args.template)
        print(f"generated {path} for {args.board}")
    elif args.verb == "build":
        from ..progress import StageBar

        with StageBar("micro build", ["build"], disable=args.quiet) as bar:
            bar.stage("build")
            elf = session.build_project(args.project_dir, flash=False)
        print(f"built {elf}")
    elif args.verb == "flash":
        session.flash_project(args.project_dir)
        print(f"flashed {args.project_dir} (QEMU loads build/app.elf at run time)")
    else:
        from .run import load_inputs

        record = session.project_record(args.project_dir)
        if args.outputs and Path(args.outputs).exists() and not args.force:
            raise OutputExistsError(f"{args.outputs}: exists; pass --force to replace it")
        inputs = load_inputs(args.inputs, record["metadata"]["inputs"][0])
        bar = _progress_bar(len(inputs), getattr(args, "quiet", False))
        try:
            result = session.run_project(args.project_dir, inputs, timeout_s=args.timeout,
                                         progress=None if bar is None else lambda done, total: bar.update(1))
        finally:
            if bar is not None:
                bar.close()
        if args.outputs:
            out = Path(args.outputs)
            tmp = out.with_name(out.name + ".partial.npy")
            np.save(tmp, result.outputs)
            tmp.replace(out)
        rec = result.to_dict()
        if args.json:
            print(json.dumps(rec))
        else:
            print(f"{rec['board']}: {rec['inferences']} inference(s) over the transport, "
                  f"{rec['instructions']} instructions per inference, flash {rec['flash_bytes']} B, "
                  f"RAM {rec['ram_bytes']} B", file=sys.stdout)
    return 0
