"""The firmware's UART transport, seen from the host: frames and an inference session.

Framing (``microtvm_project/qemu_baremetal/src/transport.h`` is the device side)::

    0xD7 0x4D | type u8 | length u32 LE | payload | crc16 u16 LE

crc16 is CRC-16/CCITT-FALSE over type, length and payload. The host sends ``INFER`` (one input
record: every input's bytes in metadata order) and ``QUIT``; the board answers ``HELLO`` once at
start (sizes, profile marks, calibration ticks), a ``RESULT`` per ``INFER`` (status, ticks, stack
high-water, per-operator ticks, the output record) or ``ERROR`` (code, detail).

The bytes travel through the Project API's ``read_transport`` / ``write_transport``
(:class:`~dtmm_tvm.micro.project_api.ProjectAPIClient`).
"""

from __future__ import annotations

import struct
import time
from dataclasses import dataclass, field

from ..errors import ModelError, ToolchainError
from . import project_api

SYNC = b"\xd7\x4d"
VERSION = 1
MSG_INFER, MSG_QUIT = 0x01, 0x02
MSG_HELLO, MSG_RESULT, MSG_ERROR = 0x81, 0x82, 0x83
MESSAGE_NAMES = {MSG_INFER: "INFER", MSG_QUIT: "QUIT", MSG_HELLO: "HELLO", MSG_RESULT: "RESULT",
                 MSG_ERROR: "ERROR"}
DEVICE_ERRORS = {1: "the board received a frame with a bad CRC",
                 2: "the board received a frame of the wrong length",
                 3: "the board received a frame of an unknown type"}
#: Largest payload the host accepts: a guard against reading garbage as a length.
MAX_PAYLOAD = 16 * 1024 * 1024


def crc16(data: bytes, crc: int = 0xFFFF) -> int:
    """CRC-16/CCITT-FALSE (polynomial 0x1021, initial value 0xFFFF, no reflection)."""
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return crc


def encode_frame(msg_type: int, payload: bytes = b"") -> bytes:
    """One frame as bytes."""
    body = struct.pack("<BI", msg_type, len(payload)) + bytes(payload)
    return SYNC + body + struct.pack("<H", crc16(body))


class FrameReader:
    """Reads frames from a byte source ``read(n, timeout_sec) -> bytes`` (1..n bytes)."""

    def __init__(self, read):
        self._read = read
        self._buffer = b""

    def _take(self, n: int, deadline: float, what: str, got_before: int) -> bytes:
        while len(self._buffer) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise project_api.IoTimeoutError("read_transport", None, "IoTimeoutError",
                                                 {"detail": f"timed out in {what}"})
            try:
                self._buffer += self._read(max(n - len(self._buffer), 1), left)
            except project_api.TransportClosedError as e:
                have = got_before + len(self._buffer)
                raise ToolchainError(f"the board's transport closed in the middle of {what} "
                                     f"({have} bytes received): {e}") from None
        out, self._buffer = self._buffer[:n], self._buffer[n:]
        return out

    def read_frame(self, timeout_s: float) -> tuple:
        """The next frame's ``(type, payload)``; bytes before a sync pattern are skipped."""
        deadline = time.monotonic() + timeout_s
        while True:
            first = self._take(1, deadline, "waiting for a message", 0)
            if first != SYNC[:1]:
                continue
            second = self._take(1, deadline, "a message header", 1)
            while second == SYNC[:1]:
                second = self._take(1, deadline, "a message header", 1)
            if second == SYNC[1:]:
                break
        header = self._take(5, deadline, "a message header", 2)
        msg_type, length = struct.unpack("<BI", header)
        name = MESSAGE_NAMES.get(msg_type, f"type 0x{msg_type:02x}")
        if length > MAX_PAYLOAD:
            raise ToolchainError(f"the board sent a {name} message of {length} bytes "
                                 f"(more than {MAX_PAYLOAD}): the stream is corrupt")
        payload = self._take(length, deadline, f"a {name} message of {length} bytes", 7)
        (crc,) = struct.unpack("<H", self._take(2, deadline, f"the CRC of a {name} message",
                                                7 + length))
        if crc != crc16(header + payload):
            raise ToolchainError(f"the board sent a {name} message with a bad CRC")
        return msg_type, payload


@dataclass
class Hello:
    """What the firmware says when it starts serving."""

    version: int
    input_sizes: list
    output_sizes: list
    profile_marks: int
    empty_call_ticks: int
    mark_pair_ticks: int


@dataclass
class InferenceReply:
    """One ``RESULT``: raw ticks and the output record."""

    status: int
    ticks: int
    stack_high_water: int
    op_ticks: list = field(default_factory=list)
    outputs: bytes = b""


