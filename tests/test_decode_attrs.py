"""The attr decoder against strace -v, field by field.

The same program runs twice, once under ``strace -f -v`` and once under
``bpfreplay record``: fds and sizes are the same, pointers differ. For every call strace
decodes, every field it prints must have the same value in our decode: names for
enums and flags, numbers for numbers, strings for strings, NULL or not for pointers.
The programs: libbpf-bootstrap's minimal (what libbpf really sends) and
tests/data/attrs/crafted.c (every command, short sizes, garbage past the known fields,
unknown values, every member of link_create's union, perf events of every type).
"""

from __future__ import annotations

import errno
import re
import struct
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bpfreplay.decode.attrs import (
    DecodedAttr,
    FieldValue,
    decode_bpf_attr,
    decode_common_attr,
    decode_perf_event_attr,
    format_attr,
    perf_ioctl_name,
    perf_open_flags,
)
from bpfreplay.errors import DecodeError
from bpfreplay.trace import read_trace
from bpfreplay.uapi import _generated as generated
from bpfreplay.uapi import attr_layout, cmd_value, defines, enum_values, struct_layout
from tests.conftest import ROOT, require_kernel, require_tool

BPFREPLAY = [sys.executable, "-m", "bpfreplay.cli"]
CRAFTED = ROOT / "tests" / "data" / "attrs" / "crafted.c"
TRACED = ("bpf", "perf_event_open", "ioctl")

# strace's known differences from the kernel's reading, which our decoder does not copy.
# (struct, field, what strace prints) -> why. Only used when our raw value agrees.
STRACE_QUIRKS = {
    ("prog_load", "expected_attach_type", "BPF_CGROUP_INET_INGRESS"):
        "strace names 0 by the enum's first name; for all but cgroup_skb it means unset",
    ("map_elem", "flags", "BPF_ANY"):
        "strace prints lookup flags 0 as BPF_ANY, an update mode: we print 0",
    ("batch", "elem_flags", "BPF_ANY"):
        "strace prints lookup/delete batch elem_flags 0 as BPF_ANY: we print 0",
    ("task_fd_query", "fd_type", "BPF_FD_TYPE_RAW_TRACEPOINT"):
        "an output field: 0 at entry means not set yet, not BPF_FD_TYPE_RAW_TRACEPOINT",
}
# Union members we name otherwise than strace, which prints the first member whatever
# the context: (struct, strace's name, ours) -> why ours.
ALIAS_CHOICES = {
    ("prog_load", "attach_prog_fd", "attach_btf_obj_fd"):
        "a tracing program's fd there is a module's BTF object (libbpf's use)",
    ("prog_attach", "target_fd", "target_ifindex"): "tcx/netkit attach to a device",
    ("query", "target_fd", "target_ifindex"): "tcx/netkit query a device",
    ("query", "prog_cnt", "count"): "the mprog (tcx/netkit) name of the same count",
    ("link_create", "target_fd", "target_ifindex"): "xdp/tcx/netkit links take a device",
    ("link_create", "prog_fd", "map_fd"): "a struct_ops link takes the map",
    ("perf_event_attr", "config1", "uprobe_path"): "the uprobe PMU's meaning of config1",
    ("perf_event_attr", "config2", "probe_offset"): "the uprobe PMU's meaning of config2",
}
# Values that differ between the two runs by nature: outputs of an earlier call left in
# the attr (ids the kernel hands out, run time).
PROCESS_SPECIFIC = {("get_id", "next_id"), ("test", "duration")}
# strace prints these wrapped in one more struct: {link_create={...}}.
WRAPPERS = {"link_create", "link_update", "test", "query", "info", "raw_tracepoint",
            "task_fd_query", "batch"}


# --- a parser of strace's output --------------------------------------------------

@dataclass
class CString:
    data: bytes
    truncated: bool  # strace printed "..." after the quote


_ESCAPES = {"n": 10, "t": 9, "r": 13, "v": 11, "f": 12, "a": 7, "b": 8, '"': 34, "\\": 92}


