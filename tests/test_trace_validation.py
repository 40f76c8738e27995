"""Hostile trace content (issue 8): every record checked against the format as it is
read. explain leaves a bad record out with ``record #N at byte B: what`` and goes on;
compare refuses the trace; a cut file is reported at the exact end of its last
complete record. The traces here are traces/minimal.mp (libbpf's own calls, recorded)
re-packed with msgpack itself, one thing changed."""

from __future__ import annotations

import argparse
import contextlib
import io
from pathlib import Path

import msgpack
import pytest

from bpfreplay.errors import BpfReplayError
from tests.conftest import ROOT

TRACE = ROOT / "traces" / "minimal.mp"


def _objects(path: Path = TRACE) -> list:
    """The header and records of a trace, read by msgpack alone."""
    return list(msgpack.Unpacker(io.BytesIO(path.read_bytes()), raw=False,
                                 strict_map_key=False))


def _packed(objects: list) -> list[bytes]:
    return [msgpack.packb(o, use_bin_type=True) for o in objects]


def _first_call(objects: list, cmd: int | None = None) -> int:
    return next(i for i, o in enumerate(objects) if isinstance(o, dict)
                and o.get("type") == "call" and (cmd is None or o.get("cmd") == cmd))


def explain(path: Path, *options: str) -> tuple[int, str, str]:
    """bpfreplay explain in this process: (status, stdout, stderr). Only a
    BpfReplayError may escape (the CLI prints it without a traceback)."""
    from bpfreplay import explain as command

    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    args = parser.parse_args([str(path), *options])
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = command.run(args)
    return status, out.getvalue(), err.getvalue()


MODES = [(), ("-v",), ("--json",), ("--json", "--raw-json")]


def _with_record_changed(tmp_path: Path, change, cmd: int | None = None) -> tuple[Path, int,
                                                                                 int]:
    """minimal.mp with one call record replaced by ``change(record)`` (raw bytes or an
    object); the path, the record's number (header #0) and its byte offset."""
    objects = _objects()
    position = _first_call(objects, cmd)
    packed = _packed(objects)
    changed = change(dict(objects[position]))
    packed[position] = changed if isinstance(changed, bytes) else \
        msgpack.packb(changed, use_bin_type=True)
    path = tmp_path / "changed.mp"
    path.write_bytes(b"".join(packed))
    return path, position, sum(len(p) for p in packed[:position])


def _map_with_key(key_bytes: bytes) -> bytes:
    """A call record whose ``in`` map has one key that is itself ``key_bytes``."""
    body = msgpack.packb({"type": "call", "index": 0, "pid": 1, "tid": 1,
                          "syscall": "bpf", "cmd": 0, "size": 0, "args": [0] * 6},
                         use_bin_type=True)
    # fixmap of 8 entries -> 9: append "in": {<key>: b"x"}
    assert body[0] == 0x88
    return bytes([0x89]) + body[1:] + msgpack.packb("in") + b"\x81" + key_bytes \
        + msgpack.packb(b"x", use_bin_type=True)


BAD_RECORDS = {
    "map key that is a map": lambda r: _map_with_key(msgpack.packb({"a": 1})),
    "map key that is a list": lambda r: _map_with_key(msgpack.packb([1, 2])),
    "cmd that is a string": lambda r: {**r, "cmd": "BPF_PROG_LOAD"},
    "cmd that is a float": lambda r: {**r, "cmd": 5.0},
    "args not a list": lambda r: {**r, "args": "0x1"},
    "args not integers": lambda r: {**r, "args": ["a", None, 1.5]},
    "errno past a C int": lambda r: {**r, "ret": -1, "errno": 1 << 40},
    "errno a string": lambda r: {**r, "ret": -1, "errno": "EPERM"},
    "in not a map": lambda r: {**r, "in": [b"x"]},
    "type a map": lambda r: {**r, "type": {"call": 1}},
    "record a list": lambda r: [1, 2, 3],
}