def parse_hello(payload: bytes) -> Hello:
    if len(payload) < 16:
        raise ToolchainError(f"the board's HELLO message is {len(payload)} bytes, too short")
    version, n_in, n_out, marks, empty, pair = struct.unpack_from("<HHHHII", payload, 0)
    if len(payload) != 16 + 4 * (n_in + n_out):
        raise ToolchainError("the board's HELLO message has the wrong length for "
                             f"{n_in} inputs and {n_out} outputs")
    sizes = list(struct.unpack_from(f"<{n_in + n_out}I", payload, 16))
    return Hello(version, sizes[:n_in], sizes[n_in:], marks, empty, pair)


def parse_result(payload: bytes, output_bytes: int) -> InferenceReply:
    if len(payload) < 16:
        raise ToolchainError(f"the board's RESULT message is {len(payload)} bytes, too short")
    status, ticks, stack, ops = struct.unpack_from("<iIII", payload, 0)
    if len(payload) != 16 + 4 * ops + output_bytes:
        raise ToolchainError(f"the board's RESULT message is {len(payload)} bytes; expected "
                             f"{16 + 4 * ops + output_bytes} for {ops} operators and "
                             f"{output_bytes} output bytes")
    op_ticks = list(struct.unpack_from(f"<{ops}I", payload, 16))
    return InferenceReply(status, ticks, stack, op_ticks, payload[16 + 4 * ops:])


class ModelSession:
    """Inference requests over an open Project API transport.

    Parameters
    ----------
    client : ProjectAPIClient
        Connected to a generated, built and flashed project.
    metadata : dict
        The artifact's metadata.json (input and output sizes are checked against HELLO).
    timeout_s : float
        Limit for each reply from the board (a hung firmware becomes a clear error).
    """

    def __init__(self, client: project_api.ProjectAPIClient, metadata: dict, *,
                 timeout_s: float = 60.0):
        self.client = client
        self.metadata = metadata
        self.timeout_s = timeout_s
        self.hello: Hello | None = None
        self._reader = FrameReader(self._read)

    def _read(self, n: int, timeout: float) -> bytes:
        try:
            return self.client.read_transport(n, min(timeout, self.timeout_s))
        except project_api.IoTimeoutError:
            raise ToolchainError(f"no reply from the board within {self.timeout_s:g} s (the "
                                 "firmware hangs or the emulator is stuck)") from None

    def open(self, options: dict | None = None) -> Hello:
        """open_transport, then wait for the firmware's HELLO and check it against metadata."""
        self.client.open_transport(options)
        msg_type, payload = self._reader.read_frame(self.timeout_s)
        if msg_type != MSG_HELLO:
            raise ToolchainError(f"the board sent {MESSAGE_NAMES.get(msg_type, msg_type)} "
                                 "instead of HELLO")
        hello = parse_hello(payload)
        if hello.version != VERSION:
            raise ToolchainError(f"the firmware speaks transport version {hello.version}, the "
                                 f"host {VERSION}")
        want_in = [int(t["bytes"]) for t in self.metadata["inputs"]]
        want_out = [int(t["bytes"]) for t in self.metadata["outputs"]]
        if hello.input_sizes != want_in or hello.output_sizes != want_out:
            raise ModelError(f"the firmware's tensors (inputs {hello.input_sizes}, outputs "
                             f"{hello.output_sizes} bytes) are not the artifact's (inputs "
                             f"{want_in}, outputs {want_out})")
        self.hello = hello
        return hello

    def infer(self, record: bytes) -> InferenceReply:
        """Run one inference on an input record; returns the board's reply."""
        if self.hello is None:
            raise ToolchainError("the transport is not open: call open() first")
        want = sum(self.hello.input_sizes)
        if len(record) != want:
            raise ModelError(f"an input record is {want} bytes, got {len(record)}")
        self.client.write_transport(encode_frame(MSG_INFER, record), self.timeout_s)
        msg_type, payload = self._reader.read_frame(self.timeout_s)
        if msg_type == MSG_ERROR and len(payload) == 8:
            code, detail = struct.unpack("<II", payload)
            raise ToolchainError(f"{DEVICE_ERRORS.get(code, f'board error {code}')} "
                                 f"(detail {detail})")
        if msg_type != MSG_RESULT:
            raise ToolchainError(f"the board answered {MESSAGE_NAMES.get(msg_type, msg_type)} "
                                 "to INFER")
        reply = parse_result(payload, sum(self.hello.output_sizes))
        if reply.status != 0:
            raise ModelError(f"the model's run function returned {reply.status}")
        return reply

    def close(self) -> None:
        """Ask the firmware to exit, then close the transport."""
        try:
            if self.hello is not None:
                self.client.write_transport(encode_frame(MSG_QUIT), 5.0)
        except (project_api.ProjectAPIError, ToolchainError):
            pass  # the board is gone already; close_transport below cleans up
        finally:
            self.hello = None
            self.client.close_transport()
