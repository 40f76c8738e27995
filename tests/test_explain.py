"""bpfreplay explain: the command end to end, checked against bpftool, the source file
and the kernel's own answers; never a traceback, whatever the trace holds."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bpfreplay.decode.btf import dump_btf, parse_btf
from bpfreplay.decode.call import TraceContext, explain_call
from bpfreplay.trace import TraceWriter
from tests.conftest import REFERENCE_DIR, ROOT, require_tool

BPFREPLAY = [sys.executable, "-m", "bpfreplay.cli"]
TRACE = ROOT / "traces" / "minimal.mp"


def _explain(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*BPFREPLAY, "explain", *args], capture_output=True, text=True,
                          timeout=120)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory, minimal_binary) -> Path:
    out = tmp_path_factory.mktemp("explain") / "minimal.mp"
    subprocess.run([*BPFREPLAY, "record", "-q", "-o", str(out), "--", str(minimal_binary),
                    "0.3"], check=True, capture_output=True, timeout=120)
    return out


def test_default_output_names_everything(recorded):
    result = _explain(str(recorded))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    bpf_lines = [line for line in lines if re.match(r"\s*\d+ \S+\s+bpf\(", line)]
    assert len(bpf_lines) == 28
    assert all(re.search(r"\bbpf\(BPF_[A-Z_]+, \{", line) for line in bpf_lines)
    probe_lines = [line for line in bpf_lines if re.match(r"\s*\d+ probe:", line)]
    assert len(probe_lines) == 19
    load = next(line for line in bpf_lines if 'prog_name="handle_tp"' in line)
    assert re.search(r"prog_btf_fd=\d+<btf>", load) and "= " in load
    assert re.search(r"map_fd=\d+<map minimal_\.rodata>", result.stdout)
    assert "config=" in result.stdout and "syscalls:sys_enter_write" in result.stdout
    assert "# 28" not in result.stdout  # the summary counts calls, not bpf() alone
    assert re.search(r"libbpf feature probes \(19 bpf\(\) calls\)", result.stdout)


def test_verbose_source_lines_are_the_source_file(recorded):
    result = _explain("-v", "--cmd", "PROG_LOAD", str(recorded))
    assert result.returncode == 0, result.stderr
    source = (REFERENCE_DIR / "minimal.bpf.c").read_text().splitlines()
    comments = re.findall(r"; (.*?) \[file:(\S+) line_num:(\d+) line_col:\d+\]", result.stdout)
    assert len(comments) == 6
    for text, path, number in comments:
        assert Path(path).name == "minimal.bpf.c"
        assert source[int(number) - 1].strip() == text.strip()
    assert "call bpf_get_current_pid_tgid#14" in result.stdout
    assert re.search(r"r1 = map\[fd:\d+\]\[0\]\+0<map minimal_\.bss>", result.stdout)


def test_map_value_decoded_with_the_maps_btf(recorded):
    from bpfreplay.trace import read_trace

    with read_trace(str(recorded)) as trace:
        pid = next(r["pid"] for r in trace.records() if r["type"] == "process")
    result = _explain("-v", "--cmd", "MAP_UPDATE_ELEM", str(recorded))
    assert f"{{my_pid = {pid}}}" in result.stdout  # minimal stores its own pid
    assert '"BPF triggered from PID %d.\\n"' in result.stdout  # .rodata through its BTF


def test_extracted_btf_dumps_like_bpftool(tmp_path, recorded):
    """Every BTF blob of the recording: our dump equals bpftool's of the extracted file."""
    bpftool = require_tool("bpftool")
    out = tmp_path / "payloads"
    result = _explain("--extract", str(out), "--cmd", "BTF_LOAD", str(recorded))
    assert result.returncode == 0, result.stderr
    blobs = sorted(out.glob("*.btf"))
    assert len(blobs) == 9
    for blob in blobs:
        theirs = subprocess.run([bpftool, "btf", "dump", "file", str(blob)], check=True,
                                capture_output=True, text=True).stdout.splitlines()
        assert list(dump_btf(parse_btf(blob.read_bytes()))) == theirs, blob.name
    assert sorted(p.name for p in out.glob("*.attr"))[0].endswith("-btf_load.attr")


