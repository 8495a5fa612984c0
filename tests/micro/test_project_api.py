"""The template's Project API server driven as microTVM's client drove it.

The server is launched as a program with ``--read-fd``/``--write-fd`` (working directory the
template or project), requests are one JSON object per line with microTVM's shapes
(``{"jsonrpc": "2.0", "method", "params", "id"}``), ``server_info_query`` reports protocol
version 1, every method is called, and every JSON-RPC error code is provoked.
"""

import json
import os
import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest

import dtmm_tvm.kernels
from dtmm_tvm.errors import ToolchainError
from dtmm_tvm.micro import project_api, session
from dtmm_tvm.micro.project import load_server, template_dir
from dtmm_tvm.micro.project_api import ProjectAPIClient
from dtmm_tvm.micro.transport import (MSG_HELLO, MSG_INFER, MSG_QUIT, MSG_RESULT, FrameReader,
                                      ModelSession, encode_frame, parse_hello, parse_result)

OPTION_KEYS = {"name", "choices", "default", "type", "required", "optional", "help"}


def raw(client, line: bytes) -> dict:
    """Send a raw line and return the raw reply object."""
    client.send_line(line + b"\n")
    return client.read_reply("raw", timeout=30)


def reference(x):
    return np.clip(x.astype(np.int32) * 3 - 7, -128, 127).astype(np.int8)


def test_template_server_protocol_and_errors(tmp_path, fake_artifact):
    with ProjectAPIClient.launch(template_dir()) as client:
        info = client.server_info_query("0.18.0")
        assert info["protocol_version"] == 1 and info["is_template"] is True
        assert info["model_library_format_path"] is None
        assert info["platform_name"] == "dtmm_qemu_baremetal"
        for option in info["project_options"]:
            assert set(option) == OPTION_KEYS, option
            assert option["required"] or option["optional"]
        board = next(o for o in info["project_options"] if o["name"] == "board")
        assert board["required"] == ["generate_project"] and "mps2-an386" in board["choices"]

        # JSON-RPC error codes; the server answers each and keeps serving.
        reply = raw(client, b"{not json")
        assert reply["id"] is None and reply["error"]["code"] == -32700
        assert raw(client, b"[1, 2]")["error"]["code"] == -32600
        assert raw(client, b'{"method": "build", "params": {}, "id": 7}')["error"]["code"] == -32600
        reply = raw(client, b'{"jsonrpc": "2.0", "method": "reboot", "params": {}, "id": 8}')
        assert reply["id"] == 8 and reply["error"]["code"] == -32601
        for params in ({}, {"options": {}, "extra": 1}, {"options": []}):
            line = json.dumps({"jsonrpc": "2.0", "method": "build", "params": params, "id": 9})
            assert raw(client, line.encode())["error"]["code"] == -32602, params

        # Server errors (-32000) carry a one-line message and the failure kind.
        with pytest.raises(project_api.ProjectAPIError, match="required by generate_project") as e:
            client.generate_project(fake_artifact, tmp_path / "p", {})
        assert e.value.code == -32000 and e.value.kind == "usage"
        with pytest.raises(project_api.ProjectAPIError, match="board='stm32' is not one of"):
            client.generate_project(fake_artifact, tmp_path / "p", {"board": "stm32"})
        with pytest.raises(project_api.ProjectAPIError, match="must be of type int"):
            client.generate_project(fake_artifact, tmp_path / "p",
                                    {"board": "mps2-an386", "stack_bytes": "big"})
        with pytest.raises(project_api.ProjectAPIError, match="has no codegen/host/src"):
            bad = tmp_path / "bad"
            bad.mkdir()
            (bad / "metadata.json").write_text("{}")
            client.generate_project(bad, tmp_path / "p", {"board": "mps2-an386"})
        # A failed generate_project leaves nothing behind.
        assert sorted(p.name for p in tmp_path.iterdir()) == ["bad"]
        with pytest.raises(project_api.ProjectAPIError, match="no transport is open"):
            client.read_transport(1, 0.1)

        busy = tmp_path / "busy"
        busy.mkdir()
        (busy / "mine.txt").write_text("user data")
        with pytest.raises(project_api.ProjectAPIError, match="not empty"):
            client.generate_project(fake_artifact, busy, {"board": "mps2-an386"})
        assert [p.name for p in busy.iterdir()] == ["mine.txt"]

        assert client.generate_project(fake_artifact, tmp_path / "p",
                                       {"board": "mps2-an386"}, standalone_crt_dir=None) is None
    assert (tmp_path / "p" / "microtvm_api_server.py").is_file()


