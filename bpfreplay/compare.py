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
   ...), kernel addresses in verifier logs and timestamps are not compared.
5. a uprobe path ``/proc/self/exe`` is the program of the process that passed it (its
   process record's ``exe``; for our loader's trace, ``run --self-exe``).

Everything else that differs is reported. Calls are paired by what they are
(syscall, command, probe label, object), not by position; each trace is split into
libbpf's load (with its module-BTF walk), attach and teardown, compared call by call,
and the application's own calls, shown apart (bpfreplay/parity_sections.py). The
outcome (``ParityReport.outcome``) is "parity", "failed_parity" (both loads failed
at the same call with the same errno and log) or "differences".
"""

from __future__ import annotations

import difflib
import re
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
from bpfreplay.uapi.pointers import BUFFERS, STRING_ARRAYS, STRINGS, read_field

POINTER = "<pointer>"
KERNEL_STATE = "<kernel id>"
PID = "<pid>"
ADDRESS = "<address>"
KERNEL_ADDRESS = "<kernel address>"
_KERNEL_ADDRESS = re.compile(r"0xffff[0-9a-f]{12}")
_PERF_CONFIG1 = 56  # offsetof(struct perf_event_attr, config1)
SELF_EXE = "/proc/self/exe"


@dataclass
class Difference:
    reference_index: int | None  # the call in the reference trace (None: missing there)
    our_index: int | None
    call: str  # "bpf BPF_MAP_CREATE (map:minimal_.bss#1)"
    path: str  # "fields.map_flags", "in.insns[3]", "ret", "(whole call)"
    reference: Any
    ours: Any
    kind: str = "changed"  # "changed", "size", "moved", "missing", "extra"


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
        from bpfreplay.uapi.errnos import errno_name

        return errno_name(self.errno)

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
    application: list[Any] = field(default_factory=list)  # ApplicationCall, shown apart
    walk: Any = None  # BtfWalk: the module-BTF walk's kernel BTFs and foreign counts
    teardown_skipped: int = 0  # our teardown calls not compared (the reference has none)
    # The object's programs libbpf's skeleton attach never attaches (from its spec): the
    # reference's attaches of these were made by hand (application). Empty: no object.
    not_auto_attached: list[str] = field(default_factory=list)

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


def _attr_fields(cmd: int, attr: bytes, objects: _Objects, *, at_exit: bool = False,
                 ) -> dict[str, Any]:
    """The fields command ``cmd`` reads, by name, with the union member this call means
    (decode/attrs.py's view: link_create's member by attach type, map_elem's value or
    next_key ...), so the aliases of another member never show; fds named, pointers and
    kernel ids marked, and every byte of a non-NULL pointer masked wherever it shows.
    Non-zero bytes no field of the view covers are kept as hex (compared, not lost)."""
    from bpfreplay.decode.attr_fields import FD as FD_ROLE
    from bpfreplay.decode.attr_fields import POINTER as POINTER_ROLE
    from bpfreplay.decode.attrs import attr_view

    name = cmd_name(cmd) or str(cmd)
    layout = attr_layout(cmd)
    view = attr_view(cmd, attr, at_exit=at_exit) if layout is not None else None
    if layout is None or view is None:
        return {"raw": attr.hex()}
    pointers = {b.field for b in BUFFERS.get(name, ())}
    pointers |= {vf.field.name for vf in view if vf.spec.role == POINTER_ROLE}
    fds = set(FD_FIELDS.get(name, ())) | {vf.field.name for vf in view
                                          if vf.spec.role == FD_ROLE}
    fields = [vf.field for vf in view if vf.field.offset < len(attr)]
    out = _fields_masked(attr, fields, pointers)
    for f in fields:
        value = out[f.name]
        if value == POINTER or f.name in pointers or "[" in f.type:
            continue
        if f.name in fds and value:
            out[f.name] = objects.name(value)
        elif f.name in _ID_FIELDS and value:
            out[f.name] = KERNEL_STATE
    known_end = layout.known_end()
    loose = _loose_bytes(attr[:known_end], fields)
    if loose:
        out["(bytes no field of this call reads)"] = loose
    if len(attr) > known_end and any(attr[known_end:]):
        out["(bytes past the known fields)"] = attr[known_end:].hex()
    return out


def _fields_masked(data: bytes, fields: list[Any], pointers: set[str] | frozenset[str],
                   ) -> dict[str, Any]:
    """Each field's value (char[] as text); a pointer as ``<pointer>`` (0 for NULL), and
    any other field that overlaps a byte of a non-NULL pointer as ``<pointer>`` too: an
    address leaks through no alias (rule 2)."""
    spans = [(f.offset, f.end) for f in fields
             if f.name in pointers and "[" not in f.type and read_field(data, f)]
    out: dict[str, Any] = {}
    for f in fields:
        if "[" in f.type:
            out[f.name] = data[f.offset:f.end].rstrip(b"\0").decode("latin-1")
            continue
        value = read_field(data, f)
        if f.name in pointers:
            value = POINTER if value else 0
        elif any(start < f.end and f.offset < end for start, end in spans):
            value = POINTER
        out[f.name] = value
    return out


def _loose_bytes(data: bytes, fields: list[Any]) -> str:
    """``START..END=HEX`` for each run of non-zero bytes of ``data`` no field covers (a
    union member this call does not use, padding): empty when there is none."""
    covered = bytearray(len(data))
    for f in fields:
        covered[f.offset:f.end] = b"\1" * len(covered[f.offset:f.end])
    runs = []
    start = None
    for offset in range(len(data) + 1):
        loose = offset < len(data) and not covered[offset]
        if loose and start is None:
            start = offset
        elif not loose and start is not None:
            if any(data[start:offset]):
                runs.append(f"{start}..{offset - 1}={data[start:offset].hex()}")
            start = None
    return " ".join(runs)


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
_INFO_STRUCTS = {"btf": "bpf_btf_info", "btf_by_id": "bpf_btf_info", "map": "bpf_map_info",
                 "prog": "bpf_prog_info", "link": "bpf_link_info"}
_INFO_POINTERS = frozenset({
    "btf", "name", "jited_prog_insns", "xlated_prog_insns", "map_ids", "jited_ksyms",
    "jited_func_lens", "func_info", "line_info", "jited_line_info", "prog_tags",
    "raw_tracepoint.tp_name", "iter.target_name", "perf_event.uprobe.file_name",
    "perf_event.kprobe.func_name", "perf_event.tracepoint.tp_name", "kprobe_multi.addrs",
    "kprobe_multi.cookies",
    "uprobe_multi.path", "uprobe_multi.offsets", "uprobe_multi.ref_ctr_offsets",
    "uprobe_multi.cookies"})
_INFO_KERNEL_STATE = frozenset({"id", "btf_id", "prog_id", "load_time", "run_time_ns",
                                "run_cnt", "attach_btf_obj_id", "tracing.target_obj_id",
                                "iter.map.map_id", "struct_ops.map_id", "netns_dev",
                                "netns_ino"})


_INFO_KERNEL_BUFFERS = frozenset("info." + name for name in (
    "map_ids", "jited_ksyms", "jited_prog_insns", "xlated_prog_insns", "jited_line_info",
    "kprobe_multi.addrs"))


_LINK_TYPES = {v: k for k, v in enum_values("bpf_link_type").items()}
_PERF_EVENT_MEMBERS = {1: "uprobe.", 2: "uprobe.", 3: "kprobe.", 4: "kprobe.",
                       5: "tracepoint.", 6: "event."}  # enum bpf_perf_event_type


def _info_fields(layout: Any, data: bytes, kind: str) -> list[Any]:
    """The info struct's fields this object's info means: a link's union member by its
    type (and a perf-event link's by its perf event type), one field per offset else."""
    fields = [f for f in layout.fields if f.offset < len(data)]
    if kind != "link" or len(data) < 4:
        seen: set[int] = set()
        out = []
        for f in fields:
            if f.offset not in seen:
                seen.add(f.offset)
                out.append(f)
        return out
    link_type = _LINK_TYPES.get(int.from_bytes(data[:4], "little"), "")
    member = link_type.removeprefix("BPF_LINK_TYPE_").lower() + "."
    if member == "perf_event.":
        perf_type = int.from_bytes(data[16:20], "little") if len(data) >= 20 else 0
        inner = "perf_event." + _PERF_EVENT_MEMBERS.get(perf_type, "(none).")
        return [f for f in fields if "." not in f.name or f.name == "perf_event.type"
                or f.name.startswith(inner)]
    return [f for f in fields if "." not in f.name or f.name.startswith(member)]


def _info(data: bytes, kind: str) -> Any:
    """An info struct field by field, pointers and kernel ids marked (rules 2 and 4)."""
    layout = struct_layout(_INFO_STRUCTS.get(kind, ""))
    if layout is None:
        return data.hex()
    fields = _info_fields(layout, data, kind)
    out = _fields_masked(data, fields, _INFO_POINTERS)
    for f in fields:
        if f.name in _INFO_KERNEL_STATE and out[f.name] not in (0, POINTER):
            out[f.name] = KERNEL_STATE
        elif "[" in f.type:
            out[f.name] = data[f.offset:f.end].hex()
    known_end = layout.known_end()
    loose = _loose_bytes(data[:known_end], fields)
    if loose:
        out["(bytes no field of this info holds)"] = loose
    if len(data) > known_end and any(data[known_end:]):
        out["(bytes past the known fields)"] = data[known_end:].hex()
    return out


def _payload(data: bytes, objects: _Objects, pid: int, field_name: str,
             info_kind: str = "") -> Any:
    if field_name == "info":
        return _info(data, info_kind)
    if field_name in _INFO_KERNEL_BUFFERS:
        # What an info's own pointers reached that the kernel hands out per load: ids,
        # addresses, machine code and instructions holding map ids (rule 4).
        return f"{KERNEL_STATE} ({len(data)} bytes)"
    if field_name == "insns":
        return _insns(data, objects)
    if field_name == "fd_array":
        return [objects.name(v) for (v,) in struct.iter_unpack("<i", data[: len(data) // 4 * 4])]
    if field_name in ("value", "values"):
        return _mask_pid(data, pid)
    if field_name in ("log_buf", "btf_log_buf", "common.log_buf"):
        # The verifier prints the kernel address of a map an ld_imm64 loads (rule 4).
        return _KERNEL_ADDRESS.sub(KERNEL_ADDRESS, data.decode("latin-1"))
    if field_name in ("license", "pathname", "name", "config1"):
        return data.decode("latin-1")
    if field_name in STRING_ARRAYS:
        # A char ** holds the process's addresses (rule 2): what they point to is the
        # payload <field>.strings, compared as strings.
        return [POINTER if v else 0 for (v,) in struct.iter_unpack("<Q", data[:len(data) // 8 * 8])]
    if field_name.endswith(STRINGS) and field_name[:-len(STRINGS)] in STRING_ARRAYS:
        return data.decode("latin-1").split("\0")[:-1]
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
            "BPF_ITER_CREATE": "iter", "BPF_TOKEN_CREATE": "token",
            "BPF_BTF_GET_FD_BY_ID": "btf_by_id"}.get(name)
    if kind is None:
        kind = str(record.get("object", {}).get("kind", "fd"))
    label = ""
    if layout is not None and kind in ("map", "prog"):
        f = layout.field("map_name" if kind == "map" else "prog_name")
        if f is not None and f.offset < len(attr):
            label = attr[f.offset:f.end].split(b"\0")[0].decode("latin-1")
    return kind, label


def normalise(calls: Iterable[dict[str, Any]], pid: int,
              self_exes: dict[int, str] | None = None) -> list[dict[str, Any]]:
    """Each call as a dict with fds named, pointers and process-specific values marked;
    a feature probe's call carries its probe (decode/probes.py's label) as ``probe``.
    ``self_exes``: per process, the program its /proc/self/exe is (rule 5: a uprobe
    path /proc/self/exe is that program)."""
    from bpfreplay.decode.probes import label_calls

    calls = list(calls)
    probes = [label.probe for label in label_calls(calls)]
    if len(probes) != len(calls):
        probes = [None] * len(calls)
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
                item["fields_out"] = _attr_fields(cmd, record["attr_out"], objects,
                                                  at_exit=True)
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
                if not label and probes[position] is not None:
                    label = f"(probe:{probes[position]})"  # swapped probes keep names
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
                exe = (self_exes or {}).get(record.get("pid", pid))
                if exe and item["in"].get("config1") == SELF_EXE:
                    item["in"]["config1"] = exe  # rule 5: this process's program
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
                at = f"+{args[5]:#x}" if args[5] else ""  # a ring buffer's two mappings
                label = f"<mapping of {fd}{at}>"
                objects.mappings[ret & 0xFFFFFFFFFFFFFFFF] = label
                ret = label
        elif syscall == "munmap":
            item["args"] = {"addr": objects.mappings.pop(args[0], ADDRESS), "length": args[1]}
        elif syscall == "setsockopt":
            item["args"], optval = _setsockopt(record, objects)
            if optval is not None:
                item["in"] = {"optval": optval}
        else:
            item["args"] = [objects.name(_s32(a)) for a in args[:3]]
            if ret is not None and ret >= 0 and objects.step.created is not None:
                ret = objects.made(ret, str((record.get("object") or {}).get("kind", "fd")))
        item["ret"] = ret
        item["errno"] = record.get("errno")
        if probes[position] is not None:
            item["probe"] = probes[position]
        out.append(item)
    return out


SOCKET = "<socket>"
_SOL_SOCKET = 1
_PROG_FD_OPTIONS = (50, 52)  # SO_ATTACH_BPF, SO_ATTACH_REUSEPORT_EBPF: optval a program fd
_FPROG_OPTIONS = (26, 51)    # SO_ATTACH_FILTER, SO_ATTACH_REUSEPORT_CBPF: a sock_fprog


def _setsockopt(record: dict[str, Any], objects: _Objects) -> tuple[dict[str, Any], Any]:
    """setsockopt of the BPF socket options (the only ones recorded): the socket,
    which no recorded call made (socket() is not recorded) and whose number depends on
    what else the process has open, becomes ``<socket>`` (rule 1 for an fd that names
    no BPF object); the optval of SO_ATTACH_BPF, a program fd, becomes the program it
    names, that of SO_ATTACH_FILTER the classic program; level, optname, optlen and any
    other optval bytes are compared as they are."""
    args = record.get("args", [0] * 6)
    fd = objects.name(_s32(args[0]))
    level, optname = args[1] & 0xFFFFFFFF, args[2] & 0xFFFFFFFF
    shown = {"fd": SOCKET if isinstance(fd, int) else fd, "level": level,
             "optname": optname, "optlen": args[4] & 0xFFFFFFFF}
    raw = (record.get("in") or {}).get("optval")
    if not isinstance(raw, bytes | bytearray):
        return shown, None
    if level == _SOL_SOCKET and optname in _PROG_FD_OPTIONS and len(raw) == 4:
        return shown, objects.name(int.from_bytes(raw, "little", signed=True))
    filter_data = (record.get("in") or {}).get("filter")
    if level == _SOL_SOCKET and optname in _FPROG_OPTIONS and len(raw) >= 16 \
            and isinstance(filter_data, bytes):
        # a struct sock_fprog: its filter pointer (rule 2) becomes the program it points at
        return shown, {"len": int.from_bytes(raw[:2], "little"), "filter": filter_data.hex()}
    return shown, bytes(raw).hex()


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

_NAMED_BY = {"BPF_PROG_LOAD": ("prog", "prog_name"), "BPF_MAP_CREATE": ("map", "map_name")}


def _object(call: dict[str, Any]) -> str:
    """The object a call makes, closes or acts on, without its number: ``map:x.bss``."""
    from bpfreplay.parity_sections import references

    ret = call.get("ret")
    if isinstance(ret, str):
        return _unnumbered(ret)
    if call["syscall"] == "close":
        return _unnumbered(call["args"]["fd"])
    named = _NAMED_BY.get(call.get("cmd", ""))
    if named is not None:  # a failed PROG_LOAD or MAP_CREATE: the name it asked for
        name = call.get("fields", {}).get(named[1])
        return f"{named[0]}:{name}" if name else named[0]
    refs = references(call)
    return _unnumbered(refs[0]) if refs else ""


def _unnumbered(label: Any) -> str:
    """``map:x#2`` -> ``map:x``; ``<mapping of map:x#1>`` -> ``mapping of map:x``."""
    if not isinstance(label, str):
        return ""
    text = label.strip("<>")
    return text.rsplit("#", 1)[0] if "#" in text else text


def _signature(call: dict[str, Any], probe: str | None = None) -> str:
    """What pairs two calls: syscall, command, probe label, and the object."""
    probe = probe or call.get("probe")
    what = f"probe:{probe} " if probe else ""
    return f"{call['syscall']} {call.get('cmd', '')} {what}{_object(call)}".strip()


def describe_call(call: dict[str, Any], probe: str | None = None) -> str:
    ret = call.get("ret")
    made = f" -> {ret}" if isinstance(ret, str) else ""
    if call["syscall"] == "close":
        made = f" {call['args']['fd']}"
    if call.get("errno"):
        made += f" = -1 {_errno_name(call['errno'])}"
    return _signature(call, probe) + made


def _errno_name(value: int) -> str:
    from bpfreplay.uapi.errnos import errno_name

    return errno_name(value)


def _attr_size(call: dict[str, Any]) -> Any:
    if call["syscall"] == "bpf":
        return call.get("size")
    return call.get("fields", {}).get("size")


def _size_difference(reference: dict[str, Any], ours: dict[str, Any],
                     ) -> tuple[dict[str, Any], dict[str, Any], tuple[str, str] | None]:
    """Attrs of another size: one difference (both sizes and the fields that are
    non-zero past the shorter one) instead of one per field; the pair returned holds
    only the fields both attrs have, compared as usual."""
    ref_size, our_size = _attr_size(reference), _attr_size(ours)
    if ref_size == our_size:
        return reference, ours, None
    reference, ours = dict(reference), dict(ours)
    notes = {"reference": [], "ours": []}
    for key in ("fields", "fields_out"):
        theirs, mine = reference.get(key), ours.get(key)
        if not isinstance(theirs, dict) or not isinstance(mine, dict):
            continue
        common = theirs.keys() & mine.keys()
        for side, fields in (("reference", theirs), ("ours", mine)):
            notes[side] += [f"{name}={value}" for name, value in fields.items()
                            if name not in common and value not in (0, "", None)]
        reference[key] = {k: v for k, v in theirs.items() if k in common}
        ours[key] = {k: v for k, v in mine.items() if k in common}
    for side in (reference, ours):
        side.pop("size", None)
        if "size" in side.get("fields", {}) and side["syscall"] == "perf_event_open":
            side["fields"] = {k: v for k, v in side["fields"].items() if k != "size"}

    def text(size: Any, extra: list[str]) -> str:
        beyond = f"; non-zero past the shorter: {', '.join(extra)}" if extra else ""
        return f"{size} bytes{beyond}"

    return reference, ours, (text(ref_size, notes["reference"]), text(our_size, notes["ours"]))


def _info_size_difference(reference: dict[str, Any], ours: dict[str, Any], direction: str,
                          ) -> tuple[dict[str, Any], dict[str, Any], tuple[str, str]] | None:
    """An info struct of another length (OBJ_GET_INFO_BY_FD's info_len): one difference
    with the fields non-zero past the shorter one, as for attrs."""
    theirs = (reference.get(direction) or {}).get("info")
    mine = (ours.get(direction) or {}).get("info")
    if not isinstance(theirs, dict) or not isinstance(mine, dict) \
            or theirs.keys() == mine.keys():
        return None
    common = theirs.keys() & mine.keys()
    notes = []
    for fields in (theirs, mine):
        extra = [f"{k}={v}" for k, v in fields.items() if k not in common and v not in (0, "")]
        length = reference if fields is theirs else ours
        text = f"{length.get('fields', {}).get('info_len', '?')} bytes"
        notes.append(text + (f"; non-zero past the shorter: {', '.join(extra)}" if extra
                             else ""))
    reference, ours = dict(reference), dict(ours)
    for side, fields in ((reference, theirs), (ours, mine)):
        side[direction] = dict(side[direction])
        side[direction]["info"] = {k: v for k, v in fields.items() if k in common}
        side["fields"] = {k: v for k, v in side.get("fields", {}).items() if k != "info_len"}
    return reference, ours, (notes[0], notes[1])


def diff_pair(reference: dict[str, Any], ours: dict[str, Any],
               ) -> list[tuple[str, str, Any, Any]]:
    """(kind, path, reference value, our value) for each way two paired calls differ."""
    from deepdiff import DeepDiff

    if reference == ours:
        return []
    reference, ours, size = _size_difference(reference, ours)
    out: list[tuple[str, str, Any, Any]] = []
    if size is not None:
        out.append(("size", "size", size[0], size[1]))
    for direction in ("in", "out"):
        info = _info_size_difference(reference, ours, direction)
        if info is not None:
            reference, ours, note = info
            out.append(("size", f"{direction}.info", note[0], note[1]))
    diff = DeepDiff(reference, ours, verbose_level=2, ignore_order=False)
    out += [("changed", path, r, o) for path, r, o in _flatten_diff(diff)]
    return out


def _relabel(items: list[dict[str, Any]], sections: list[str]) -> list[dict[str, Any]]:
    """Number the fds of BTF_GET_FD_BY_ID among the walk's own (kernel and module) BTFs
    only: the foreign objects walked over do not shift the names of the others."""
    from bpfreplay.parity_sections import FOREIGN

    mapping: dict[str, str] = {}
    count = 0
    for item, section in zip(items, sections, strict=True):
        ret = item.get("ret")
        if item.get("cmd") == "BPF_BTF_GET_FD_BY_ID" and isinstance(ret, str):
            if section == FOREIGN:
                mapping[ret] = "btf_by_id(foreign)"
            else:
                count += 1
                mapping[ret] = f"btf_by_id#{count}"
    if all(k == v for k, v in mapping.items()):
        return items

    def rename(value: Any) -> Any:
        if isinstance(value, str):
            return mapping.get(value, value)
        if isinstance(value, dict):
            return {k: rename(v) for k, v in value.items()}
        if isinstance(value, list):
            return [rename(v) for v in value]
        return value

    return [rename(item) for item in items]


def _align(reference: list[str], ours: list[str]
           ) -> tuple[list[tuple[int, int]], list[tuple[int, int]], list[int], list[int]]:
    """Pairs in order, pairs moved (same signature, another place), and the positions
    left on each side."""
    # The common head and tail first: difflib is quadratic on long runs of equal keys
    # (a map updated 100000 times), and most traces compared differ in a few places.
    head = 0
    while head < min(len(reference), len(ours)) and reference[head] == ours[head]:
        head += 1
    tail = 0
    while (tail < min(len(reference), len(ours)) - head
           and reference[-1 - tail] == ours[-1 - tail]):
        tail += 1
    pairs: list[tuple[int, int]] = [(k, k) for k in range(head)]
    left_ref: list[int] = []
    left_ours: list[int] = []
    matcher = difflib.SequenceMatcher(a=reference[head:len(reference) - tail],
                                      b=ours[head:len(ours) - tail], autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            pairs += [(head + i, head + j) for i, j in zip(range(i1, i2), range(j1, j2),
                                                           strict=True)]
        else:
            left_ref += range(head + i1, head + i2)
            left_ours += range(head + j1, head + j2)
    pairs += [(len(reference) - tail + k, len(ours) - tail + k) for k in range(tail)]
    moved: list[tuple[int, int]] = []
    waiting: dict[str, list[int]] = {}
    for j in left_ours:
        waiting.setdefault(ours[j], []).append(j)
    still_ref = []
    for i in left_ref:
        slots = waiting.get(reference[i])
        if slots:
            moved.append((i, slots.pop(0)))
        else:
            still_ref.append(i)
    taken = {j for _, j in moved}
    return pairs, moved, still_ref, [j for j in left_ours if j not in taken]


_LABEL = re.compile(r"[A-Za-z_][^\s#<>]*#\d+")


def rename_paired(reference: list[dict[str, Any]], ours: list[dict[str, Any]],
                   pairs: list[tuple[int, int]]) -> list[dict[str, Any]]:
    """Our objects named after the reference's objects whose making calls they are
    paired with, so that one extra object does not renumber the rest (``perf_event#3``
    of ours is the reference's ``perf_event#2`` when an extra one came first). An
    object of ours that pairs with none gets a name no reference object has; a
    reference to the wrong object therefore still differs."""
    mapping: dict[str, str] = {}
    for i, j in pairs:
        theirs, mine = reference[i].get("ret"), ours[j].get("ret")
        if isinstance(theirs, str) and isinstance(mine, str) and "#" in mine:
            mapping[mine.strip("<>").removeprefix("mapping of ")] = \
                theirs.strip("<>").removeprefix("mapping of ")
    if all(k == v for k, v in mapping.items()):
        return ours
    paired = set(mapping.values())

    def name(match: re.Match[str]) -> str:
        label = match.group(0)
        if label in mapping:
            return mapping[label]
        return label.replace("#", "#only-ours-") if label in paired else label

    def rename(value: Any) -> Any:
        if isinstance(value, str):
            return _LABEL.sub(name, value) if "#" in value else value
        if isinstance(value, dict):
            return {k: rename(v) for k, v in value.items()}
        if isinstance(value, list):
            return [rename(v) for v in value]
        return value

    return [rename(item) for item in ours]


@dataclass
class ApplicationCall:
    """A call of the application section: the reference's own calls after
    bpf_object__load(), or our runtime's, paired where both made it."""

    reference_index: int | None
    our_index: int | None
    call: str
    identical: bool | None = None  # None: made by one side only
    # What the entry stands for when it is no call of its own: the options of an attach
    # the application made by hand where libbpf's skeleton would have attached
    # (parity_sections.attach_options), not compared.
    note: str = ""


@dataclass
class BtfWalk:
    """libbpf's module-BTF walk on both sides: kernel BTFs found (compared, as calls)
    and foreign BTF objects walked over (machine state: counted, not compared)."""

    reference_kernel: list[str] = field(default_factory=list)
    our_kernel: list[str] = field(default_factory=list)
    reference_foreign: int = 0
    our_foreign: int = 0
    reference_walked: bool = False
    our_walked: bool = False
    reference_foreign_calls: int = 0  # the calls of those visits, left out of the pairing
    our_foreign_calls: int = 0


def _kernel_btfs(sections: Any) -> list[str]:
    out = []
    for visit in sections.visits:
        if visit.kind in ("kernel", "module"):
            size = visit.info.get("btf_size", "?")
            name_len = visit.info.get("name_len", "?")
            what = "vmlinux (skipped)" if visit.kind == "kernel" else "module BTF (kept)"
            out.append(f"{what}: {size} bytes, name of {name_len} characters")
    return out


def _probes_run_for_the_application(reference: list[str], reference_probes: list[str | None],
                                    ours: list[str], our_probes: list[str | None]) -> None:
    """A probe the reference ran for an attach its application made by hand (libbpf
    probes once, when something first needs it) is not run again by the skeleton's
    attach; ours, without the hand attach, runs it at its own attach. Our calls of a
    probe the reference ran only for its application go to our application section,
    to be paired there (docs/parity.md)."""
    from bpfreplay.parity_sections import APPLICATION, ATTACH

    for_application = {p for p, s in zip(reference_probes, reference, strict=True)
                       if p is not None and s == APPLICATION}
    for_loader = {p for p, s in zip(reference_probes, reference, strict=True)
                  if p is not None and s != APPLICATION}
    moved = for_application - for_loader
    for j, (probe, section) in enumerate(zip(our_probes, ours, strict=True)):
        if section == ATTACH and probe in moved:
            ours[j] = APPLICATION


def _hand_options_note(call: dict[str, Any]) -> str:
    """How the report shows the options of a hand attach (parity_sections.attach_options)."""
    from bpfreplay.parity_sections import attach_options

    program = str((call.get("fields") or {}).get("prog_fd", "?"))
    program = program.split(":", 1)[-1].rsplit("#", 1)[0]
    options = ", ".join(f"{k}={v}" for k, v in attach_options(call).items())
    return (f"the application attached {program} by hand with options {options} "
            "(libbpf's auto-attach passes none): not compared; the rest of the call is "
            "compared with our auto-attach")


def compare_calls(reference: list[dict[str, Any]], ours: list[dict[str, Any]],
                  reference_probes: list[str | None] | None = None,
                  our_probes: list[str | None] | None = None, *,
                  not_auto_attached: frozenset[str] = frozenset()) -> ParityReport:
    """Split two normalised call lists into sections (bpfreplay.parity_sections), pair
    the loader's calls by what they are and diff each pair; pair the application
    sections apart; count the module-BTF walk's foreign objects apart.
    ``not_auto_attached`` (bpfreplay.loader.auto_attach, from the object's spec): the
    programs libbpf's skeleton attach never attaches; the reference's attaches of them
    are its application's. Ours are split without it: an attach our loader makes that
    libbpf's would not stays a difference."""
    from bpfreplay.parity_sections import (
        APPLICATION,
        ATTACH,
        FOREIGN,
        LOAD,
        TEARDOWN,
        WALK,
        as_auto_attach,
        attach_options,
        classify,
    )

    ref_probes = reference_probes or [c.get("probe") for c in reference]
    mine_probes = our_probes or [c.get("probe") for c in ours]
    ref_sections = classify(reference, ref_probes, not_auto_attached, reference=True)
    our_sections = classify(ours, mine_probes)
    _probes_run_for_the_application(ref_sections.of, ref_probes, our_sections.of,
                                    mine_probes)
    reference = _relabel(reference, ref_sections.of)
    ours = _relabel(ours, our_sections.of)
    report = ParityReport(len(reference), len(ours),
                          not_auto_attached=sorted(not_auto_attached))
    report.walk = BtfWalk(_kernel_btfs(ref_sections), _kernel_btfs(our_sections),
                          ref_sections.foreign, our_sections.foreign,
                          bool(ref_sections.visits), bool(our_sections.visits),
                          len(ref_sections.indices(FOREIGN)), len(our_sections.indices(FOREIGN)))

    loader = (LOAD, WALK, ATTACH, TEARDOWN)
    ref_loader = ref_sections.indices(*loader)
    our_loader = our_sections.indices(*loader)
    if not ref_sections.indices(TEARDOWN):
        skipped = set(our_sections.indices(TEARDOWN))
        report.teardown_skipped = len(skipped)
        our_loader = [j for j in our_loader if j not in skipped]
    ref_keys = [_signature(reference[i], ref_probes[i]) for i in ref_loader]
    our_keys = [_signature(ours[j], mine_probes[j]) for j in our_loader]
    pairs, moved, missing, extra = _align(ref_keys, our_keys)
    ref_app = ref_sections.indices(APPLICATION)
    our_app = our_sections.indices(APPLICATION)
    app_pairs, app_moved, app_ref, app_ours = _align(
        [_signature(reference[i]) for i in ref_app], [_signature(ours[j]) for j in our_app])
    as_made = ours
    ours = rename_paired(reference, ours, [(ref_loader[a], our_loader[b])
                                            for a, b in pairs + moved]
                          + [(ref_app[a], our_app[b]) for a, b in app_pairs + app_moved])
    hand_options = set(ref_sections.hand_options)
    for a, b in sorted(pairs + moved):
        i, j = ref_loader[a], our_loader[b]
        theirs = reference[i]
        if i in hand_options and not attach_options(ours[j]):
            # ours is an auto-attach: compared with the reference's call as libbpf's
            # auto-attach makes it (a call of ours with options is compared as is)
            theirs = as_auto_attach(theirs)
            report.application.append(ApplicationCall(i, j, describe_call(reference[i]), None,
                                                      _hand_options_note(reference[i])))
        found = diff_pair(theirs, ours[j])
        if (a, b) in moved:
            found.insert(0, ("moved", "(order)", f"reference #{i}", f"ours #{j}"))
        if not found:
            report.matched += 1
        for kind, path, ref_value, our_value in found:
            report.differences.append(Difference(
                i, j, describe_call(reference[i], ref_probes[i]), path, ref_value, our_value,
                kind))
    for a in missing:
        i = ref_loader[a]
        report.differences.append(Difference(i, None, describe_call(reference[i], ref_probes[i]),
                                             "(whole call)", reference[i], None, "missing"))
    for b in extra:
        j = our_loader[b]
        report.differences.append(Difference(None, j, describe_call(as_made[j], mine_probes[j]),
                                             "(whole call)", None, as_made[j], "extra"))
    report.differences.sort(key=lambda d: (d.reference_index if d.reference_index is not None
                                           else 1 << 62, d.our_index or 0))

    for a, b in app_pairs + app_moved:
        i, j = ref_app[a], our_app[b]
        report.application.append(ApplicationCall(i, j, describe_call(reference[i]),
                                                  reference[i] == ours[j]))
    report.application += [ApplicationCall(ref_app[a], None, describe_call(reference[ref_app[a]]))
                           for a in app_ref]
    report.application += [ApplicationCall(None, our_app[b], describe_call(as_made[our_app[b]]))
                           for b in app_ours]
    report.application.sort(key=lambda c: (c.reference_index if c.reference_index is not None
                                           else 1 << 62, c.our_index or 0))
    report.reference_failure = load_failure(
        reference, {i for i, p in enumerate(ref_probes) if p is not None}
        | set(ref_sections.indices(APPLICATION, FOREIGN)))
    report.our_failure = load_failure(
        ours, {j for j, p in enumerate(mine_probes) if p is not None}
        | set(our_sections.indices(APPLICATION, FOREIGN)))
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
            out = item.get("out") or {}
            log = out.get("log_buf") or out.get("btf_log_buf") or out.get("common.log_buf") or ""
            if not isinstance(log, str):
                log = str(log)
            failure = Failure(index, _signature(item, item.get("probe")), int(item["errno"]),
                              log.split("\0", 1)[0])
        else:
            failure = None
    return failure


def self_exes(records: Iterable[dict[str, Any]]) -> dict[int, str]:
    """Per process of a trace, the program /proc/self/exe is there: its process
    record's ``self_exe`` (the loader's trace with `run --self-exe`), else its ``exe``."""
    out: dict[int, str] = {}
    for r in records:
        if r.get("type") == "process" and isinstance(r.get("pid"), int):
            exe = r.get("self_exe") or r.get("exe")
            if isinstance(exe, str) and exe:
                out.setdefault(r["pid"], exe)
    return out


@dataclass
class NormalisedTrace:
    """One trace file, read and normalised."""

    path: str
    pid: int
    records: list[dict[str, Any]]  # the call records as read
    items: list[dict[str, Any]]  # the same calls normalised (probe calls carry "probe")
    version: int = 2  # the trace format version it was written in


def _captured_since_version_2(direction: str, key: str) -> bool:
    """Payloads only recorders of format 2 keep: the strings a pointer array reaches
    (kprobe_multi.syms.strings ...), a classic filter's program (setsockopt's
    ``filter``) and the buffers an info struct's own pointers reach (``info.*``)."""
    if direction == "in":
        return key.endswith(STRINGS) or key == "filter"
    return key.startswith("info.")


def _without_newer_captures(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``items`` as a version-1 recorder would have captured them: a trace of the older
    format is compared on what it holds, not faulted for what its recorder never kept."""
    out = []
    for item in items:
        trimmed = None
        for direction in ("in", "out"):
            payloads = item.get(direction)
            if payloads and any(_captured_since_version_2(direction, k) for k in payloads):
                trimmed = trimmed or dict(item)
                kept = {k: v for k, v in payloads.items()
                        if not _captured_since_version_2(direction, k)}
                if kept:
                    trimmed[direction] = kept
                else:
                    del trimmed[direction]
        out.append(trimmed or item)
    return out


def read_normalised(path: str) -> NormalisedTrace:
    """Read a trace file and normalise its calls (BpfReplayError if it cannot be read)."""
    from bpfreplay.errors import TraceFormatError
    from bpfreplay.trace import read_trace

    with read_trace(path) as trace:
        version = trace.header.get("version", 2)
        records = list(trace.records())
    try:
        pid = next((r["pid"] for r in records if r.get("type") == "process"), 0)
        calls = [r for r in records if r.get("type") == "call"]
        return NormalisedTrace(path, pid, calls, normalise(calls, pid, self_exes(records)),
                               version)
    except (KeyError, TypeError, ValueError, IndexError, AttributeError, struct.error) as e:
        raise TraceFormatError(f"comparing {path}: a record that is not a call as "
                               f"bpfreplay writes them ({type(e).__name__}: {e})") from e


def compare_loaded(reference: NormalisedTrace, ours: NormalisedTrace, *,
                   not_auto_attached: frozenset[str] = frozenset()) -> ParityReport:
    """Compare two normalised traces (read_normalised). Against a trace of format 1, the
    payloads only format 2 captures are left out of the other."""
    reference_items, our_items = reference.items, ours.items
    if reference.version < 2 <= ours.version:
        our_items = _without_newer_captures(our_items)
    elif ours.version < 2 <= reference.version:
        reference_items = _without_newer_captures(reference_items)
    return compare_calls(reference_items, our_items, not_auto_attached=not_auto_attached)


def object_not_auto_attached(object_path: str | None) -> frozenset[str]:
    """The programs of the object at ``object_path`` that libbpf's skeleton attach never
    attaches (bpfreplay.loader.auto_attach), empty without an object."""
    if not object_path:
        return frozenset()
    from bpfreplay.loader.auto_attach import not_auto_attached
    from bpfreplay.loader.spec import load_spec

    return not_auto_attached(load_spec(object_path))


def compare_trace_files(reference_path: str, our_path: str, *,
                        object_path: str | None = None) -> ParityReport:
    """Compare two trace files (the first is the reference); with ``object_path``, the
    object both loaded, whose spec says which programs libbpf auto-attaches."""
    return compare_loaded(read_normalised(reference_path), read_normalised(our_path),
                          not_auto_attached=object_not_auto_attached(object_path))


def compare_traces(reference_path: str, our_path: str, *,
                   object_path: str | None = None) -> ParityReport:
    """Compare two trace files (the first is the reference); compare_trace_files."""
    return compare_trace_files(reference_path, our_path, object_path=object_path)
