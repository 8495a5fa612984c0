"""``dtmm report ARTIFACT [--compare OTHER] [--profile PROFILE.json] -o report.html``."""

from __future__ import annotations


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("report", help="write one self-contained HTML page with plots about an archive")
    parser.add_argument("artifact", help="the archive written by 'dtmm compile'")
    parser.add_argument("--compare", default=None, metavar="OTHER",
                        help="a second archive to compare with (e.g. the --dense build)")
    parser.add_argument("--profile", default=None, metavar="PROFILE.json",
                        help="per-layer instructions from 'dtmm run --profile --profile-json'")
    parser.add_argument("-o", "--output", required=True, help="the HTML file to write")
    parser.add_argument("--force", action="store_true", help="replace OUTPUT if it exists")
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")
    parser.set_defaults(handler=run)


def run(args) -> int:
    from ..progress import StageBar
    from ..report import write_report

    with StageBar("report", ["read", "render", "write"], disable=getattr(args, "quiet", False)) as bar:
        write_report(args.artifact, args.output, compare=args.compare, profile=args.profile, force=args.force,
                     progress=bar.stage)
    print(f"wrote {args.output}")
    return 0
