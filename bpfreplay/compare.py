"""Parity of two traces: normalise what differs by nature between two processes, then
diff everything else, call by call and field by field.

The rules (docs/parity.md says why each is legitimate):

1. fd numbers become the object they name: ``map:minimal_.bss#1``, ``prog:handle_tp#1``,
   ``btf#3``, ``perf_event#1``, ``link#1`` (kind, name, and the how-many-th object of that
   kind and name), wherever an fd appears: attr fields that hold fds, ld_imm64 map
   references inside instructions, fd_array slots, the fd arguments of ioctl, close and
   mmap, and the return value of calls that make an fd.
2. user pointers become ``<pointer>`` (or stay 0 for NULL): what they point at is
   compared as the bytes the recorder captured (``in``/``out``).
3. a 4-byte value inside a map value that equals the recording process's own pid in
   one trace and the other process's pid in the other becomes ``<pid>`` (the skeleton
   writes getpid() into ``.bss``; ``bpfreplay run --set my_pid=self`` writes its own).
4. addresses of mappings become the mapping they name; kernel ids (prog_id, map_id,
   ...) and timestamps are not compared.

Everything else that differs is reported.
"""

from __future__ import annotations

import difflib
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from bpfreplay.decode.fds import FdLife, FdTable, Step
from bpfreplay.uapi import BPF_COMMON_ATTRS, attr_layout, cmd_name, enum_values, struct_layout
from bpfreplay.uapi.fds import (
    FD_FIELDS,
    LD_IMM64,
    PERF_EVENT_IOC_SET_BPF,
    PSEUDO_MAP_FD,
    PSEUDO_MAP_VALUE,
)
from bpfreplay.uapi.pointers import BUFFERS, read_field

POINTER = "<pointer>"
KERNEL_STATE = "<kernel id>"
PID = "<pid>"
ADDRESS = "<address>"
_PERF_CONFIG1 = 56  # offsetof(struct perf_event_attr, config1)


@dataclass
class Difference:
    reference_index: int | None  # the call in the reference trace (None: missing there)
    our_index: int | None
    call: str  # "bpf BPF_MAP_CREATE (map:minimal_.bss#1)"
    path: str  # "fields.map_flags", "in.insns[3]", "ret", "(whole call)"
    reference: Any
    ours: Any


# What a comparison concludes (ParityReport.outcome), and the exit status of each.
PARITY, FAILED_PARITY, DIFFERENCES = "parity", "failed_parity", "differences"
OUTCOMES = (PARITY, FAILED_PARITY, DIFFERENCES)
EXIT_CODES = {PARITY: 0, FAILED_PARITY: 3, DIFFERENCES: 1}


@dataclass(frozen=True)
class Failure:
    """The failing call a trace's load (or attach) ended with."""

    index: int  # the call's position in its trace
    call: str  # "bpf BPF_PROG_LOAD prog:handle_tp"
    errno: int
    log: str = ""  # the verifier (or BTF) log the kernel wrote, if any

    @property
    def errno_name(self) -> str:
        import errno as errno_module

        return errno_module.errorcode.get(self.errno, str(self.errno))

    def same_as(self, other: Failure | None) -> bool:
        return (other is not None and (self.call, self.errno, self.log)
                == (other.call, other.errno, other.log))


@dataclass
class ParityReport:
    reference_calls: int
    our_calls: int
    matched: int = 0
    differences: list[Difference] = field(default_factory=list)
    reference_failure: Failure | None = None
    our_failure: Failure | None = None

    @property
    def outcome(self) -> str:
        """"parity": every call of a working load matches; "failed_parity": both loads
        failed at the same call with the same errno and log, and every call up to it
        matches; "differences": anything else."""
        if self.differences:
            return DIFFERENCES
        if self.reference_failure is None and self.our_failure is None:
            return PARITY
        if self.reference_failure is not None \
                and self.reference_failure.same_as(self.our_failure):
            return FAILED_PARITY
        return DIFFERENCES

    @property
    def at_parity(self) -> bool:
        """Full parity of a working load."""
        return self.outcome == PARITY

    @property
    def exit_code(self) -> int:
        """0 parity, 3 parity of a failed load, 1 differences."""
        return EXIT_CODES[self.outcome]


