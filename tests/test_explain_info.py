"""What BPF_OBJ_GET_INFO_BY_FD answered, decoded, against what bpftool printed from it.

Our own objects are loaded (bpfreplay.api.load of tests/data/net's counters: four
programs, two maps, one BTF); ``bpftool -j prog|map|btf show`` runs under ``bpfreplay
record``; for every object of ours, the info ``explain --json`` decoded from the
recording (id, type, name, tag, key/value sizes, map ids, BTF size) must equal what
bpftool printed in that same run, and the fd its GET_FD_BY_ID made is named after the
info. The same command under ``strace -v``: its decoding of the prog and map infos
(type, id, name, tag, sizes) equals ours. Only our objects are looked at: the kernel
may hold others.
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bpfreplay.decode.fds import fd_references
from bpfreplay.decode.info import decode_info, info_identity
from bpfreplay.uapi import cmd_value, struct_layout
from bpfreplay.uapi.pointers import plan_info_buffers
from tests.conftest import require_kernel, require_tool
from tests.test_decode_attrs import CString, parse_strace

OBJECT = Path(__file__).parent / "data/net/build/counters.bpf.o"
BPFREPLAY = [sys.executable, "-m", "bpfreplay.cli"]


def _fdinfo(fd: int, key: str) -> int:
    for line in Path(f"/proc/self/fdinfo/{fd}").read_text().splitlines():
        name, _, value = line.partition(":")
        if name == key:
            return int(value.strip())
    raise AssertionError(f"/proc/self/fdinfo/{fd} has no {key}")


@pytest.fixture(scope="module")
def ours():
    """Our objects loaded for the module's tests: (prog ids, map ids) from the kernel's
    fdinfo of the fds we hold."""
    require_kernel()
    require_tool("bpftool")
    if not OBJECT.exists():
        pytest.fail(f"{OBJECT} is missing: make testprogs")
    import bpfreplay.api as api

    with api.load(str(OBJECT), attach=False) as obj:
        progs = {_fdinfo(p.fd, "prog_id") for p in obj.programs.values()}
        maps = {_fdinfo(obj.maps[name].fd, "map_id") for name in obj.maps}
        yield progs, maps


def _record(tmp_path: Path, *argv: str) -> tuple[Any, list[dict]]:
    """bpftool -j ARGV under bpfreplay record: what it printed, and explain --json of
    the recording."""
    trace = tmp_path / f"{argv[0]}.mp"
    result = subprocess.run([*BPFREPLAY, "record", "-o", str(trace), "--",
                             require_tool("bpftool"), "-j", *argv],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    printed = json.loads(result.stdout)
    explained = subprocess.run([*BPFREPLAY, "explain", "--json", str(trace)],
                               capture_output=True, text=True, check=True, timeout=120)
    calls = [json.loads(line) for line in explained.stdout.splitlines() if line.strip()]
    return printed, calls


def _infos(calls: list[dict]) -> dict[int, dict]:
    """The last decoded info of each object id (bpftool asks once more with buffers)."""
    out: dict[int, dict] = {}
    for c in calls:
        if c.get("cmd") == "BPF_OBJ_GET_INFO_BY_FD" and c.get("ret") == 0 and c.get("info"):
            out[int(c["info"]["id"])] = c["info"]
    return out


def _by_id_names(calls: list[dict]) -> dict[int, str]:
    """id -> the text explain gave the fd its GET_FD_BY_ID made (``3<prog x id 5>``)."""
    out = {}
    for c in calls:
        if (c.get("cmd") or "").endswith("_GET_FD_BY_ID") and (c.get("ret") or 0) >= 0:
            the_id = int(next(iter(c["fields"].values())))
            out[the_id] = c["text"].rsplit(" = ", 1)[1]
    return out


def _unquote(text: str) -> str:
    assert text.startswith('"') and text.endswith('"'), text
    return text[1:-1]


def test_prog_show_infos_equal_bpftool(ours, tmp_path):
    prog_ids, map_ids = ours
    printed, calls = _record(tmp_path, "prog", "show")
    infos, names = _infos(calls), _by_id_names(calls)
    mine = [p for p in printed if p["id"] in prog_ids]
    assert len(mine) == len(prog_ids) == 4
    for p in mine:
        info = infos[p["id"]]
        assert info["type"] == "BPF_PROG_TYPE_" + p["type"].upper()
        assert _unquote(info["name"]) == p["name"]
        assert info["tag"] == p["tag"]
        assert int(info["xlated_prog_len"]) == p["bytes_xlated"]
        assert int(info["jited_prog_len"]) == p["bytes_jited"]
        assert int(info["btf_id"]) == p["btf_id"]
        # map_ids followed: the ids bpftool printed, read from the buffer it passed
        assert json.loads(info["map_ids"]) == p["map_ids"]
        assert set(p["map_ids"]) <= map_ids
        assert names[p["id"]] == f"3<prog {p['name']} id {p['id']}>"


def test_map_show_infos_equal_bpftool(ours, tmp_path):
    _, map_ids = ours
    printed, calls = _record(tmp_path, "map", "show")
    infos, names = _infos(calls), _by_id_names(calls)
    mine = [m for m in printed if m["id"] in map_ids]
    assert len(mine) == len(map_ids) == 2
    for m in mine:
        info = infos[m["id"]]
        assert info["type"] == "BPF_MAP_TYPE_" + m["type"].upper()
        assert _unquote(info["name"]) == m["name"]
        assert int(info["key_size"]) == m["bytes_key"]
        assert int(info["value_size"]) == m["bytes_value"]
        assert int(info["max_entries"]) == m["max_entries"]
        assert int(info["btf_id"]) == m["btf_id"]
        assert names[m["id"]].endswith(f"<map {m['name']} id {m['id']}>")


def test_btf_show_infos_equal_bpftool(ours, tmp_path):
    prog_ids, map_ids = ours
    printed, calls = _record(tmp_path, "btf", "show")
    infos, names = _infos(calls), _by_id_names(calls)
    mine = [b for b in printed if set(b.get("prog_ids", [])) & prog_ids]
    assert len(mine) == 1 and set(mine[0]["map_ids"]) == map_ids
    vmlinux = [b for b in printed if b["id"] == 1]
    for b in mine + vmlinux:
        info = infos[b["id"]]
        assert int(info["btf_size"]) == b["size"]
        assert (info["kernel_btf"] != "0") == b.get("kernel", False)
        # the name buffer bpftool passed, followed; none asked of a BTF without a name
        if b.get("name"):
            assert _unquote(info["name"]) == b["name"]
        else:
            assert info["name_len"] == "0" and info["name"] == "NULL"
        label = f"btf {b['name']} id {b['id']}" if b.get("name") else f"btf id {b['id']}"
        assert names[b["id"]].endswith(f"<{label}>")


def _strace_infos(tmp_path: Path, *argv: str) -> dict[int, dict]:
    log = tmp_path / "strace.log"
    subprocess.run([require_tool("strace"), "-v", "-qq", "-s", "64", "-e", "trace=bpf",
                    "-o", str(log), require_tool("bpftool"), *argv], check=True,
                   capture_output=True, timeout=120)
    out = {}
    for call in parse_strace(log.read_text()):
        if call.args[0] != "BPF_OBJ_GET_INFO_BY_FD" or call.ret != 0:
            continue
        info = call.args[1]["info"]["info"]
        if isinstance(info, dict) and "id" in info:
            out[int(info["id"].split(" => ")[-1])] = info
    return out


def _strace_text(value: Any) -> Any:
    """What strace printed, as the kernel wrote it: ``B`` of ``A => B``, bytes of a
    string."""
    if isinstance(value, CString):
        return value.data
    return value.split(" => ")[-1] if isinstance(value, str) else value


@pytest.mark.parametrize("what", ["prog", "map"])
def test_infos_equal_strace(ours, tmp_path, what):
    prog_ids, map_ids = ours
    wanted = prog_ids if what == "prog" else map_ids
    theirs = _strace_infos(tmp_path, what, "show")
    _, calls = _record(tmp_path, what, "show")
    infos = _infos(calls)
    fields = ("type", "id", "name", "tag") if what == "prog" else \
        ("type", "id", "name", "key_size", "value_size", "max_entries", "map_flags")
    assert wanted <= set(theirs), "strace decoded no info of ours"
    for object_id in wanted:
        for name in fields:
            strace_value = _strace_text(theirs[object_id][name])
            mine = infos[object_id][name]
            if name == "name":
                assert strace_value == _unquote(mine).encode(), (object_id, name)
            elif name == "tag":
                assert strace_value.hex() == mine, (object_id, name)
            else:
                assert strace_value == mine, (object_id, name, strace_value, mine)


# --- pure pieces ---------------------------------------------------------------------


def test_info_buffers_are_the_smaller_count():
    """The recorder copies min(asked, answered) elements: the kernel fills no more than
    either (bpf_prog_get_info_by_fd())."""
    layout = struct_layout("bpf_prog_info")
    fields = {f.name: f for f in layout.fields}
    asked, answered = bytearray(layout.size), bytearray(layout.size)
    struct.pack_into("<Q", asked, fields["map_ids"].offset, 0x1000)
    struct.pack_into("<I", asked, fields["nr_map_ids"].offset, 4)
    struct.pack_into("<I", answered, fields["nr_map_ids"].offset, 2)
    struct.pack_into("<Q", asked, fields["xlated_prog_insns"].offset, 0x2000)
    struct.pack_into("<I", asked, fields["xlated_prog_len"].offset, 64)
    struct.pack_into("<I", answered, fields["xlated_prog_len"].offset, 160)
    planned = plan_info_buffers("prog", bytes(asked), bytes(answered))
    assert sorted(planned) == [("map_ids", 0x1000, 8, False),
                               ("xlated_prog_insns", 0x2000, 64, False)]
    assert plan_info_buffers("perf_event", bytes(asked), bytes(answered)) == []


def test_short_info_and_other_kinds_decode():
    assert info_identity("prog", b"\0" * 3, {}) is None  # the id is not reached
    decoded = decode_info("link", struct.pack("<III", 1, 9, 42) + bytes(52))
    assert decoded.field("type").text == "BPF_LINK_TYPE_RAW_TRACEPOINT"
    assert decoded.field("raw_tracepoint.tp_name") is not None
    assert decoded.field("iter.target_name") is None  # another link type's member


def test_pseudo_btf_id_module_fd_is_a_reference():
    """ld_imm64 of a ksym (BPF_PSEUDO_BTF_ID): insn[1].imm is the fd of the module BTF
    holding it (0: vmlinux, no fd)."""
    def ld_imm64(src: int, imm: int, next_imm: int) -> bytes:
        return struct.pack("<BBhi", 0x18, src << 4 | 1, 0, imm) + \
            struct.pack("<BBhi", 0, 0, 0, next_imm)

    insns = ld_imm64(3, 77, 9) + ld_imm64(3, 78, 0) + struct.pack("<BBhi", 0x95, 0, 0, 0)
    call = {"syscall": "bpf", "cmd": cmd_value("BPF_PROG_LOAD"),
            "attr": bytes(128), "in": {"insns": insns}}
    assert fd_references(call) == [("insns[0]", 9)]
