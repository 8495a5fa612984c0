"""Reading an archive that may not be ours: bounded in size and kind, metadata checked field by field.

``dtmm run`` takes a path from the user and the archive may come from anywhere. Before anything
reads it: the path must be a regular file (``/dev/zero`` or a FIFO would keep tarfile's
compression probe reading forever) of bounded size; its members are regular files or
directories with bounded sizes (a small ``.tar.gz`` may declare gigabytes); ``metadata.json``
is small, plain JSON (no deep nesting) and has every field the runner uses, with the right types
and consistent sizes, so a tampered archive is one clear error, never a KeyError or a
RecursionError.
"""

from __future__ import annotations

import json
import math
import os
import re
import stat
import tarfile

from ..errors import DTMMError

MAX_ARCHIVE_BYTES = 256 * 1024 * 1024
MAX_MEMBER_BYTES = 64 * 1024 * 1024
MAX_TOTAL_BYTES = 256 * 1024 * 1024
MAX_MEMBERS = 2000
MAX_METADATA_BYTES = 8 * 1024 * 1024
C_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
ITEMSIZE = {"int8": 1, "uint8": 1, "int16": 2, "int32": 4, "float32": 4}


def open_archive(path: str) -> tarfile.TarFile:
    """Open ``path`` as a tar archive after checking it is a bounded regular file with bounded,
    plain members. The caller closes the result."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise DTMMError(f"{path}: no such artifact") from None
    except OSError as err:
        raise DTMMError(f"{path}: cannot read the artifact ({err.strerror})") from None
    if not stat.S_ISREG(info.st_mode):
        raise DTMMError(f"{path}: not a dtmm artifact (not a regular file)")
    if info.st_size > MAX_ARCHIVE_BYTES:
        raise DTMMError(f"{path}: {info.st_size} bytes; artifacts larger than {MAX_ARCHIVE_BYTES} bytes are refused")
    try:
        tar = tarfile.open(path, "r:*")
    except tarfile.ReadError:
        raise DTMMError(f"{path}: not a dtmm artifact (not a tar archive)") from None
    except (tarfile.TarError, OSError, EOFError) as err:
        raise DTMMError(f"{path}: unreadable artifact ({type(err).__name__})") from None
    try:
        total = 0
        for count, member in enumerate(tar):
            if count >= MAX_MEMBERS:
                raise DTMMError(f"{path}: more than {MAX_MEMBERS} archive members")
            if not (member.isfile() or member.isdir()):
                raise DTMMError(f"{path}: archive member {member.name[:100]!r} is not a regular file or directory")
            if member.name.startswith("/") or ".." in member.name.split("/"):
                raise DTMMError(f"{path}: archive member {member.name[:100]!r} points outside the archive")
            if member.size > MAX_MEMBER_BYTES:
                raise DTMMError(f"{path}: archive member {member.name[:100]!r} declares {member.size} bytes; "
                                f"at most {MAX_MEMBER_BYTES} are accepted")
            total += member.size
            if total > MAX_TOTAL_BYTES:
                raise DTMMError(f"{path}: the archive unpacks to more than {MAX_TOTAL_BYTES} bytes")
    except DTMMError:
        tar.close()
        raise
    except (tarfile.TarError, OSError, EOFError, UnicodeDecodeError) as err:
        tar.close()
        raise DTMMError(f"{path}: unreadable artifact ({type(err).__name__})") from None
    return tar


def load_metadata_json(data: bytes, path: str):
    """Parse metadata.json bytes; any malformation is a DTMMError naming ``path``."""
    if len(data) > MAX_METADATA_BYTES:
        raise DTMMError(f"{path}: metadata.json is larger than {MAX_METADATA_BYTES} bytes")
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as err:
        raise DTMMError(f"{path}: metadata.json is not valid JSON ({type(err).__name__})") from None


def check_metadata(meta, path: str) -> dict:
    """Check the fields of metadata.json that building and running an archive rely on."""
    def bad(what: str):
        raise DTMMError(f"{path}: metadata.json: {what}")

    if not isinstance(meta, dict):
        bad("not a JSON object")
    if not isinstance(meta.get("target", ""), str):  # hand-made artifacts may name no target
        bad("'target' is not a string")
    for kind in ("inputs", "outputs"):
        tensors = meta.get(kind)
        if not isinstance(tensors, list) or not tensors or len(tensors) > 64:
            bad(f"'{kind}' must be a list of 1 to 64 tensors")
        for k, t in enumerate(tensors):
            where = f"{kind}[{k}]"
            if not isinstance(t, dict):
                bad(f"{where} is not an object")
            if not isinstance(t.get("name"), str):
                bad(f"{where} has no 'name' string")
            if not isinstance(t.get("c_name", t.get("name")), str) or not C_IDENTIFIER.match(t.get("c_name", t["name"])):
                bad(f"{where} 'c_name' is not a C identifier")
            shape = t.get("shape")
            if (not isinstance(shape, list) or len(shape) > 8
                    or not all(isinstance(d, int) and not isinstance(d, bool) and 0 < d <= 2**24 for d in shape)):
                bad(f"{where} 'shape' must be a list of at most 8 positive integers")
            if t.get("dtype") not in ITEMSIZE:
                bad(f"{where} 'dtype' must be one of {sorted(ITEMSIZE)}")
            nbytes = math.prod(shape) * ITEMSIZE[t["dtype"]]
            if t.get("bytes") != nbytes:
                bad(f"{where} 'bytes' is {t.get('bytes')!r}, but shape {shape} of {t['dtype']} is {nbytes} bytes")
    for key in ("arena", "constants_bytes"):
        value = meta.get(key, 0)
        if key == "arena":
            value = value.get("bytes", 0) if isinstance(value, dict) else None
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            bad(f"'{key}' must hold a non-negative byte count")
    return meta