# ------------------------------------------------------------------ normalise


class _Objects:
    """fd numbers of one process, named after the objects the trace saw made. Which fd
    names which object (through dup, dup2/dup3 and closes) is decode/fds.py's FdTable:
    a duplicate names the object of its original."""

    def __init__(self) -> None:
        self.table = FdTable()
        self.labels: dict[FdLife, str] = {}
        self.counts: dict[str, int] = {}
        self.mappings: dict[int, str] = {}
        self.map_types: dict[str, int] = {}  # map label -> map type
        self.pid = 0
        self.step = Step([], None, None)

    def advance(self, record: dict[str, Any], index: int) -> None:
        """Move the fd table past ``record`` (before its fields are named)."""
        pid = record.get("pid")
        self.pid = pid if isinstance(pid, int) else 0
        self.step = self.table.step(record, index)

    def _label(self, life: FdLife) -> str | None:
        return self.labels.get(life.root)

    def made(self, fd: int, kind: str, name: str = "") -> str:
        life = self.step.created
        if life is not None and life.original is not None:
            label = self._label(life)
            if label is not None:
                return label  # a duplicate: the same object
        base = f"{kind}:{name}" if name else kind
        self.counts[base] = self.counts.get(base, 0) + 1
        label = f"{base}#{self.counts[base]}"
        if life is not None:
            self.labels[life.root] = label
        return label

    def name(self, fd: int) -> int | str:
        life = self.table.open.get((self.pid, fd))
        label = self._label(life) if life is not None else None
        return label if label is not None else fd

    def closed(self, fd: int) -> int | str:
        life = self.step.ended
        label = self._label(life) if life is not None else None
        return label if label is not None else fd


def _attr_fields(cmd: int, attr: bytes, objects: _Objects) -> dict[str, Any]:
    name = cmd_name(cmd) or str(cmd)
    layout = attr_layout(cmd)
    if layout is None:
        return {"raw": attr.hex()}
    pointers = {b.field for b in BUFFERS.get(name, ())}
    fds = set(FD_FIELDS.get(name, ()))
    out: dict[str, Any] = {}
    seen_offsets: set[tuple[int, int]] = set()
    for f in layout.fields:
        if f.offset >= len(attr) or (f.offset, f.size) in seen_offsets:
            continue  # past the size passed, or an alias of a field already shown
        seen_offsets.add((f.offset, f.size))
        if "[" in f.type:
            out[f.name] = attr[f.offset:f.end].rstrip(b"\0").decode("latin-1")
            continue
        value = read_field(attr, f)
        if f.name in pointers:
            value = POINTER if value else 0
        elif f.name in fds and value:
            value = objects.name(value)
        elif f.name in _ID_FIELDS and value:
            value = KERNEL_STATE
        out[f.name] = value
    known_end = layout.known_end()
    if len(attr) > known_end and any(attr[known_end:]):
        out["(bytes past the known fields)"] = attr[known_end:].hex()
    return out


# Kernel object ids (rule 4): handed out machine-wide in creation order.
_ID_FIELDS = frozenset({"start_id", "next_id", "prog_id", "map_id", "btf_id", "link_id"})


def _insns(data: bytes, objects: _Objects) -> list[str]:
    """Instructions as hex, with map fds of ld_imm64 replaced by the map's name."""
    out = []
    count = len(data) // 8
    i = 0
    while i < count:
        raw = data[i * 8:i * 8 + 8]
        code, regs, off, imm = struct.unpack("<BBhi", raw)
        if code == LD_IMM64 and (regs >> 4) in (PSEUDO_MAP_FD, PSEUDO_MAP_VALUE) and i + 1 < count:
            second = data[i * 8 + 8:i * 8 + 16]
            value_off = struct.unpack_from("<i", second, 4)[0]
            out.append(f"ld_imm64 r{regs & 0xF} src={regs >> 4} {objects.name(imm & 0xFFFFFFFF)}"
                       f"+{value_off}")
            i += 2
            continue
        out.append(raw.hex())
        i += 1
    return out


