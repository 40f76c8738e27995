"""``bpfreplay explain`` streams: two passes over the file give exactly what the whole
list in memory gives (``explain_calls``, ``label_calls``: the oracle), on real
recordings and on traces made from them with fds renumbered, calls dropped, copied and
moved to another process; and the first pass keeps nothing per call."""

from __future__ import annotations

import argparse
import gc
import io
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bpfreplay.decode import probes
from bpfreplay.decode.call import ExplainStream, explain_calls
from bpfreplay.decode.fds import FD_FIELDS, FdLife
from bpfreplay.decode.probes import label_calls, label_calls_streaming, scan_labels
from bpfreplay.explain import decode_context, write_explained
from bpfreplay.trace import read_trace
from bpfreplay.uapi import attr_layout
from tests.conftest import ROOT

BPFREPLAY = [sys.executable, "-m", "bpfreplay.cli"]
TRACE = ROOT / "traces" / "minimal.mp"
MODES = ([], ["-v"], ["--json"])


def _calls(path: Path) -> list[dict]:
    with read_trace(str(path)) as trace:
        return list(trace.calls())


def _in_memory(path: Path, *flags: str) -> str:
    """What ``explain FLAGS`` printed when it read the whole trace into a list: the
    list API, through the command's own output code."""
    with read_trace(str(path)) as trace:
        header = trace.header
        calls = list(trace.calls())
    args = argparse.Namespace(trace=str(path), verbose="-v" in flags, json="--json" in flags,
                              call=None, cmd=None, probes=None, extract=None,
                              no_summary=False, raw_json=False)
    out = io.StringIO()
    write_explained(explain_calls(calls, **decode_context(header)), header, args, out)
    return out.getvalue()