def test_generated_project_every_method(needs_toolchain, tmp_path, fake_artifact):
    project = session.create_project(fake_artifact, tmp_path / "p", "mps2-an386")
    with ProjectAPIClient.launch(project) as client:
        info = client.server_info_query()
        assert info["is_template"] is False and info["model_library_format_path"]
        assert client.build({"verbose": False}) is None
        assert client.flash({}) is None
        timeouts = client.open_transport({})
        assert set(timeouts) == {"session_start_retry_timeout_sec", "session_start_timeout_sec",
                                 "session_established_timeout_sec"}
        reader = FrameReader(client.read_transport)
        msg_type, payload = reader.read_frame(30)
        hello = parse_hello(payload)
        assert msg_type == MSG_HELLO and hello.input_sizes == [16] and hello.output_sizes == [16]

        x = np.arange(-8, 8, dtype=np.int8)
        # Written in two pieces: framing does not depend on write boundaries.
        frame = encode_frame(MSG_INFER, x.tobytes())
        assert client.write_transport(frame[:5], 10) is None
        client.write_transport(frame[5:], 10)
        msg_type, payload = reader.read_frame(30)
        result = parse_result(payload, 16)
        assert msg_type == MSG_RESULT and result.status == 0 and result.ticks > 0
        np.testing.assert_array_equal(np.frombuffer(result.outputs, np.int8), reference(x))

        reply = raw(client, json.dumps({"jsonrpc": "2.0", "method": "write_transport", "id": 3,
                                        "params": {"data": "~~~ not base85", "timeout_sec": 1}
                                        }).encode())
        assert reply["error"]["code"] == -32602
        # After QUIT the firmware exits: the next read is microTVM's TransportClosedError.
        client.write_transport(encode_frame(MSG_QUIT), 10)
        with pytest.raises(project_api.TransportClosedError) as e:
            while True:
                client.read_transport(64, 10)
        assert e.value.code == -32000 and e.value.message == "TransportClosedError"
        assert client.close_transport() is None
        assert client.close_transport() is None  # a no-op when closed


@pytest.mark.parametrize("opt, kernel_opt", [("-O0", "-O2"), ("-O3", "-O2"), ("-Os", "-Os"), ("-O2", "-O2")])
def test_kernels_build_at_an_optimisation_level_their_assembly_needs(tmp_path, fake_artifact, opt, kernel_opt):
    """``opt_level`` applies to the model and harness; the dtmm_* kernels build at -O2 unless it
    is -Os (at -O0/-O1/-O3/-Ofast GCC cannot allocate their MVE asm operands)."""
    if not shutil.which("make"):
        pytest.skip("make not installed")
    project = session.create_project(fake_artifact, tmp_path / "p", "mps3-an547", options={"opt_level": opt})
    (project / "model" / "src" / "dtmm_probe_s8.c").write_text("int dtmm_probe(void) { return 0; }\n")
    dry = subprocess.run(["make", "-n", "-C", str(project)], capture_output=True, text=True, check=True).stdout

    def level(source):
        line = next(l for l in dry.splitlines() if f"model/src/{source}" in l)
        return [f for f in line.split() if f.startswith("-O")][-1]  # GCC takes the last -O

    assert level("dtmm_probe_s8.c") == kernel_opt
    generated = next(p.name for p in (project / "model" / "src").glob("*.c") if not p.name.startswith("dtmm_"))
    assert level(generated) == opt


