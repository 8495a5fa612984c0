"""Project API server for the DTMM bare-metal QEMU project template.

In the spirit of microTVM's template projects (removed from TVM in 0.19): this file lives in the
template directory and is copied into every generated project. A :class:`Handler` declares its
options (:data:`PROJECT_OPTIONS`) and implements ``server_info_query``, ``generate_project``,
``build``, ``flash`` and ``run`` (the equivalent of ``open_transport`` for a run-to-completion
harness). The module only uses the standard library so that it keeps working when copied out of
the source tree.

Calls are in-process (``dtmm_tvm.micro.project`` imports this file). ``main()`` offers the same
calls as a small command line; the JSON-RPC-over-stdio transport of microTVM is not implemented.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

TEMPLATE_DIR = Path(__file__).resolve().parent
#: Files and dirs of the template copied into each generated project.
TEMPLATE_ENTRIES = ("microtvm_api_server.py", "Makefile", "boards.json", "src", "boards", "qemu_sandbox.py")
#: Written by generate_project; its presence is what makes a directory a generated project.
PROJECT_RECORD = "project.json"
MAX_ARTIFACT_BYTES = 256 * 1024 * 1024
INPUT_FILE = "dtmm_inputs.bin"
OUTPUT_FILE = "dtmm_outputs.bin"
C_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
#: Where the Debian packages of each tool come from, for error messages.
TOOL_PACKAGES = {
    "arm-none-eabi-gcc": "gcc-arm-none-eabi libnewlib-arm-none-eabi",
    "qemu-system-arm": "qemu-system-arm",
    "make": "make",
}


class ProjectError(Exception):
    """A failure of a Project API call.

    Parameters
    ----------
    kind : str
        ``"toolchain"`` (missing or failing compiler/emulator), ``"resource"`` (the program does
        not fit the board), ``"artifact"`` (malformed model artifact), ``"usage"`` (bad options
        or directories) or ``"run"`` (the harness reported an error).
    message : str
        What went wrong, naming the file, board or limit.
    """

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


@dataclass
class ProjectOption:
    """A declarative project option, as in microTVM's Project API.

    ``required``/``optional`` list the API calls that need or accept the option.
    """

    name: str
    type: str
    help: str
    default: Any = None
    choices: list | None = None
    required: list = field(default_factory=list)
    optional: list = field(default_factory=list)


@dataclass
class ServerInfo:
    """Answer of :meth:`Handler.server_info_query`."""

    platform_name: str
    is_template: bool
    model_library_format_path: str
    project_options: list


def load_boards(template_dir: Path = TEMPLATE_DIR) -> dict:
    """Read the template's board table (``boards.json``)."""
    with open(template_dir / "boards.json", encoding="utf-8") as f:
        return json.load(f)


PROJECT_OPTIONS = [
    ProjectOption("board", "str", "Board (QEMU machine) to build for.",
                  choices=sorted(load_boards()), required=["generate_project"]),
    ProjectOption("verbose", "bool", "Print the build and emulator commands and their output.",
                  default=False, optional=["build", "run"]),
    ProjectOption("opt_level", "str", "GCC optimisation flag for model and harness.",
                  default="-O2", choices=["-O0", "-O1", "-O2", "-O3", "-Os", "-Ofast"],
                  optional=["generate_project"]),
    ProjectOption("extra_cflags", "str", "Extra C compiler flags (space separated).",
                  default="", optional=["generate_project"]),
    ProjectOption("stack_bytes", "int", "Stack reserved at the top of RAM, in bytes.",
                  default=65536, optional=["generate_project"]),
    ProjectOption("jobs", "int", "Parallel make jobs.", default=2, optional=["build"]),
    ProjectOption("inputs_path", "str",
                  "Binary file of N input records (all inputs back to back, metadata order).",
                  required=["run"]),
    ProjectOption("icount_shift", "int",
                  "QEMU -icount shift: each instruction advances virtual time by 2**shift ns.",
                  default=7, optional=["run"]),
    ProjectOption("timeout_s", "float", "Wall-clock limit of one emulator run, seconds.",
                  default=120.0, optional=["run"]),
]


def _option(options: dict | None, name: str, call: str) -> Any:
    """Look an option up, applying the declared default and required-ness."""
    options = options or {}
    decl = next(o for o in PROJECT_OPTIONS if o.name == name)
    if name in options and options[name] is not None:
        value = options[name]
        if decl.choices is not None and value not in decl.choices:
            raise ProjectError("usage", f"option {name}={value!r} is not one of {decl.choices}")
        return value
    if call in decl.required:
        raise ProjectError("usage", f"option {name!r} is required by {call}")
    return decl.default


