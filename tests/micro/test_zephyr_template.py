"""The Zephyr template: a Zephyr application generated through the Project API for each board;
west build where ZEPHYR_BASE is set (not on this machine: its clear message is tested); the
flash commands (west, pyOCD) tested up to the command they would run."""

import pytest

from dtmm_tvm.micro import project_api
from dtmm_tvm.micro.project import load_server
from dtmm_tvm.micro.project_api import ProjectAPIClient
from dtmm_tvm.resources import templates_dir

ZEPHYR = templates_dir() / "zephyr"
BOARDS = ["qemu_cortex_m3", "mps2_an385", "mps2_an521", "nucleo_f746zg", "nrf5340dk_nrf5340_cpuapp"]


def test_generate_for_every_board_and_flash_commands(tmp_path, fake_artifact, monkeypatch):
    monkeypatch.delenv("ZEPHYR_BASE", raising=False)
    with ProjectAPIClient.launch(ZEPHYR) as client:
        info = client.server_info_query()
        assert info["platform_name"] == "dtmm_zephyr" and info["is_template"] and info["protocol_version"] == 1
        board_option = next(o for o in info["project_options"] if o["name"] == "board")
        assert set(BOARDS) == set(board_option["choices"])
        for board in BOARDS:
            assert client.generate_project(fake_artifact, tmp_path / board, {"board": board}) is None
        with pytest.raises(project_api.ProjectAPIError, match="not empty"):
            client.generate_project(fake_artifact, tmp_path / BOARDS[0], {"board": BOARDS[0]})
    for board in BOARDS:
        project = tmp_path / board
        cmake = (project / "CMakeLists.txt").read_text()
        assert "find_package(Zephyr REQUIRED" in cmake and "target_link_libraries(app PRIVATE tvmgen_default)" in cmake
        assert "CONFIG_MAIN_STACK_SIZE=8192" in (project / "prj.conf").read_text()
        assert (project / "boards" / f"{board}.overlay").is_file()
        main = (project / "src" / "main.c").read_text()
        assert "tvmgen_default_run(&inputs, &outputs)" in main and ".input = in0" in main
        assert (project / "model" / "include" / "tvmgen_default.h").is_file()
        assert (project / "dtmm_rpc.py").is_file()  # the JSON-RPC loop travels with the project

    # The generated project's own server: build needs a Zephyr tree, and says so.
    with ProjectAPIClient.launch(tmp_path / "nucleo_f746zg") as client:
        assert client.server_info_query()["is_template"] is False
        with pytest.raises(project_api.ProjectAPIError, match="ZEPHYR_BASE is not set.*west build -b nucleo_f746zg") as e:
            client.build({})
        assert e.value.kind == "toolchain"
        with pytest.raises(project_api.ProjectAPIError, match="no inference transport"):
            client.open_transport({})

    nucleo = load_server(tmp_path / "nucleo_f746zg").Handler(tmp_path / "nucleo_f746zg")
    assert nucleo.flash({"flash_tool": "pyocd", "dry_run": True}) == [
        "pyocd", "flash", "--target", "stm32f746zgtx", str(tmp_path / "nucleo_f746zg" / "build" / "zephyr" / "zephyr.hex")]
    nrf = load_server(tmp_path / "nrf5340dk_nrf5340_cpuapp").Handler(tmp_path / "nrf5340dk_nrf5340_cpuapp")
    assert nrf.flash({"flash_tool": "pyocd", "dry_run": True})[:4] == ["pyocd", "flash", "--target", "nrf5340"]
    assert nrf.flash({"dry_run": True})[:2] == ["west", "flash"]
    qemu = load_server(tmp_path / "qemu_cortex_m3").Handler(tmp_path / "qemu_cortex_m3")
    with pytest.raises(Exception, match="emulated; pyOCD flashes real boards"):
        qemu.flash({"flash_tool": "pyocd", "dry_run": True})