class StraceParser:
    """strace's {a=1, b={c=2}, d=[...], e="..."...} syntax."""

    def __init__(self, text: str) -> None:
        self.s = text
        self.i = 0

    def skip(self) -> None:
        while self.i < len(self.s) and self.s[self.i] == " ":
            self.i += 1

    def value(self):
        self.skip()
        ch = self.s[self.i]
        if ch == "{":
            return self.struct()
        if ch == "[":
            return self.array()
        if ch == '"':
            return self.string()
        return self.bare()

    def struct(self) -> dict:
        self.i += 1
        out: dict = {}
        while True:
            self.skip()
            if self.s[self.i] == "}":
                self.i += 1
                return out
            m = re.compile(r"[\w.]+=").match(self.s, self.i)
            if m:
                self.i = m.end()
                out[m.group()[:-1]] = self.value()
            else:
                out.setdefault("...", []).append(self.value())
            self.skip()
            if self.s[self.i] == ",":
                self.i += 1

    def array(self) -> list:
        self.i += 1
        out = []
        while True:
            self.skip()
            if self.s[self.i] == "]":
                self.i += 1
                return out
            out.append(self.value())
            self.skip()
            if self.s[self.i] == ",":
                self.i += 1

    def string(self) -> CString:
        self.i += 1
        data = bytearray()
        s = self.s
        while s[self.i] != '"':
            if s[self.i] == "\\":
                nxt = s[self.i + 1]
                if nxt == "x":
                    data.append(int(s[self.i + 2:self.i + 4], 16))
                    self.i += 4
                elif nxt.isdigit():
                    m = re.compile(r"[0-7]{1,3}").match(s, self.i + 1)
                    data.append(int(m.group(), 8))
                    self.i = m.end()
                else:
                    data.append(_ESCAPES[nxt])
                    self.i += 2
            else:
                data += s[self.i].encode()
                self.i += 1
        self.i += 1
        truncated = s.startswith("...", self.i)
        if truncated:
            self.i += 3
        self.bare()  # a comment or "=> new value" after a string
        return CString(bytes(data), truncated)

    def bare(self) -> str:
        depth = 0
        start = self.i
        s = self.s
        while self.i < len(s):
            ch = s[self.i]
            if s.startswith("/*", self.i):
                self.i = s.index("*/", self.i) + 2
                continue
            if ch == '"':
                self.string()
                continue
            if ch in "([{":
                depth += 1
            elif ch in ")]}":
                if depth == 0:
                    break
                depth -= 1
            elif ch == "," and depth == 0:
                break
            self.i += 1
        return s[start:self.i].strip()


_LINE = re.compile(r"^(?:\d+\s+)?(\w+)\((.*)\)\s+=\s+(-?\d+|0x[0-9a-f]+)")


@dataclass
class StraceCall:
    name: str
    args: list
    ret: int
    line: str = field(repr=False)


def parse_strace(log: str) -> list[StraceCall]:
    calls = []
    for line in log.splitlines():
        m = _LINE.match(line)
        if not m:
            continue
        name, args, ret = m.group(1), m.group(2), int(m.group(3), 0)
        if name.startswith("syscall_"):
            # uretprobe() (335, 6.11+) as strace 6.1 names it: the kernel's trampoline
            # makes it whenever anyone has a uretprobe on a library the program runs
            continue
        parser = StraceParser(args + ")")
        values = []
        while True:
            values.append(parser.value())
            parser.skip()
            if parser.s[parser.i] == ")":
                break
            parser.i += 1  # the comma
        if name == "ioctl" and "PERF_EVENT_IOC" not in line:
            continue
        calls.append(StraceCall(name, values, ret, line))
    return calls


# --- running the program twice ------------------------------------------------------

@dataclass
class Runs:
    strace: list[StraceCall]
    ours: list[dict]
    stdout: str


