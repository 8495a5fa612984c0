"""Client of microTVM's Project API protocol: JSON-RPC 2.0 over a pair of pipes.

A project template or generated project holds ``microtvm_api_server.py``. The client starts it
as microTVM did (``python microtvm_api_server.py --read-fd R --write-fd W``, working directory
the project), writes one JSON request object per line and reads one reply per line, checks the
protocol version reported by ``server_info_query`` (1) and turns error replies into
:class:`ProjectAPIError` subclasses. The methods are microTVM's: ``server_info_query``,
``generate_project``, ``build``, ``flash``, ``open_transport``, ``close_transport``,
``read_transport``, ``write_transport`` (transport data travels base85-encoded).
"""

from __future__ import annotations

import base64
import json
import os
import select
import subprocess
import sys
import time
from pathlib import Path

from ..errors import DTMMError

PROTOCOL_VERSION = 1
SERVER_FILENAME = "microtvm_api_server.py"

#: JSON-RPC 2.0 error codes, and microTVM's code for a method that failed.
SERVER_ERROR = -32000
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603


class ProjectAPIError(DTMMError):
    """A Project API call failed; ``code``, ``message`` and ``data`` are the error reply's."""

    def __init__(self, method: str, code: int | None, message: str, data=None):
        detail = data.get("detail") if isinstance(data, dict) else None
        text = f"Project API {method}: {message}"
        if detail and detail != message:
            text += f": {detail}"
        super().__init__(text)
        self.method, self.code, self.message, self.data = method, code, message, data

    @property
    def kind(self) -> str | None:
        """The server's failure kind (``toolchain``, ``resource``, ``artifact``, ``usage``,
        ``run``, ``transport``), when it said."""
        return self.data.get("kind") if isinstance(self.data, dict) else None


class TransportClosedError(ProjectAPIError):
    """The server's transport closed (QEMU exited or the UART closed)."""


class IoTimeoutError(ProjectAPIError):
    """A transport read or write timed out on the server."""


class ProtocolError(ProjectAPIError):
    """The server broke the protocol: no reply, a malformed reply, a wrong id or version."""


_NAMED_ERRORS = {"TransportClosedError": TransportClosedError, "IoTimeoutError": IoTimeoutError}


def _tvm_version() -> str:
    """The installed TVM's version (what microTVM sent), without importing TVM."""
    from importlib import metadata

    try:
        return metadata.version("apache-tvm")
    except metadata.PackageNotFoundError:
        return "unknown"