def test_run_through_the_project_api(needs_toolchain, tmp_path, fake_artifact):
    project = session.create_project(fake_artifact, tmp_path / "p", "mps3-an547")
    session.build_project(project)
    x = np.random.default_rng(5).integers(-128, 128, (3, 1, 16)).astype(np.int8)
    res = session.run_project(project, x)
    np.testing.assert_array_equal(res.outputs, reference(x))
    assert res.board == "mps3-an547" and res.inferences == 3 and res.instructions > 100
    assert 0 < res.ram["stack_high_water"] < res.stack_reserved
    # An existing project is not overwritten unless asked, and only if it is a project.
    with pytest.raises(Exception, match="exists and is not empty"):
        session.create_project(fake_artifact, project, "mps3-an547")
    other = tmp_path / "other"
    other.mkdir()
    (other / "keep.txt").write_text("x")
    with pytest.raises(Exception, match="not a generated project"):
        session.create_project(fake_artifact, other, "mps3-an547", force=True)
    assert (other / "keep.txt").exists()


def test_hanging_firmware_is_a_clear_error(needs_toolchain, tmp_path, fake_artifact):
    project = session.create_project(fake_artifact, tmp_path / "p", "mps2-an386",
                                     options={"extra_cflags": "-DFAKE_SPIN=2000000000"})
    session.build_project(project)
    with pytest.raises(ToolchainError, match="no reply from the board within 1.5 s"):
        session.run_project(project, np.zeros((1, 1, 16), np.int8), timeout_s=1.5)


def test_transport_closing_mid_message():
    """A source that delivers part of a RESULT frame and then closes."""
    frame = encode_frame(MSG_RESULT, struct.pack("<iIII", 0, 5, 6, 0) + bytes(16))
    chunks = [frame[:3], frame[3:20]]

    def read(n, timeout):
        if chunks:
            return chunks.pop(0)
        raise project_api.TransportClosedError("read_transport", -32000, "TransportClosedError")

    with pytest.raises(ToolchainError, match=r"closed in the middle of a RESULT message of 32 "
                                             r"bytes \(20 bytes received\)"):
        FrameReader(read).read_frame(5)
    # Garbage before a frame is skipped; a corrupted frame is refused.
    good = FrameReader(lambda n, t, b=[b"\x00\xd7\xd7" + frame[1:]]: b.pop(0))
    assert good.read_frame(5)[0] == MSG_RESULT
    bad = bytearray(frame)
    bad[10] ^= 1
    with pytest.raises(ToolchainError, match="bad CRC"):
        FrameReader(lambda n, t, b=[bytes(bad)]: b.pop(0)).read_frame(5)


def test_session_checks_the_firmware_against_the_artifact():
    class FakeClient:
        def open_transport(self, options):
            return {}

        def read_transport(self, n, timeout):
            payload = struct.pack("<HHHHII", 1, 1, 1, 0, 10, 0) + struct.pack("<II", 99, 16)
            return encode_frame(MSG_HELLO, payload)

    meta = {"inputs": [{"bytes": 16}], "outputs": [{"bytes": 16}]}
    with pytest.raises(Exception, match=r"inputs \[99\].*inputs \[16\]"):
        ModelSession(FakeClient(), meta).open()


def tvm_mlf_archive(tmp_path, fake_artifact):
    """The fake model packed as TVM's export_model_library_format wrote an AOT/C-interface build:
    metadata.json has only MLF's fields (version 7, modules), no dtmm schema."""
    import shutil
    import tarfile

    root = tmp_path / "mlf"
    shutil.copytree(fake_artifact / "codegen", root / "codegen")
    main = {"device": 1, "workspace_size_bytes": 32, "constants_size_bytes": 4, "io_size_bytes": 32,
            "inputs": {"input": {"size": 16, "dtype": "int8"}},
            "outputs": {"output": {"size": 16, "dtype": "int8"}}}
    (root / "metadata.json").write_text(json.dumps({"version": 7, "modules": {"default": {
        "model_name": "default", "export_datetime": "2024-01-01 00:00:00Z", "executors": ["aot"],
        "style": "full-model", "target": ["c -keys=arm_cpu,cpu -mcpu=cortex-m4"],
        "memory": {"functions": {"main": [main], "operator_functions": []}}}}}))
    path = tmp_path / "model_mlf.tar"
    with tarfile.open(path, "w") as tar:
        for item in root.iterdir():
            tar.add(item, arcname=item.name)
    return path


