"""Model Library Format-style archive writer (layout and schema in docs/architecture.md).

The archive is generated completely in memory, written to a temporary file in the destination
directory and only then moved into place, so an interrupted or failed build never leaves a
half-written ``.tar`` behind, and an existing file is never replaced unless asked.
"""

from __future__ import annotations

import copy
import errno
import io
import json
import os
import tarfile
import tempfile
import time

import tvm

from ..errors import DTMMError, ModelError, OutputExistsError
from .aot import AOTModule, _header, build_aot, module_names
from .archive_guard import MAX_METADATA_BYTES, check_metadata, load_metadata_json, open_archive

__all__ = ["archive_bytes", "build_metadata", "read_metadata", "write_archive"]

_RESERVED = {"schema", "inputs", "outputs", "arena", "constants_bytes", "functions", "layers", "entry",
             "module_name", "runner_steps", "version", "modules"}
#: Model Library Format metadata version whose fields metadata.json carries (TVM's MLF, v7).
MLF_VERSION = 7


def _merge_one(entry: dict, fields: dict, kind: str) -> None:
    """Merge caller fields into one generated entry; the C buffer's shape/dtype stay ours."""
    fields = dict(fields or {})
    dtype = fields.pop("dtype", entry["dtype"])
    shape = fields.pop("shape", entry["shape"])
    fields.pop("bytes", None)
    fields.pop("c_name", None)
    n = 1
    for d in shape:
        n *= int(d)
    m = 1
    for d in entry["shape"]:
        m *= int(d)
    if str(dtype) != entry["dtype"] or n != m:
        raise ModelError(
            f"{kind} {entry['name']!r}: the model describes {dtype}{list(shape)} but the compiled "
            f"function takes {entry['dtype']}{entry['shape']}"
        )
    entry.update(fields)


def _merge_tensor_extra(entries: list, extra, kind: str) -> None:
    """Merge caller-provided per-tensor fields (e.g. quantization) into input/output entries.

    ``extra`` is a list (by position) or a dict keyed by tensor name / c_name of dicts.
    """
    if extra is None:
        return
    if isinstance(extra, dict):
        by_name = {}
        for e in entries:
            by_name[e["name"]] = e
            by_name[e["c_name"]] = e
        for name, fields in extra.items():
            if name not in by_name:
                raise DTMMError(f"metadata for unknown {kind} {name!r}; known: {[e['name'] for e in entries]}")
            _merge_one(by_name[name], fields, kind)
    elif isinstance(extra, (list, tuple)):
        if len(extra) != len(entries):
            raise DTMMError(f"metadata for {len(extra)} {kind}s given, the model has {len(entries)}")
        for e, fields in zip(entries, extra):
            _merge_one(e, fields, kind)
    else:
        raise DTMMError(f"metadata_extra[{kind}s] must be a list or dict, got {type(extra).__name__}")


def build_metadata(aot: AOTModule, metadata_extra: dict | None = None) -> dict:
    """metadata.json content: the generated fields plus the caller's.

    Parameters
    ----------
    aot : AOTModule
        The generated model.
    metadata_extra : dict, optional
        ``model``, ``target``, ``mode`` and any other top-level keys are copied verbatim.
        ``inputs`` / ``outputs`` (a list by position, or a dict by tensor name, of dicts such as
        ``{"quantization": {"scale": 0.0039, "zero_point": -128}}``) are merged into the
        generated per-tensor entries. Other generated keys cannot be overridden.

    Returns
    -------
    dict
        Ordered like the schema in docs/architecture.md.
    """
    extra = copy.deepcopy(metadata_extra or {})
    generated = aot.metadata()
    _merge_tensor_extra(generated["inputs"], extra.pop("inputs", None), "input")
    _merge_tensor_extra(generated["outputs"], extra.pop("outputs", None), "output")
    clash = _RESERVED & set(extra)
    if clash:
        raise DTMMError(f"metadata_extra may not override generated fields {sorted(clash)}")
    meta = {
        "schema": generated["schema"],
        "version": MLF_VERSION,
        "model": extra.pop("model", {"name": "default", "source": None, "sha256": None}),
        "target": extra.pop("target", None),
        "mode": extra.pop("mode", None),
    }
    for key in ("inputs", "outputs", "arena", "constants_bytes", "functions", "layers"):
        meta[key] = generated[key]
    meta.update(extra)
    meta["module_name"] = generated["module_name"]
    meta["runner_steps"] = generated["runner_steps"]
    meta["modules"] = {generated["module_name"]: _mlf_module(aot, meta)}
    meta["entry"] = generated["entry"]
    return meta