class ProjectAPIClient:
    """One connection to a Project API server.

    Parameters
    ----------
    read_fd, write_fd : int
        Pipes from and to the server (owned by the client afterwards).
    process : subprocess.Popen, optional
        The server process, waited for by :meth:`close`.
    """

    def __init__(self, read_fd: int, write_fd: int, process: subprocess.Popen | None = None):
        self._read_fd, self._write_fd = read_fd, write_fd
        self.process = process
        self._buffer = b""
        self._next_id = 1
        self.closed = False

    # -- launching ------------------------------------------------------------------------------
    @classmethod
    def launch(cls, directory: str | os.PathLike, *, debug: bool = False,
               python: str | None = None) -> "ProjectAPIClient":
        """Start the ``microtvm_api_server.py`` of ``directory`` and connect to it."""
        directory = Path(directory)
        script = directory / SERVER_FILENAME
        if not script.is_file():
            raise DTMMError(f"{directory}: no Project API server ({SERVER_FILENAME})")
        server_read, client_write = os.pipe()
        client_read, server_write = os.pipe()
        argv = [python or sys.executable, str(script), "--read-fd", str(server_read),
                "--write-fd", str(server_write)] + (["--debug"] if debug else [])
        try:
            proc = subprocess.Popen(argv, cwd=directory, pass_fds=(server_read, server_write),
                                    stdin=subprocess.DEVNULL)
        except BaseException:
            for fd in (server_read, client_write, client_read, server_write):
                os.close(fd)
            raise
        os.close(server_read)
        os.close(server_write)
        return cls(client_read, client_write, proc)

    def close(self, timeout: float = 10.0) -> None:
        """Close the pipes; the server then ends (it closes its transport first)."""
        if self.closed:
            return
        self.closed = True
        for fd in (self._write_fd, self._read_fd):
            try:
                os.close(fd)
            except OSError:
                pass
        if self.process is not None:
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- the wire ---------------------------------------------------------------------------------
    def send_line(self, line: bytes) -> None:
        """Write raw bytes to the server (tests use it to send malformed requests)."""
        if self.closed:
            raise ProtocolError("send", None, "the connection is closed")
        view = memoryview(line)
        while view:
            try:
                view = view[os.write(self._write_fd, view):]
            except BrokenPipeError:
                raise ProtocolError("send", None, "the server closed the connection") from None

    def read_reply(self, method: str, timeout: float | None = None) -> dict:
        """Read one reply line and parse it as a JSON object."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while b"\n" not in self._buffer:
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready, _, _ = select.select([self._read_fd], [], [], wait)
            if not ready:
                raise ProtocolError(method, None, f"no reply from the server within {timeout:g} s")
            chunk = os.read(self._read_fd, 65536)
            if not chunk:
                status = self.process.poll() if self.process is not None else None
                raise ProtocolError(method, None, "the server closed the connection"
                                    + (f" (exit status {status})" if status is not None else "")
                                    + (" in the middle of a reply" if self._buffer else ""))
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        try:
            reply = json.loads(line)
        except ValueError as e:
            raise ProtocolError(method, None, f"reply is not JSON: {e}") from None
        if not isinstance(reply, dict) or reply.get("jsonrpc") != "2.0":
            raise ProtocolError(method, None, f"reply is not a JSON-RPC 2.0 object: {line[:200]!r}")
        return reply

    def call(self, method: str, params: dict, timeout: float | None = None):
        """Send one request and return its ``result``; an error reply raises."""
        request_id = self._next_id
        self._next_id += 1
        request = {"jsonrpc": "2.0", "method": method, "params": params, "id": request_id}
        self.send_line(json.dumps(request).encode("utf-8") + b"\n")
        reply = self.read_reply(method, timeout)
        if reply.get("id") != request_id:
            raise ProtocolError(method, None, f"reply id {reply.get('id')!r} does not match "
                                              f"request id {request_id}")
        if "error" in reply:
            err = reply["error"] if isinstance(reply["error"], dict) else {}
            message = str(err.get("message", "error without a message"))
            cls = _NAMED_ERRORS.get(message, ProjectAPIError) \
                if err.get("code") == SERVER_ERROR else ProjectAPIError
            raise cls(method, err.get("code"), message, err.get("data"))
        if "result" not in reply:
            raise ProtocolError(method, None, "reply has neither result nor error")
        return reply["result"]

    # -- the methods ------------------------------------------------------------------------------
    def server_info_query(self, tvm_version: str = "") -> dict:
        """Platform, template or project, options; checks the protocol version."""
        if not tvm_version:
            tvm_version = _tvm_version()
        info = self.call("server_info_query", {"tvm_version": tvm_version})
        if not isinstance(info, dict) or info.get("protocol_version") != PROTOCOL_VERSION:
            got = info.get("protocol_version") if isinstance(info, dict) else info
            raise ProtocolError("server_info_query", None, f"the server speaks protocol version "
                                                           f"{got!r}; this client speaks "
                                                           f"{PROTOCOL_VERSION}")
        return info

    def generate_project(self, model_library_format_path, project_dir, options: dict | None = None,
                         standalone_crt_dir=None):
        return self.call("generate_project", {
            "model_library_format_path": str(model_library_format_path),
            "standalone_crt_dir": None if standalone_crt_dir is None else str(standalone_crt_dir),
            "project_dir": str(project_dir), "options": dict(options or {})})

    def build(self, options: dict | None = None):
        return self.call("build", {"options": dict(options or {})})

    def flash(self, options: dict | None = None):
        return self.call("flash", {"options": dict(options or {})})

    def open_transport(self, options: dict | None = None) -> dict:
        """Start the board; returns microTVM's ``timeouts`` dict."""
        return self.call("open_transport", {"options": dict(options or {})})["timeouts"]

    def close_transport(self):
        return self.call("close_transport", {})

    def read_transport(self, n: int, timeout_sec: float | None) -> bytes:
        """Between 1 and ``n`` bytes from the board."""
        result = self.call("read_transport", {"n": n, "timeout_sec": timeout_sec},
                           timeout=None if timeout_sec is None else timeout_sec + 30.0)
        return base64.b85decode(result["data"])

    def write_transport(self, data: bytes, timeout_sec: float | None):
        return self.call("write_transport",
                         {"data": base64.b85encode(bytes(data)).decode("ascii"),
                          "timeout_sec": timeout_sec},
                         timeout=None if timeout_sec is None else timeout_sec + 30.0)
