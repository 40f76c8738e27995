"""What BPF_OBJ_GET_INFO_BY_FD answered, decoded, against what bpftool printed from it.

Our own objects are loaded (bpfreplay.api.load of tests/data/net's counters: four
programs, two maps, one BTF); ``bpftool -j prog|map|btf show`` runs under ``bpfreplay
record``; for every object of ours, the info ``explain --json`` decoded from the
recording (id, type, name, tag, key/value sizes, map ids, BTF size) must equal what
bpftool printed in that same run, and the fd its GET_FD_BY_ID made is named after the
info. The same command under ``strace -v``: its decoding of the prog and map infos
(type, id, name, tag, sizes) equals ours. Also: a link of ours against ``bpftool link
show``, map values through the BTF bpftool fetched by id against its ``map dump``,
GET_NEXT_ID / PROG_QUERY answers against strace's ``A => B``, and a lookup batch's
elements against the contents crafted.c gave the map. Only our objects are looked at:
the kernel may hold others.
"""

from __future__ import annotations

import json
import re
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
from tests.test_decode_attrs import CString, aligned, crafted_runs, parse_strace  # noqa: F401

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


def test_get_next_id_answers_are_what_bpftool_listed(ours, tmp_path):
    """The next_id of each PROG_GET_NEXT_ID, on the one-line form, is what bpftool went
    on to open and print (ids that vanish in between are opened in vain)."""
    printed, calls = _record(tmp_path, "prog", "show")
    answered = set()
    for c in calls:
        if c.get("cmd") == "BPF_PROG_GET_NEXT_ID" and c["ret"] == 0:
            answered.add(int(c["text"].split(" => {next_id=")[1].split("}")[0]))
    assert {p["id"] for p in printed} <= answered
    assert ours[0] <= answered