def _mlf_module(aot: AOTModule, meta: dict) -> dict:
    """The module entry of Model Library Format's metadata (``modules.<name>``), as TVM's
    ``export_model_library_format`` wrote it for an AOT build with the C interface, plus the
    memory pools: the static arena (workspace) and the constants."""
    def io(entries):
        return {e["name"]: {"size": e["bytes"], "dtype": e["dtype"]} for e in entries}

    main = {"device": 1, "workspace_size_bytes": aot.arena.bytes, "constants_size_bytes": aot.constants_bytes,
            "io_size_bytes": sum(e["bytes"] for e in meta["inputs"] + meta["outputs"]),
            "inputs": io(meta["inputs"]), "outputs": io(meta["outputs"])}
    operators = [{"function_name": f["c_name"], "workspace": [{"device": 1, "workspace_size_bytes": f["scratch_bytes"]}]}
                 for f in aot.functions]
    names = module_names(aot.module_name)
    target = meta.get("target")
    return {
        "model_name": aot.module_name,
        "export_datetime": time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime()),
        "memory": {"functions": {"main": [main], "operator_functions": operators},
                   "pools": [{"pool_name": names["arena"], "kind": "workspace", "size_bytes": aot.arena.bytes,
                              "placement": f"static .bss, or section {names['macro']}ARENA_SECTION"},
                             {"pool_name": "constants", "kind": "constants", "size_bytes": aot.constants_bytes,
                              "placement": "const (flash)"}]},
        "target": [_target_string(target)] if target else [],
        "executors": ["aot"],
        "interface_api": "c",
        "unpacked_api": True,
        "style": "full-model",
    }


def _target_string(tag: str) -> str:
    """A tag such as ``dtmm/cortex-m4`` as TVM prints the target (``c -keys=... -mcpu=...``)."""
    mcpu = tag.split("/", 1)[1] if "/" in tag else tag
    return f"c -keys=dtmm,arm_cpu,cpu -mcpu={mcpu}"


def build_fragments(aot: AOTModule) -> dict:
    """A CMake and a Makefile fragment that compile the archive's sources into a user's firmware."""
    names = module_names(aot.module_name)
    lib = names["prefix"][:-1]
    srcs = sorted(p for p in aot.files if p.startswith("codegen/host/src/"))
    var = lib.upper()
    cmake = [f"# {lib}.cmake: the model as a static library. In your CMakeLists.txt:",
             f"#   include(path/to/extracted/archive/{lib}.cmake)",
             f"#   target_link_libraries(app PRIVATE {lib})",
             "# Compile with your core's flags (e.g. -mcpu=cortex-m4 -mthumb -mfloat-abi=hard).",
             f"add_library({lib} STATIC"]
    cmake += [f"  ${{CMAKE_CURRENT_LIST_DIR}}/{p}" for p in srcs]
    cmake += [")", f"target_include_directories({lib} PUBLIC ${{CMAKE_CURRENT_LIST_DIR}}/codegen/host/include)",
              f"target_compile_options({lib} PRIVATE -std=gnu11 -ffunction-sections -fdata-sections)", ""]
    make = [f"# {lib}.mk: the model's sources for a Makefile. In yours:",
            f"#   include path/to/extracted/archive/{lib}.mk",
            f"#   SRCS += $({var}_SRCS)",
            f"#   CFLAGS += $({var}_CFLAGS)",
            f"{var}_DIR := $(dir $(lastword $(MAKEFILE_LIST)))",
            f"{var}_SRCS := " + " ".join(f"$({var}_DIR){p}" for p in srcs),
            f"{var}_CFLAGS := -I$({var}_DIR)codegen/host/include -ffunction-sections -fdata-sections", ""]
    return {f"{lib}.cmake": "\n".join(cmake), f"{lib}.mk": "\n".join(make)}


def archive_bytes(aot: AOTModule, metadata: dict) -> bytes:
    """The tar file (uncompressed) holding metadata.json and the generated sources."""
    buf = io.BytesIO()
    now = int(time.time())
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        members = {"metadata.json": json.dumps(metadata, indent=2) + "\n", **aot.files}
        dirs = set()
        for path in members:
            parts = path.split("/")[:-1]
            for i in range(1, len(parts) + 1):
                dirs.add("/".join(parts[:i]))
        for d in sorted(dirs):
            info = tarfile.TarInfo(d + "/")
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, now
            tar.addfile(info)
        for path, text in members.items():
            data = text.encode("utf-8")
            info = tarfile.TarInfo(path)
            info.size, info.mode, info.mtime = len(data), 0o644, now
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _publish(tmp: str, out: str, overwrite: bool) -> None:
    """Move ``tmp`` to ``out`` atomically; without ``overwrite`` never replace ``out``."""
    if overwrite:
        os.replace(tmp, out)
        return
    try:
        # link() fails if `out` exists, closing the check-then-rename race.
        os.link(tmp, out)
    except FileExistsError:
        raise OutputExistsError(f"{out} exists; pass overwrite=True (--force) to replace it") from None
    except OSError as err:
        if err.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV):
            raise
        # File systems without hard links: fall back to check + rename.
        if os.path.exists(out):
            raise OutputExistsError(f"{out} exists; pass overwrite=True (--force) to replace it") from None
        os.replace(tmp, out)
        return
    os.unlink(tmp)