def test_template_accepts_tvm_model_library_format(needs_toolchain, tmp_path, fake_artifact):
    from dtmm_tvm.micro import run_artifact

    archive = tvm_mlf_archive(tmp_path, fake_artifact)
    x = np.random.default_rng(6).integers(-128, 128, (2, 16)).astype(np.int8)
    res = run_artifact(archive, "mps2-an386", x)
    np.testing.assert_array_equal(res.outputs, reference(x))
    # An MLF archive with a graph executor does not follow the C interface: refused, one line.
    meta = json.loads(tarfile_text(archive, "metadata.json"))
    meta["modules"]["default"]["executors"] = ["graph"]
    from dtmm_tvm.micro.project import load_server

    server = load_server(template_dir())
    with pytest.raises(server.ProjectError, match="only AOT with the C interface"):
        server.normalize_metadata(meta, "graph.tar")


def tarfile_text(path, member):
    import tarfile

    with tarfile.open(path) as tar:
        return tar.extractfile(member).read().decode()


def test_compiler_cache_reuses_objects_and_never_fails_a_build(needs_toolchain, tmp_path, fake_artifact,
                                                               monkeypatch):
    if shutil.which("ccache") is None:
        pytest.skip("missing tools: ccache (run.sh installs it)")
    monkeypatch.setenv("CCACHE_DIR", str(tmp_path / "cache"))
    for name in ("a", "b"):  # the same sources in two project directories: the second compiles nothing
        project = session.create_project(fake_artifact, tmp_path / name, "mps2-an386")
        with ProjectAPIClient.launch(project) as client:
            client.build({})
    stats = subprocess.run(["ccache", "--print-stats"], capture_output=True, text=True, check=True).stdout
    counts = dict(line.split("\t") for line in stats.splitlines() if "\t" in line)
    hits = int(counts["direct_cache_hit"]) + int(counts["preprocessed_cache_hit"])
    assert hits == int(counts["cache_miss"]) > 0

    # A cache directory that cannot be made means no cache, not a failed build.
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("CCACHE_DIR", str(blocker / "cache"))
    project = session.create_project(fake_artifact, tmp_path / "c", "mps2-an386")
    with ProjectAPIClient.launch(project) as client:
        client.build({})
    assert (project / "build" / "app.elf").exists()


def test_compiler_cache_sees_an_archive_isa_header_a_cached_build_did_not_have(tmp_path):
    """The kernels choose their ISA with ``__has_include("dtmm_isa.h")``; a build without that
    header (a kernel test's) must not hand its objects to an archive build that has one."""
    if shutil.which("ccache") is None or shutil.which("arm-none-eabi-gcc") is None:
        pytest.skip("missing tools: ccache, arm-none-eabi-gcc (run.sh installs them)")
    env = {"CCACHE_DIR": str(tmp_path / "cache"), "PATH": os.environ["PATH"]}
    ccache = load_server(template_dir())._compiler_cache_env(env)
    kernels = Path(dtmm_tvm.kernels.__file__).parent
    objects = []
    for name, header in (("kernel_test", None), ("portable_archive", "#define DTMM_ISA_PORTABLE 1\n")):
        build = tmp_path / name
        (build / "include").mkdir(parents=True)
        shutil.copy(kernels / "dtmm_kernels_isa.h", build / "include")
        if header:
            (build / "include" / "dtmm_isa.h").write_text(header)
        (build / "isa.c").write_text('#include "dtmm_kernels_isa.h"\n#ifdef DTMM_ISA_MVE\n'
                                     "const int defined_mve = 1;\n#else\nconst int defined_mve = 0;\n#endif\n")
        subprocess.run([ccache, "arm-none-eabi-gcc", "-mcpu=cortex-m55", "-mthumb", "-mfloat-abi=hard",
                        "-O2", "-g", "-Iinclude", "-c", "isa.c", "-o", "isa.o"],
                       cwd=build, env=env, check=True, capture_output=True)
        symbols = subprocess.run(["arm-none-eabi-objdump", "-s", "-j", ".rodata", "isa.o"], cwd=build,
                                 capture_output=True, text=True, check=True).stdout
        objects.append(symbols.split(".rodata:")[-1].split()[1])
    assert objects == ["01000000", "00000000"], objects  # MVE by the compiler's features; portable by the header
