"""Project API server for the DTMM bare-metal QEMU project template.

microTVM's Project API (removed from TVM in 0.19), implemented from its protocol description:
this file lives in the template directory and is copied into every generated project. Run as a
program (``python microtvm_api_server.py --read-fd R --write-fd W``) it serves JSON-RPC 2.0,
one request object per line on fd R and one reply per line on fd W, protocol version 1, with
the methods ``server_info_query``, ``generate_project``, ``build``, ``flash``,
``open_transport``, ``close_transport``, ``read_transport`` and ``write_transport`` and
microTVM's error codes (:class:`ErrorCode`). Options are declarative (:data:`PROJECT_OPTIONS`,
each naming the methods that require or accept it).

The transport is the board's UART, connected to QEMU's stdio: the firmware, started with the
semihosting command line ``uart``, runs inferences on inputs the host sends and replies with
outputs and timer ticks (framing in ``src/transport.h``; the client is
``dtmm_tvm.micro.transport``).

:class:`Handler` is also used in-process by ``dtmm_tvm.micro`` (``dtmm run``), which adds a
batch ``run`` over a file of inputs through semihosting. The module only uses the standard
library so that it keeps working when copied out of the source tree.
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import os
import re
import select
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import traceback
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
                  default=False, optional=["build", "run", "open_transport"]),
    ProjectOption("opt_level", "str", "GCC optimisation flag for model and harness (the dtmm_* kernels "
                  "build at -O2 unless this is -Os: their inline assembly needs it).",
                  default="-O2", choices=["-O0", "-O1", "-O2", "-O3", "-Os", "-Ofast"],
                  optional=["generate_project"]),
    ProjectOption("extra_cflags", "str", "Extra C compiler flags (space separated).",
                  default="", optional=["generate_project"]),
    ProjectOption("stack_bytes", "int", "Stack reserved at the top of RAM, in bytes.",
                  default=65536, optional=["generate_project"]),
    ProjectOption("jobs", "int", "Parallel make jobs.", default=2, optional=["build"]),
    ProjectOption("compiler_cache", "bool",
                  "Compile through ccache when it is installed (the kernels' C files are the same "
                  "in every build; their objects are reused).", default=True, optional=["build"]),
    ProjectOption("inputs_path", "str",
                  "Binary file of N input records (all inputs back to back, metadata order).",
                  required=["run"]),
    ProjectOption("icount_shift", "int",
                  "QEMU -icount shift: each instruction advances virtual time by 2**shift ns.",
                  default=7, optional=["run", "open_transport"]),
    ProjectOption("timeout_s", "float", "Wall-clock limit of one emulator run, seconds.",
                  default=120.0, optional=["run"]),
]


def _compiler_cache_env(env: dict) -> str | None:
    """ccache's path, with ``env`` set up for it, or None when it is absent or has no cache dir.

    Every project lives in its own directory, so the directory is left out of the hash
    (``CCACHE_NOHASHDIR``; all paths in the build are relative). ccache runs in preprocessor
    mode (``CCACHE_NODIRECT``): the kernels pick their ISA with ``__has_include("dtmm_isa.h")``,
    and direct mode cannot see that a header absent from an earlier build (a kernel test's) is
    present now, so it would hand a portable archive the MVE objects. A cache directory that
    cannot be written means no cache, never a failed build.
    """
    ccache = shutil.which("ccache")
    if ccache is None:
        return None
    cache_dir = Path(env.get("CCACHE_DIR") or Path.home() / ".cache" / "ccache")
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    if not os.access(cache_dir, os.W_OK):
        return None
    env["CCACHE_DIR"] = str(cache_dir)
    env.setdefault("CCACHE_NOHASHDIR", "1")
    env["CCACHE_NODIRECT"] = "1"
    return ccache


def _option(options: dict | None, name: str, call: str) -> Any:
    """Look an option up, applying the declared default and required-ness."""
    options = options or {}
    decl = next(o for o in PROJECT_OPTIONS if o.name == name)
    if name in options and options[name] is not None:
        value = options[name]
        kinds = {"str": (str,), "bool": (bool,), "int": (int,), "float": (int, float)}[decl.type]
        if not isinstance(value, kinds) or (decl.type in ("int", "float") and
                                           isinstance(value, bool)):
            raise ProjectError("usage", f"option {name}={value!r} must be of type {decl.type}")
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


_DTYPE_BYTES = {"int8": 1, "uint8": 1, "int16": 2, "uint16": 2, "int32": 4, "uint32": 4, "float32": 4}


def normalize_metadata(metadata: dict, artifact: str = "model") -> dict:
    """metadata.json as the harness needs it: ours as is; a Model Library Format archive of
    TVM's (``version`` + ``modules``, AOT executor, C interface) gets ``inputs``, ``outputs``
    and ``module_name`` from its module's ``memory.functions.main`` (flat shapes: MLF records
    sizes and dtypes only; C names sanitized as TVM's header does)."""
    if not isinstance(metadata, dict):
        raise ProjectError("artifact", f"{artifact}: metadata.json is not an object")
    if "inputs" in metadata or "modules" not in metadata:
        return metadata
    modules = metadata["modules"]
    if not isinstance(modules, dict) or len(modules) != 1:
        raise ProjectError("artifact", f"{artifact}: a Model Library Format archive with "
                                       f"{len(modules) if isinstance(modules, dict) else 0} "
                                       "modules; exactly one is supported")
    name, module = next(iter(modules.items()))
    if module.get("executors") != ["aot"]:
        raise ProjectError("artifact", f"{artifact}: module {name!r} uses executor "
                                       f"{module.get('executors')}; only AOT with the C interface "
                                       "(tvmgen_<name>_run) is supported")
    try:
        main = module["memory"]["functions"]["main"][0]
        ios = {kind: main[kind] for kind in ("inputs", "outputs")}
    except (KeyError, IndexError, TypeError):
        raise ProjectError("artifact", f"{artifact}: module {name!r} has no "
                                       "memory.functions.main inputs/outputs") from None
    out = dict(metadata, module_name=name, entry=f"tvmgen_{name}_run")
    for kind, tensors in ios.items():
        out[kind] = []
        for tname, info in tensors.items():
            size, dtype = info.get("size"), info.get("dtype")
            if dtype not in _DTYPE_BYTES or not isinstance(size, int) or size % _DTYPE_BYTES[dtype]:
                raise ProjectError("artifact", f"{artifact}: {kind} {tname!r} has dtype {dtype!r} "
                                               f"and size {size!r}, not supported")
            out[kind].append({"name": tname, "c_name": re.sub(r"[^A-Za-z0-9_]", "_", tname),
                              "shape": [size // _DTYPE_BYTES[dtype]], "dtype": dtype,
                              "bytes": size, "quantization": None})
    out.setdefault("arena", {"bytes": int(main.get("workspace_size_bytes", 0)), "buffers": []})
    out.setdefault("constants_bytes", int(main.get("constants_size_bytes", 0)))
    return out


def _module_name(metadata: dict) -> str:
    """The model's module name (``tvmgen_<name>_run``): ours, or the first MLF module."""
    name = metadata.get("module_name")
    if name is None and isinstance(metadata.get("modules"), dict) and metadata["modules"]:
        name = next(iter(metadata["modules"]))
    name = name or "default"
    if not C_IDENTIFIER.match(name):
        raise ProjectError("artifact", f"module name {name!r} in metadata.json is not a C "
                                       "identifier")
    return name


def _model_header(metadata: dict) -> str:
    """src/dtmm_model.h: the harness's names for the model's interface."""
    module = _module_name(metadata)
    return "\n".join([
        "/* Generated by microtvm_api_server.py generate_project; do not edit. */",
        "#ifndef DTMM_MODEL_H_", "#define DTMM_MODEL_H_", f'#include "tvmgen_{module}.h"',
        f"#define dtmm_model_inputs tvmgen_{module}_inputs",
        f"#define dtmm_model_outputs tvmgen_{module}_outputs",
        f"#define dtmm_model_run tvmgen_{module}_run", "#endif", ""])


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
        self._transport = None  # the open transport: QEMU process and its run directory

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
        if board_name not in boards:
            raise ProjectError("usage", f"unknown board {board_name!r}; known boards: "
                                        f"{', '.join(sorted(boards))}")
        board = boards[board_name]
        if (options or {}).get("stack_bytes") is None and "stack_bytes" in board:
            stack_bytes = int(board["stack_bytes"])  # a small-RAM board's own default
        else:
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
        # Everything is written to a staging directory next to the project and renamed into
        # place at the end, so a failure leaves nothing half-written.
        project_dir.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{project_dir.name}.partial-",
                                        dir=project_dir.parent))
        try:
            for entry in TEMPLATE_ENTRIES:
                src = TEMPLATE_DIR / entry
                if src.is_dir():
                    shutil.copytree(src, staging / entry,
                                    ignore=shutil.ignore_patterns("__pycache__"))
                else:
                    shutil.copy2(src, staging / entry)

            metadata = self._import_artifact(Path(model_library_format_path), staging / "model")
            (staging / "src" / "dtmm_model_glue.c").write_text(
                self._glue_source(metadata), encoding="utf-8")
            (staging / "src" / "dtmm_model.h").write_text(
                _model_header(metadata), encoding="utf-8")
            timer_define = {"cmsdk_timer0": "-DDTMM_TIMER_CMSDK",
                            "sse300_syscounter": "-DDTMM_TIMER_SSE300_CNT",
                            "nrf51_timer0": "-DDTMM_TIMER_NRF51"}[board["timer"]]
            timer_define += f" -DDTMM_UART_BASE={board['uart_base']}u"
            if board.get("uart") == "nrf51":
                timer_define += " -DDTMM_UART_NRF51"
            if "timer_base" in board:
                timer_define += f" -DDTMM_TIMER0_BASE={board['timer_base']}u"
            opt = _option(options, "opt_level", "generate_project")
            extra = _option(options, "extra_cflags", "generate_project")
            (staging / "board.mk").write_text(
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
            (staging / PROJECT_RECORD).write_text(json.dumps(record, indent=2),
                                                  encoding="utf-8")
            if project_dir.exists():
                project_dir.rmdir()  # empty (checked above)
            staging.rename(project_dir)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
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
        metadata = normalize_metadata(metadata, str(artifact))
        header = f"tvmgen_{_module_name(metadata)}.h"
        if not (model_dir / "include" / header).exists():
            raise ProjectError("artifact", f"model artifact {artifact} has no "
                                           f"codegen/host/include/{header}")
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
        module = _module_name(metadata)
        upper = f"TVMGEN_{module.upper()}_"
        lines = ["/* Generated from metadata.json by microtvm_api_server.py; do not edit. */",
                 "#include <stdint.h>", "", '#include "dtmm_harness.h"', ""]
        init = {}
        for kind, prefix in (("inputs", "in"), ("outputs", "out")):
            names = []
            for i, t in enumerate(metadata[kind]):
                c_name = t.get("c_name", t["name"])
                buf = f"dtmm_{prefix}_{i}"
                macro = f"{upper}{c_name.upper()}_SIZE"
                # The header and metadata.json come from the same compiler run; a mismatch
                # means a broken artifact, so fail the build rather than corrupt memory.
                lines += [f"#ifdef {macro}",
                          f'_Static_assert({macro} == {t["bytes"]}, "metadata.json and '
                          f'tvmgen_{module}.h disagree on the size of {c_name}");', "#endif",
                          f"static {_c_type(t.get('dtype', 'uint8'))} {buf}"
                          f"[({t['bytes']} + sizeof({_c_type(t.get('dtype', 'uint8'))}) - 1) / "
                          f"sizeof({_c_type(t.get('dtype', 'uint8'))})] "
                          "__attribute__((aligned(16)));"]
                names.append((c_name, buf, t["bytes"]))
            init[kind] = names
        for kind, struct in (("inputs", f"tvmgen_{module}_inputs"),
                             ("outputs", f"tvmgen_{module}_outputs")):
            fields = ", ".join(f".{c} = {b}" for c, b, _ in init[kind])
            lines += ["", f"struct {struct} dtmm_{kind} = {{{fields}}};",
                      f"const uint32_t dtmm_num_{kind} = {len(init[kind])}u;",
                      f"void* const dtmm_{kind[:-1]}_ptrs[] = "
                      f"{{{', '.join(b for _, b, _ in init[kind])}}};",
                      f"const uint32_t dtmm_{kind[:-1]}_sizes[] = "
                      f"{{{', '.join(f'{n}u' for _, _, n in init[kind])}}};"]
        # One profile mark before each operator call of the runner and one after the last.
        marks = len(metadata.get("runner_steps") or []) + 1
        lines += ["", "#ifdef DTMM_PROFILE", f"const uint32_t dtmm_profile_marks = {marks}u;",
                  f"uint32_t dtmm_mark_times[{marks}];", "#else",
                  "const uint32_t dtmm_profile_marks = 0u;", "uint32_t dtmm_mark_times[1];",
                  "#endif"]
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
        env = dict(os.environ)
        if _option(options, "compiler_cache", "build"):
            launcher = _compiler_cache_env(env)
            if launcher:
                cmd.append(f"CC_LAUNCHER={launcher}")
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
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
        """Run the harness on QEMU over an input file (a batch run through semihosting).

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
            # on_stderr: an in-process caller's progress hook (dtmm_tvm.micro.Project.run).
            proc = sandbox.run_confined(cmd, run_dir, info["elf"], timeout,
                                        on_stderr=getattr(self, "on_stderr", None))
        except sandbox.SandboxError as e:
            raise ProjectError(e.kind, f"{info['board']}: running {info['elf']}: {e}") from None
        if _option(options, "verbose", "run"):
            print(" ".join(proc["command"]), proc["stdout"], proc["stderr"], sep="\n", file=sys.stderr)
        return {"exit_status": proc["exit_status"], "stdout": proc["stdout"], "stderr": proc["stderr"],
                "outputs_path": str(run_dir / OUTPUT_FILE), "run_dir": str(run_dir),
                "command": proc["command"]}


    # -- transport (the board's UART on QEMU's stdio) ----------------------------------------
    def open_transport(self, options: dict | None = None) -> dict:
        """Start the firmware in UART mode on QEMU and connect its UART to this server.

        Returns
        -------
        dict
            microTVM's ``TransportTimeouts`` fields, in seconds.
        """
        if self._transport is not None:
            return TRANSPORT_TIMEOUTS
        self.flash(options)
        cmd = self.qemu_command(options)
        cmd[cmd.index("-serial") + 1] = "stdio"
        # The semihosting command line tells the harness to serve the UART.
        cmd[cmd.index("-semihosting-config") + 1] += ",arg=uart"
        run_dir = Path(tempfile.mkdtemp(prefix="transport-", dir=self.project_dir))
        sandbox = _load_sibling("qemu_sandbox")
        try:  # confined as the batch run is (seccomp, bubblewrap: see qemu_sandbox.py)
            cmd = sandbox.confined_command(cmd, run_dir, self.flash(options)["elf"])
        except sandbox.SandboxError as e:
            shutil.rmtree(run_dir, ignore_errors=True)
            raise ProjectError(e.kind, str(e)) from None
        proc = launch_qemu(cmd, run_dir)
        os.set_blocking(proc.stdout.fileno(), False)
        os.set_blocking(proc.stdin.fileno(), False)
        self._transport = {"proc": proc, "run_dir": run_dir, "command": cmd}
        return TRANSPORT_TIMEOUTS

    def close_transport(self) -> None:
        """Stop QEMU and forget the transport; a no-op when none is open."""
        transport, self._transport = self._transport, None
        if transport is None:
            return
        proc = transport["proc"]
        try:
            # A firmware that was sent QUIT exits by itself within moments.
            proc.wait(timeout=1)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        for stream in (proc.stdin, proc.stdout):
            try:
                stream.close()
            except OSError:
                pass
        proc.stderr.close()
        shutil.rmtree(transport["run_dir"], ignore_errors=True)

    def _open(self) -> subprocess.Popen:
        if self._transport is None:
            raise ProjectError("usage", "no transport is open: call open_transport first")
        return self._transport["proc"]

    def _closed(self, proc: subprocess.Popen, what: str) -> "TransportClosedError":
        status = proc.poll()
        state = "QEMU is still running" if status is None else f"QEMU exited with status {status}"
        return TransportClosedError(f"the transport closed while {what} ({state})")

    def read_transport(self, n: int, timeout_sec: float | None) -> bytes:
        """Read between 1 and ``n`` bytes from the board's UART.

        Raises
        ------
        IoTimeoutError
            No byte arrived within ``timeout_sec`` (None: wait for ever).
        TransportClosedError
            The firmware or QEMU closed the UART (end of file).
        """
        proc = self._open()
        fd = proc.stdout.fileno()
        deadline = None if timeout_sec is None else time.monotonic() + timeout_sec
        while True:
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready, _, _ = select.select([fd], [], [], wait)
            if not ready:
                raise IoTimeoutError(f"no data from the board within {timeout_sec} s")
            try:
                data = os.read(fd, n)
            except BlockingIOError:
                continue
            if not data:
                raise self._closed(proc, "reading")
            return data

    def write_transport(self, data: bytes, timeout_sec: float | None) -> None:
        """Write all of ``data`` to the board's UART, or raise IoTimeoutError /
        TransportClosedError."""
        proc = self._open()
        fd = proc.stdin.fileno()
        deadline = None if timeout_sec is None else time.monotonic() + timeout_sec
        view = memoryview(data)
        while view:
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            _, ready, _ = select.select([], [fd], [], wait)
            if not ready:
                raise IoTimeoutError(f"the board did not take {len(view)} more bytes within "
                                     f"{timeout_sec} s")
            try:
                written = os.write(fd, view)
            except BlockingIOError:
                continue
            except (BrokenPipeError, OSError):
                raise self._closed(proc, "writing") from None
            view = view[written:]


#: microTVM's TransportTimeouts for this transport: the firmware says HELLO as soon as it
#: starts, so there is no retry, and an inference of a large model can take seconds of QEMU.
TRANSPORT_TIMEOUTS = {"session_start_retry_timeout_sec": 0.0,
                      "session_start_timeout_sec": 10.0,
                      "session_established_timeout_sec": 60.0}


class TransportClosedError(ProjectError):
    """The transport can no longer be used (QEMU exited or closed the UART)."""

    def __init__(self, message: str):
        super().__init__("transport", message)


class IoTimeoutError(ProjectError):
    """A transport read or write did not complete within its timeout."""

    def __init__(self, message: str):
        super().__init__("transport", message)


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


def launch_qemu(argv: list, cwd: str | os.PathLike):
    """Start QEMU for the UART transport: stdin and stdout are binary pipes (the batch run goes
    through ``qemu_sandbox.run_confined``, which bounds its output and time)."""
    return subprocess.Popen(argv, cwd=cwd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, bufsize=0)


def qemu_argv(qemu: str, machine: str, elf: str | os.PathLike, icount_shift: int) -> list:
    """Command line that runs a semihosting ELF deterministically on a QEMU MPS2/MPS3 board.

    ``-icount shift=N,sleep=off`` makes virtual time advance by exactly 2**N ns per guest
    instruction, which turns timer ticks into instruction counts.
    """
    return [qemu, "-M", machine, "-nographic", "-monitor", "none", "-serial", "none",
            "-semihosting-config", "enable=on,target=native",
            "-icount", f"shift={icount_shift},sleep=off", "-kernel", str(elf)]


# ---- JSON-RPC 2.0 (microTVM's Project API protocol) -------------------------------------------
PROTOCOL_VERSION = 1


class ErrorCode:
    """JSON-RPC 2.0 error codes, plus microTVM's SERVER_ERROR for a failing method."""

    SERVER_ERROR = -32000
    PARSE_ERROR = -32700
    INVALID_REQUEST = -32600
    METHOD_NOT_FOUND = -32601
    INVALID_PARAMS = -32602
    INTERNAL_ERROR = -32603


class RPCError(Exception):
    """An error reply: ``{"code", "message", "data"}``."""

    def __init__(self, code: int, message: str, data: Any = None):
        super().__init__(message)
        self.code, self.message, self.data = code, message, data

    def to_json(self) -> dict:
        return {"code": self.code, "message": self.message, "data": self.data}


#: Parameters of each method: name -> accepted JSON types (None: null allowed).
_STR, _NUM, _OPTIONS = (str,), (int, float), (dict,)
METHOD_PARAMS = {
    "server_info_query": {"tvm_version": _STR},
    "generate_project": {"model_library_format_path": _STR, "standalone_crt_dir": _STR + (type(None),),
                         "project_dir": _STR, "options": _OPTIONS},
    "build": {"options": _OPTIONS},
    "flash": {"options": _OPTIONS},
    "open_transport": {"options": _OPTIONS},
    "close_transport": {},
    "read_transport": {"n": (int,), "timeout_sec": _NUM + (type(None),)},
    "write_transport": {"data": _STR, "timeout_sec": _NUM + (type(None),)},
}


class ProjectAPIServer:
    """Serves one :class:`Handler` over JSON-RPC 2.0, one JSON object per line.

    A reply carries ``result`` or ``error``. Errors: PARSE_ERROR (a line that is not JSON),
    INVALID_REQUEST (not a JSON-RPC 2.0 request object), METHOD_NOT_FOUND, INVALID_PARAMS
    (a missing, extra or mistyped parameter), SERVER_ERROR (the method failed; ``message`` is
    ``TransportClosedError`` / ``IoTimeoutError`` for those transport failures, as in microTVM,
    and the failure's one-line description otherwise; ``data`` has ``kind`` and ``detail``).
    """

    def __init__(self, read_file, write_file, handler: "Handler"):
        self._read = read_file
        self._write = write_file
        self.handler = handler

    def serve_forever(self) -> None:
        """Serve requests until the client closes its end."""
        try:
            while self.serve_one():
                pass
        finally:
            self.handler.close_transport()

    def serve_one(self) -> bool:
        """Read, run and answer one request; False at end of input."""
        line = self._read.readline()
        if not line:
            return False
        request_id = None
        try:
            try:
                request = json.loads(line)
            except (ValueError, UnicodeDecodeError) as e:
                raise RPCError(ErrorCode.PARSE_ERROR, f"request is not JSON: {e}") from None
            request_id = self._validate(request)
            result = self._dispatch(request["method"], request["params"])
            reply = {"jsonrpc": "2.0", "id": request_id, "result": result}
        except RPCError as e:
            reply = {"jsonrpc": "2.0", "id": request_id, "error": e.to_json()}
        except ProjectError as e:
            name = type(e).__name__ if isinstance(e, (TransportClosedError, IoTimeoutError)) \
                else str(e)
            reply = {"jsonrpc": "2.0", "id": request_id,
                     "error": {"code": ErrorCode.SERVER_ERROR, "message": name,
                               "data": {"kind": e.kind, "detail": str(e)}}}
        except Exception as e:  # a bug in the server: report it, keep serving
            logging.getLogger(__name__).exception("internal error")
            reply = {"jsonrpc": "2.0", "id": request_id,
                     "error": {"code": ErrorCode.INTERNAL_ERROR,
                               "message": f"{type(e).__name__}: {e}",
                               "data": {"traceback": traceback.format_exc()}}}
        self._write.write((json.dumps(reply) + "\n").encode("utf-8"))
        self._write.flush()
        return True

    @staticmethod
    def _validate(request) -> Any:
        if not isinstance(request, dict):
            raise RPCError(ErrorCode.INVALID_REQUEST, f"request must be an object, got "
                                                      f"{type(request).__name__}")
        request_id = request.get("id")
        if not isinstance(request_id, (str, int, type(None))) or isinstance(request_id, bool):
            raise RPCError(ErrorCode.INVALID_REQUEST, f"request id {request_id!r} must be a "
                                                      "string, a number or null")
        if request.get("jsonrpc") != "2.0":
            raise RPCError(ErrorCode.INVALID_REQUEST,
                           f'request["jsonrpc"] must be "2.0", got {request.get("jsonrpc")!r}')
        if not isinstance(request.get("method"), str):
            raise RPCError(ErrorCode.INVALID_REQUEST, "request has no method name")
        if not isinstance(request.get("params"), dict):
            raise RPCError(ErrorCode.INVALID_REQUEST, "request params must be an object")
        return request_id

    def _dispatch(self, method: str, params: dict) -> Any:
        spec = METHOD_PARAMS.get(method)
        if spec is None:
            raise RPCError(ErrorCode.METHOD_NOT_FOUND, f"{method}: no such method; methods: "
                                                       f"{', '.join(METHOD_PARAMS)}")
        for name, kinds in spec.items():
            if name not in params:
                raise RPCError(ErrorCode.INVALID_PARAMS, f"{method}: parameter {name} not given")
            value = params[name]
            if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
                raise RPCError(ErrorCode.INVALID_PARAMS,
                               f"{method}: parameter {name} has type {type(value).__name__}")
        extra = sorted(set(params) - set(spec))
        if extra:
            raise RPCError(ErrorCode.INVALID_PARAMS, f"{method}: extra parameters: "
                                                     f"{', '.join(extra)}")
        h = self.handler
        if method == "server_info_query":
            info = h.server_info_query(params["tvm_version"])
            return {"platform_name": info.platform_name, "is_template": info.is_template,
                    "model_library_format_path": info.model_library_format_path or None,
                    "project_options": info.project_options,
                    "protocol_version": PROTOCOL_VERSION}
        if method == "generate_project":
            # standalone_crt_dir is accepted for compatibility: the model needs no TVM runtime.
            h.generate_project(params["model_library_format_path"], params["project_dir"],
                               params["options"])
            return None
        if method == "build":
            h.build(params["options"])
            return None
        if method == "flash":
            h.flash(params["options"])
            return None
        if method == "open_transport":
            return {"timeouts": h.open_transport(params["options"])}
        if method == "close_transport":
            h.close_transport()
            return None
        if method == "read_transport":
            if params["n"] <= 0:
                raise RPCError(ErrorCode.INVALID_PARAMS, f"read_transport: n={params['n']} must "
                                                         "be positive")
            data = h.read_transport(params["n"], params["timeout_sec"])
            return {"data": base64.b85encode(data).decode("ascii")}
        try:
            data = base64.b85decode(params["data"])
        except ValueError as e:
            raise RPCError(ErrorCode.INVALID_PARAMS, f"write_transport: data is not base85: "
                                                     f"{e}") from None
        h.write_transport(data, params["timeout_sec"])
        return None


def main(argv: list | None = None) -> int:
    """Serve the Project API on ``--read-fd`` / ``--write-fd`` (as microTVM launched it)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--read-fd", type=int, required=True,
                        help="file descriptor to read JSON-RPC requests from")
    parser.add_argument("--write-fd", type=int, required=True,
                        help="file descriptor to write JSON-RPC replies to")
    parser.add_argument("--debug", action="store_true", help="log at DEBUG level on stderr")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.INFO, stream=sys.stderr)
    with os.fdopen(args.read_fd, "rb", buffering=0) as read_file, \
            os.fdopen(args.write_fd, "wb", buffering=0) as write_file:
        ProjectAPIServer(read_file, write_file, Handler()).serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