def _require_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise ProjectError(
            "toolchain",
            f"{name} not found on PATH; install it with "
            f"`apt-get install --no-install-recommends {TOOL_PACKAGES[name]}`")
    return path


def _safe_extract(tar: tarfile.TarFile, dest: Path, artifact: Path) -> None:
    """Extract regular files and dirs only, refusing paths that escape ``dest``.

    (``extractall(filter="data")`` does the same but needs Python >= 3.10.12 / 3.11.4.)
    """
    total = 0
    for member in tar.getmembers():
        total += member.size  # declared sizes: a small .tar.gz may declare gigabytes
        if member.size > MAX_ARTIFACT_BYTES or total > MAX_ARTIFACT_BYTES:
            raise ProjectError("artifact", f"{artifact}: archive unpacks to more than "
                                           f"{MAX_ARTIFACT_BYTES} bytes")
        target = (dest / member.name).resolve()
        if dest.resolve() not in target.parents and target != dest.resolve():
            raise ProjectError("artifact", f"{artifact}: archive member {member.name!r} "
                                           "points outside the archive")
        if not (member.isfile() or member.isdir()):
            raise ProjectError("artifact", f"{artifact}: archive member {member.name!r} is "
                                           "not a regular file or directory")
    tar.extractall(dest)


def _c_type(dtype: str) -> str:
    return {"int8": "int8_t", "uint8": "uint8_t", "int16": "int16_t", "int32": "int32_t",
            "float32": "float"}.get(dtype, "uint8_t")


