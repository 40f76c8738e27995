"""What a recorded call holds, read from the memory of the process that made it.

Shared by the ptrace recorder (reading a tracee through /proc/PID/mem) and by the
loader's own tracer in ``bpfreplay.sys`` (reading /proc/self/mem), so that both write
the same records for the same call: the attr, every buffer it points to (sized by
``uapi.pointers``), the kernel's answers and what each new fd is.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from typing import Any

from bpfreplay.recording import procfs
from bpfreplay.recording import syscalls as sc
from bpfreplay.recording.memory import TraceeMemory
from bpfreplay.tracefs import TracepointNames, pmu_types
from bpfreplay.uapi import BPF_COMMON_ATTRS, cmd_name, struct_layout
from bpfreplay.uapi.pointers import (
    CSTRING_MAX,
    STRING_ARRAYS,
    STRINGS,
    MapShape,
    compiled_command,
    plan_info_buffers,
    planned_buffers,
    read_field,
)

# bpf() commands after which the kernel has written into the attr itself.
_WRITES_ATTR = frozenset(
    {"BPF_PROG_LOAD", "BPF_BTF_LOAD", "BPF_OBJ_GET_INFO_BY_FD", "BPF_PROG_QUERY",
     "BPF_MAP_LOOKUP_BATCH", "BPF_MAP_LOOKUP_AND_DELETE_BATCH", "BPF_MAP_UPDATE_BATCH",
     "BPF_MAP_DELETE_BATCH", "BPF_PROG_TEST_RUN", "BPF_PROG_RUN", "BPF_TASK_FD_QUERY",
     "BPF_PROG_GET_NEXT_ID", "BPF_MAP_GET_NEXT_ID", "BPF_BTF_GET_NEXT_ID",
     "BPF_LINK_GET_NEXT_ID"}
)
# bpf() commands that return a new fd.
_RETURNS_FD = frozenset(
    {"BPF_MAP_CREATE", "BPF_PROG_LOAD", "BPF_OBJ_GET", "BPF_PROG_GET_FD_BY_ID",
     "BPF_MAP_GET_FD_BY_ID", "BPF_BTF_GET_FD_BY_ID", "BPF_LINK_GET_FD_BY_ID",
     "BPF_RAW_TRACEPOINT_OPEN", "BPF_BTF_LOAD", "BPF_LINK_CREATE", "BPF_ITER_CREATE",
     "BPF_TOKEN_CREATE", "BPF_ENABLE_STATS"}
)
_NEEDS_EXIT_WORK = _WRITES_ATTR | _RETURNS_FD
# cmd (without BPF_COMMON_ATTRS) -> (name, whether its exit stop has anything to copy)
_command_facts: dict[int, tuple[str | None, bool]] = {}
# The commands seen so far that have nothing to copy at exit, BPF_COMMON_ATTRS not set.
_quiet_commands: set[int] = set()


def _facts_of(cmd: int) -> tuple[str | None, bool]:
    facts = _command_facts.get(cmd)
    if facts is None:
        name = cmd_name(cmd)
        facts = _command_facts[cmd] = (
            name, name in _NEEDS_EXIT_WORK or bool(compiled_command(cmd).at_exit))
        if not facts[1]:
            _quiet_commands.add(cmd)
    return facts


# How bpf_entry copied the buffers of one attr: (field, address, length, False) for a slice
# of what was read with the attr, (field, address, length, True) for a read of its own.
_EntryPlan = tuple[tuple[str, int, int, bool], ...]
# (attr, plan, low, high): an attr seen, its plan, the span [low, high) to read for it.
_SeenAttr = tuple[bytes, _EntryPlan, int, int]
_ENTRY_PLANS_MAX = 4096  # a bound on the memory of a process that never repeats an attr
# The kernel refuses bpf_attr larger than a page (E2BIG): nothing past it is worth copying.
_ATTR_MAX = 4096
_PERF_ATTR_SIZE_VER0 = 64
_PERF_ATTR_CONFIG1 = 56  # offsetof(struct perf_event_attr, config1): kprobe/uprobe path
_PERF_TYPE_TRACEPOINT = 2
_PERF_TYPE_MAX = 6  # types from here on are dynamic PMUs (sysfs numbers them)


class MapShapes(dict[int, MapShape]):
    """A process's map fd -> key/value sizes, learnt on first use from what we know of the
    fd (or from /proc); ``shapes[fd]`` is None for an fd that is not a map. A dict so that
    the lookup made for every map update or lookup is a C-level hit."""

    def __init__(self, process: Process):
        super().__init__()
        self.process = process
        self.misses = 0  # lookups of fds that are no map (yet): plans that made one may change

    def __missing__(self, fd: int) -> MapShape | None:
        process = self.process
        known = process.fds.get(fd)
        if known is None or "key_size" not in known:
            facts = procfs.object_facts(process.pid, fd)
            if facts.get("kind") != "map":
                self.misses += 1
                return None
            process.fds[fd] = known = facts
        shape = self[fd] = MapShape(int(known.get("map_type", 0)), int(known["key_size"]),
                                    int(known["value_size"]))
        return shape


@dataclass
class Process:
    """A traced thread group: its memory, its fd table, whether we record it."""

    pid: int
    recording: bool
    memory: TraceeMemory | None = None
    fds: dict[int, dict[str, Any]] = field(default_factory=dict)
    mmaps: dict[int, int] = field(default_factory=dict)  # address -> length of BPF mmaps
    shapes: MapShapes = field(init=False)  # map fd -> key/value sizes
    announced: bool = False
    # (cmd, attr address, attr length) -> the last such call's attr, how its buffers were
    # copied and the span of memory that holds the attr and its sliced buffers
    entry_plans: dict[tuple[int, int, int], _SeenAttr] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.shapes = MapShapes(self)

    def forget_map(self, fd: int) -> None:
        """``fd`` no longer names what it named: its sizes and the plans made with them go."""
        if self.shapes.pop(fd, None) is not None:
            self.entry_plans.clear()

    def mem(self) -> TraceeMemory:
        if self.memory is None:
            self.memory = TraceeMemory(self.pid)
        return self.memory

    def forget_memory(self) -> None:
        if self.memory is not None:
            self.memory.close()
            self.memory = None


class CallCapture:
    """Builds the record of a bpf() or perf_event_open() call at entry and completes it
    at exit."""

    def __init__(self, ncpus: int | None = None, *, learn_unknown_fds: bool = False):
        self.ncpus = ncpus if ncpus is not None else procfs.possible_cpus()
        # What this machine calls perf types and tracepoint ids, kept in each record
        # (format 2) so that another machine's explain and replay name them as we did.
        self.pmu_names = pmu_types()
        self.perf_probe_types = frozenset(
            t for t, name in self.pmu_names.items() if name in ("kprobe", "uprobe"))
        self.tracepoint_names = TracepointNames()
        # Attached to a running process: fds it opened before we came are learnt from
        # /proc when it uses them.
        self.learn_unknown_fds = learn_unknown_fds

    def entry(self, process: Process, nr: int, args: tuple[int, ...]) -> dict[str, Any] | None:
        """The record of syscall ``nr`` at entry, or None if it does not concern BPF."""
        handler = _ENTRY_HANDLERS.get(nr)
        return handler(self, process, args) if handler else None

    def exit(self, process: Process, record: dict[str, Any]) -> None:
        """Complete ``record`` (whose ``ret``/``errno`` are set) with what the call wrote."""
        if record.get("cmd") in _quiet_commands:
            return  # a bpf() command the kernel answers with its result alone (map updates)
        handler = _EXIT_HANDLERS.get(record["syscall"])
        if handler:
            handler(self, process, record)

    def _copy_buffers(self, process: Process, cmd: int, attr: bytes, at_exit: bool,
                      insns: bytes | None = None, only: str | None = None,
                      window: tuple[int, bytes] | None = None,
                      ) -> tuple[dict[str, bytes], dict[str, str], _EntryPlan | None]:
        """Copy the buffers ``attr`` points to; those inside ``window`` (start, bytes: memory
        already read at this stop) are cut from it instead of being read again. The plan
        says how, to do the same again without planning (None: not for reuse: a string, a
        log or a fault)."""
        copied: dict[str, bytes] = {}
        faults: dict[str, str] = {}
        planned = planned_buffers(compiled_command(cmd), attr, at_exit,
                                  process.shapes.__getitem__, self.ncpus, insns)
        if not planned:
            return copied, faults, ()
        mem = process.mem()
        start, data = window if window is not None else (0, b"")
        end = start + len(data)
        plan: list[tuple[str, int, int, bool]] | None = []
        for b, address, length in planned:
            if only is not None and b.field != only:
                continue
            if b.plain and start <= address and address + length <= end:
                copied[b.field] = data[address - start:address - start + length]
                if plan is not None:
                    plan.append((b.field, address, length, False))
                continue
            try:
                if length is None:
                    copied[b.field] = mem.read_cstring(address, CSTRING_MAX)
                    plan = None
                elif b.until_nul:
                    copied[b.field] = mem.read_until_nul(address, length)
                    plan = None
                else:
                    copied[b.field] = mem.read(address, length)
                    if plan is not None:
                        plan.append((b.field, address, length, True))
            except OSError as e:
                faults[b.field] = os.strerror(e.errno) if e.errno else str(e)
                plan = None
        return copied, faults, tuple(plan) if plan is not None else None

    def bpf_entry(self, process: Process, args: tuple[int, ...]) -> dict[str, Any]:
        cmd = args[0] & 0xFFFFFFFF
        size = args[2] & 0xFFFFFFFF
        mem = process.memory or process.mem()
        address, length = args[1], min(size, _ATTR_MAX)
        seen = process.entry_plans.get((cmd, address, length))
        if seen is not None:  # a call like this one was seen here: the same attr again?
            known, plan, low, high = seen
            data = mem.read_span(low, high)
            if data is not None and data[address - low:address - low + length] == known:
                copied = {}
                try:
                    for name, at, n, read in plan:
                        copied[name] = mem.read(at, n) if read else data[at - low:at - low + n]
                except OSError:
                    pass  # now unreadable: the general path below records the fault
                else:
                    return {"cmd": cmd, "size": size, "attr": known, "in": copied}
        window = None
        if not address or length <= 0:
            attr = b""
        else:
            # The attr's pages in one read: the key and value of a map update on the
            # caller's stack usually come with it.
            window = mem.read_pages(address, length)
            if window is not None:
                attr = window[1][address - window[0]:address - window[0] + length]
            else:
                try:
                    attr = mem.read(address, length)
                except OSError as e:
                    return {"cmd": cmd, "size": size, "attr_fault": os.strerror(e.errno or 14)}
        record: dict[str, Any] = {"cmd": cmd, "size": size, "attr": attr}
        misses = process.shapes.misses
        copied, faults, plan = self._copy_buffers(process, cmd, attr, False, window=window)
        if "insns" in copied and "fd_array" not in copied and cmd_name(cmd) == "BPF_PROG_LOAD":
            # Without fd_array_cnt, fd_array is as long as the instructions index it.
            more, more_faults, _ = self._copy_buffers(process, cmd, attr, False,
                                                      copied["insns"], only="fd_array")
            copied.update(more)
            faults.update(more_faults)
            plan = None
        if not STRING_ARRAYS.isdisjoint(copied):
            self._follow_strings(process, copied, faults)
            plan = None  # the strings are read each time: the plan does not hold them
        record["in"] = copied
        if faults:
            record["faults"] = faults
        if cmd & BPF_COMMON_ATTRS:  # (the plan key does not hold the common attr)
            if args[3]:
                common_size = args[4] & 0xFFFFFFFF
                try:
                    record["common"] = mem.read(args[3], min(common_size, _ATTR_MAX))
                except OSError as e:
                    record.setdefault("faults", {})["common"] = os.strerror(e.errno or 14)
        elif plan is not None and window is not None and process.shapes.misses == misses:
            # The same attr at the same address will be copied the same way: its pointers,
            # lengths and the sizes of its maps (until one of its fds is closed) are fixed.
            # Next time only the span of the attr and its sliced buffers is read.
            sliced = [(at, at + n) for _, at, n, read in plan if not read]
            low = min([address] + [at for at, _ in sliced])
            high = max([address + length] + [end for _, end in sliced])
            if len(process.entry_plans) >= _ENTRY_PLANS_MAX:
                process.entry_plans.clear()
            process.entry_plans[(cmd, address, length)] = (attr, plan, low, high)
        return record

    @staticmethod
    def _follow_strings(process: Process, copied: dict[str, bytes],
                        faults: dict[str, str]) -> None:
        """The strings a copied ``char **`` array points to (kprobe_multi.syms), as the
        kernel reads them (copy_user_syms(): each element a C string); the first that
        cannot be read ends them, and the fault names its element."""
        mem = process.mem()
        for name in STRING_ARRAYS.intersection(copied):
            array = copied[name]
            strings = []
            for i in range(len(array) // 8):
                address = int.from_bytes(array[i * 8:i * 8 + 8], "little")
                if not address:
                    faults[name + STRINGS] = f"element {i}: NULL"
                    break
                try:
                    strings.append(mem.read_cstring(address, CSTRING_MAX) + b"\0")
                except OSError as e:
                    faults[name + STRINGS] = \
                        f"element {i}: {os.strerror(e.errno) if e.errno else e}"
                    break
            copied[name + STRINGS] = b"".join(strings)

    def bpf_exit(self, process: Process, record: dict[str, Any]) -> None:
        attr = record.get("attr")
        if attr is None:
            return
        cmd = record["cmd"] & ~BPF_COMMON_ATTRS
        name, exit_work = _facts_of(cmd)
        if not exit_work and "common" not in record:
            return
        mem = process.mem()
        args = record["args"]
        if name in _WRITES_ATTR:
            try:
                after = mem.read(args[1], len(attr))
            except OSError:
                after = attr
            if after != attr:
                record["attr_out"] = after
                attr = after
        out, faults, _ = self._copy_buffers(process, cmd, attr, True)
        if record["ret"] < 0:  # failed: keep what the kernel explains (logs), not stale outputs
            out = {k: v for k, v in out.items() if k in ("log_buf", "btf_log_buf")}
        if name == "BPF_OBJ_GET_INFO_BY_FD" and record["ret"] >= 0 and "info" in out:
            self._info_buffers(process, cmd, attr, record, out, faults)
        if out:
            record["out"] = out
        if faults and record["ret"] >= 0:
            record.setdefault("faults", {}).update({f"out.{k}": v for k, v in faults.items()})
        if "common" in record:
            self._common_log(process, record)
        if name in _RETURNS_FD and record["ret"] >= 0:
            # The fd may have named a map closed behind our back (close_range, exec).
            process.forget_map(record["ret"])
            facts = procfs.object_facts(process.pid, record["ret"])
            if name == "BPF_MAP_CREATE":
                layout_fields = _map_create_fields()
                facts.setdefault("map_type", read_field(attr, layout_fields["map_type"]))
                facts.setdefault("key_size", read_field(attr, layout_fields["key_size"]))
                facts.setdefault("value_size", read_field(attr, layout_fields["value_size"]))
            process.fds[record["ret"]] = facts
            record["object"] = facts

    def _info_buffers(self, process: Process, cmd: int, attr: bytes, record: dict[str, Any],
                      out: dict[str, bytes], faults: dict[str, str]) -> None:
        """The buffers the info struct's own pointers reach (map_ids, xlated_prog_insns, a
        BTF's name ...), as the kernel filled them: ``out["info.<pointer>"]``."""
        fd = _s32(read_field(attr, compiled_command(cmd).fields["bpf_fd"]))
        known = process.fds.get(fd)
        if known is None:  # an fd opened before we came, or one we were not told of
            known = procfs.object_facts(process.pid, fd)
        info_in = (record.get("in") or {}).get("info", b"")
        mem = process.mem()
        for field_name, address, length, text in plan_info_buffers(
                str(known.get("kind", "")), info_in, out["info"]):
            try:
                out["info." + field_name] = (mem.read_until_nul(address, length) if text
                                             else mem.read(address, length))
            except OSError as e:
                faults["info." + field_name] = os.strerror(e.errno) if e.errno else str(e)

    def _common_log(self, process: Process, record: dict[str, Any]) -> None:
        layout = struct_layout("bpf_common_attr")
        if layout is None:
            return
        fields = {f.name: f for f in layout.fields}
        common = record["common"]
        address = read_field(common, fields["log_buf"])
        size = read_field(common, fields["log_size"])
        if address and size:
            try:
                record.setdefault("out", {})["common.log_buf"] = process.mem().read_until_nul(
                    address, size)
            except OSError:
                pass

    def perf_event_open_entry(self, process: Process, args: tuple[int, ...]) -> dict[str, Any]:
        record: dict[str, Any] = {}
        mem = process.mem()
        try:
            head = mem.read(args[0], 8)
            size = int.from_bytes(head[4:8], "little") or _PERF_ATTR_SIZE_VER0
            attr = mem.read(args[0], min(size, _ATTR_MAX))
        except OSError as e:
            record["attr_fault"] = os.strerror(e.errno or 14)
            return record
        record["attr"] = attr
        perf_type = int.from_bytes(attr[0:4], "little")
        if perf_type == _PERF_TYPE_TRACEPOINT and len(attr) >= 16:
            name = self.tracepoint_names(int.from_bytes(attr[8:16], "little"))
            if name is not None:
                record["tracepoint"] = name
        elif perf_type >= _PERF_TYPE_MAX and perf_type in self.pmu_names:
            record["pmu"] = self.pmu_names[perf_type]
        if perf_type in self.perf_probe_types and len(attr) >= _PERF_ATTR_CONFIG1 + 8:
            path_address = int.from_bytes(attr[_PERF_ATTR_CONFIG1:_PERF_ATTR_CONFIG1 + 8],
                                          "little")
            if path_address:
                try:
                    record["in"] = {"config1": mem.read_cstring(path_address, CSTRING_MAX)}
                except OSError:
                    pass
        return record

    def perf_event_open_exit(self, process: Process, record: dict[str, Any]) -> None:
        if record["ret"] >= 0:
            process.fds[record["ret"]] = record["object"] = {"kind": "perf_event"}

    # ------------------------------------------------ other recorded calls

    def _ioctl_entry(self, process: Process, args: tuple[int, ...]) -> dict[str, Any] | None:
        return {} if (args[1] >> 8) & 0xFF == sc.PERF_IOC_TYPE else None

    def _mmap_entry(self, process: Process, args: tuple[int, ...]) -> dict[str, Any] | None:
        fd = _s32(args[4])
        return {} if fd in process.fds else None

    def _mmap_exit(self, process: Process, record: dict[str, Any]) -> None:
        if record["ret"] != -1 or record["errno"] is None:
            process.mmaps[record["ret"] & 0xFFFFFFFFFFFFFFFF] = record["args"][1]

    def _munmap_entry(self, process: Process, args: tuple[int, ...]) -> dict[str, Any] | None:
        start, length = args[0], args[1]
        hit = [a for a, n in process.mmaps.items() if a < start + length and start < a + n]
        if not hit:
            return None
        for a in hit:
            del process.mmaps[a]
        return {}

    def _close_entry(self, process: Process, args: tuple[int, ...]) -> dict[str, Any] | None:
        fd = _s32(args[0])
        if self.learn_unknown_fds and fd not in process.fds and fd >= 0:
            facts = procfs.object_facts(process.pid, fd)  # opened before we attached?
            if facts["kind"] not in ("other", "closed"):
                process.fds[fd] = facts
        known = process.fds.pop(fd, None)
        process.forget_map(fd)
        return None if known is None else {"object": known}

    def _dup_entry(self, process: Process, args: tuple[int, ...]) -> dict[str, Any] | None:
        old = _s32(args[0])
        return {} if old in process.fds else None

    def _dup2_entry(self, process: Process, args: tuple[int, ...]) -> dict[str, Any] | None:
        old, new = _s32(args[0]), _s32(args[1])
        if old not in process.fds and new not in process.fds:
            return None
        record: dict[str, Any] = {}
        if new in process.fds and new != old:  # dup2 onto a BPF fd closes that object
            record["replaced"] = process.fds.pop(new)
            process.forget_map(new)
        return record

    def _dup_exit(self, process: Process, record: dict[str, Any]) -> None:
        old = _s32(record["args"][0])
        if record["ret"] >= 0 and old in process.fds:
            process.forget_map(record["ret"])
            process.fds[record["ret"]] = dict(process.fds[old])

    def _fcntl_entry(self, process: Process, args: tuple[int, ...]) -> dict[str, Any] | None:
        if args[1] & 0xFFFFFFFF not in (sc.F_DUPFD, sc.F_DUPFD_CLOEXEC):
            return None
        return self._dup_entry(process, args)

    def _memfd_create_entry(self, process: Process, args: tuple[int, ...]) -> dict[str, Any]:
        try:
            return {"in": {"name": process.mem().read_cstring(args[0], 256)}}
        except OSError:
            return {}

    def _memfd_create_exit(self, process: Process, record: dict[str, Any]) -> None:
        if record["ret"] >= 0:
            process.fds[record["ret"]] = record["object"] = {"kind": "memfd"}

    def _setsockopt_entry(self, process: Process, args: tuple[int, ...]) -> dict[str, Any] | None:
        level, optname = args[1] & 0xFFFFFFFF, args[2] & 0xFFFFFFFF
        if level != sc.SOL_SOCKET or optname not in sc.BPF_SOCKET_OPTIONS:
            return None
        optval, optlen = args[3], args[4] & 0xFFFFFFFF
        if not optval or not optlen:
            return {}
        try:
            inputs = {"optval": process.mem().read(optval, min(optlen, 64))}
        except OSError:
            return {}
        # A classic program: the struct sock_fprog's filter array, as the kernel reads
        # it (sk_attach_filter: len instructions of 8 bytes, at most BPF_MAXINSNS).
        fprog = inputs["optval"]
        if optname in (sc.SO_ATTACH_FILTER, sc.SO_ATTACH_REUSEPORT_CBPF) and len(fprog) >= 16:
            count, address = struct.unpack_from("<H6xQ", fprog)
            if address and 0 < count <= 4096:
                try:
                    inputs["filter"] = process.mem().read(address, count * 8)
                except OSError:
                    pass
        return {"in": inputs}

