"""Client of the QEMU project template: generate, build and run a model artifact on a board.

The template's Project API server (``microtvm_project/qemu_baremetal/microtvm_api_server.py``)
does the work; this module loads it in-process, checks inputs and resources up front, maps its
errors to :mod:`dtmm_tvm.errors` and turns the run into a :class:`~.measure.RunResult`.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

from ..errors import DTMMError, ModelError, ResourceError, ToolchainError
from . import measure
from .boards import Board, get_board
from ..codegen.mlf import read_metadata
from .qemu import DEFAULT_ICOUNT_SHIFT, require_tool
from ..resources import templates_dir

#: The template (source tree, or the copy inside an installed package); DTMM_PROJECT_TEMPLATE
#: overrides it.
DEFAULT_TEMPLATE_DIR = templates_dir() / "qemu_baremetal"
DEFAULT_STACK_BYTES = 64 * 1024

_DTYPES = {"int8": np.int8, "uint8": np.uint8, "int16": np.int16, "int32": np.int32,
           "float32": np.float32}


def template_dir() -> Path:
    """Directory of the project template to use."""
    path = Path(os.environ.get("DTMM_PROJECT_TEMPLATE", DEFAULT_TEMPLATE_DIR))
    if not (path / "microtvm_api_server.py").is_file():
        raise ToolchainError(f"project template not found: {path}/microtvm_api_server.py "
                             "(set DTMM_PROJECT_TEMPLATE)")
    return path


def load_server(directory: str | os.PathLike):
    """Import the ``microtvm_api_server.py`` of a template or generated project as a module.

    Generated projects carry their own copy of the server (as in microTVM), so each directory
    gets its own module object.
    """
    path = Path(directory) / "microtvm_api_server.py"
    name = f"_dtmm_api_server_{abs(hash(str(path.resolve())))}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    # Registered before exec so dataclasses can resolve the module of their annotations.
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def read_artifact_metadata(artifact: str | os.PathLike) -> dict:
    """metadata.json of a dtmm archive, or of a Model Library Format archive of TVM's with the
    same C interface (normalized by the template's server to inputs/outputs/module_name)."""
    metadata = read_metadata(artifact, allow_mlf=True)
    if metadata.get("schema") == "dtmm-mlf/1":
        return metadata
    server = load_server(template_dir())
    try:
        return server.normalize_metadata(metadata, str(artifact))
    except server.ProjectError as e:
        raise _translate(e) from None


def _translate(err: Exception) -> DTMMError:
    """Map a template ProjectError to the dtmm error class of the same meaning."""
    cls = {"toolchain": ToolchainError, "resource": ResourceError, "artifact": ModelError,
           "run": ToolchainError}.get(getattr(err, "kind", ""), DTMMError)
    return cls(str(err))


def check_fits(metadata: dict, board: Board, stack_bytes: int | None = None,
               artifact: str = "model") -> None:
    """Check that the model's arena and constants fit the board before building.

    RAM must hold the arena, the harness's input/output buffers and the stack reservation;
    flash must hold the constants. (The linker re-checks everything, including code.)

    Raises
    ------
    ResourceError
        Naming the board, the memory, the needed and the available bytes.
    """
    arena = int(metadata.get("arena", {}).get("bytes", 0))
    io = sum(int(t["bytes"]) for t in metadata.get("inputs", []) + metadata.get("outputs", []))
    stack_bytes = stack_bytes or board.stack_bytes
    ram_needed = arena + io + stack_bytes
    if ram_needed > board.ram_bytes:
        raise ResourceError(
            f"{artifact} does not fit the RAM of board {board.name}: needs {ram_needed} bytes "
            f"(arena {arena} + I/O buffers {io} + stack {stack_bytes}), "
            f"{board.ram_bytes} available")
    constants = int(metadata.get("constants_bytes", 0))
    if constants > board.flash_bytes:
        raise ResourceError(
            f"{artifact} does not fit the flash of board {board.name}: constants need "
            f"{constants} bytes, {board.flash_bytes} available")


def pack_inputs(metadata: dict, inputs, artifact: str) -> dict:
    """Check inputs against metadata.json and pack them as records; ``{"n", "data"}``."""
    specs = metadata["inputs"]
    if isinstance(inputs, dict):
        missing = [s["name"] for s in specs if s["name"] not in inputs]
        if missing:
            raise DTMMError(f"inputs for {artifact}: missing {missing}")
        arrays = [inputs[s["name"]] for s in specs]
    elif isinstance(inputs, (list, tuple)):
        arrays = list(inputs)
    else:
        arrays = [inputs]
    if len(arrays) != len(specs):
        raise DTMMError(f"{artifact} has {len(specs)} inputs, {len(arrays)} given")
    n = None
    for spec, arr in zip(specs, arrays):
        arr = np.asarray(arr)
        dtype = np.dtype(_DTYPES.get(spec["dtype"], np.uint8))
        shape = tuple(spec["shape"])
        if arr.dtype != dtype or arr.shape[1:] != shape:
            raise DTMMError(f"input {spec['name']!r} of {artifact} must be "
                            f"(N, {', '.join(map(str, shape))}) {dtype}, got "
                            f"{arr.shape} {arr.dtype}")
        if n is not None and arr.shape[0] != n:
            raise DTMMError(f"inputs of {artifact} disagree on N: {n} vs "
                            f"{arr.shape[0]} for {spec['name']!r}")
        n = arr.shape[0]
        if arr.nbytes // max(n, 1) != spec["bytes"]:
            raise ModelError(f"{artifact}: input {spec['name']!r} is "
                             f"{spec['bytes']} bytes in metadata.json but shape and "
                             f"dtype give {arr.nbytes // max(n, 1)}")
    if not n:
        raise DTMMError(f"no inputs given for {artifact} (N = 0)")
    # One record per inference: every input's bytes back to back (little-endian, the
    # Cortex-M byte order).
    per = [np.ascontiguousarray(a, dtype=np.asarray(a).dtype.newbyteorder("<"))
           .reshape(n, -1).view(np.uint8) for a in arrays]
    return {"n": n, "data": np.concatenate(per, axis=1).tobytes()}


def unpack_outputs(metadata: dict, raw: bytes, n: int, where: str) -> list:
    """Split ``n`` output records into one array per output, in metadata order."""
    specs = metadata["outputs"]
    record = sum(s["bytes"] for s in specs)
    if len(raw) != n * record:
        raise ToolchainError(f"{where}: expected {n * record} "
                             f"output bytes, got {len(raw)}")
    table = np.frombuffer(raw, dtype=np.uint8).reshape(n, record)
    outs, off = [], 0
    for s in specs:
        dtype = np.dtype(_DTYPES.get(s["dtype"], np.uint8)).newbyteorder("<")
        chunk = np.ascontiguousarray(table[:, off:off + s["bytes"]])
        outs.append(chunk.view(dtype).astype(dtype.newbyteorder("=")).reshape(
            n, *s["shape"]))
        off += s["bytes"]
    return outs


class Project:
    """A generated project: one artifact built for one board.

    Parameters
    ----------
    artifact : path
        Model artifact (``.tar`` or directory, see docs/architecture.md).
    board : str
        Board name (see :data:`dtmm_tvm.micro.boards.BOARDS`).
    build_dir : path, optional
        Parent directory for the project; a fresh subdirectory is created in it, so nothing
        existing is overwritten. Default: a new temporary directory.
    opt_level : str
        GCC optimisation flag.
    extra_cflags : str
        Extra compiler flags for model and harness.
    stack_bytes : int
        Stack reservation.
    verbose : bool
        Print build and emulator commands and output.
    """

    def __init__(self, artifact: str | os.PathLike, board: str, *,
                 build_dir: str | os.PathLike | None = None, opt_level: str = "-O2",
                 extra_cflags: str = "", stack_bytes: int | None = None,
                 verbose: bool = False):
        self.artifact = Path(artifact)
        self.board = get_board(board)
        if not self.artifact.exists():
            raise ModelError(f"model artifact {self.artifact} does not exist")
        self.metadata = read_artifact_metadata(self.artifact)
        self.stack_bytes = stack_bytes or self.board.stack_bytes  # default: the board's
        self.verbose = verbose
        self._options = {"board": self.board.name, "opt_level": opt_level,
                         "extra_cflags": extra_cflags, "stack_bytes": self.stack_bytes}
        self._build_dir = build_dir
        self._own_parent = build_dir is None
        # Created by generate(), so a Project that is never built leaves nothing behind.
        self._parent: Path | None = None
        self.project_dir: Path | None = None
        self.elf: Path | None = None
        self._handler = None

    # -- Project API steps -------------------------------------------------------------------
    def generate(self) -> Path:
        """Check resources and generate the project from the template."""
        check_fits(self.metadata, self.board, self.stack_bytes, str(self.artifact))
        server = load_server(template_dir())
        if self._build_dir is not None:
            Path(self._build_dir).mkdir(parents=True, exist_ok=True)
        self._parent = Path(tempfile.mkdtemp(prefix=f"dtmm-{self.board.name}-",
                                             dir=self._build_dir))
        self.project_dir = self._parent / "project"
        try:
            server.Handler().generate_project(self.artifact, self.project_dir, self._options)
        except server.ProjectError as e:
            raise _translate(e) from None
        self._handler = load_server(self.project_dir).Handler(self.project_dir)
        return self.project_dir

    def build(self) -> Path:
        """Compile and link; returns the ELF. Generates the project first if needed."""
        require_tool("arm-none-eabi-gcc")
        require_tool("make")
        if self._handler is None:
            self.generate()
        try:
            self.elf = self._handler.build({"verbose": self.verbose})
            self._handler.flash({})
        except self._handler_error() as e:
            raise _translate(e) from None
        return self.elf

    def _handler_error(self):
        return sys.modules[type(self._handler).__module__].ProjectError

    def run(self, inputs, *, timeout_s: float = 120.0,
            icount_shift: int = DEFAULT_ICOUNT_SHIFT, on_inference=None) -> measure.RunResult:
        """Run the model on every input and measure it.

        Parameters
        ----------
        inputs : numpy.ndarray, list of numpy.ndarray or dict
            ``(N, *input_shape)`` in the input's dtype; for several inputs a list in metadata
            order or a dict keyed by input name.
        timeout_s : float
            Wall-clock limit of the emulator run.
        icount_shift : int
            QEMU ``-icount shift``.
        on_inference : callable, optional
            ``on_inference(done, total)`` as the board reports each finished inference.

        Returns
        -------
        RunResult
        """
        require_tool("qemu-system-arm")
        if self.elf is None:
            self.build()
        records = self._pack_inputs(inputs)
        inputs_path = self._parent / f"inputs-{os.getpid()}-{id(records)}.bin"
        inputs_path.write_bytes(records["data"])
        if on_inference is not None:
            seen = [0]

            def on_stderr(text, n=records["n"]):
                done = text.count("DTMM ticks ")
                if done != seen[0]:
                    seen[0] = done
                    on_inference(done, n)

            self._handler.on_stderr = on_stderr
        try:
            res = self._handler.run({"inputs_path": str(inputs_path), "timeout_s": timeout_s,
                                     "icount_shift": icount_shift, "verbose": self.verbose})
        except self._handler_error() as e:
            raise _translate(e) from None
        finally:
            inputs_path.unlink(missing_ok=True)
            self._handler.on_stderr = None
        try:
            report = measure.parse_harness_output(res["stderr"])
            measure.check_exit(res["exit_status"], report, self.board, str(self.elf),
                               self.stack_bytes)
            n = records["n"]
            if report.done != n or len(report.ticks) != n:
                raise ToolchainError(f"{self.elf} on {self.board.name}: {n} inputs sent but "
                                     f"{len(report.ticks)} inferences reported")
            outputs = self._unpack_outputs(Path(res["outputs_path"]).read_bytes(), n)
        finally:
            shutil.rmtree(res["run_dir"], ignore_errors=True)
        counts, empty = measure.instructions_from_report(report, self.board, icount_shift)
        return self._result(outputs, counts, empty, report)

    def close(self) -> None:
        """Delete the project if it lives in a temporary directory created for it."""
        if self._own_parent and self._parent is not None:
            shutil.rmtree(self._parent, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- helpers ---------------------------------------------------------------------------
    def _pack_inputs(self, inputs) -> dict:
        return pack_inputs(self.metadata, inputs, str(self.artifact))

    def _unpack_outputs(self, raw: bytes, n: int) -> list:
        return unpack_outputs(self.metadata, raw, n, f"{self.elf} on {self.board.name}")

    def _result(self, outputs, counts, empty, report) -> measure.RunResult:
        return make_result(self.board, self.metadata, self.project_dir, outputs, counts, empty,
                           report.stack_high_water, report.op_instructions,
                           keep=not self._own_parent)


def make_result(board: Board, metadata: dict, project_dir: Path, outputs, counts, empty,
                stack_high_water, op_instructions=None, keep=True) -> measure.RunResult:
    """The measurement record of a run: counts, plus flash and RAM from the built ELF."""
    mem = measure.elf_memory(project_dir / "build" / "app.elf")
    model_objs = sorted((project_dir / "build" / "model").glob("*.o"))
    model = measure.object_sizes(model_objs)
    flash = {"text": mem["text"], "rodata": mem["rodata"], "data": mem["data"],
             "model_code": model["code"], "model_constants": model["constants"]}
    ram = {"data": mem["data"], "bss": mem["bss"],
           "arena": int(metadata.get("arena", {}).get("bytes", 0)),
           "stack_high_water": stack_high_water}
    names = [s["name"] for s in metadata["outputs"]]
    return measure.RunResult(
        board=board.name, outputs=outputs[0] if len(outputs) == 1 else outputs,
        output_names=names, instructions_per_inference=counts,
        empty_call_instructions=empty, flash=flash, ram=ram,
        stack_reserved=mem["stack_reserved"],
        project_dir=str(project_dir) if keep else None,
        op_instructions=op_instructions or None)


def run_artifact(artifact_path: str | os.PathLike, board: str, inputs, *,
                 build_dir: str | os.PathLike | None = None, opt_level: str = "-O2",
                 extra_cflags: str = "", stack_bytes: int | None = None,
                 timeout_s: float = 120.0, verbose: bool = False,
                 profile: bool = False, progress=None) -> measure.RunResult:
    """Build a model artifact for a board, run it on QEMU and measure it.

    Parameters
    ----------
    artifact_path : path
        Model artifact (``.tar`` or directory, see docs/architecture.md).
    board : str
        ``"mps2-an386"``, ``"mps2-an500"`` or ``"mps3-an547"``.
    inputs : numpy.ndarray, list or dict
        ``(N, *input_shape)`` in the model's input dtype (list/dict for several inputs).
    build_dir : path, optional
        Keep the project in a fresh subdirectory of this directory (default: a temporary
        directory that is deleted afterwards).
    opt_level, extra_cflags : str
        Compiler options.
    stack_bytes : int
        Stack reservation.
    timeout_s : float
        Wall-clock limit of the emulator run.
    verbose : bool
        Print the build and emulator commands and output.
    profile : bool
        Build with a timer read around every operator call of the runner
        (``-DDTMM_PROFILE``); the result's ``op_instructions`` holds the per-operator counts
        (:func:`dtmm_tvm.micro.profile.profile_rows` joins them with metadata.json).
    progress : callable, optional
        ``progress(stage, done, total)``: ``("build", None, None)`` as the build starts,
        ``("run", 0, N)`` as QEMU starts, then ``("run", done, N)`` per finished inference.

    Returns
    -------
    RunResult
        Outputs ``(N, *output_shape)``, instructions per inference, flash/RAM breakdown.

    Raises
    ------
    ResourceError
        The model does not fit the board.
    ToolchainError
        A tool is missing or the build/emulator failed.
    ModelError
        The artifact is malformed, or the model failed at run time.
    """
    if profile:
        extra_cflags = f"{extra_cflags} -DDTMM_PROFILE".strip()
    with Project(artifact_path, board, build_dir=build_dir, opt_level=opt_level,
                 extra_cflags=extra_cflags, stack_bytes=stack_bytes, verbose=verbose) as proj:
        say = progress or (lambda stage, done=None, total=None: None)
        say("build", None, None)
        proj.build()
        say("run", 0, None)
        return proj.run(inputs, timeout_s=timeout_s,
                        on_inference=None if progress is None else lambda done, n: say("run", done, n))
