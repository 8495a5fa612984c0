"""Project API server of the DTMM Zephyr template: a Zephyr application around a model archive.

``generate_project`` writes a Zephyr application: ``CMakeLists.txt`` (the archive's sources as a
static library linked into ``app``), ``prj.conf``, a board overlay and ``src/main.c`` (runs the
model on a test input and prints the outputs and the cycle count on the console). ``build`` runs
``west build`` when ``ZEPHYR_BASE`` is set and says what is missing otherwise. ``flash`` runs
``west flash`` or ``pyocd flash`` (option ``flash_tool``; ``dry_run`` returns the command without
running it). This template has no inference transport: read the board's console (UART).

The JSON-RPC 2.0 loop (microTVM's protocol) is the QEMU template's, copied into every generated
project as ``dtmm_rpc.py`` so that one implementation serves both templates.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

TEMPLATE_DIR = Path(__file__).resolve().parent
PROJECT_RECORD = "project.json"
RPC_FILE = "dtmm_rpc.py"


def _load_rpc():
    """The QEMU template's server module (its ProjectError, options and JSON-RPC loop)."""
    here = Path(__file__).resolve().parent
    path = here / RPC_FILE
    if not path.is_file():
        path = here.parent / "qemu_baremetal" / "microtvm_api_server.py"
    spec = importlib.util.spec_from_file_location("_dtmm_rpc", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["_dtmm_rpc"] = module
    spec.loader.exec_module(module)
    return module


rpc = _load_rpc()
ProjectError = rpc.ProjectError

#: Zephyr board -> (description, pyOCD target or None for QEMU, overlay text).
BOARDS = {
    "qemu_cortex_m3": ("QEMU Cortex-M3 (lm3s6965evb)", None, ""),
    "mps2_an385": ("QEMU/FPGA MPS2 AN385, Cortex-M3", None, ""),
    "mps2_an521": ("QEMU/FPGA MPS2 AN521, Cortex-M33", None, ""),
    "nucleo_f746zg": ("ST Nucleo-F746ZG, Cortex-M7", "stm32f746zgtx",
                      "/ { chosen { zephyr,console = &usart3; }; };\n&usart3 { current-speed = <115200>; };\n"),
    "nrf5340dk_nrf5340_cpuapp": ("Nordic nRF5340 DK application core, Cortex-M33", "nrf5340",
                                 "/ { chosen { zephyr,console = &uart0; }; };\n&uart0 { current-speed = <115200>; };\n"),
}

#: Kernel ISAs each board's core has (an archive's ``isa`` must be among them, or ``c``).
#: mps2_an521's Cortex-M33 has the DSP extension, but Zephyr (2.5) builds it with
#: -mcpu=cortex-m33+nodsp (its SoC does not select ARMV8_M_DSP, which is not user-settable).
BOARD_ISAS = {"qemu_cortex_m3": ("c",), "mps2_an385": ("c",), "mps2_an521": ("c",),
              "nucleo_f746zg": ("c", "dsp"), "nrf5340dk_nrf5340_cpuapp": ("c", "dsp")}

PROJECT_OPTIONS = [
    rpc.ProjectOption("board", "str", "Zephyr board to build for.", choices=sorted(BOARDS),
                      required=["generate_project"]),
    rpc.ProjectOption("stack_bytes", "int", "Main thread stack, bytes.", default=8192,
                      optional=["generate_project"]),
    rpc.ProjectOption("input_bin", "str", "Raw bytes of the model's inputs (concatenated in input order) "
                      "that the app runs on; default: zeros.", optional=["generate_project"]),
    rpc.ProjectOption("verbose", "bool", "Print the commands and their output.", default=False,
                      optional=["build", "flash"]),
    rpc.ProjectOption("zephyr_modules", "str", "build: Zephyr modules (CMake's ZEPHYR_MODULES, ';'-separated "
                      "paths) for a tree without `west update`; default: $ZEPHYR_MODULES, else west's list.",
                      optional=["build"]),
    rpc.ProjectOption("flash_tool", "str", "west (west flash) or pyocd (pyocd flash).", default="west",
                      choices=["west", "pyocd"], optional=["flash"]),
    rpc.ProjectOption("dry_run", "bool", "flash: return the command instead of running it.",
                      default=False, optional=["flash"]),
]


def _option(options, name, call):
    decl = next(o for o in PROJECT_OPTIONS if o.name == name)
    value = (options or {}).get(name)
    if value is None:
        if call in decl.required:
            raise ProjectError("usage", f"option {name!r} is required by {call}")
        return decl.default
    if decl.choices is not None and value not in decl.choices:
        raise ProjectError("usage", f"option {name}={value!r} is not one of {decl.choices}")
    return value


class Handler:
    """The Zephyr template or a project generated from it."""

    def __init__(self, project_dir=None):
        self.project_dir = Path(project_dir).resolve() if project_dir else TEMPLATE_DIR

    @property
    def is_template(self) -> bool:
        return not (self.project_dir / PROJECT_RECORD).exists()

    def server_info_query(self, tvm_version: str = ""):
        from dataclasses import asdict

        mlf = "" if self.is_template else str(self.project_dir / "model")
        return rpc.ServerInfo("dtmm_zephyr", self.is_template, mlf, [asdict(o) for o in PROJECT_OPTIONS])

    def record(self) -> dict:
        if self.is_template:
            raise ProjectError("usage", f"{self.project_dir} is the template: call generate_project first")
        return json.loads((self.project_dir / PROJECT_RECORD).read_text(encoding="utf-8"))

    def generate_project(self, model_library_format_path, project_dir, options) -> Path:
        """Write the Zephyr application; refuses an existing non-empty directory."""
        board = _option(options, "board", "generate_project")
        stack = int(_option(options, "stack_bytes", "generate_project"))
        input_bin = _option(options, "input_bin", "generate_project")
        project_dir = Path(project_dir).resolve()
        if project_dir.exists() and any(project_dir.iterdir()):
            raise ProjectError("usage", f"project directory {project_dir} exists and is not empty; "
                                        "nothing is overwritten")
        project_dir.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{project_dir.name}.partial-", dir=project_dir.parent))
        try:
            metadata = rpc.Handler._import_artifact(Path(model_library_format_path), staging / "model")
            module = rpc._module_name(metadata)
            _check_board_isa(metadata, board)
            data = _read_input_bin(input_bin, metadata) if input_bin else None
            shutil.copy2(Path(__file__), staging / "microtvm_api_server.py")
            shutil.copy2(Path(rpc.__file__), staging / RPC_FILE)
            # dtmm_rpc.py reads its (QEMU) board table when imported.
            shutil.copy2(Path(rpc.__file__).with_name("boards.json"), staging / "boards.json")
            (staging / "src").mkdir()
            (staging / "src" / "main.c").write_text(_main_c(metadata, module, data), encoding="utf-8")
            (staging / "CMakeLists.txt").write_text(_cmakelists(module), encoding="utf-8")
            (staging / "prj.conf").write_text(_prj_conf(stack), encoding="utf-8")
            (staging / "boards").mkdir()
            (staging / "boards" / f"{board}.overlay").write_text(
                f"/* {BOARDS[board][0]}: the console the app prints on. */\n{BOARDS[board][2]}", encoding="utf-8")
            (staging / PROJECT_RECORD).write_text(json.dumps(
                {"board": board, "template": "zephyr", "module": module, "metadata": metadata}, indent=2),
                encoding="utf-8")
            if project_dir.exists():
                project_dir.rmdir()
            staging.rename(project_dir)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return project_dir

    def build(self, options=None) -> None:
        """``west build -b BOARD`` in the project; needs ZEPHYR_BASE and west."""
        record = self.record()
        if not os.environ.get("ZEPHYR_BASE"):
            raise ProjectError("toolchain", "ZEPHYR_BASE is not set: install Zephyr (west init + west update, "
                                            "the Zephyr SDK) and export ZEPHYR_BASE, then build with "
                                            f"`west build -b {record['board']} {self.project_dir}`")
        west = shutil.which("west")
        if west is None:
            raise ProjectError("toolchain", "west not found on PATH; install it with `pip install west`")
        cmd = [west, "build", "-b", record["board"], "-d", str(self.project_dir / "build"), str(self.project_dir)]
        modules = _option(options, "zephyr_modules", "build") or os.environ.get("ZEPHYR_MODULES")
        if modules:
            cmd += ["--", f"-DZEPHYR_MODULES={modules}"]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if _option(options, "verbose", "build"):
            print(" ".join(cmd), proc.stdout, proc.stderr, sep="\n", file=sys.stderr)
        if proc.returncode != 0:
            raise ProjectError("toolchain", f"west build for {record['board']} failed:\n"
                                            f"{(proc.stdout + proc.stderr)[-3000:]}")

    def flash_command(self, options=None) -> list:
        """The command that programs the board (west flash, or pyocd flash with its target)."""
        record = self.record()
        tool = _option(options, "flash_tool", "flash")
        if tool == "west":
            return ["west", "flash", "-d", str(self.project_dir / "build")]
        target = BOARDS[record["board"]][1]
        if target is None:
            raise ProjectError("usage", f"{record['board']} is emulated; pyOCD flashes real boards "
                                        f"({', '.join(b for b, v in BOARDS.items() if v[1])})")
        return ["pyocd", "flash", "--target", target, str(self.project_dir / "build" / "zephyr" / "zephyr.hex")]

    def flash(self, options=None):
        cmd = self.flash_command(options)
        if _option(options, "dry_run", "flash"):
            return cmd
        if shutil.which(cmd[0]) is None:
            raise ProjectError("toolchain", f"{cmd[0]} not found on PATH (pip install {cmd[0]})")
        image = Path(cmd[-1]) if cmd[0] == "pyocd" else self.project_dir / "build" / "zephyr"
        if not image.exists():
            raise ProjectError("usage", f"{image} does not exist: build first")
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise ProjectError("toolchain", f"{' '.join(cmd)} failed:\n{(proc.stdout + proc.stderr)[-2000:]}")
        return cmd

    def open_transport(self, options=None):
        raise ProjectError("usage", "the Zephyr template has no inference transport: flash the board and "
                                    "read its console (the app prints outputs and cycles)")

    def close_transport(self):
        return None

    def read_transport(self, n, timeout_sec):
        raise ProjectError("usage", "no transport is open (the Zephyr template has none)")

    def write_transport(self, data, timeout_sec):
        raise ProjectError("usage", "no transport is open (the Zephyr template has none)")


def _check_board_isa(metadata: dict, board: str) -> None:
    """An archive whose kernels need DSP or MVE cannot build for a core without them."""
    isa = metadata.get("isa", "c")
    if isa != "c" and isa not in BOARD_ISAS[board]:
        raise ProjectError("usage", f"the archive was compiled for {metadata.get('target')} ({isa} kernels); "
                                    f"{board} ({BOARDS[board][0]}) has no {isa.upper()}"
                                    + (" in Zephyr's build (-mcpu=cortex-m33+nodsp)" if board == "mps2_an521" else "")
                                    + ": compile the model with "
                                    "--target dtmm/portable or this core's target")


def _read_input_bin(path, metadata: dict) -> bytes:
    data = Path(path).read_bytes()
    need = sum(int(t["bytes"]) for t in metadata["inputs"])
    if len(data) != need:
        raise ProjectError("usage", f"input_bin {path}: {len(data)} bytes, the model's inputs take {need}")
    return data


def _cmakelists(module: str) -> str:
    return f"""# Generated by the DTMM Zephyr template. Build: west build -b <board> .
cmake_minimum_required(VERSION 3.20.0)
find_package(Zephyr REQUIRED HINTS $ENV{{ZEPHYR_BASE}})
project(dtmm_{module})

# The model archive (codegen/host) as a static library, compiled with Zephyr's flags.
file(GLOB DTMM_MODEL_SRCS ${{CMAKE_CURRENT_SOURCE_DIR}}/model/src/*.c)
zephyr_library_named(tvmgen_{module})
zephyr_library_sources(${{DTMM_MODEL_SRCS}})
zephyr_library_include_directories(${{CMAKE_CURRENT_SOURCE_DIR}}/model/include)
zephyr_library_compile_options(-O2)

target_sources(app PRIVATE src/main.c)
target_include_directories(app PRIVATE ${{CMAKE_CURRENT_SOURCE_DIR}}/model/include)
target_link_libraries(app PRIVATE tvmgen_{module})
"""


def _prj_conf(stack: int) -> str:
    return f"""# Generated by the DTMM Zephyr template.
CONFIG_MAIN_STACK_SIZE={stack}
CONFIG_PRINTK=y
CONFIG_CONSOLE=y
CONFIG_SERIAL=y
CONFIG_UART_CONSOLE=y
CONFIG_NEWLIB_LIBC=y
"""


#: Output dtype -> (C element type, element bytes); other dtypes print as raw bytes (hex).
_PRINTED_TYPES = {"int8": ("int8_t", 1), "uint8": ("uint8_t", 1), "int16": ("int16_t", 2), "int32": ("int32_t", 4)}


def _print_output(i: int, spec: dict) -> str:
    """``DTMM output <i>: v v v`` (integers) or ``DTMM output <i> bytes: hh hh`` (other dtypes)."""
    ctype, size = _PRINTED_TYPES.get(spec.get("dtype"), (None, 1))
    n = int(spec["bytes"]) // size
    if ctype is None:
        body = f'printk("DTMM output {i} bytes:");\n  for (int k = 0; k < {n}; k++) printk(" %02x", out{i}[k]);'
    else:
        body = (f'printk("DTMM output {i}:");\n'
                f'  for (int k = 0; k < {n}; k++) printk(" %d", (int)(({ctype} *)out{i})[k]);')
    return f'  {body}\n  printk("\\n");'


def _main_c(metadata: dict, module: str, data: bytes | None = None) -> str:
    ins, outs = metadata["inputs"], metadata["outputs"]
    decl, offset = [], 0
    for i, t in enumerate(ins):
        n = int(t["bytes"])
        init = "" if data is None else " = {" + ", ".join(str(b) for b in data[offset:offset + n]) + "}"
        decl.append(f"static uint8_t in{i}[{n}] __aligned(16){init};")
        offset += n
    decl += [f"static uint8_t out{i}[{t['bytes']}] __aligned(16);" for i, t in enumerate(outs)]
    fields_in = ", ".join(f".{t.get('c_name', t['name'])} = in{i}" for i, t in enumerate(ins))
    fields_out = ", ".join(f".{t.get('c_name', t['name'])} = out{i}" for i, t in enumerate(outs))
    prints = "\n".join(_print_output(i, t) for i, t in enumerate(outs))
    return f"""/* Generated by the DTMM Zephyr template: run the model once, print outputs and cycles. */
#include <stdint.h>
#if defined(__has_include) && __has_include(<zephyr/kernel.h>)
#include <zephyr/kernel.h> /* Zephyr >= 3.1 */
#include <zephyr/sys/printk.h>
#else
#include <zephyr.h> /* Zephyr 2.x */
#include <sys/printk.h>
#endif

#include "tvmgen_{module}.h"

{chr(10).join(decl)}

int main(void) {{
  struct tvmgen_{module}_inputs inputs = {{{fields_in}}};
  struct tvmgen_{module}_outputs outputs = {{{fields_out}}};
  uint32_t t0 = k_cycle_get_32();
  int32_t status = tvmgen_{module}_run(&inputs, &outputs);
  uint32_t t1 = k_cycle_get_32();
  printk("DTMM status %d cycles %u\\n", (int)status, t1 - t0);
{prints}
  return 0;
}}
"""


def main(argv=None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--read-fd", type=int, required=True)
    parser.add_argument("--write-fd", type=int, required=True)
    parser.add_argument("--debug", action="store_true")
    args = parser.parse_args(argv)
    with os.fdopen(args.read_fd, "rb", buffering=0) as r, os.fdopen(args.write_fd, "wb", buffering=0) as w:
        rpc.ProjectAPIServer(r, w, Handler()).serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
