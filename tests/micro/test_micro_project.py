"""Project API server, board table and measurement parsing (no emulator needed)."""

import json
import re

import pytest

from dtmm_tvm.micro import BOARDS
from dtmm_tvm.micro import measure
from dtmm_tvm.micro.project import load_server, template_dir


def test_board_table_matches_template():
    """boards.py is the source of truth; the template's copy must agree with it."""
    tdir = template_dir()
    table = json.loads((tdir / "boards.json").read_text())
    assert set(table) == set(BOARDS)
    for name, board in BOARDS.items():
        entry = table[name]
        assert entry["qemu_machine"] == board.qemu_machine
        assert entry["core"] == board.core
        assert tuple(entry["cpu_flags"]) == board.cflags
        assert entry["timer"] == board.timer and entry["tick_ns"] == board.tick_ns
        script = (tdir / "boards" / entry["linker_script"]).read_text()
        units = {"K": 1024, "M": 1024 * 1024, "": 1}
        mem = {m[0]: (int(m[1], 16), int(m[2]) * units[m[3]]) for m in re.findall(
            r"(FLASH|RAM)\s*\(\w+\)\s*:\s*ORIGIN\s*=\s*(0x[0-9A-Fa-f]+),\s*LENGTH\s*=\s*(\d+)"
            r"([KM]?)", script)}
        assert mem["FLASH"] == (board.flash_origin, board.flash_bytes)
        assert mem["RAM"] == (board.ram_origin, board.ram_bytes)


def test_server_info_and_refusals(tmp_path, fake_artifact):
    server = load_server(template_dir())
    info = server.Handler().server_info_query()
    assert info.is_template
    names = {o["name"] for o in info.project_options}
    assert {"board", "verbose", "extra_cflags", "inputs_path"} <= names
    with pytest.raises(server.ProjectError, match="required"):
        server.Handler().generate_project(fake_artifact, tmp_path / "p", {})
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "mine.txt").write_text("user data")
    with pytest.raises(server.ProjectError, match="not empty"):
        server.Handler().generate_project(fake_artifact, busy, {"board": "mps2-an386"})
    assert (busy / "mine.txt").read_text() == "user data"
    with pytest.raises(server.ProjectError, match="template"):
        server.Handler().generate_project(fake_artifact, template_dir() / "x",
                                          {"board": "mps2-an386"})
    with pytest.raises(server.ProjectError, match="generate_project first"):
        server.Handler().build({})


def test_generated_glue(tmp_path, fake_artifact):
    server = load_server(template_dir())
    proj = server.Handler().generate_project(fake_artifact, tmp_path / "p",
                                             {"board": "mps3-an547", "stack_bytes": 4096})
    glue = (proj / "src" / "dtmm_model_glue.c").read_text()
    assert "struct tvmgen_default_inputs dtmm_inputs = {.input = dtmm_in_0};" in glue
    assert "TVMGEN_DEFAULT_OUTPUT_SIZE == 16" in glue
    mk = (proj / "board.mk").read_text()
    assert "-mcpu=cortex-m55" in mk and "DTMM_TIMER_SSE300_CNT" in mk and "4096" in mk
    assert server.Handler(proj).server_info_query().is_template is False


def test_parse_harness_output():
    text = ("qemu warning\nDTMM empty_ticks 0 13\nDTMM empty_ticks 1 12\nDTMM ticks 0 6416\n"
            "DTMM ticks 1 950\nDTMM stack 196 65536\nDTMM done 2\n")
    rep = measure.parse_harness_output(text)
    assert rep.ticks == [6416, 950] and rep.done == 2 and rep.stack_high_water == 196
    counts, empty = measure.instructions_from_report(rep, BOARDS["mps2-an386"], 7)
    assert empty == 4 and counts == [2005 - 4, 297 - 4]
    err = measure.parse_harness_output("DTMM error 16 4294967293\n")
    with pytest.raises(Exception, match="returned -3"):
        measure.check_exit(16, err, BOARDS["mps2-an386"], "app.elf")
