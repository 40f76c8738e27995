"""What bpfreplay writes (issue 8): trace files 0600 and never through a symlink
(``record -o``, ``run --save-trace``), ``explain --extract`` files only inside DIR, and
strings from a trace escaped on the terminal. Crafted traces are traces/minimal.mp
re-packed with msgpack itself, one thing changed."""

from __future__ import annotations

import io
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import msgpack
import pytest

from bpfreplay.errors import BpfReplayError
from tests.conftest import ROOT
from tests.test_trace_validation import MODES, _first_call, _objects, _packed, explain

BPFREPLAY = [sys.executable, "-m", "bpfreplay.cli"]
TRACE = ROOT / "traces" / "minimal.mp"
ESCAPE = "\x1b[2J\x1b[31mEVIL\n# forged line\x07"


def _crafted(tmp_path: Path, change) -> Path:
    objects = _objects()
    change(objects)
    path = tmp_path / "crafted.mp"
    path.write_bytes(b"".join(_packed(objects)))
    return path


# ---------------------------------------------------------------- trace files


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_record_writes_a_0600_trace(tmp_path):
    out = tmp_path / "t.mp"
    done = subprocess.run([*BPFREPLAY, "record", "-q", "-o", str(out), "--", "/bin/true"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert _mode(out) == 0o600


def test_record_does_not_follow_a_symlink_at_the_output(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    victim.chmod(0o600)
    link = tmp_path / "t.mp"
    link.symlink_to(victim)
    done = subprocess.run([*BPFREPLAY, "record", "-q", "-o", str(link), "--", "/bin/true"],
                          capture_output=True, text=True, timeout=60)
    assert victim.read_text() == "precious\n"
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert "symbolic link" in done.stderr


def test_save_trace_does_not_follow_a_symlink(tmp_path):
    """run --save-trace writes through SelfTracer (bpfreplay/recording/self_trace.py)."""
    from bpfreplay.recording.self_trace import SelfTracer

    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    link = tmp_path / "saved.mp"
    link.symlink_to(victim)
    with pytest.raises(BpfReplayError, match="symbolic link"):
        SelfTracer(str(link))
    assert victim.read_text() == "precious\n"
    dangling = tmp_path / "dangling.mp"
    dangling.symlink_to(tmp_path / "would-be-created")
    with pytest.raises(BpfReplayError, match="symbolic link"):
        SelfTracer(str(dangling))
    assert not (tmp_path / "would-be-created").exists()


def test_a_trace_replaces_a_file_there_and_is_private(tmp_path):
    from bpfreplay.trace import TraceWriter, read_trace

    path = tmp_path / "t.mp"
    path.write_text("old")
    path.chmod(0o644)
    hard = tmp_path / "hardlink"
    os.link(path, hard)
    with TraceWriter(str(path), {"argv": ["x"]}) as writer:
        writer.write({"type": "exit", "pid": 1, "code": 0, "signal": None, "ts": 1})
    assert _mode(path) == 0o600
    assert hard.read_text() == "old"  # a new file, not the other name's inode
    with read_trace(str(path)) as trace:
        assert [r["type"] for r in trace.records()] == ["exit"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hardlink", "t.mp"]


@pytest.mark.parametrize("target", ["/dev/full", "/proc/version"])
def test_a_trace_that_cannot_be_written_is_a_clean_error(target):
    done = subprocess.run([*BPFREPLAY, "record", "-q", "-o", target, "--", "/bin/true"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert target in done.stderr


# ---------------------------------------------------------------- --extract


def _extract_trace(tmp_path: Path, names: list[str], index_twice: bool = False) -> Path:
    def change(objects):
        position = _first_call(objects, 5)  # a PROG_LOAD
        record = objects[position]
        record["in"] = {**record.get("in", {}), **{n: b"payload " + n.encode(
            "utf-8", "surrogateescape") for n in names}}
        if index_twice:
            objects.insert(position + 1, dict(record))

    return _crafted(tmp_path, change)


HOSTILE_NAMES = ["../../outside", "a/../../../outside2", "/abs/outside3", "..", ".",
                 "nul\x00byte", "x" * 300, "sub/inner", ".hidden", "\x1b[31m"]


def _files_under(top: Path) -> set[Path]:
    return {p for p in top.rglob("*") if p.is_file() or p.is_symlink()}


def test_extract_writes_only_inside_dir(tmp_path):
    path = _extract_trace(tmp_path, HOSTILE_NAMES)
    out = tmp_path / "out"
    # Matching subdirectories, as the attack used: a name with / would walk through them.
    (out / "0034-prog_load.in.a").mkdir(parents=True)
    (out / "sub").mkdir()
    before = _files_under(tmp_path)
    status, _, err = explain(path, "--extract", str(out), "--no-summary")
    assert status == 0
    new = _files_under(tmp_path) - before
    assert new and all(p.parent == out for p in new), sorted(map(str, new))
    assert all(len(p.name) <= 255 and "\x00" not in p.name and not p.name.startswith(".")
               for p in new)
    assert all(_mode(p) == 0o600 for p in new)
    # Every hostile payload is somewhere under its sanitised name.
    contents = {p.read_bytes() for p in new}
    for name in HOSTILE_NAMES:
        assert b"payload " + name.encode() in contents, name


def test_extract_does_not_follow_a_symlink_inside_dir(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    # The name explain writes for the first PROG_LOAD's instructions.
    index = _objects()[_first_call(_objects(), 5)]["index"]
    (out / f"{index:04d}-prog_load.insns").symlink_to(victim)
    status, _, _ = explain(TRACE, "--extract", str(out), "--no-summary")
    assert status == 0
    assert victim.read_text() == "precious\n"
    written = out / f"{index:04d}-prog_load.insns"
    assert not written.is_symlink() and written.stat().st_size > 0


def test_extract_numbers_colliding_names(tmp_path):
    path = _extract_trace(tmp_path, ["same"], index_twice=True)
    out = tmp_path / "out"
    status, _, _ = explain(path, "--extract", str(out), "--no-summary", "--cmd", "PROG_LOAD")
    assert status == 0
    same = sorted(p.name for p in out.iterdir() if ".in.same" in p.name)
    assert len(same) >= 2 and len(set(same)) == len(same)


# ---------------------------------------------------------------- terminal


def _map_named(tmp_path: Path, name: bytes) -> Path:
    def change(objects):
        position = _first_call(objects, 0)  # the first MAP_CREATE
        attr = bytearray(objects[position]["attr"])
        attr[28:44] = name[:16].ljust(16, b"\0")  # map_name (struct bpf_attr)
        objects[position]["attr"] = bytes(attr)

    return _crafted(tmp_path, change)


def _no_raw_control(text: str) -> bool:
    return not any(ord(c) < 0x20 and c != "\n" or 0x7f <= ord(c) <= 0x9f for c in text)


@pytest.mark.parametrize("mode", [(), ("-v",)], ids=["text", "-v"])
def test_a_crafted_map_name_is_escaped(tmp_path, mode):
    path = _map_named(tmp_path, b"ev\x1b[31mil\n\x07x")
    status, out, _ = explain(path, *mode)
    assert status == 0 and _no_raw_control(out)
    assert "ev\\x1b[31mil\\n\\x07x" in out


@pytest.mark.parametrize("mode", MODES, ids=lambda m: " ".join(m) or "text")
def test_crafted_header_argv_log_and_names_never_reach_the_terminal_raw(tmp_path, mode):
    def change(objects):
        objects[0]["argv"] = [ESCAPE, "two"]
        position = _first_call(objects, 5)
        objects[position]["out"] = {"log_buf": ESCAPE.encode()}
        objects[position]["in"]["license"] = ESCAPE.encode()
        objects[position]["faults"] = {ESCAPE: ESCAPE}

    path = _crafted(tmp_path, change)
    status, out, err = explain(path, *mode)
    assert status == 0
    assert _no_raw_control(out) and _no_raw_control(err)
    if "--json" in mode:
        lines = [json.loads(line) for line in out.splitlines()]
        assert any(ESCAPE in line.get("faults", {}) for line in lines)
    else:
        assert "\\x1b[2J\\x1b[31mEVIL\\n# forged line\\x07" in out
        assert not any(line.startswith("# forged line") for line in out.splitlines())


def test_a_terminal_gets_escapes_only_from_rich(tmp_path, monkeypatch):
    """On a terminal (rich's colours) the crafted sequence is still escaped."""
    from bpfreplay.explain_output import Printer

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Tty()
    printer = Printer(stream, verbose=False)
    printer.header({"argv": [ESCAPE], "recorder": ESCAPE, "kernel": "k"}, "p")
    assert "\x1b[2J" not in stream.getvalue() and "EVIL\n" not in stream.getvalue()
    assert "\\x1b[2J" in stream.getvalue()


def test_invalid_utf8_shows_as_bytes(tmp_path):
    from bpfreplay.decode.terminal import escape_control

    text = b"ok\xff\x1b".decode("utf-8", "surrogateescape")
    assert escape_control(text) == "ok\\xff\\x1b"
    assert escape_control("plain") == "plain"
    assert escape_control("\u202eevil") == "\\u202eevil"
    assert msgpack  # the crafted traces above are packed by msgpack itself