def run_both(tmp_path: Path, *argv: str) -> Runs:
    require_kernel()
    require_tool("strace")
    log = tmp_path / "strace.log"
    subprocess.run(["strace", "-f", "-v", "-qq", "-s", "64", "-e",
                    "trace=bpf,perf_event_open,ioctl", "-e", "signal=none", "-o", str(log),
                    *argv], check=True, capture_output=True, timeout=300)
    trace = tmp_path / "trace.mp"
    result = subprocess.run([*BPFREPLAY, "record", "-o", str(trace), "--", *argv],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    with read_trace(str(trace)) as t:
        ours = [c for c in t.calls() if c["syscall"] in TRACED]
    return Runs(parse_strace(log.read_text()), ours, result.stdout)


def aligned(runs: Runs) -> list[tuple[StraceCall, dict]]:
    theirs = [(c.name, c.ret >= 0) for c in runs.strace]
    ours = [(c["syscall"], c["ret"] is not None and c["ret"] >= 0) for c in runs.ours]
    assert [n for n, _ in theirs] == [n for n, _ in ours], "the two runs made other calls"
    return list(zip(runs.strace, runs.ours, strict=True))


# --- comparing one field ------------------------------------------------------------

def _name_table() -> dict[str, int]:
    names: dict[str, int] = {}
    for enum in generated.ENUMS:
        names.update(enum_values(enum))
    for table in (*defines.FLAG_SETS.values(), *defines.VALUE_SETS.values()):
        names.update(table)
    return names


NAMES = _name_table()
_NUMBER = re.compile(r"-?(0x[0-9a-fA-F]+|\d+)$")


def strace_number(text: str) -> int | None:
    """The number strace means by ``text`` ("0x2a /* BPF_??? */", "KERNEL_VERSION(6, 1,
    0)", "BPF_F_A|BPF_F_B|0x100", "4 => 0"): None when it names something unknown."""
    text = text.split(" => ")[0]
    text = re.sub(r"/\*.*?\*/", "", text).strip()
    m = re.fullmatch(r"KERNEL_VERSION\((\d+), (\d+), (\d+)\)", text)
    if m:
        a, b, c = map(int, m.groups())
        return (a << 16) + (b << 8) + c
    total = 0
    for part in text.split("|"):
        shift = 0
        if "<<" in part:
            part, bits = part.split("<<")
            shift = int(bits)
        if _NUMBER.match(part):
            value = int(part, 0)
        elif part in NAMES:
            value = NAMES[part]
        else:
            return None
        total |= value << shift
    return total


def check_field(struct_name: str, name: str, theirs, ours: FieldValue, bits: int) -> str | None:
    """None when strace's ``theirs`` and our ``ours`` agree, else what differs."""
    where = f"{struct_name}.{name}: strace {theirs!r}, ours {ours.text!r}"
    if isinstance(theirs, (dict, list)):  # a decoded buffer or array: the pointer is set
        return None if ours.raw != 0 else where
    if isinstance(theirs, CString):
        if ours.role == "string":
            mine = ours.raw.split(b"\0")[0]
            ok = mine.startswith(theirs.data) if theirs.truncated else mine == theirs.data
            return None if ok else where
        return None if ours.raw != 0 else where  # a pointer strace followed
    if theirs == "NULL":
        return None if ours.raw == 0 else where
    number = strace_number(theirs)
    if number is None:
        return where + " (strace's text is not a number nor known names)"
    mask = (1 << bits) - 1
    if ours.role == "pointer":
        return None if (number != 0) == (ours.raw != 0) else where
    if number & mask != ours.raw:
        return where
    # "A => B": B is what the kernel wrote back (5.10 answers a perf_event_attr of size
    # VER7 with its own VER6); the call's input, which we decode, is A
    entry = theirs.split(" => ")[0]
    their_names = set(re.findall(r"\b[A-Z][A-Z0-9_]{2,}\b", re.sub(r"/\*.*?\*/", "", entry)))
    their_names -= {"KERNEL_VERSION"}
    our_names = set(re.findall(r"\b[A-Z][A-Z0-9_]{2,}\b", ours.text))
    missing = their_names - our_names
    if missing and (struct_name, name, theirs) not in STRACE_QUIRKS:
        return where + f" (names {sorted(missing)} missing)"
    return None


def flatten(values: dict, layout_names: set[str], prefix: str = "") -> dict:
    out = {}
    for key, value in values.items():
        full = prefix + key
        if isinstance(value, dict) and any(n.startswith(full + ".") for n in layout_names):
            out.update(flatten(value, layout_names, full + "."))
        else:
            out[full] = value
    return out


def compare_struct(decoded: DecodedAttr, layout, theirs: dict, *,
                   check_extra: bool = True) -> list[str]:
    """Every field strace printed, against ours. Returns the differences."""
    problems = []
    wrapper = next((k for k, v in theirs.items() if k in WRAPPERS and isinstance(v, dict)
                    and k not in {f.name for f in layout.fields}), None)
    if wrapper is not None:  # {link_create={...}, extra_data=...}
        theirs = {**theirs[wrapper], **{k: v for k, v in theirs.items() if k != wrapper}}
    names = {f.name for f in layout.fields}
    ours = {f.name: f for f in decoded.fields}
    for name, value in flatten(theirs, names).items():
        if name == "...":
            continue
        if name == "extra_data":
            if check_extra:
                problems += compare_extra(decoded, value)
            continue
        if (decoded.struct, name) in PROCESS_SPECIFIC:
            continue
        mine = ours.get(name)
        field_layout = layout.field(name)
        if field_layout is None:
            problems.append(f"{decoded.struct}.{name}: strace prints a field we do not know")
            continue
        if mine is None:
            # A union alias we chose otherwise: the field at the same place, if we chose
            # it on purpose (strace always prints the first member).
            mine = next((f for f in decoded.fields if f.offset == field_layout.offset
                         and f.size == field_layout.size), None)
            if mine is not None and (decoded.struct, name, mine.name) not in ALIAS_CHOICES:
                problems.append(f"{decoded.struct}.{name}: strace's member, ours is "
                                f"{mine.name}")
                continue
        if mine is None:
            if field_layout.offset >= decoded.size:
                continue  # past the size the kernel reads: strace prints its zeros
            problems.append(f"{decoded.struct}.{name}: strace prints it, we do not")
            continue
        bits = field_layout.bit_size or field_layout.size * 8
        problem = check_field(decoded.struct, name, value, mine, bits)
        if problem:
            problems.append(problem)
    return problems


def compare_extra(decoded: DecodedAttr, value: CString) -> list[str]:
    """strace's extra_data (bytes past its own, older struct) against ours, byte by
    byte over the range both call unknown."""
    start = decoded.size - len(value.data)  # strace's extra_data runs to the size
    out = []
    for offset in range(max(start, decoded.trailing_offset), decoded.size):
        mine = decoded.trailing[offset - decoded.trailing_offset] if decoded.trailing else 0
        if value.data[offset - start] != mine:
            out.append(f"{decoded.struct}: byte {offset} past the known fields: strace "
                       f"{value.data[offset - start]:#x}, ours {mine:#x}")
            break
    return out


def compare_call(theirs: StraceCall, ours: dict, *, tracepoint_name=None,
                 pmu_name=None) -> list[str]:
    """One call: [] when every field strace decoded agrees with ours."""
    if ours["syscall"] == "ioctl":
        name = perf_ioctl_name(ours["args"][1])
        return [] if name == theirs.args[1] else [f"ioctl {theirs.args[1]} vs {name}"]
    if ours["syscall"] == "perf_event_open":
        decoded = decode_perf_event_attr(ours["attr"], tracepoint_name=tracepoint_name,
                                         pmu_name=pmu_name)
        problems = compare_struct(decoded, struct_layout("perf_event_attr"), theirs.args[0])
        flags = perf_open_flags(ours["args"][4])
        if strace_number(theirs.args[4]) != ours["args"][4] or (
                theirs.args[4] != "0" and set(theirs.args[4].split("|")) - set(flags.split("|"))):
            problems.append(f"perf_event_open flags: strace {theirs.args[4]}, ours {flags}")
        return problems
    if not isinstance(theirs.args[1], dict):
        return []  # strace 6.1 does not decode this command (or the 5-argument form)
    decoded = decode_bpf_attr(ours["cmd"], ours["attr"])
    layout = attr_layout(ours["cmd"])
    return compare_struct(decoded, layout, theirs.args[1], check_extra="attr_out" not in ours)


def compare_runs(runs: Runs, **callbacks) -> tuple[int, list[str]]:
    compared, problems = 0, []
    for theirs, ours in aligned(runs):
        if ours["syscall"] == "bpf" and "attr" not in ours:
            continue
        found = compare_call(theirs, ours, **callbacks)
        compared += 1
        problems += [f"{p}\n    in: {theirs.line[:300]}" for p in found]
    return compared, problems


# --- the tests ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def minimal_runs(minimal_binary, tmp_path_factory) -> Runs:
    return run_both(tmp_path_factory.mktemp("minimal"), str(minimal_binary), "0.5")


@pytest.fixture(scope="module")
def crafted_runs(tmp_path_factory) -> Runs:
    require_kernel()
    cc = require_tool("cc")
    tmp = tmp_path_factory.mktemp("crafted")
    binary = tmp / "crafted"
    subprocess.run([cc, "-O2", "-Wall", "-o", str(binary), str(CRAFTED)], check=True,
                   capture_output=True)
    return run_both(tmp, str(binary))


def _tracepoint_names() -> dict[int, str]:
    """The ids of the tracepoints the programs open (read from tracefs: decoding does no
    I/O, the caller does)."""
    names = {}
    for root in (Path("/sys/kernel/tracing/events"), Path("/sys/kernel/debug/tracing/events")):
        for event in ("syscalls/sys_enter_write", "syscalls/sys_enter_getpid"):
            path = root / event / "id"
            if path.exists():
                names[int(path.read_text())] = event.replace("/", ":")
    return names


def _pmu_names() -> dict[int, str]:
    names = {}
    for pmu in ("uprobe", "kprobe"):
        path = Path(f"/sys/bus/event_source/devices/{pmu}/type")
        if path.exists():
            names[int(path.read_text())] = pmu
    return names


def test_minimal_every_field_strace_prints_agrees(minimal_runs):
    tracepoints = _tracepoint_names()
    compared, problems = compare_runs(minimal_runs, tracepoint_name=tracepoints.get)
    assert compared >= 30
    assert not problems, "\n".join(problems)


def test_minimal_tracepoint_config_is_named(minimal_runs):
    tracepoints = _tracepoint_names()
    perf = [c for c in minimal_runs.ours if c["syscall"] == "perf_event_open"]
    assert perf
    decoded = decode_perf_event_attr(perf[0]["attr"], tracepoint_name=tracepoints.get)
    assert decoded.field("type").text == "PERF_TYPE_TRACEPOINT"
    assert "syscalls:sys_enter_write" in decoded.field("config").text


def test_crafted_every_field_strace_prints_agrees(crafted_runs):
    compared, problems = compare_runs(crafted_runs, tracepoint_name=_tracepoint_names().get,
                                      pmu_name=_pmu_names().get)
    assert compared >= 90
    assert not problems, "\n".join(problems)


def _bpf_calls(runs: Runs, cmd: str, size: int) -> list[dict]:
    value = cmd_value(cmd)
    return [c for c in runs.ours if c["syscall"] == "bpf" and c["cmd"] == value
            and c["size"] == size]


def test_crafted_cut_fields_are_partial(crafted_runs):
    (map_create,) = _bpf_calls(crafted_runs, "BPF_MAP_CREATE", 18)
    decoded = decode_bpf_attr(map_create["cmd"], map_create["attr"])
    assert decoded.cut == ("map_flags",)
    assert decoded.field("map_flags").raw == 0x400  # what the kernel read: it made a map
    assert "BPF_F_MMAPABLE" in decoded.field("map_flags").text and map_create["ret"] >= 0
    (prog_load,) = _bpf_calls(crafted_runs, "BPF_PROG_LOAD", 50)
    decoded = decode_bpf_attr(prog_load["cmd"], prog_load["attr"])
    assert decoded.cut == ("prog_name",)
    assert decoded.field("prog_name").raw == b"cu"
    assert decoded.fields[-1].name == "prog_name"


@pytest.mark.parametrize(("cmd", "size", "known_end", "garbage"), [
    ("BPF_MAP_CREATE", 208, 92, {200: 0x5A, 203: 0xA5}),  # excl_prog_hash_size ends at 92
    ("BPF_PROG_LOAD", 200, 168, {190: 0xEE}),
])
def test_crafted_trailing_bytes_are_reported(crafted_runs, cmd, size, known_end, garbage):
    calls = _bpf_calls(crafted_runs, cmd, size)
    call = next(c for c in calls if any(c["attr"][o] for o in garbage))
    assert call["errno"] == errno.E2BIG  # the kernel refuses them too
    decoded = decode_bpf_attr(call["cmd"], call["attr"])
    assert decoded.trailing_offset == known_end
    for offset, byte in garbage.items():
        assert decoded.trailing[offset - known_end] == byte
    assert "extra_data=" in format_attr(decoded)


def test_crafted_freeze_reads_map_fd_only(crafted_runs):
    (freeze,) = _bpf_calls(crafted_runs, "BPF_MAP_FREEZE", 32)
    decoded = decode_bpf_attr(freeze["cmd"], freeze["attr"])
    assert [f.name for f in decoded.fields] == ["map_fd"]
    assert decoded.trailing_offset == 4 and decoded.trailing[24 - 4] == 5  # flags=5
    assert freeze["errno"] == errno.EINVAL


def test_crafted_perf_trailing_and_size_zero(crafted_runs):
    perf = [c for c in crafted_runs.ours if c["syscall"] == "perf_event_open"]
    big = next(c for c in perf if len(c["attr"]) == 200)
    assert big["errno"] == errno.E2BIG
    decoded = decode_perf_event_attr(big["attr"])
    assert decoded.trailing_offset == 144 and decoded.trailing[190 - 144] == 0x77
    zero = next(c for c in perf if struct.unpack_from("<I", c["attr"], 4)[0] == 0)
    decoded = decode_perf_event_attr(zero["attr"])
    assert decoded.size == 64  # PERF_ATTR_SIZE_VER0: use_clockid's clockid is not read
    assert decoded.field("use_clockid").raw == 1 and decoded.field("clockid") is None


def test_crafted_commands_strace_cannot_decode(crafted_runs):
    """Commands newer than strace 6.1, against the values crafted.c passes."""
    (stream,) = _bpf_calls(crafted_runs, "BPF_PROG_STREAM_READ_BY_FD", 20)
    decoded = decode_bpf_attr(stream["cmd"], stream["attr"])
    assert decoded.field("stream_id").text == "BPF_STREAM_STDERR"
    assert decoded.field("stream_buf_len").raw == 256
    (assoc,) = _bpf_calls(crafted_runs, "BPF_PROG_ASSOC_STRUCT_OPS", 12)
    decoded = decode_bpf_attr(assoc["cmd"], assoc["attr"])
    assert [f.name for f in decoded.fields] == ["map_fd", "prog_fd", "flags"]
    (token,) = _bpf_calls(crafted_runs, "BPF_TOKEN_CREATE", 8)
    assert decode_bpf_attr(token["cmd"], token["attr"]).field("bpffs_fd").text == "1000"
    (stats,) = _bpf_calls(crafted_runs, "BPF_ENABLE_STATS", 4)
    assert decode_bpf_attr(stats["cmd"], stats["attr"]).field("type").text == \
        "BPF_STATS_RUN_TIME"
    unknown = next(c for c in crafted_runs.ours if c["syscall"] == "bpf" and c["cmd"] == 39)
    decoded = decode_bpf_attr(unknown["cmd"], unknown["attr"])
    assert decoded.fields == () and decoded.trailing and decoded.struct == "bpf_cmd 39"


def test_crafted_link_create_union_members(crafted_runs):
    """Each attach type names the member of link_create's union the kernel reads."""
    expected = {
        "BPF_TRACE_UPROBE_MULTI": ("uprobe_multi.path", "uprobe_multi.cnt",
                                   "uprobe_multi.flags", "uprobe_multi.pid"),
        "BPF_TRACE_FENTRY": ("tracing.target_btf_id", "tracing.cookie"),
        "BPF_NETFILTER": ("netfilter.pf", "netfilter.hooknum", "netfilter.priority"),
        "BPF_TCX_INGRESS": ("target_ifindex", "tcx.relative_id", "tcx.expected_revision"),
        "BPF_NETKIT_PEER": ("target_ifindex", "netkit.relative_fd"),
        "BPF_CGROUP_INET_EGRESS": ("cgroup.relative_fd",),
        "BPF_TRACE_FENTRY_MULTI": ("tracing_multi.ids", "tracing_multi.cnt"),
        "BPF_STRUCT_OPS": ("map_fd",),
    }
    seen = set()
    for call in _bpf_calls(crafted_runs, "BPF_LINK_CREATE", 64) + \
            _bpf_calls(crafted_runs, "BPF_LINK_CREATE", 32):
        decoded = decode_bpf_attr(call["cmd"], call["attr"])
        attach = decoded.field("attach_type").text
        if attach in expected:
            names = {f.name for f in decoded.fields}
            assert set(expected[attach]) <= names, (attach, names)
            seen.add(attach)
    assert seen == set(expected)
    netfilter = next(decode_bpf_attr(c["cmd"], c["attr"]) for c in
                     _bpf_calls(crafted_runs, "BPF_LINK_CREATE", 64)
                     if c["attr"][8] == 45)
    assert netfilter.field("netfilter.priority").text == "-128"
    assert netfilter.field("netfilter.flags").text == "BPF_F_NETFILTER_IP_DEFRAG"


def test_crafted_common_attr(crafted_runs):
    (call,) = [c for c in crafted_runs.ours if c["syscall"] == "bpf" and "common" in c]
    printed = re.search(r"common log_buf=(0x[0-9a-f]+) log_size=(\d+) log_level=(\d+) "
                        r"size=(\d+)", crafted_runs.stdout)
    decoded = decode_common_attr(call["common"])
    assert decoded.size == int(printed.group(4)) == 24
    assert decoded.field("log_buf").raw == int(printed.group(1), 16)
    assert decoded.field("log_size").raw == int(printed.group(2))
    assert decoded.field("log_level").raw == int(printed.group(3))
    assert not decoded.trailing


def test_crafted_uprobe_pmu_fields(crafted_runs):
    pmus = _pmu_names()
    uprobe = next((c for c in crafted_runs.ours if c["syscall"] == "perf_event_open"
                   and pmus.get(struct.unpack_from("<I", c["attr"])[0]) == "uprobe"), None)
    if uprobe is None:
        pytest.skip("no uprobe PMU")
    decoded = decode_perf_event_attr(uprobe["attr"], pmu_name=pmus.get)
    assert decoded.field("uprobe_path").role == "pointer"
    assert decoded.field("probe_offset").raw == 0x1000
    assert decoded.field("config").text == "1 /* retprobe */"
    assert decoded.field("config1") is None


# --- pure tests ---------------------------------------------------------------------

def test_zero_that_means_unset_is_zero():
    attr = bytearray(128)
    struct.pack_into("<I", attr, 0, enum_values("bpf_prog_type")["BPF_PROG_TYPE_KPROBE"])
    decoded = decode_bpf_attr(cmd_value("BPF_PROG_LOAD"), bytes(attr))
    assert decoded.field("expected_attach_type").text == "0"
    assert decoded.field("kern_version").text == "0"
    attach = bytearray(16)
    decoded = decode_bpf_attr(cmd_value("BPF_PROG_ATTACH"), bytes(attach))
    assert decoded.field("attach_type").text == "BPF_CGROUP_INET_INGRESS"


def test_map_elem_alias_by_command():
    attr = bytes(32)
    lookup = decode_bpf_attr(cmd_value("BPF_MAP_LOOKUP_ELEM"), attr)
    next_key = decode_bpf_attr(cmd_value("BPF_MAP_GET_NEXT_KEY"), attr)
    assert lookup.field("value") and not lookup.field("next_key")
    assert next_key.field("next_key") and not next_key.field("value")


def test_flags_text_and_unknown_values():
    attr = bytearray(72)
    struct.pack_into("<IIIII", attr, 0, 999, 4, 4, 1, (1 << 10) | (1 << 30))
    decoded = decode_bpf_attr(cmd_value("BPF_MAP_CREATE"), bytes(attr))
    assert decoded.field("map_type").text == "999"
    assert decoded.field("map_flags").text == "BPF_F_MMAPABLE|0x40000000"


# Every command the table knows, a few it does not, and the 5-argument flag.
_COMMANDS = sorted(set(enum_values("bpf_cmd").values()) | {39, 40, 255, 1 << 16 | 5})


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cmd=st.sampled_from(_COMMANDS), data=st.binary(max_size=300))
def test_random_attrs_never_crash(cmd, data):
    decoded = decode_bpf_attr(cmd, data)
    assert decoded.size == len(data)
    assert all(f.offset + 1 <= len(data) for f in decoded.fields)
    format_attr(decoded)
    decode_bpf_attr(cmd, data, at_exit=True)


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=300), tp=st.booleans())
def test_random_perf_and_common_attrs_never_crash(data, tp):
    decoded = decode_perf_event_attr(data, tracepoint_name=(lambda i: "x:y") if tp else None,
                                     pmu_name=lambda t: "kprobe" if t % 2 else "uprobe")
    format_attr(decoded)
    format_attr(decode_common_attr(data))


@pytest.mark.parametrize("bad", [None, 5, "text", [1, 2]])
def test_non_bytes_raise_decode_error(bad):
    with pytest.raises(DecodeError):
        decode_bpf_attr(5, bad)
    with pytest.raises(DecodeError):
        decode_perf_event_attr(bad)


def test_perf_ioctl_names():
    assert perf_ioctl_name(0x2400) == "PERF_EVENT_IOC_ENABLE"
    assert perf_ioctl_name(0x5401) is None  # TCGETS