# What OBJ_GET_INFO_BY_FD's info holds that differs by nature between processes: user
# pointers (buffers the kernel fills) and kernel-wide ids and times.
_INFO_STRUCTS = {"btf": "bpf_btf_info", "map": "bpf_map_info", "prog": "bpf_prog_info",
                 "link": "bpf_link_info"}
_INFO_POINTERS = frozenset({
    "btf", "name", "jited_prog_insns", "xlated_prog_insns", "map_ids", "jited_ksyms",
    "jited_func_lens", "func_info", "line_info", "jited_line_info", "prog_tags",
    "raw_tracepoint.tp_name", "iter.target_name", "perf_event.uprobe.file_name",
    "perf_event.kprobe.func_name", "kprobe_multi.addrs", "kprobe_multi.cookies",
    "uprobe_multi.path", "uprobe_multi.offsets", "uprobe_multi.ref_ctr_offsets",
    "uprobe_multi.cookies"})
_INFO_KERNEL_STATE = frozenset({"id", "btf_id", "prog_id", "load_time", "run_time_ns",
                                "run_cnt", "attach_btf_obj_id", "tracing.target_obj_id",
                                "iter.map.map_id", "struct_ops.map_id", "netns_dev",
                                "netns_ino"})


def _info(data: bytes, kind: str) -> Any:
    """An info struct field by field, pointers and kernel ids marked (rules 2 and 4)."""
    layout = struct_layout(_INFO_STRUCTS.get(kind, ""))
    if layout is None:
        return data.hex()
    out: dict[str, Any] = {}
    seen: set[int] = set()
    for f in layout.fields:
        if f.offset >= len(data) or f.offset in seen:
            continue
        seen.add(f.offset)
        if "[" in f.type:
            out[f.name] = data[f.offset:f.end].hex()
            continue
        value = read_field(data, f)
        if f.name in _INFO_POINTERS:
            value = POINTER if value else 0
        elif f.name in _INFO_KERNEL_STATE:
            value = KERNEL_STATE if value else 0
        out[f.name] = value
    return out