_ENTRY_HANDLERS = {
    sc.BPF: CallCapture.bpf_entry,
    sc.PERF_EVENT_OPEN: CallCapture.perf_event_open_entry,
    sc.IOCTL: CallCapture._ioctl_entry,
    sc.MMAP: CallCapture._mmap_entry,
    sc.MUNMAP: CallCapture._munmap_entry,
    sc.CLOSE: CallCapture._close_entry,
    sc.DUP: CallCapture._dup_entry,
    sc.DUP2: CallCapture._dup2_entry,
    sc.DUP3: CallCapture._dup2_entry,
    sc.FCNTL: CallCapture._fcntl_entry,
    sc.MEMFD_CREATE: CallCapture._memfd_create_entry,
    sc.SETSOCKOPT: CallCapture._setsockopt_entry,
}
_EXIT_HANDLERS = {
    "bpf": CallCapture.bpf_exit,
    "perf_event_open": CallCapture.perf_event_open_exit,
    "mmap": CallCapture._mmap_exit,
    "dup": CallCapture._dup_exit,
    "dup2": CallCapture._dup_exit,
    "dup3": CallCapture._dup_exit,
    "fcntl": CallCapture._dup_exit,
    "memfd_create": CallCapture._memfd_create_exit,
}


def _s32(value: int) -> int:
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value >= 1 << 31 else value


def _map_create_fields() -> dict[str, Any]:
    from bpfreplay.uapi import attr_layout, cmd_value

    layout = attr_layout(cmd_value("BPF_MAP_CREATE"))
    assert layout is not None
    return {f.name: f for f in layout.fields}