@pytest.mark.parametrize("mode", MODES, ids=lambda m: " ".join(m) or "text")
@pytest.mark.parametrize("name", sorted(BAD_RECORDS))
def test_explain_skips_a_bad_record_with_its_place_and_goes_on(tmp_path, name, mode):
    path, number, offset = _with_record_changed(tmp_path, BAD_RECORDS[name])
    status, out, err = explain(path, *mode)
    assert status == 0
    assert f"record #{number} at byte {offset}:" in err
    # The records after it are still explained: the last call of minimal.mp is there.
    last = max(o["index"] for o in _objects() if isinstance(o, dict)
               and o.get("type") == "call")
    assert (f'"index":{last},' in out) if "--json" in mode else \
        any(line.split()[:1] == [str(last)] for line in out.splitlines())


@pytest.mark.parametrize("name", sorted(BAD_RECORDS))
def test_compare_refuses_a_trace_with_a_bad_record(tmp_path, name):
    from bpfreplay.compare import read_normalised

    path, number, offset = _with_record_changed(tmp_path, BAD_RECORDS[name])
    with pytest.raises(BpfReplayError, match=f"record #{number} at byte {offset}"):
        read_normalised(str(path))


@pytest.mark.parametrize("header_change", [
    {"argv": "minimal 1"}, {"argv": [1, 2]}, {"argv": {"a": 1}},
    {"start_time": "yesterday"}, {"start_time": [1]}, {"start_time": float("nan")},
    {"start_time": 1e300}, {"possible_cpus": 1 << 40}, {"kernel": 5},
])
@pytest.mark.parametrize("mode", MODES, ids=lambda m: " ".join(m) or "text")
def test_a_header_of_the_wrong_shape_is_refused_clearly(tmp_path, header_change, mode):
    objects = _objects()
    objects[0] = {**objects[0], **header_change}
    path = tmp_path / "header.mp"
    path.write_bytes(b"".join(_packed(objects)))
    key = next(iter(header_change))
    with pytest.raises(BpfReplayError, match=f"header.*'{key}'"):
        explain(path, *mode)


def test_every_cut_is_reported_at_the_end_of_the_last_complete_record(tmp_path):
    """Each cut of minimal.mp: the records before the cut all read back, and the bytes
    ignored are those after the last complete record (offsets from the packed sizes,
    not from msgpack's tell())."""
    from bpfreplay.trace import read_trace

    packed = _packed(_objects())
    data = b"".join(packed)
    assert data == TRACE.read_bytes()
    ends = []
    for p in packed:
        ends.append((ends[-1] if ends else 0) + len(p))
    path = tmp_path / "cut.mp"
    cuts = sorted({c for end in ends[:-1] for c in (end, end + 1, end + 2)}
                  | set(range(ends[0], len(data), 7)))
    for cut in cuts:
        path.write_bytes(data[:cut])
        complete = [e for e in ends if e <= cut]
        with read_trace(str(path)) as trace:
            records = list(trace.records())
        assert len(records) == len(complete) - 1, cut
        assert trace.trailing_bytes == cut - complete[-1], cut
        assert trace.truncated == (cut != complete[-1]), cut


def test_explain_says_where_a_cut_file_stops(tmp_path):
    packed = _packed(_objects())
    data = b"".join(packed)
    # Cut in the middle of a long record (a PROG_LOAD's instructions).
    position = _first_call(_objects(), 5)
    start = sum(len(p) for p in packed[:position])
    cut = start + len(packed[position]) - 3
    path = tmp_path / "cut.mp"
    path.write_bytes(data[:cut])
    status, _, err = explain(path)
    assert status == 0
    assert f"({cut - start} bytes ignored" in err and f"ends at byte {start}" in err


def test_bytes_that_are_not_msgpack_stop_with_the_place(tmp_path):
    packed = _packed(_objects())
    position = 5
    packed[position] = b"\xc1" + packed[position][1:]  # 0xc1: never used by msgpack
    path = tmp_path / "c1.mp"
    path.write_bytes(b"".join(packed))
    offset = sum(len(p) for p in packed[:position])
    with pytest.raises(BpfReplayError, match=f"record #{position} at byte {offset}"):
        explain(path)


def test_invalid_utf8_in_a_string_is_a_bad_record_not_a_crash(tmp_path):
    def change(record):
        body = msgpack.packb({**record, "syscall": "SYSCALL"}, use_bin_type=True)
        return body.replace(b"\xa7SYSCALL", b"\xa7SYS\xff\xfeAL")

    path, number, offset = _with_record_changed(tmp_path, change)
    for mode in MODES:
        status, out, err = explain(path, *mode)
        assert status == 0 and f"record #{number} at byte {offset}:" in err