def _payload(data: bytes, objects: _Objects, pid: int, field_name: str,
             info_kind: str = "") -> Any:
    if field_name == "info":
        return _info(data, info_kind)
    if field_name == "insns":
        return _insns(data, objects)
    if field_name == "fd_array":
        return [objects.name(v) for (v,) in struct.iter_unpack("<i", data[: len(data) // 4 * 4])]
    if field_name in ("value", "values"):
        return _mask_pid(data, pid)
    if field_name in ("log_buf", "btf_log_buf", "common.log_buf", "license", "pathname",
                      "name", "config1"):
        return data.decode("latin-1")
    return data.hex()


def _mask_pid(data: bytes, pid: int) -> str:
    """Hex of ``data`` with each aligned 4-byte copy of ``pid`` shown as <pid>."""
    needle = struct.pack("<I", pid)
    parts = []
    for i in range(0, len(data), 4):
        chunk = data[i:i + 4]
        parts.append(PID if chunk == needle else chunk.hex())
    return " ".join(parts)


def _object_name(record: dict[str, Any], name: str) -> tuple[str, str]:
    """(kind, name) of the object a call made, from its attr."""
    attr = record.get("attr", b"")
    layout = attr_layout(record["cmd"])
    kind = {"BPF_MAP_CREATE": "map", "BPF_PROG_LOAD": "prog", "BPF_BTF_LOAD": "btf",
            "BPF_LINK_CREATE": "link", "BPF_RAW_TRACEPOINT_OPEN": "link",
            "BPF_ITER_CREATE": "iter", "BPF_TOKEN_CREATE": "token"}.get(name)
    if kind is None:
        kind = str(record.get("object", {}).get("kind", "fd"))
    label = ""
    if layout is not None and kind in ("map", "prog"):
        f = layout.field("map_name" if kind == "map" else "prog_name")
        if f is not None and f.offset < len(attr):
            label = attr[f.offset:f.end].split(b"\0")[0].decode("latin-1")
    return kind, label


def normalise(calls: Iterable[dict[str, Any]], pid: int) -> list[dict[str, Any]]:
    """Each call as a dict with fds named, pointers and process-specific values marked."""
    objects = _Objects()
    out: list[dict[str, Any]] = []
    for position, record in enumerate(calls):
        objects.advance(record, position)
        syscall = record["syscall"]
        item: dict[str, Any] = {"syscall": syscall}
        args = record.get("args", [0] * 6)
        ret = record.get("ret")
        if syscall == "bpf":
            cmd = record["cmd"]
            name = cmd_name(cmd) or str(cmd & ~BPF_COMMON_ATTRS)
            item["cmd"] = name
            item["size"] = record.get("size")
            if "attr" in record:
                item["fields"] = _attr_fields(cmd, record["attr"], objects)
            if "attr_out" in record:
                item["fields_out"] = _attr_fields(cmd, record["attr_out"], objects)
            if "common" in record:
                item["common"] = record["common"].hex()
            info_kind = ""
            if name == "BPF_OBJ_GET_INFO_BY_FD":
                bpf_fd = item.get("fields", {}).get("bpf_fd", "")
                info_kind = bpf_fd.split(":")[0].split("#")[0] if isinstance(bpf_fd, str) \
                    else ""
            for direction in ("in", "out"):
                if record.get(direction):
                    item[direction] = {k: _payload(v, objects, pid, k, info_kind)
                                       for k, v in record[direction].items()}
            if ret is not None and ret >= 0 and "object" in record:
                kind, label = _object_name(record, name)
                ret = objects.made(ret, kind, label)
                if name == "BPF_MAP_CREATE":
                    objects.map_types[ret] = item["fields"].get("map_type", 0)
            _name_fd_values(item, objects)
        elif syscall == "perf_event_open":
            layout = struct_layout("perf_event_attr")
            attr = record.get("attr", b"")
            fields: dict[str, Any] = {}
            has_path = "config1" in (record.get("in") or {})
            if layout is not None:
                seen: set[tuple[int, int, int]] = set()
                for f in layout.fields:
                    where = (f.offset, f.bit_offset, f.bit_size)
                    if f.offset >= len(attr) or where in seen:
                        continue  # past the size, or an alias of a field already shown
                    seen.add(where)
                    value = read_field(attr, f)
                    if f.bit_size:
                        value = (value >> f.bit_offset) & ((1 << f.bit_size) - 1)
                    elif f.offset == _PERF_CONFIG1 and has_path:
                        value = POINTER if value else 0  # kprobe/uprobe: a path or name
                    fields[f.name] = value
            item["fields"] = fields
            item["args"] = {"pid": _s32(args[1]), "cpu": _s32(args[2]),
                            "group_fd": objects.name(_s32(args[3])), "flags": args[4]}
            if record.get("in"):
                item["in"] = {k: v.decode("latin-1") for k, v in record["in"].items()}
            if ret is not None and ret >= 0:
                ret = objects.made(ret, "perf_event")
        elif syscall == "ioctl":
            request = args[1] & 0xFFFFFFFF
            arg = objects.name(args[2]) if request == PERF_EVENT_IOC_SET_BPF else args[2]
            item["args"] = {"fd": objects.name(_s32(args[0])), "request": request, "arg": arg}
        elif syscall == "close":
            item["args"] = {"fd": objects.closed(_s32(args[0]))}
        elif syscall == "mmap":
            fd = objects.name(_s32(args[4]))
            item["args"] = {"addr": ADDRESS if args[0] else 0, "length": args[1],
                            "prot": args[2], "flags": args[3], "fd": fd, "offset": args[5]}
            if ret is not None and ret != -1:
                label = f"<mapping of {fd}>"
                objects.mappings[ret & 0xFFFFFFFFFFFFFFFF] = label
                ret = label
        elif syscall == "munmap":
            item["args"] = {"addr": objects.mappings.pop(args[0], ADDRESS), "length": args[1]}
        else:
            item["args"] = [objects.name(_s32(a)) for a in args[:3]]
            if ret is not None and ret >= 0 and objects.step.created is not None:
                ret = objects.made(ret, str((record.get("object") or {}).get("kind", "fd")))
        item["ret"] = ret
        item["errno"] = record.get("errno")
        out.append(item)
    return out


def _s32(value: int) -> int:
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value >= 1 << 31 else value


_MAP_TYPES = enum_values("bpf_map_type")
# Maps whose values, as user space writes them, are fds (rule 1).
_FD_VALUE_MAPS = frozenset(_MAP_TYPES.get("BPF_MAP_TYPE_" + n, -1) for n in (
    "ARRAY_OF_MAPS", "HASH_OF_MAPS", "PROG_ARRAY", "PERF_EVENT_ARRAY", "CGROUP_ARRAY",
    "SOCKMAP", "SOCKHASH", "XSKMAP"))


def _name_fd_values(item: dict[str, Any], objects: _Objects) -> None:
    """A MAP_UPDATE_ELEM of an fd-holding map (a map of maps, a program array, ...)
    writes an fd: name it like any other fd."""
    if item.get("cmd") != "BPF_MAP_UPDATE_ELEM":
        return
    target = item.get("fields", {}).get("map_fd")
    if objects.map_types.get(target) not in _FD_VALUE_MAPS:
        return
    value = item.get("in", {}).get("value")
    if isinstance(value, str) and len(value) == 8 and PID not in value:
        item["in"]["value"] = objects.name(int.from_bytes(bytes.fromhex(value), "little"))


# ---------------------------------------------------------------------- diff


def _signature(call: dict[str, Any]) -> str:
    """What aligns two calls: syscall, command, and the object made or closed."""
    ret = call.get("ret")
    made = ret.rsplit("#", 1)[0] if isinstance(ret, str) and "#" in ret else ""
    if call["syscall"] == "close" and isinstance(call["args"]["fd"], str):
        made = call["args"]["fd"].rsplit("#", 1)[0]
    return f"{call['syscall']} {call.get('cmd', '')} {made}".strip()


def _describe(call: dict[str, Any]) -> str:
    ret = call.get("ret")
    made = f" -> {ret}" if isinstance(ret, str) else ""
    if call["syscall"] == "close":
        made = f" {call['args']['fd']}"
    return _signature(call) + made


def compare_calls(reference: list[dict[str, Any]], ours: list[dict[str, Any]]) -> ParityReport:
    """Align two normalised call lists and diff the aligned pairs field by field."""
    from deepdiff import DeepDiff

    report = ParityReport(len(reference), len(ours))
    matcher = difflib.SequenceMatcher(
        a=[_signature(c) for c in reference], b=[_signature(c) for c in ours], autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            for i, j in zip(range(i1, i2), range(j1, j2), strict=True):
                diff = DeepDiff(reference[i], ours[j], verbose_level=2, ignore_order=False)
                if not diff:
                    report.matched += 1
                    continue
                for path, ref_value, our_value in _flatten_diff(diff):
                    report.differences.append(Difference(
                        i, j, _describe(reference[i]), path, ref_value, our_value))
            continue
        for i in range(i1, i2):
            report.differences.append(Difference(i, None, _describe(reference[i]),
                                                 "(whole call)", reference[i], None))
        for j in range(j1, j2):
            report.differences.append(Difference(None, j, _describe(ours[j]),
                                                 "(whole call)", None, ours[j]))
    return report


def _flatten_diff(diff: Any) -> Iterable[tuple[str, Any, Any]]:
    for kind, changes in diff.items():
        if kind in ("values_changed", "type_changes"):
            for path, change in changes.items():
                yield _path(path), change.get("old_value"), change.get("new_value")
        elif kind.endswith("_item_added") or kind.endswith("_item_removed"):
            added = kind.endswith("added")
            items = changes.items() if isinstance(changes, dict) else ((p, None) for p in changes)
            for path, value in items:
                yield _path(path), (None if added else value), (value if added else None)
        else:
            yield kind, str(changes), None


def _path(deepdiff_path: str) -> str:
    """root['fields']['map_flags'] -> fields.map_flags; root['in']['insns'][3] -> in.insns[3]"""
    text = deepdiff_path.removeprefix("root")
    parts = []
    for piece in text.replace("]", "").split("["):
        if not piece:
            continue
        parts.append(piece.strip("'\"") if piece[0] in "'\"" else f"[{piece}]")
    out = ""
    for p in parts:
        out += p if p.startswith("[") or not out else "." + p
    return out


# Calls whose failure ends a load or an attach (libbpf gives up and tears down).
_LOAD_STEPS = frozenset({
    "BPF_PROG_LOAD", "BPF_MAP_CREATE", "BPF_BTF_LOAD", "BPF_LINK_CREATE",
    "BPF_RAW_TRACEPOINT_OPEN", "BPF_PROG_ATTACH", "BPF_MAP_FREEZE", "BPF_OBJ_PIN",
    "BPF_OBJ_GET", "BPF_MAP_UPDATE_ELEM", "BPF_ITER_CREATE", "BPF_PROG_BIND_MAP"})
_IOC_SET_BPF_REQ = PERF_EVENT_IOC_SET_BPF


def _is_load_step(item: dict[str, Any]) -> bool:
    syscall = item["syscall"]
    if syscall == "bpf":
        return item.get("cmd") in _LOAD_STEPS
    if syscall == "perf_event_open":
        return True
    return syscall == "ioctl" and item["args"]["request"] == _IOC_SET_BPF_REQ


def load_failure(items: list[dict[str, Any]], probes: set[int] | frozenset[int] = frozenset(),
                 ) -> Failure | None:
    """The failing call a trace's load or attach ended with: the last load or attach step
    (PROG_LOAD, MAP_CREATE, BTF_LOAD, LINK_CREATE, perf_event_open, ...) that is no
    feature probe, failed, and was not followed by a step that succeeded (libbpf retries
    some steps: a map without BTF, a program with a log buffer; the retry decides)."""
    failure: Failure | None = None
    for index, item in enumerate(items):
        if index in probes or not _is_load_step(item):
            continue
        if item.get("errno"):
            log = (item.get("out") or {}).get("log_buf", "")
            if not isinstance(log, str):
                log = str(log)
            failure = Failure(index, _describe(item), int(item["errno"]),
                              log.split("\0", 1)[0])
        else:
            failure = None
    return failure


@dataclass
class NormalisedTrace:
    """One trace file, read and normalised."""

    path: str
    pid: int
    records: list[dict[str, Any]]  # the call records as read
    items: list[dict[str, Any]]  # the same calls normalised
    labels: list[Any]  # decode.probes.CallLabel per call

    @property
    def probes(self) -> frozenset[int]:
        return frozenset(i for i, label in enumerate(self.labels) if label.probe is not None)


def read_normalised(path: str) -> NormalisedTrace:
    """Read a trace file and normalise its calls (BpfReplayError if it cannot be read)."""
    from bpfreplay.decode.probes import label_calls
    from bpfreplay.trace import read_trace

    with read_trace(path) as trace:
        records = list(trace.records())
    pid = next((r["pid"] for r in records if r.get("type") == "process"), 0)
    calls = [r for r in records if r.get("type") == "call"]
    return NormalisedTrace(path, pid, calls, normalise(calls, pid), label_calls(calls))


def compare_loaded(reference: NormalisedTrace, ours: NormalisedTrace) -> ParityReport:
    report = compare_calls(reference.items, ours.items)
    report.reference_failure = load_failure(reference.items, reference.probes)
    report.our_failure = load_failure(ours.items, ours.probes)
    return report


def compare_trace_files(reference_path: str, our_path: str) -> ParityReport:
    """Compare two trace files (the first is the reference)."""
    return compare_loaded(read_normalised(reference_path), read_normalised(our_path))


def compare_traces(reference_path: str, our_path: str) -> ParityReport:
    """Compare two trace files (the first is the reference); compare_trace_files."""
    return compare_trace_files(reference_path, our_path)
