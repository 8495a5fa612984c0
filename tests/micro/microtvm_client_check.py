"""Manual check: microTVM's own Project API client (apache/tvm v0.14-v0.18, unmodified) drives
this project's server through generate, build, flash and the transport.

microTVM is not installable with TVM 0.27, so this is not a pytest test; point it at a checkout::

    git -C tvm show v0.18.0:python/tvm/micro/project_api/client.py > /tmp/pa/mtvm_pa/client.py
    git -C tvm show v0.18.0:python/tvm/micro/project_api/server.py > /tmp/pa/mtvm_pa/server.py
    touch /tmp/pa/mtvm_pa/__init__.py
    python tests/micro/microtvm_client_check.py /tmp/pa

It prints each step and raises on the first mismatch.
"""

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def main(microtvm_dir: str) -> None:
    sys.path.insert(0, microtvm_dir)
    sys.path.insert(0, str(ROOT))
    from mtvm_pa import client, server  # microTVM's modules, as fetched

    from dtmm_tvm.micro.project import template_dir
    from dtmm_tvm.micro.transport import (MSG_HELLO, MSG_INFER, MSG_QUIT, MSG_RESULT, FrameReader,
                                          encode_frame, parse_result)

    project = Path(tempfile.mkdtemp()) / "project"
    artifact = ROOT / "tests" / "micro" / "fake_artifact"
    api = client.instantiate_from_dir(template_dir())
    info = api.server_info_query("0.18.0")
    assert info["is_template"] and info["protocol_version"] == 1, info
    print("template server_info_query:", {k: v for k, v in info.items() if k != "project_options"})
    assert api.generate_project(str(artifact), "", str(project), {"board": "mps2-an386"}) is None
    try:
        api.generate_project(str(artifact), "", str(project), {"board": "mps2-an386"})
        raise AssertionError("an existing project was overwritten")
    except server.ServerError as err:
        print("existing project refused:", str(err).splitlines()[0])
    api.shutdown()

    api = client.instantiate_from_dir(project)
    assert api.server_info_query("0.18.0")["is_template"] is False
    assert api.build({}) is None and api.flash({}) is None
    print("open_transport:", api.open_transport({}))
    reader = FrameReader(lambda n, timeout: api.read_transport(n, timeout)["data"])
    assert reader.read_frame(30)[0] == MSG_HELLO
    api.write_transport(encode_frame(MSG_INFER, bytes(range(16))), 10)
    msg_type, payload = reader.read_frame(30)
    outputs = list(parse_result(payload, 16).outputs)
    assert msg_type == MSG_RESULT and outputs == [(3 * i - 7) & 0xFF for i in range(16)], outputs
    print("inference over microTVM's client: ok")
    api.write_transport(encode_frame(MSG_QUIT), 10)
    try:
        while True:
            api.read_transport(64, 10)
    except server.TransportClosedError:
        print("firmware exit seen as microTVM's TransportClosedError")
    assert api.close_transport() is None
    api.shutdown()


if __name__ == "__main__":
    main(sys.argv[1])