def _streamed(path: Path, *flags: str) -> str:
    result = subprocess.run([*BPFREPLAY, "explain", *flags, str(path)], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return result.stdout


def _fresh(tmp_path_factory, *program: str) -> Path:
    out = tmp_path_factory.mktemp("stream") / "trace.mp"
    subprocess.run([*BPFREPLAY, "record", "-q", "-o", str(out), "--", *program], check=True,
                   capture_output=True, timeout=120)
    return out


@pytest.fixture(scope="module")
def fresh_minimal(tmp_path_factory, minimal_binary) -> Path:
    return _fresh(tmp_path_factory, str(minimal_binary), "0.3")


@pytest.fixture(scope="module")
def fresh_heavy(tmp_path_factory, test_progs) -> Path:
    return _fresh(tmp_path_factory, str(test_progs / "bpf_heavy"), "300")


@pytest.mark.parametrize("flags", MODES, ids=["default", "-v", "--json"])
def test_stored_recording_streams_as_in_memory(flags):
    streamed = _streamed(TRACE, *flags)
    assert streamed == _in_memory(TRACE, *flags)
    assert len(streamed.splitlines()) >= 56


@pytest.mark.parametrize("flags", MODES, ids=["default", "-v", "--json"])
def test_fresh_recordings_stream_as_in_memory(flags, fresh_minimal, fresh_heavy):
    for trace in (fresh_minimal, fresh_heavy):
        assert _streamed(trace, *flags) == _in_memory(trace, *flags), trace


def test_stream_reads_the_file_twice_and_keeps_its_order():
    calls = _calls(TRACE)
    opened = []

    def open_calls():
        opened.append(1)
        return iter(calls)

    stream = ExplainStream(open_calls)
    assert list(stream) == explain_calls(calls)
    assert len(opened) == 2 and not stream.whole and stream.malformed == 0


def test_calls_appended_between_the_passes_are_left_for_next_time():
    """A trace still being written: the second pass stops where the first did."""
    calls = _calls(TRACE)
    reads = [calls[:30], calls]
    explained = list(ExplainStream(lambda: iter(reads.pop(0))))
    assert explained == explain_calls(calls[:30])


def test_indices_that_do_not_increase_are_explained_from_a_list():
    calls = [dict(c) for c in _calls(TRACE)]
    calls[5]["index"], calls[6]["index"] = calls[6]["index"], calls[5]["index"]
    calls[9]["index"] = calls[8]["index"]
    with pytest.raises(probes.NeedsWholeTrace):
        scan_labels(calls)
    stream = ExplainStream(lambda: iter(calls))
    assert list(stream) == explain_calls(calls) and stream.whole
    assert list(label_calls_streaming(lambda: iter(calls))) == label_calls(calls)


def test_malformed_records_are_shown_in_place():
    calls = [dict(c) for c in _calls(TRACE)]
    calls[3]["args"] = ["x"]
    calls[20]["syscall"] = None
    stream = ExplainStream(lambda: iter(calls))
    explained = list(stream)
    assert explained == explain_calls(calls)
    assert stream.malformed == 2 and explained[20].line.startswith("<malformed record")


# ------------------------------------------------------------- memory


def _updates(count: int):
    """A map made and updated ``count`` times, from minimal's own records (.bss)."""
    calls = _calls(TRACE)
    create = next(c for c in calls if probes.attr_string(c, "map_name") == "minimal_.bss")
    update = next(c for c in calls if probes.command(c) == "BPF_MAP_UPDATE_ELEM")
    yield {**create, "index": 0}
    for i in range(1, count + 1):
        yield {**update, "index": i}


def _live(kind: type) -> int:
    return sum(1 for o in gc.get_objects() if type(o) is kind)


def test_first_pass_keeps_nothing_per_call():
    seen = []

    def counting():
        for call in _updates(5000):
            if call["index"] in (100, 4900):
                seen.append((_live(probes._Node), _live(FdLife)))
            yield call

    labels = scan_labels(counting())
    assert seen[1] == seen[0] and seen[0][0] <= 3 and seen[0][1] <= 2
    assert labels.count == 5001 and not labels.probes


def test_second_pass_keeps_only_the_open_fds():
    stream = ExplainStream(lambda: _updates(3000), sections=True)
    live = []
    for explained in stream:
        if explained.index in (50, 2950):
            gc.collect()
            live.append((_live(FdLife), _live(dict)))
    assert live[0][0] == live[1][0] == 1
    assert live[1][1] - live[0][1] < 50  # records are not piling up


# ------------------------------------------------------------- made-up traces


@cache
def _base() -> tuple[dict, ...]:
    return tuple(_calls(TRACE))


def _set_name(call: dict, name: bytes) -> dict:
    """``call`` with its map_name or prog_name set to ``name`` (libbpf 0.x named its
    probes "test" or nothing)."""
    layout = attr_layout(call["cmd"]) if call.get("syscall") == "bpf" else None
    f = layout and (layout.field("map_name") or layout.field("prog_name"))
    if not f or f.end > len(call.get("attr", b"")):
        return call
    attr = bytearray(call["attr"])
    attr[f.offset:f.end] = name.ljust(f.size, b"\0")
    return {**call, "attr": bytes(attr)}


def _set_fd(call: dict, what: int, fd: int) -> dict:
    """``call`` with one of the fds its attr holds (a field, or a map's ld_imm64) set to
    ``fd``."""
    if call.get("syscall") != "bpf" or "attr" not in call:
        return call
    layout = attr_layout(call["cmd"])
    fields = [name for name in FD_FIELDS.get(probes.command(call) or "", ())
              if layout is not None and (f := layout.field(name)) is not None
              and f.end <= len(call["attr"])]  # the fields this attr's size reaches
    insns = call.get("in", {}).get("insns", b"")
    loads = [i for i in range(0, len(insns) - 7, 8) if insns[i] == 0x18 and insns[i + 1] >> 4]
    slots = len(fields) + len(loads)
    if not slots:
        return call
    what %= slots
    if what < len(fields):
        f = layout.field(fields[what])
        attr = bytearray(call["attr"])
        attr[f.offset:f.end] = fd.to_bytes(f.size, "little")
        return {**call, "attr": bytes(attr)}
    at = loads[what - len(fields)]
    code = bytearray(insns)
    code[at + 4:at + 8] = fd.to_bytes(4, "little")
    return {**call, "in": {**call["in"], "insns": bytes(code)}}


_fd = st.integers(3, 9)
_edit = st.one_of(
    st.tuples(st.just("drop"), st.integers(0, 200)),
    st.tuples(st.just("copy"), st.integers(0, 200), st.integers(0, 200)),
    st.tuples(st.just("swap"), st.integers(0, 200)),
    st.tuples(st.just("ret"), st.integers(0, 200), st.integers(-1, 9)),
    st.tuples(st.just("fd"), st.integers(0, 200), _fd),
    st.tuples(st.just("pid"), st.integers(0, 200), st.integers(0, 200)),
    st.tuples(st.just("name"), st.integers(0, 200), st.sampled_from([b"", b"test"])),
    st.tuples(st.just("dup"), st.integers(0, 200), _fd, _fd,
              st.sampled_from(["dup", "dup2", "dup3", "fcntl"])),
    st.tuples(st.just("close"), st.integers(0, 200), _fd),
    st.tuples(st.just("refer"), st.integers(0, 200), st.integers(0, 7), _fd),
    st.tuples(st.just("refer-back"), st.integers(0, 200), st.integers(0, 7),
              st.integers(1, 12)),
)


def _made_up(edits: list[tuple]) -> list[dict]:
    calls = [dict(c, pid=100) for c in _base()]
    for edit in edits:
        kind, at = edit[0], edit[1] % len(calls)
        call = calls[at]
        if kind == "drop" and len(calls) > 1:
            del calls[at]
        elif kind == "copy":
            calls.insert(edit[2] % (len(calls) + 1), dict(call))
        elif kind == "swap" and at + 1 < len(calls):
            calls[at], calls[at + 1] = calls[at + 1], call
        elif kind == "ret":
            calls[at] = {**call, "ret": edit[2], "errno": 9 if edit[2] == -1 else None}
        elif kind == "fd" and call.get("args"):
            calls[at] = {**call, "args": [edit[2], *call["args"][1:]]}
        elif kind == "pid":  # this call and the ones after it to another process
            for i in range(at, min(len(calls), at + edit[2] % 20 + 1)):
                calls[i] = {**calls[i], "pid": 200}
        elif kind == "name":
            calls[at] = _set_name(call, edit[2])
        elif kind == "dup":
            old, new, syscall = edit[2], edit[3], edit[4]
            args = [old, 0 if syscall == "fcntl" else new, 0, 0, 0, 0]
            calls.insert(at, {"type": "call", "syscall": syscall, "pid": call["pid"],
                              "args": args, "ret": new})
        elif kind == "refer":
            calls[at] = _set_fd(call, edit[2], edit[3])
        elif kind == "refer-back":  # to the fd a call shortly before made
            made = calls[at - edit[3]].get("ret") if at >= edit[3] else None
            if isinstance(made, int) and 0 < made < 1 << 16:
                calls[at] = _set_fd(call, edit[2], made)
        elif kind == "close":
            calls.insert(at, {"type": "call", "syscall": "close", "pid": call["pid"],
                              "args": [edit[2], 0, 0, 0, 0, 0], "ret": None})
    return [{**c, "index": i} for i, c in enumerate(calls)]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_edit, max_size=16))