def write_archive(
    mod: tvm.IRModule,
    out_tar: str | os.PathLike,
    metadata_extra: dict | None = None,
    *,
    overwrite: bool = False,
    output_names: list | None = None,
    annotate=None,
    module_name: str = "default",
) -> dict:
    """Compile ``mod`` and write the Model Library Format-style archive.

    Parameters
    ----------
    mod : tvm.IRModule
        Straight-line Relax module (see :func:`dtmm_tvm.codegen.aot.build_aot`).
    out_tar : str or os.PathLike
        Destination ``.tar``. Its directory is created if needed.
    metadata_extra : dict, optional
        Caller fields for metadata.json (see :func:`build_metadata`).
    overwrite : bool
        Replace an existing ``out_tar``. Without it an existing file is an error.
    output_names : list of str, optional
        Output tensor names (default ``output`` / ``output<i>``).
    annotate : callable, optional
        ``annotate(metadata)`` may edit the metadata dict in place (or return a new dict)
        before it is written, e.g. to attach model layer names.
    module_name : str
        ``tvmgen_<module_name>_`` names every symbol, the header and its guard (``--module-name``).

    Returns
    -------
    dict
        The metadata written to ``metadata.json``.

    Raises
    ------
    OutputExistsError
        ``out_tar`` exists and ``overwrite`` is False (checked before and after generating).
    DTMMError
        Any generation error (unsupported op, dynamic shape, ...); nothing is written then.
    """
    out = os.fspath(out_tar)
    if os.path.isdir(out):
        raise OutputExistsError(f"{out} is a directory, expected a .tar file path")
    if not overwrite and os.path.exists(out):
        raise OutputExistsError(f"{out} exists; pass overwrite=True (--force) to replace it")
    extra = metadata_extra or {}
    isa = (extra.get("target"), extra["isa"]) if "isa" in extra else None  # the C's ISA guard
    aot = build_aot(mod, output_names=output_names, isa=isa, module_name=module_name)
    metadata = build_metadata(aot, metadata_extra)
    if annotate is not None:
        replaced = annotate(metadata)
        metadata = metadata if replaced is None else replaced
    # The header carries the quantization the caller merged into metadata.json.
    quantization = {t["c_name"]: t.get("quantization") for t in metadata["inputs"] + metadata["outputs"]}
    aot.files[f"codegen/host/include/{module_names(module_name)['header']}"] = _header(
        aot.inputs, aot.outputs, module_name, quantization, aot.arena.bytes)
    aot.files.update(build_fragments(aot))
    data = archive_bytes(aot, metadata)

    directory = os.path.dirname(os.path.abspath(out))
    try:
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".dtmm-", suffix=".tar.part", dir=directory)
    except OSError as err:  # a parent is a file, a read-only directory, ...
        raise DTMMError(f"{out}: cannot write the archive there ({err.strerror or str(err) or type(err).__name__})") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        _publish(tmp, out, overwrite)
    except BaseException as err:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(err, OSError):  # e.g. the file system is full; nothing was left behind
            raise DTMMError(f"{out}: cannot write the archive ({err.strerror or str(err) or type(err).__name__})") from None
        raise
    return metadata


def read_metadata(archive: str | os.PathLike, *, allow_mlf: bool = False) -> dict:
    """Read ``metadata.json`` from an archive written by :func:`write_archive`, or from the
    directory it was extracted to. With ``allow_mlf`` a Model Library Format metadata.json of
    TVM's (``version`` and ``modules``, no dtmm schema) is returned as is.

    Raises
    ------
    DTMMError
        The file is missing, not a tar, or has no valid metadata.json.
    """
    path = os.fspath(archive)
    try:
        if os.path.isdir(path):
            with open(os.path.join(path, "metadata.json"), "rb") as f:
                meta = load_metadata_json(f.read(MAX_METADATA_BYTES + 1), path)
            return _checked(path, meta, allow_mlf)
        with open_archive(path) as tar:  # a bounded regular file with bounded members
            member = tar.extractfile("metadata.json")
            if member is None:
                raise KeyError("metadata.json")
            meta = load_metadata_json(member.read(MAX_METADATA_BYTES + 1), path)
    except FileNotFoundError:
        raise DTMMError(f"{path}: no such artifact") from None
    except KeyError:
        raise DTMMError(f"{path}: not a dtmm artifact (no metadata.json)") from None
    except tarfile.ReadError:
        raise DTMMError(f"{path}: not a dtmm artifact (not a tar archive)") from None
    except (tarfile.TarError, OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DTMMError(f"{path}: unreadable artifact: {first_line}") from None
    return _checked(path, meta, allow_mlf)


def _checked(path: str, meta, allow_mlf: bool) -> dict:
    """The schema check, then (for our own archives) every field the tools read."""
    meta = _check_schema(path, meta, allow_mlf)
    return meta if "schema" not in meta else check_metadata(meta, path)


def _check_schema(path: str, meta, allow_mlf: bool = False) -> dict:
    if allow_mlf and isinstance(meta, dict) and "schema" not in meta and isinstance(meta.get("modules"), dict):
        return meta
    if not isinstance(meta, dict) or meta.get("schema") != "dtmm-mlf/1":
        raise DTMMError(f"{path}: metadata.json has an unknown schema {meta.get('schema') if isinstance(meta, dict) else None!r}")
    return meta