def test_json_lines_are_stable_and_decoded(recorded):
    result = _explain("--json", str(recorded))
    objects = [json.loads(line) for line in result.stdout.splitlines()]
    keys = {"index", "pid", "tid", "syscall", "cmd", "size", "ret", "errno", "args", "phase",
            "probe", "text", "fields"}
    assert all(keys <= set(o) for o in objects)
    loads = [o for o in objects if o["cmd"] == "BPF_PROG_LOAD"
             and o["fields"]["prog_name"] == '"handle_tp"']
    assert len(loads) == 1 and loads[0]["phase"] == "object" and loads[0]["probe"] is None
    assert loads[0]["fields"]["prog_type"] == "BPF_PROG_TYPE_TRACEPOINT"
    perf_link = [o for o in objects if o["cmd"] == "BPF_LINK_CREATE" and o["errno"]]
    assert [o["probe"] for o in perf_link] == ["perf_link"]
    raw = _explain("--json", "--raw-json", str(recorded))
    assert len(raw.stdout.splitlines()) == len(objects)


def test_filters(recorded):
    only_probes = _explain("--probes", "--no-summary", str(recorded)).stdout.splitlines()[1:]
    assert only_probes and all(re.match(r"\s*\d+ probe:", line) for line in only_probes)
    no_probes = _explain("--no-probes", "--no-summary", str(recorded)).stdout.splitlines()[1:]
    assert not any(re.match(r"\s*\d+ probe:", line) for line in no_probes)
    assert len(only_probes) + len(no_probes) == len(
        _explain("--no-summary", str(recorded)).stdout.splitlines()[1:])
    one = _explain("--call", "0", "--no-summary", str(recorded)).stdout.splitlines()[1:]
    assert len(one) == 1 and one[0].split()[0] == "0"


# ------------------------------------------------------------- never crash


_values = st.one_of(st.none(), st.integers(-2**70, 2**70), st.binary(max_size=64),
                    st.text(max_size=8))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.dictionaries(
    st.sampled_from(["index", "syscall", "cmd", "size", "attr", "attr_out", "in", "out", "ret",
                     "errno", "args", "pid", "object", "common"]),
    st.one_of(_values, st.sampled_from(["bpf", "close", "ioctl", "mmap", "perf_event_open"]),
              st.lists(st.integers(0, 2**64 - 1), max_size=6),
              st.dictionaries(st.sampled_from(["insns", "btf", "key", "value", "log_buf",
                                               "func_info", "line_info", "license"]),
                              st.binary(max_size=96), max_size=3))), max_size=6))
def test_garbage_records_never_raise(records):
    ctx = TraceContext(records)
    for record in ctx.records:
        assert explain_call(record, ctx).line


def test_real_records_with_corrupted_payloads_never_raise():
    from bpfreplay.trace import read_trace

    with read_trace(str(TRACE)) as trace:
        calls = list(trace.calls())
    for flip in range(0, 64, 7):
        broken = []
        for c in calls:
            c = dict(c)
            if "attr" in c:
                attr = bytearray(c["attr"])
                if attr:
                    attr[flip % len(attr)] ^= 0xFF
                c["attr"] = bytes(attr)
            c["in"] = {k: v[: flip] for k, v in (c.get("in") or {}).items()}
            broken.append(c)
        ctx = TraceContext(broken)
        for record in ctx.records:
            assert explain_call(record, ctx).line


def test_text_mode_on_a_foreign_record_shape(tmp_path):
    path = tmp_path / "odd.mp"
    with TraceWriter(str(path), {"argv": ["x"]}) as w:
        w.write({"type": "call", "index": 0, "syscall": "bpf", "cmd": 999, "size": 3,
                 "attr": b"\x01\x02\x03", "ret": -1, "errno": 22, "args": [999, 0, 3]})
        w.write({"type": "call", "index": 1, "syscall": "weird", "ret": 0})
    result = _explain("-v", str(path))
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert "EINVAL" in result.stdout