def test_made_up_traces_label_as_in_memory(edits):
    calls = _made_up(edits)
    scan_labels(calls)  # streams: no fallback to the list
    assert list(label_calls_streaming(lambda: iter(calls))) == label_calls(calls)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_edit, max_size=8))
def test_made_up_traces_explain_as_in_memory(edits):
    calls = _made_up(edits)
    stream = ExplainStream(lambda: iter(calls))
    assert list(stream) == explain_calls(calls)
    assert not stream.whole


def _global_data_probe(*, dup_btf: bool) -> list[dict]:
    """libbpf's global data probe (its map unnamed, so only its program is a probe by
    content) with the object's BTF given to the map, straight or through a dup."""
    base = _base()
    btf, global_map, prog = base[20], base[25], base[26]
    assert probes.command(btf) == "BPF_BTF_LOAD" and global_map["ret"] == 4
    assert prog["ret"] == 5 and probes.command(prog) == "BPF_PROG_LOAD"
    close = {"type": "call", "syscall": "close", "pid": btf["pid"], "ret": None}
    calls = [{**btf, "ret": 3}]
    if dup_btf:
        calls.append({**close, "syscall": "dup", "args": [3, 0, 0, 0, 0, 0], "ret": 6})
    calls += [_set_fd(_set_name(global_map, b""), 1, 6 if dup_btf else 3), prog,
              {**close, "args": [4, 0, 0, 0, 0, 0]}, {**close, "args": [5, 0, 0, 0, 0, 0]},
              {**close, "args": [3, 0, 0, 0, 0, 0]}]
    return [{**c, "index": i} for i, c in enumerate(calls)]


def test_second_sweep_labels_a_btf_only_a_follower_used():
    """The map follows its program in the first sweep, the BTF only the map uses in the
    second."""
    calls = _global_data_probe(dup_btf=False)
    labels = label_calls(calls)
    assert [label.probe for label in labels] == ["global_data"] * 6
    assert list(label_calls_streaming(lambda: iter(calls))) == labels
    assert list(ExplainStream(lambda: iter(calls))) == explain_calls(calls)


def test_two_sweeps_and_no_more():
    """Through a dup the chain is one step longer: the dup follows in the second sweep,
    the BTF it duplicated would need a third, which label_calls does not make."""
    calls = _global_data_probe(dup_btf=True)
    labels = label_calls(calls)
    assert [label.probe for label in labels[:4]] == [None, "global_data", "global_data",
                                                     "global_data"]
    assert list(label_calls_streaming(lambda: iter(calls))) == labels
    explained = list(ExplainStream(lambda: iter(calls)))
    assert explained == explain_calls(calls)
    assert "btf_fd=6<btf>" in explained[2].line  # named through the dup


def test_a_dup_waits_for_every_user_even_of_a_settled_object():
    """memfd 3 (no probe, settled early), dup'ed to 4. The map made with btf_fd=4 is
    used only by a probe program, so it follows that probe; the dup would too, but
    for the ioctl that reads fd 4 as well (after the memfd is settled)."""
    base = _base()
    bss_map, prog = base[29], base[26]
    assert probes.attr_string(bss_map, "map_name") == "minimal_.bss"
    pid = bss_map["pid"]

    def call(syscall: str, *args: int, ret: int | None = 0) -> dict:
        return {"type": "call", "syscall": syscall, "pid": pid,
                "args": [*args, 0, 0, 0, 0, 0, 0][:6], "ret": ret}

    calls = [call("memfd_create", 0, 0, ret=3), call("dup", 3, ret=4),
             {**_set_fd(bss_map, 1, 4), "ret": 5}, {**_set_fd(prog, 2, 5), "ret": 6},
             call("ioctl", 4, 0), call("close", 5, ret=None), call("close", 6, ret=None),
             call("close", 4, ret=None), call("close", 3, ret=None)]
    calls = [{**c, "index": i} for i, c in enumerate(calls)]
    labels = label_calls(calls)
    assert [label.probe for label in labels[:5]] == [None, None, "global_data",
                                                     "global_data", None]
    assert list(label_calls_streaming(lambda: iter(calls))) == labels