def test_map_dump_values_through_the_btf_fetched_by_id(tmp_path):
    """bpftool map dump opens the map by id, fetches its BTF by id (info.btf) and looks
    each key up: -v shows each value through that BTF, as bpftool's "formatted"."""
    require_kernel()
    import bpfreplay.api as api

    trace = tmp_path / "dump.mp"
    with api.load(str(OBJECT), attach=False) as obj:
        counts = obj.maps["counts"]
        for key in range(counts.max_entries):
            counts[key] = (1000 + key * 7).to_bytes(8, "little")
        dumped_id = _fdinfo(counts.fd, "map_id")
        result = subprocess.run([*BPFREPLAY, "record", "-o", str(trace), "--",
                                 require_tool("bpftool"), "-j", "map", "dump", "id",
                                 str(dumped_id)], capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr[-2000:]
    printed = json.loads(result.stdout)
    wanted = {str(e["formatted"]["key"]): str(e["formatted"]["value"]) for e in printed}
    assert len(wanted) == 3 and set(wanted.values()) == {"1000", "1007", "1014"}
    text = subprocess.run([*BPFREPLAY, "explain", "-v", str(trace)], capture_output=True,
                          text=True, check=True, timeout=120).stdout
    shown = {}
    for block in text.split("bpf(BPF_MAP_LOOKUP_ELEM, ")[1:]:
        lines = [line.strip() for line in block.splitlines()]
        key = lines[lines.index(next(x for x in lines if x.startswith("--- key (passed"))) + 1]
        value = lines[lines.index(next(x for x in lines
                                       if x.startswith("--- value (returned"))) + 1]
        assert f"<map counts id {dumped_id}>" in lines[0]
        shown[key] = value
    assert shown == wanted


def test_xlated_insns_followed_equal_bpftool_dump(tmp_path):
    """bpftool prog dump xlated fetches the program back (info.xlated_prog_insns): -v
    disassembles it as bpftool prints it, map[id:N] and all; a helper call, which
    bpftool names from kallsyms, is the same call#imm."""
    require_kernel()
    import bpfreplay.api as api

    compared = 0
    for path in (OBJECT, Path(__file__).parent / "data/replay/build/counter.bpf.o"):
        with api.load(str(path), attach=False) as obj:
            for name, prog in obj.programs.items():
                trace = tmp_path / f"{name}.mp"
                prog_id = _fdinfo(prog.fd, "prog_id")
                result = subprocess.run(
                    [*BPFREPLAY, "record", "-o", str(trace), "--", require_tool("bpftool"),
                     "prog", "dump", "xlated", "id", str(prog_id)],
                    capture_output=True, text=True, timeout=120)
                assert result.returncode == 0, result.stderr[-2000:]
                theirs = [line.strip() for line in result.stdout.splitlines()
                          if re.match(r"\s*\d+: \(", line)]
                text = subprocess.run([*BPFREPLAY, "explain", "-v", str(trace)],
                                      capture_output=True, text=True, check=True).stdout
                section = text.split("--- info.xlated_prog_insns (returned")[1]
                ours = [line.strip() for line in section.splitlines()[2:]
                        if re.match(r"\s*\d+: \(", line)][:len(theirs) or None]
                assert len(ours) == len(theirs) > 5, name
                for mine, bpftool in zip(ours, theirs, strict=True):
                    if " call " in bpftool and "#" in bpftool:
                        assert mine.split(" call ")[0] == bpftool.split(" call ")[0]
                        assert mine.rsplit("#", 1)[1] == bpftool.rsplit("#", 1)[1]
                    else:
                        # bpftool 7.1's disassembler predates the per-CPU address mov
                        # (off BPF_ADDR_PERCPU, kernel 6.7), which the verifier's prints
                        # as ours does: it shows the plain move
                        older = re.sub(r"&\(void __percpu \*\)\((r\d+)\)", r"\1", mine)
                        assert bpftool in (mine, older), (name, mine, bpftool)
                    compared += 1
    assert compared > 40


@pytest.fixture()
def our_link():
    """A tracepoint program of ours attached (a perf_event link): its link and prog id."""
    require_kernel()
    import bpfreplay.api as api

    obj_path = Path(__file__).parent / "data/replay/build/counter.bpf.o"
    if not obj_path.exists():
        pytest.fail(f"{obj_path} is missing: make testprogs")
    with api.load(str(obj_path)) as obj:
        link = obj.links[0]
        if link.kind != "perf" or link.fd == link.perf_fd:
            pytest.skip("the program is attached without a BPF link on this kernel")
        yield _fdinfo(link.fd, "link_id"), _fdinfo(obj.programs["count_writes"].fd,
                                                   "prog_id"), link.perf_fd


def test_link_show_infos_equal_bpftool(our_link, tmp_path):
    link_id, prog_id, _ = our_link
    printed, calls = _record(tmp_path, "link", "show")
    infos, names = _infos(calls), _by_id_names(calls)
    mine = [link for link in printed if link["id"] == link_id]
    assert len(mine) == 1 and mine[0]["prog_id"] == prog_id
    info = infos[link_id]
    assert info["type"] == "BPF_LINK_TYPE_" + mine[0]["type"].upper()
    assert int(info["prog_id"]) == prog_id
    assert names[link_id].endswith(f"<link {mine[0]['type']} id {link_id}>")


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


# --- the answers kept in the attr and the batch outputs, on crafted calls -------------

_ANSWER = re.compile(r" => \{(.*?)\}, \d+\) = ")


def _strace_answers(value: Any, out: dict[str, str]) -> None:
    """Field -> B of every ``A => B`` strace printed in an attr (nested structs too)."""
    if isinstance(value, dict):
        for name, inner in value.items():
            if isinstance(inner, str) and " => " in inner:
                out[name] = inner.split(" => ")[-1]
            else:
                _strace_answers(inner, out)


def test_attr_answers_equal_strace(crafted_runs):  # noqa: F811
    """GET_NEXT_ID's next_id, PROG_QUERY's prog_cnt, batch counts: what the kernel wrote
    back, shown `` => {field=B}`` on the one-line form, is strace's B."""
    from bpfreplay.decode.call import explain_calls

    explained = {e.index: e for e in explain_calls(crafted_runs.ours, sections=False)}
    compared = 0
    for theirs, ours in aligned(crafted_runs):
        if ours["syscall"] != "bpf" or "attr_out" not in ours or ours["ret"] < 0 or \
                not isinstance(theirs.args[1], dict):
            continue
        wanted: dict[str, str] = {}
        _strace_answers(theirs.args[1], wanted)
        if not wanted or "GET_INFO" in theirs.line:
            continue
        line = explained[ours["index"]].line
        m = _ANSWER.search(line)
        assert m, line
        shown = dict(part.split("=", 1) for part in m.group(1).split(", "))
        for name, value in wanted.items():
            assert shown.get(name) == value, (name, value, line, theirs.line)
            compared += 1
    assert compared >= 3  # next_id of PROG/MAP/BTF_GET_NEXT_ID, PROG_QUERY's prog_cnt


def test_lookup_batch_elements_are_the_map_contents(crafted_runs):  # noqa: F811
    """crafted.c updates key 1 of a 4-entry array to 42, then asks MAP_LOOKUP_BATCH for 2
    elements from the start: -v shows the keys and values the kernel returned one by
    one, the array's [0] = 0 and [1] = 42."""
    from bpfreplay.decode.call import explain_calls

    update = cmd_value("BPF_MAP_UPDATE_ELEM")
    assert any(c.get("cmd") == update and c["ret"] == 0 and
               c["in"]["value"] == (42).to_bytes(8, "little") for c in crafted_runs.ours)
    batch = [e for e in explain_calls(crafted_runs.ours)
             if e.record.get("cmd") == cmd_value("BPF_MAP_LOOKUP_BATCH")]
    assert len(batch) == 1 and batch[0].record["ret"] == 0
    sections = {s.title.split(" (")[0]: s.lines for s in batch[0].sections}
    assert sections["keys"] == ["[0] 00 00 00 00", "[1] 01 00 00 00"]
    assert sections["values"] == ["[0] 00 00 00 00 00 00 00 00",
                                  "[1] 2a 00 00 00 00 00 00 00"]


def test_task_fd_query_answer_equals_bpftool_perf_show(our_link, tmp_path):
    """bpftool perf show asks BPF_TASK_FD_QUERY of every fd of every process: for our
    perf event the answer (prog_id, fd_type written back, the tracepoint name in buf)
    is on the one-line form as bpftool printed it."""
    import os

    _, prog_id, perf_fd = our_link
    printed, calls = _record(tmp_path, "perf", "show")
    (entry,) = [e for e in printed if e["pid"] == os.getpid() and e["fd"] == perf_fd]
    (call,) = [c for c in calls if c.get("cmd") == "BPF_TASK_FD_QUERY" and c["ret"] == 0
               and c["fields"]["pid"] == str(os.getpid()) and c["fields"]["fd"] == str(perf_fd)]
    answer = dict(part.split("=", 1) for part in
                  _ANSWER.search(call["text"]).group(1).split(", "))
    assert entry["prog_id"] == prog_id == int(answer["prog_id"])
    assert answer["fd_type"] == "BPF_FD_TYPE_" + entry["fd_type"].upper()
    assert f'buf="{entry["tracepoint"]}"' in call["text"]


def test_compare_info_buffers_kept_by_one_side_only(tmp_path):
    """A recording of format 1 (its recorder kept none of the info's own buffers,
    out.info.*: the module-BTF walk references of tests/data/module_btf) is at parity
    with a new one of the same calls; between two of format 2 the buffers count, and
    where both kept them their bytes are compared."""
    import copy

    from bpfreplay.compare import NormalisedTrace, compare_loaded, normalise
    from bpfreplay.trace import read_trace

    require_kernel()
    trace = tmp_path / "btf.mp"
    subprocess.run([*BPFREPLAY, "record", "-o", str(trace), "--", require_tool("bpftool"),
                    "btf", "show"], check=True, capture_output=True, timeout=120)
    with read_trace(str(trace)) as t:
        calls = list(t.calls())
    pid = calls[0]["pid"]
    kept = [c for c in calls if any(k.startswith("info.") for k in c.get("out", {}))]
    assert any(c["out"].get("info.name") == b"vmlinux" for c in kept)

    def loaded(records: list, version: int) -> NormalisedTrace:
        return NormalisedTrace("t.mp", pid, records, normalise(records, pid), version)

    older = copy.deepcopy(calls)
    for c in older:
        c["out"] = {k: v for k, v in c.get("out", {}).items() if not k.startswith("info.")}
    assert compare_loaded(loaded(older, 1), loaded(calls, 2)).differences == []
    assert compare_loaded(loaded(older, 2), loaded(calls, 2)).differences != []
    renamed = copy.deepcopy(calls)
    for c in renamed:
        if c.get("out", {}).get("info.name") == b"vmlinux":
            c["out"]["info.name"] = b"vmlinuX"
    report = compare_loaded(loaded(renamed, 2), loaded(calls, 2))
    assert {d.path for d in report.differences} == {"out.info.name"}