class Handler:
    """Project API handler for one directory: the template itself or a generated project.

    Parameters
    ----------
    project_dir : str or Path, optional
        Directory the handler operates on. Defaults to the directory of this file, i.e. the
        template when used from the source tree, the project when used from a generated copy.
    """

    def __init__(self, project_dir: str | os.PathLike | None = None):
        self.project_dir = Path(project_dir).resolve() if project_dir else TEMPLATE_DIR

    # -- queries ---------------------------------------------------------------------------
    @property
    def is_template(self) -> bool:
        return not (self.project_dir / PROJECT_RECORD).exists()

    def server_info_query(self, tvm_version: str = "") -> ServerInfo:
        """Describe this server: platform, template or project, and the accepted options."""
        mlf = "" if self.is_template else str(self.project_dir / "model")
        return ServerInfo("dtmm_qemu_baremetal", self.is_template, mlf,
                          [asdict(o) for o in PROJECT_OPTIONS])

    def project_record(self) -> dict:
        """The record generate_project wrote (board, options, model metadata)."""
        if self.is_template:
            raise ProjectError("usage", f"{self.project_dir} is the template, not a generated "
                                        "project: call generate_project first")
        with open(self.project_dir / PROJECT_RECORD, encoding="utf-8") as f:
            return json.load(f)

    # -- generate_project ------------------------------------------------------------------
    def generate_project(self, model_library_format_path: str | os.PathLike,
                         project_dir: str | os.PathLike, options: dict) -> Path:
        """Create a buildable project from the template and a model artifact.

        Parameters
        ----------
        model_library_format_path : path
            The artifact: a ``.tar`` or a directory with ``metadata.json`` and
            ``codegen/host/{src,include}``.
        project_dir : path
            New directory for the project; must not exist or be empty, and must not be the
            template.
        options : dict
            ``board`` (required), ``opt_level``, ``extra_cflags``, ``stack_bytes``.

        Returns
        -------
        Path
            The project directory.
        """
        board_name = _option(options, "board", "generate_project")
        boards = load_boards(TEMPLATE_DIR)
        board = boards[board_name]
        stack_bytes = int(_option(options, "stack_bytes", "generate_project"))
        if stack_bytes < 1024 or stack_bytes % 8:
            raise ProjectError("usage", f"stack_bytes={stack_bytes} must be a multiple of 8 "
                                        "and at least 1024")
        project_dir = Path(project_dir).resolve()
        if project_dir == TEMPLATE_DIR or TEMPLATE_DIR in project_dir.parents:
            raise ProjectError("usage", f"refusing to generate a project inside the template "
                                        f"directory {TEMPLATE_DIR}")
        if project_dir.exists() and any(project_dir.iterdir()):
            raise ProjectError("usage", f"project directory {project_dir} exists and is not "
                                        "empty; nothing is overwritten")
        project_dir.mkdir(parents=True, exist_ok=True)

        for entry in TEMPLATE_ENTRIES:
            src = TEMPLATE_DIR / entry
            if src.is_dir():
                shutil.copytree(src, project_dir / entry,
                                ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy2(src, project_dir / entry)

        metadata = self._import_artifact(Path(model_library_format_path), project_dir / "model")
        (project_dir / "src" / "dtmm_model_glue.c").write_text(
            self._glue_source(metadata), encoding="utf-8")
        timer_define = {"cmsdk_timer0": "-DDTMM_TIMER_CMSDK",
                        "sse300_syscounter": "-DDTMM_TIMER_SSE300_CNT"}[board["timer"]]
        opt = _option(options, "opt_level", "generate_project")
        extra = _option(options, "extra_cflags", "generate_project")
        (project_dir / "board.mk").write_text(
            "# Generated by microtvm_api_server.py generate_project; do not edit.\n"
            f"BOARD := {board_name}\n"
            f"CPU_FLAGS := {' '.join(board['cpu_flags'])}\n"
            f"BOARD_DEFINES := {timer_define}\n"
            f"LDSCRIPT := {board['linker_script']}\n"
            f"STACK_SIZE := {stack_bytes}\n"
            f"OPT := {opt}\n"
            f"EXTRA_CFLAGS := {extra}\n", encoding="utf-8")
        record = {"board": board_name, "board_info": board, "stack_bytes": stack_bytes,
                  "opt_level": opt, "extra_cflags": extra,
                  "artifact": str(Path(model_library_format_path).resolve()),
                  "metadata": metadata}
        (project_dir / PROJECT_RECORD).write_text(json.dumps(record, indent=2), encoding="utf-8")
        return project_dir

    @staticmethod
    def _import_artifact(artifact: Path, model_dir: Path) -> dict:
        """Copy metadata.json and codegen/host/{src,include} of the artifact into model_dir."""
        if not artifact.exists():
            raise ProjectError("artifact", f"model artifact {artifact} does not exist")
        with tempfile.TemporaryDirectory(prefix="dtmm-artifact-") as tmp:
            root = artifact
            if artifact.exists() and not (artifact.is_file() or artifact.is_dir()):
                raise ProjectError("artifact", f"{artifact}: not a regular file or directory")
            if artifact.is_file():
                try:
                    with tarfile.open(artifact) as tar:
                        _safe_extract(tar, Path(tmp), artifact)
                except (tarfile.TarError, OSError) as e:
                    raise ProjectError("artifact", f"cannot read model artifact {artifact}: "
                                                   f"{e}") from e
                root = Path(tmp)
                # Accept archives with a single top-level directory as well.
                if not (root / "metadata.json").exists():
                    subdirs = [p for p in root.iterdir() if p.is_dir()]
                    if len(subdirs) == 1:
                        root = subdirs[0]
            for rel in ("metadata.json", "codegen/host/src", "codegen/host/include"):
                if not (root / rel).exists():
                    raise ProjectError("artifact", f"model artifact {artifact} has no {rel}")
            model_dir.mkdir(parents=True)
            shutil.copy2(root / "metadata.json", model_dir / "metadata.json")
            shutil.copytree(root / "codegen/host/src", model_dir / "src")
            shutil.copytree(root / "codegen/host/include", model_dir / "include")
        try:
            metadata = json.loads((model_dir / "metadata.json").read_text(encoding="utf-8"))
        except (ValueError, RecursionError) as e:
            raise ProjectError("artifact", f"{artifact}: metadata.json is not JSON: "
                                           f"{type(e).__name__}") from None
        if not (model_dir / "include" / "tvmgen_default.h").exists():
            raise ProjectError("artifact", f"model artifact {artifact} has no "
                                           "codegen/host/include/tvmgen_default.h")
        if not list((model_dir / "src").glob("*.c")):
            raise ProjectError("artifact", f"model artifact {artifact} has no C sources in "
                                           "codegen/host/src")
        for kind in ("inputs", "outputs"):
            tensors = metadata.get(kind)
            if not isinstance(tensors, list) or not tensors:
                raise ProjectError("artifact", f"{artifact}: metadata.json has no {kind}")
            for t in tensors:
                name = t.get("c_name", t.get("name"))
                if not isinstance(name, str) or not C_IDENTIFIER.match(name):
                    raise ProjectError("artifact", f"{artifact}: {kind} name {name!r} in "
                                                   "metadata.json is not a C identifier")
                if not isinstance(t.get("bytes"), int) or t["bytes"] <= 0:
                    raise ProjectError("artifact", f"{artifact}: {kind} {name!r} has no "
                                                   "positive 'bytes' in metadata.json")
        return metadata

    @staticmethod
    def _glue_source(metadata: dict) -> str:
        """C glue between main.c and the model: buffers, the I/O structs and their sizes."""
        lines = ["/* Generated from metadata.json by microtvm_api_server.py; do not edit. */",
                 "#include <stdint.h>", "", '#include "dtmm_harness.h"', ""]
        init = {}
        for kind, prefix in (("inputs", "in"), ("outputs", "out")):
            names = []
            for i, t in enumerate(metadata[kind]):
                c_name = t.get("c_name", t["name"])
                buf = f"dtmm_{prefix}_{i}"
                macro = f"TVMGEN_DEFAULT_{c_name.upper()}_SIZE"
                # The header and metadata.json come from the same compiler run; a mismatch
                # means a broken artifact, so fail the build rather than corrupt memory.
                lines += [f"#ifdef {macro}",
                          f'_Static_assert({macro} == {t["bytes"]}, "metadata.json and '
                          f'tvmgen_default.h disagree on the size of {c_name}");', "#endif",
                          f"static {_c_type(t.get('dtype', 'uint8'))} {buf}"
                          f"[({t['bytes']} + sizeof({_c_type(t.get('dtype', 'uint8'))}) - 1) / "
                          f"sizeof({_c_type(t.get('dtype', 'uint8'))})] "
                          "__attribute__((aligned(16)));"]
                names.append((c_name, buf, t["bytes"]))
            init[kind] = names
        for kind, struct in (("inputs", "tvmgen_default_inputs"),
                             ("outputs", "tvmgen_default_outputs")):
            fields = ", ".join(f".{c} = {b}" for c, b, _ in init[kind])
            lines += ["", f"struct {struct} dtmm_{kind} = {{{fields}}};",
                      f"const uint32_t dtmm_num_{kind} = {len(init[kind])}u;",
                      f"void* const dtmm_{kind[:-1]}_ptrs[] = "
                      f"{{{', '.join(b for _, b, _ in init[kind])}}};",
                      f"const uint32_t dtmm_{kind[:-1]}_sizes[] = "
                      f"{{{', '.join(f'{n}u' for _, _, n in init[kind])}}};"]
        return "\n".join(lines) + "\n"

    # -- build / flash / run ---------------------------------------------------------------
    def build(self, options: dict | None = None) -> Path:
        """Compile and link the project with make; returns the ELF path.

        Raises ProjectError("resource") when the linker reports that the program does not fit
        the board's memory, ProjectError("toolchain") for any other compiler failure.
        """
        record = self.project_record()
        make = _require_tool("make")
        _require_tool("arm-none-eabi-gcc")
        verbose = bool(_option(options, "verbose", "build"))
        jobs = int(_option(options, "jobs", "build"))
        cmd = [make, "-C", str(self.project_dir), f"-j{jobs}"]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if verbose:
            print(" ".join(cmd), proc.stdout, proc.stderr, sep="\n", file=sys.stderr)
        if proc.returncode != 0:
            log = (proc.stdout + proc.stderr)[-4000:]
            board = record["board"]
            if "DTMM_RAM_OVERFLOW" in log or re.search(r"region `?'?RAM'? overflowed", log):
                raise ProjectError("resource", f"the program does not fit the RAM of board "
                                               f"{board}:\n{log}")
            if re.search(r"region `?'?FLASH'? overflowed", log):
                raise ProjectError("resource", f"the program does not fit the flash (code "
                                               f"memory) of board {board}:\n{log}")
            raise ProjectError("toolchain", f"building {self.project_dir} for {board} failed "
                                            f"(exit {proc.returncode}):\n{log}")
        return self.project_dir / "build" / "app.elf"

    def flash(self, options: dict | None = None) -> dict:
        """'Flash' for QEMU: check the ELF and return how the emulator loads it.

        There is no device to program; QEMU loads the ELF with ``-kernel`` at run time. This
        verifies that the build exists and returns the machine and image to use.
        """
        record = self.project_record()
        elf = self.project_dir / "build" / "app.elf"
        if not elf.exists():
            raise ProjectError("usage", f"{elf} does not exist: call build first")
        with open(elf, "rb") as f:
            if f.read(4) != b"\x7fELF":
                raise ProjectError("toolchain", f"{elf} is not an ELF file")
        return {"elf": str(elf), "qemu_machine": record["board_info"]["qemu_machine"],
                "board": record["board"]}

    def qemu_command(self, options: dict | None = None) -> list:
        """The QEMU command line for this project (run from the run directory)."""
        record = self.project_record()
        shift = int(_option(options, "icount_shift", "run"))
        return qemu_argv(_require_tool("qemu-system-arm"), record["board_info"]["qemu_machine"],
                         self.project_dir / "build" / "app.elf", shift)

    def run(self, options: dict) -> dict:
        """Run the harness on QEMU over an input file; the open_transport equivalent.

        Returns
        -------
        dict
            ``exit_status``, ``stdout``, ``stderr`` (holds the ``DTMM ...`` result lines),
            ``outputs_path`` (raw output records) and ``run_dir``.
        """
        info = self.flash(options)
        inputs_path = Path(_option(options, "inputs_path", "run"))
        if not inputs_path.is_file():
            raise ProjectError("usage", f"inputs file {inputs_path} does not exist")
        timeout = float(_option(options, "timeout_s", "run"))
        cmd = self.qemu_command(options)
        run_dir = Path(tempfile.mkdtemp(prefix="run-", dir=self.project_dir))
        shutil.copyfile(inputs_path, run_dir / INPUT_FILE)
        sandbox = _load_sibling("qemu_sandbox")
        try:
            # Confined (seccomp, bubblewrap, output cap, time limit: see qemu_sandbox.py).
            # Semihosting file names are relative to QEMU's working directory.
            proc = sandbox.run_confined(cmd, run_dir, info["elf"], timeout)
        except sandbox.SandboxError as e:
            raise ProjectError(e.kind, f"{info['board']}: running {info['elf']}: {e}") from None
        if _option(options, "verbose", "run"):
            print(" ".join(proc["command"]), proc["stdout"], proc["stderr"], sep="\n", file=sys.stderr)
        return {"exit_status": proc["exit_status"], "stdout": proc["stdout"], "stderr": proc["stderr"],
                "outputs_path": str(run_dir / OUTPUT_FILE), "run_dir": str(run_dir),
                "command": proc["command"]}


def _load_sibling(name: str):
    """Import a standard-library module that sits next to this file (template or project)."""
    import importlib.util

    key = f"_dtmm_{name}_{abs(hash(str(Path(__file__).resolve())))}"
    if key not in sys.modules:
        spec = importlib.util.spec_from_file_location(key, Path(__file__).resolve().with_name(f"{name}.py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules[key] = module
        spec.loader.exec_module(module)
    return sys.modules[key]


def qemu_argv(qemu: str, machine: str, elf: str | os.PathLike, icount_shift: int) -> list:
    """Command line that runs a semihosting ELF deterministically on a QEMU MPS2/MPS3 board.

    ``-icount shift=N,sleep=off`` makes virtual time advance by exactly 2**N ns per guest
    instruction, which turns timer ticks into instruction counts.
    """
    return [qemu, "-M", machine, "-nographic", "-monitor", "none", "-serial", "none",
            "-semihosting-config", "enable=on,target=native",
            "-icount", f"shift={icount_shift},sleep=off", "-kernel", str(elf)]


def main(argv: list | None = None) -> int:
    """Command-line access to the in-process API (no JSON-RPC transport)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="call", required=True)
    sub.add_parser("server_info_query")
    gen = sub.add_parser("generate_project")
    gen.add_argument("artifact")
    gen.add_argument("project_dir")
    gen.add_argument("--board", required=True)
    gen.add_argument("--extra-cflags", default="")
    sub.add_parser("build")
    sub.add_parser("flash")
    run = sub.add_parser("run")
    run.add_argument("inputs_path")
    args = parser.parse_args(argv)
    handler = Handler()
    try:
        if args.call == "server_info_query":
            result: Any = asdict(handler.server_info_query())
        elif args.call == "generate_project":
            result = str(handler.generate_project(args.artifact, args.project_dir,
                                                  {"board": args.board,
                                                   "extra_cflags": args.extra_cflags}))
        elif args.call == "build":
            result = str(handler.build({"verbose": True}))
        elif args.call == "flash":
            result = handler.flash()
        else:
            result = handler.run({"inputs_path": args.inputs_path})
    except ProjectError as e:
        print(f"error ({e.kind}): {e}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
