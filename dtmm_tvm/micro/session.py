"""Generate, build, flash and run a model through the Project API, as microTVM's flow did.

``create_project`` starts the template's server, checks it and asks it to ``generate_project``;
``build_project`` starts the generated project's own server (its copy of
``microtvm_api_server.py``) and calls ``build`` and ``flash``; ``run_project`` opens the
transport and runs inferences over the board's UART (:mod:`.transport`). These are what
``dtmm micro create-project|build|flash|run`` call.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import DTMMError, ModelError, OutputExistsError, ResourceError, ToolchainError
from . import measure
from .boards import get_board
from .project_api import ProjectAPIClient, ProjectAPIError
from .project import (check_fits, make_result, pack_inputs, read_artifact_metadata, template_dir,
                      unpack_outputs)
from .qemu import DEFAULT_ICOUNT_SHIFT
from .transport import ModelSession

_KIND_ERRORS = {"toolchain": ToolchainError, "resource": ResourceError, "artifact": ModelError,
                "run": ToolchainError, "transport": ToolchainError}


def _translate(err: ProjectAPIError) -> DTMMError:
    """The dtmm error of the same meaning as a server error reply."""
    return _KIND_ERRORS.get(err.kind, DTMMError)(str(err))


def _connect(directory: Path, want_template: bool) -> tuple:
    client = ProjectAPIClient.launch(directory)
    try:
        info = client.server_info_query()
    except BaseException:
        client.close()
        raise
    if info["is_template"] != want_template:
        client.close()
        raise DTMMError(f"{directory} is {'a generated project' if want_template else 'a template'}"
                        f", not {'a template' if want_template else 'a generated project'}")
    return client, info


def project_record(project_dir: str | os.PathLike) -> dict:
    """The ``project.json`` that generate_project wrote (board, metadata, options)."""
    import json

    path = Path(project_dir) / "project.json"
    if not path.is_file():
        raise DTMMError(f"{project_dir} is not a generated project (no project.json); create it "
                        "with 'dtmm micro create-project'")
    return json.loads(path.read_text(encoding="utf-8"))


def create_project(artifact: str | os.PathLike, project_dir: str | os.PathLike, board: str, *,
                   options: dict | None = None, force: bool = False,
                   template: str | os.PathLike | None = None) -> Path:
    """Generate a project for ``board`` from a model artifact through the template's server.

    An existing non-empty ``project_dir`` is refused unless ``force``; with ``force`` it is
    replaced only when it is itself a generated project.
    """
    project_dir = Path(project_dir).resolve()
    board_info = get_board(board)
    metadata = read_artifact_metadata(artifact)
    check_fits(metadata, board_info, int((options or {}).get("stack_bytes") or board_info.stack_bytes),
               str(artifact))
    if project_dir.exists() and any(project_dir.iterdir()):
        if not force:
            raise OutputExistsError(f"{project_dir} exists and is not empty; pass --force to "
                                    "replace a generated project")
        if not (project_dir / "project.json").is_file():
            raise OutputExistsError(f"{project_dir} is not a generated project; refusing to "
                                    "replace it even with --force")
        import shutil

        shutil.rmtree(project_dir)
    client, _ = _connect(Path(template) if template else template_dir(), want_template=True)
    with client:
        try:
            client.generate_project(Path(artifact).resolve(), project_dir,
                                    {**(options or {}), "board": board})
        except ProjectAPIError as e:
            raise _translate(e) from None
    return project_dir


def build_project(project_dir: str | os.PathLike, *, options: dict | None = None,
                  flash: bool = True) -> Path:
    """``build`` (and ``flash``) through the project's own server; returns the ELF path."""
    project_dir = Path(project_dir).resolve()
    project_record(project_dir)
    client, _ = _connect(project_dir, want_template=False)
    with client:
        try:
            client.build(options)
            if flash:
                client.flash(options)
        except ProjectAPIError as e:
            raise _translate(e) from None
    return project_dir / "build" / "app.elf"


def flash_project(project_dir: str | os.PathLike, *, options: dict | None = None) -> None:
    """``flash`` through the project's own server (QEMU: checks the image it will load)."""
    project_dir = Path(project_dir).resolve()
    project_record(project_dir)
    client, _ = _connect(project_dir, want_template=False)
    with client:
        try:
            client.flash(options)
        except ProjectAPIError as e:
            raise _translate(e) from None


def run_project(project_dir: str | os.PathLike, inputs, *, timeout_s: float = 60.0,
                icount_shift: int = DEFAULT_ICOUNT_SHIFT, progress=None) -> measure.RunResult:
    """Run inferences over the transport of a built project and measure them.

    Parameters
    ----------
    inputs : numpy.ndarray, list or dict
        As for :func:`dtmm_tvm.micro.run_artifact`.
    timeout_s : float
        Limit for each reply from the board.
    progress : callable, optional
        ``progress(done, total)`` after each inference.
    """
    project_dir = Path(project_dir).resolve()
    record = project_record(project_dir)
    metadata, board = record["metadata"], get_board(record["board"])
    if not (project_dir / "build" / "app.elf").is_file():
        raise DTMMError(f"{project_dir} is not built yet: run 'dtmm micro build' first")
    packed = pack_inputs(metadata, inputs, str(project_dir))
    n, data = packed["n"], packed["data"]
    size = len(data) // n
    client, _ = _connect(project_dir, want_template=False)
    with client:
        session = ModelSession(client, metadata, timeout_s=timeout_s)
        try:
            hello = session.open({"icount_shift": icount_shift})
            replies = []
            try:
                for i in range(n):
                    replies.append(session.infer(data[i * size:(i + 1) * size]))
                    if progress is not None:
                        progress(i + 1, n)
            finally:
                session.close()
        except ProjectAPIError as e:
            raise _translate(e) from None
    outputs = unpack_outputs(metadata, b"".join(r.outputs for r in replies), n,
                             f"{project_dir} on {board.name}")
    empty = board.ticks_to_instructions(hello.empty_call_ticks, icount_shift)
    counts = [board.ticks_to_instructions(r.ticks, icount_shift) - empty for r in replies]
    ops = measure.op_instructions([r.op_ticks for r in replies], hello.mark_pair_ticks, board,
                                  icount_shift) if hello.profile_marks else None
    return make_result(board, metadata, project_dir, outputs, counts, empty,
                       max(r.stack_high_water for r in replies), ops)
