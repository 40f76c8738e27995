"""The replay itself: each recorded call, in order, issued again through bpfreplay.sys
with the recording's fds, ids, pids, paths and pointers made ours, or left out with
the reason (``skipped: needs #N`` when an earlier call's object is missing here, or
not reproducible here).

Only these are issued: bpf() (any command the uapi table knows), perf_event_open(),
the perf ioctls that take no pointer, mmap()/munmap() of BPF fds, close() and dup()
of them, setsockopt(SO_ATTACH_BPF/SO_ATTACH_FILTER/SO_DETACH_BPF) on a packet socket
on lo that the replay makes (socket() and bind()); every fd argument is one the replay
made.

All of them pass through bpfreplay.sys (tests/fuzz/test_replay_fuzz.py replays real
and mutated traces against a fake kernel there and checks the list), the packet
socket's socket() and bind() too. What is done outside it, on purpose: the private pin
directory under --pin-root (objects.py: mkdtemp, makedirs, rmtree of that directory
only, never of a recorded path), the replay's own trace file, and plain reads of /proc
and /sys (fdinfo of our own fds, tracepoint ids, PMU types, the loopback's ifindex).
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from typing import Any

from bpfreplay import sys as bsys
from bpfreplay.decode.fds import FD_CREATING_COMMANDS, FdTracker, command
from bpfreplay.recording import procfs
from bpfreplay.recording import syscalls as nr
from bpfreplay.replaying import remap
from bpfreplay.replaying.buffers import (
    attach_buffers,
    attach_common_log,
    info_with_buffers,
    unknown_pointer,
)
from bpfreplay.replaying.errors import NeedsCall, NotReproducible
from bpfreplay.replaying.kernel_objects import KernelBtfs, recorded_btf_name
from bpfreplay.replaying.objects import Mapping, ReplayState
from bpfreplay.uapi import BPF_COMMON_ATTRS, attr_layout
from bpfreplay.uapi.pointers import compiled_command

# x86_64 numbers of the two calls that make the packet socket (not recorded by anyone).
SOCKET, BIND = 41, 49
AF_PACKET, SOCK_RAW, SOCK_CLOEXEC, ETH_P_ALL = 17, 3, 0o2000000, 0x0003
MAP_FIXED, MAP_FIXED_NOREPLACE = 0x10, 0x100000
# perf ioctls whose argument is no pointer: ENABLE, DISABLE, REFRESH, RESET, SET_OUTPUT,
# SET_BPF (a program fd), PAUSE_OUTPUT.
PERF_IOCTLS = {0x2400: "ENABLE", 0x2401: "DISABLE", 0x2402: "REFRESH", 0x2403: "RESET",
               0x2405: "SET_OUTPUT", 0x40042408: "SET_BPF", 0x40042409: "PAUSE_OUTPUT"}
_GET_FD_BY_ID = {"BPF_PROG_GET_FD_BY_ID": "prog_id", "BPF_MAP_GET_FD_BY_ID": "map_id",
                 "BPF_BTF_GET_FD_BY_ID": "btf_id", "BPF_LINK_GET_FD_BY_ID": "link_id"}
_GET_NEXT_ID = {"BPF_PROG_GET_NEXT_ID": "prog_id", "BPF_MAP_GET_NEXT_ID": "map_id",
                "BPF_BTF_GET_NEXT_ID": "btf_id", "BPF_LINK_GET_NEXT_ID": "link_id"}
_KIND_OF = {"BPF_MAP_CREATE": "map", "BPF_PROG_LOAD": "prog", "BPF_BTF_LOAD": "btf",
            "BPF_LINK_CREATE": "link", "BPF_RAW_TRACEPOINT_OPEN": "link",
            "BPF_BTF_GET_FD_BY_ID": "btf", "BPF_MAP_GET_FD_BY_ID": "map",
            "BPF_PROG_GET_FD_BY_ID": "prog", "BPF_LINK_GET_FD_BY_ID": "link",
            "BPF_ITER_CREATE": "iter", "BPF_TOKEN_CREATE": "token",
            "BPF_ENABLE_STATS": "stats"}
# Network-device attach types: the recording machine's ifindex is not ours.
_IFINDEX_ATTACH = {"BPF_XDP", "BPF_TCX_INGRESS", "BPF_TCX_EGRESS", "BPF_NETKIT_PRIMARY",
                   "BPF_NETKIT_PEER"}


@dataclass
class ReplayOptions:
    exact: bool = False  # pids as recorded
    pin_root: str = "/sys/fs/bpf"  # where the private bpffs directory is made


@dataclass
class CallResult:
    """What became of one recorded call."""

    position: int  # in the trace's list of calls
    ours: list[int] = field(default_factory=list)  # our calls (positions in our trace)
    skipped: str = ""  # why it was not issued ("needs #N (...)" or not reproducible)
    needs: int | None = None
    notes: list[str] = field(default_factory=list)
    adjusted: list[tuple[str, ...]] = field(default_factory=list)  # normalised paths


@dataclass
class RecordedTrace:
    path: str
    header: dict[str, Any]
    calls: list[dict[str, Any]]
    processes: dict[int, dict[str, Any]]

    @property
    def pid(self) -> int:
        return next(iter(self.processes), 0)


class Replayer:
    """Issues a trace's calls again; ``results`` says what became of each."""

    def __init__(self, trace: RecordedTrace, options: ReplayOptions, tracer: Any):
        self.trace = trace
        self.options = options
        self.tracer = tracer
        self.state = ReplayState()
        self.tracker = FdTracker(trace.calls)
        self.results: list[CallResult] = []
        self.our_pid = os.getpid()
        self.ncpus = procfs.possible_cpus()
        self.kernel_btfs = KernelBtfs()

    # ------------------------------------------------------------ the walk

    def replay(self, start: int, end: int) -> None:
        for position in range(start, end):
            self.results.append(self._one(position, self.trace.calls[position]))

    def _one(self, position: int, call: dict[str, Any]) -> CallResult:
        result = CallResult(position)
        self._current_index = call.get("index", position)
        before = self._our_index()
        try:
            self._issue(call, result)
        except NeedsCall as e:
            result.skipped, result.needs = str(e), e.index
        except NotReproducible as e:
            result.skipped = f"not reproducible here: {e}"
        finally:
            self._advance(call, position, result)
            self._note_mapping(call, position)
        result.ours = list(range(before, self._our_index()))
        if result.skipped:
            result.ours = []
        return result

    def _our_index(self) -> int:
        return getattr(self.tracer, "index", 0)

    def _advance(self, call: dict[str, Any], position: int, result: CallResult) -> None:
        """Move the recording's fd table past the call, and tie the fd it made to ours."""
        ours = getattr(self, "_made", None)
        self._made = None
        step = self.state.table.step(call, call.get("index", position))
        if step.ended is not None:
            replaced = self.state.fds.pop(step.ended, None)
            if replaced is not None and replaced in self.state.owned and \
                    call.get("syscall") != "close":
                self._close(replaced)  # dup2 over an open fd: that object is closed
        if step.created is not None and ours is not None and not result.skipped:
            self.state.fds[step.created] = ours

    def _note_mapping(self, call: dict[str, Any], position: int) -> None:
        ret, args = call.get("ret"), call.get("args")
        if call.get("syscall") == "mmap" and isinstance(ret, int) and ret != -1 \
                and isinstance(args, list) and len(args) > 1 and isinstance(args[1], int):
            self.state.recorded_mappings.append((ret & 0xFFFFFFFFFFFFFFFF, args[1],
                                                 call.get("index", position)))

    def _resolver(self, pid: int) -> remap.Resolve:
        return lambda what, fd: self.state.our_fd(pid, fd, what)

    def _new_fd(self, fd: int, kind: str, call: dict[str, Any]) -> None:
        facts = procfs.object_facts(self.our_pid, fd)
        recorded = call.get("object") if isinstance(call.get("object"), dict) else {}
        if kind == "fd":  # OBJ_GET: whatever was pinned
            kind = str(facts.get("kind") if facts.get("kind") not in ("other", "closed")
                       else recorded.get("kind", "fd"))
        if facts.get("kind") != "map" and kind == "map":
            facts = dict(recorded, kind="map")  # (a fake kernel: the trace's own facts)
        self.state.made(fd, kind, facts)
        self.state.learn_ids(recorded, facts)
        self._made = fd

    def _close(self, fd: int) -> None:
        try:
            bsys.close(fd)
        except OSError:
            pass
        self.state.forget(fd)

    # ------------------------------------------------------------ the calls

    def _issue(self, call: dict[str, Any], result: CallResult) -> None:
        syscall = call.get("syscall")
        pid = call.get("pid") if isinstance(call.get("pid"), int) else self.trace.pid
        args = [a if isinstance(a, int) else 0 for a in (call.get("args") or [])] + [0] * 6
        if syscall == "bpf":
            self._bpf(call, pid, result)
        elif syscall == "perf_event_open":
            self._perf_event_open(call, pid, args, result)
        elif syscall == "ioctl":
            self._ioctl(pid, args)
        elif syscall == "mmap":
            self._mmap(call, pid, args, result)
        elif syscall == "munmap":
            self._munmap(args)
        elif syscall == "close":
            fd = self.state.our_fd(pid, remap.s32(args[0]), "fd")
            self._close(fd)
        elif syscall in ("dup", "dup2", "dup3", "fcntl"):
            self._dup(call, pid, args, result)
        elif syscall == "setsockopt":
            self._setsockopt(call, pid, args, result)
        else:
            raise NotReproducible(f"{syscall}() is not one of the calls replay issues "
                                  "(no BPF object)")

    def _bpf(self, call: dict[str, Any], pid: int, result: CallResult) -> None:
        cmd = call.get("cmd")
        name = command(call)
        if not isinstance(cmd, int) or name is None:
            raise NotReproducible(f"bpf() command {cmd} is unknown to this bpfreplay")
        attr = call.get("attr")
        if not isinstance(attr, bytes):
            raise NotReproducible("the recording could not read the attr "
                                  f"({call.get('attr_fault', 'absent')})")
        size = call.get("size") if isinstance(call.get("size"), int) else len(attr)
        base = cmd & ~BPF_COMMON_ATTRS
        data = bytearray(attr)
        if len(data) < min(size, 4096):
            data += bytes(min(size, 4096) - len(data))
        resolve = self._resolver(pid)
        self._check_targets(base, name, data)
        remap.remap_attr_fds(base, data, resolve)
        self._remap_ids(base, name, data, result)
        inputs = self._inputs(call, base, name, data, pid, resolve, result)
        keep = bsys.Buffers()
        compiled = compiled_command(base)
        faults = call.get("faults") if isinstance(call.get("faults"), dict) else {}
        handled = attach_buffers(compiled, data, inputs, faults, keep, self._shape,
                                 self.ncpus, inputs.get("insns"))
        stray = unknown_pointer(base, bytes(data), handled)
        if stray is not None:
            raise NotReproducible(f"{stray} is a pointer this bpfreplay cannot size")
        common_address = common_size = 0
        if cmd & BPF_COMMON_ATTRS and isinstance(call.get("common"), bytes):
            common = bytearray(call["common"])
            attach_common_log(common, keep)
            common_address, common_size = keep.address_of(common), len(common)
        address = keep.address_of(data) if data else 0
        try:
            ret = bsys.syscall(nr.BPF, cmd, address, size, common_address, common_size)
        except OSError:
            return
        if name in FD_CREATING_COMMANDS:
            self._new_fd(ret, _KIND_OF.get(name, "fd"), call)

    def _check_targets(self, cmd: int, name: str, data: bytearray) -> None:
        """Attaches to things of the recording machine that are not ours to touch."""
        layout = attr_layout(cmd)
        if layout is None:
            return
        if name in ("BPF_LINK_CREATE", "BPF_PROG_ATTACH", "BPF_PROG_DETACH",
                    "BPF_PROG_QUERY"):
            f = layout.field("attach_type")
            attach = cmd_name_of_attach(remap.read_at(data, f)) if f else ""
            if attach in _IFINDEX_ATTACH:
                raise NotReproducible(f"{attach} attaches to a network device (ifindex) of "
                                      "the recording machine")
        if name == "BPF_TASK_FD_QUERY":
            raise NotReproducible("it asks about an fd of another task")

    def _remap_ids(self, cmd: int, name: str, data: bytearray, result: CallResult) -> None:
        layout = attr_layout(cmd)
        if layout is None:
            return
        key = _GET_FD_BY_ID.get(name)
        if key is not None:
            f = layout.field(key)
            if f is None:
                return
            recorded = remap.read_at(data, f)
            ours = self.state.ids.get((key, recorded))
            if ours is None:
                ours = self._foreign_id(name, key, recorded, result)
            remap.write_at(data, f, ours)
            if ours != recorded:
                result.notes.append(f"{key} {recorded} recorded, {ours} here")
            return
        key = _GET_NEXT_ID.get(name)
        if key is not None:
            f = layout.field("start_id")
            recorded = remap.read_at(data, f) if f else 0
            ours = self.state.ids.get((key, recorded))
            if ours is not None and f is not None:
                remap.write_at(data, f, ours)

    def _foreign_id(self, name: str, key: str, recorded: int, result: CallResult) -> int:
        """An id the trace did not make: a kernel BTF found by what the trace says."""
        if name != "BPF_BTF_GET_FD_BY_ID":
            raise NotReproducible(f"{key} {recorded} is another process's object")
        index = self._current_index
        life = self.tracker.created_by(index) if index is not None else None
        users = [self.tracker.by_index[u] for u in life.users] if life is not None else []
        btf_name = recorded_btf_name(users, recorded)
        if btf_name is None:
            raise NotReproducible(f"btf_id {recorded}: the trace does not say which BTF "
                                  "object it was")
        with bsys.traced_by(None):  # type: ignore[arg-type]  # not a call of the trace
            ours = self.kernel_btfs.id_of(btf_name)
        self.state.ids[(key, recorded)] = ours
        result.notes.append(f"btf_id {recorded} is {btf_name}'s BTF")
        return ours

    _current_index: int | None = None

    def _inputs(self, call: dict[str, Any], cmd: int, name: str, data: bytearray, pid: int,
                resolve: remap.Resolve, result: CallResult) -> dict[str, bytes]:
        """The recorded input payloads, with our fds, pid and paths."""
        inputs = {k: v for k, v in (call.get("in") or {}).items() if isinstance(v, bytes)}
        if "insns" in inputs:
            inputs["insns"] = remap.remap_insns(inputs["insns"], resolve)
        if "fd_array" in inputs:
            inputs["fd_array"] = remap.remap_fd_array(inputs["fd_array"], resolve)
        layout = attr_layout(cmd)
        if name in ("BPF_MAP_UPDATE_ELEM", "BPF_MAP_UPDATE_BATCH") and layout is not None:
            f = layout.field("map_fd")
            map_fd = remap.read_at(data, f) if f else 0
            shape = self.state.shapes.get(map_fd)
            map_type = self.state.map_types.get(map_fd, -1)
            field_name = "value" if name == "BPF_MAP_UPDATE_ELEM" else "values"
            value = inputs.get(field_name)
            if value is not None:
                value = remap.remap_fd_values(value, shape.value_size if shape else 0,
                                              map_type, resolve)
                if map_type not in remap.BPF_FD_VALUE_MAPS and not self.options.exact:
                    value, count = remap.replace_pid(value, pid, self.our_pid)
                    if count:
                        result.notes.append(f"{field_name}: the recording's pid {pid} -> "
                                            f"ours {self.our_pid} ({count}x)")
                inputs[field_name] = value
        if name in ("BPF_OBJ_PIN", "BPF_OBJ_GET") and "pathname" in inputs:
            inputs["pathname"] = self._pin(call, name, inputs["pathname"], result)
        if name == "BPF_OBJ_GET_INFO_BY_FD" and "info" in inputs and layout is not None:
            f = layout.field("bpf_fd")
            our = remap.read_at(data, f) if f else 0
            inputs["info"] = info_with_buffers(inputs["info"], self.state.owned.get(our, ""),
                                               self._info_keep)
        path = inputs.get("uprobe_multi.path")
        if path == b"/proc/self/exe":
            exe = self._self_exe(pid)
            if exe:
                inputs["uprobe_multi.path"] = os.fsencode(exe)
                result.notes.append(f"/proc/self/exe of the recording process is {exe}")
                result.adjusted.append(("in", "uprobe_multi.path"))
        return inputs

    @property
    def _info_keep(self) -> bsys.Buffers:
        keep = getattr(self, "_keep_info", None)
        if keep is None:
            keep = self._keep_info = bsys.Buffers()
        return keep

    def _pin(self, call: dict[str, Any], name: str, raw: bytes, result: CallResult) -> bytes:
        recorded = raw.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
        succeeded = isinstance(call.get("ret"), int) and call["ret"] >= 0
        if name == "BPF_OBJ_GET" and succeeded and recorded not in self.state.pinned:
            raise NotReproducible(f"{recorded} was pinned before the recording, not by it")
        path = self.state.pin_path(recorded, self.options.pin_root,
                                   make_parents=name == "BPF_OBJ_PIN" and succeeded)
        if name == "BPF_OBJ_PIN" and succeeded:
            self.state.pinned.add(recorded)
        result.notes.append(f"pin path {recorded} -> {path}")
        result.adjusted.append(("in", "pathname"))
        return os.fsencode(path)

    def _shape(self, fd: int) -> Any:
        return self.state.shapes.get(fd)

    def _self_exe(self, pid: int) -> str | None:
        process = self.trace.processes.get(pid) or {}
        exe = process.get("self_exe") or process.get("exe")
        return exe if isinstance(exe, str) else None

    # ------------------------------------------------------------ other syscalls

    def _perf_event_open(self, call: dict[str, Any], pid: int, args: list[int],
                         result: CallResult) -> None:
        from bpfreplay.replaying.perf import prepare

        opened = prepare(call, pid, self.our_pid, self.options.exact, self.ncpus,
                         self._self_exe(pid))
        result.notes += opened.notes
        result.adjusted += opened.adjusted
        group = remap.s32(args[3])
        if group >= 0:
            group = self.state.our_fd(pid, group, "group_fd")
        keep = bsys.Buffers()
        if opened.path is not None:
            struct.pack_into("<Q", opened.attr, 56, keep.cstring_at(opened.path))
        try:
            ret = bsys.syscall(nr.PERF_EVENT_OPEN, keep.address_of(opened.attr), opened.pid,
                               args[2], group, args[4])
        except OSError:
            return
        self._new_fd(ret, "perf_event", call)

    def _ioctl(self, pid: int, args: list[int]) -> None:
        request = args[1] & 0xFFFFFFFF
        if request not in PERF_IOCTLS:
            raise NotReproducible(f"perf ioctl {request:#x} takes a pointer the recording "
                                  "did not copy")
        fd = self.state.our_fd(pid, remap.s32(args[0]), "fd")
        arg = args[2]
        if PERF_IOCTLS[request] in ("SET_BPF", "SET_OUTPUT") and remap.s32(arg) >= 0:
            arg = self.state.our_fd(pid, remap.s32(arg), "argument")
        try:
            bsys.ioctl(fd, request, arg)
        except OSError:
            pass

    def _mmap(self, call: dict[str, Any], pid: int, args: list[int],
              result: CallResult) -> None:
        fd = self.state.our_fd(pid, remap.s32(args[4]), "fd")
        flags = args[3] & ~(MAP_FIXED | MAP_FIXED_NOREPLACE)
        if args[0] or flags != args[3]:
            result.notes.append("mapped where the kernel chose (the recording's address "
                                "is the recording process's)")
            result.adjusted += [("args", "addr"), ("args", "flags")]
        length = args[1]
        try:
            address = bsys.syscall(nr.MMAP, 0, length, args[2], flags, fd, args[5])
        except OSError:
            return
        address &= 0xFFFFFFFFFFFFFFFF
        recorded = call.get("ret")
        self.state.mappings.append(Mapping(recorded if isinstance(recorded, int) else -1,
                                           address, length))

    def _munmap(self, args: list[int]) -> None:
        address, length, mapping = self.state.our_range(args[0], args[1])
        try:
            bsys.munmap(address, length)
        except OSError:
            return
        self.state.unmapped(mapping, address, length)

    def _dup(self, call: dict[str, Any], pid: int, args: list[int],
             result: CallResult) -> None:
        syscall = call["syscall"]
        if syscall == "fcntl" and args[1] & 0xFFFFFFFF not in (nr.F_DUPFD, nr.F_DUPFD_CLOEXEC):
            raise NotReproducible("fcntl() other than F_DUPFD")
        fd = self.state.our_fd(pid, remap.s32(args[0]), "fd")
        if syscall != "dup":
            result.notes.append(f"{syscall} replayed as dup (the replay picks its own fd "
                                "numbers)")
            result.adjusted += [("syscall",), ("args",)]
        try:
            ret = bsys.syscall(nr.DUP, fd)
        except OSError:
            return
        self.state.made(ret, self.state.owned.get(fd, "fd"))
        if fd in self.state.shapes:  # a duplicate of a map is that map
            self.state.shapes[ret] = self.state.shapes[fd]
        if fd in self.state.map_types:
            self.state.map_types[ret] = self.state.map_types[fd]
        self._made = ret

    def _setsockopt(self, call: dict[str, Any], pid: int, args: list[int],
                    result: CallResult) -> None:
        level, option = args[1] & 0xFFFFFFFF, args[2] & 0xFFFFFFFF
        if level != nr.SOL_SOCKET or option not in (nr.SO_ATTACH_BPF, nr.SO_DETACH_BPF,
                                                    nr.SO_ATTACH_FILTER):
            raise NotReproducible("a socket option other than SO_ATTACH_BPF, "
                                  "SO_ATTACH_FILTER or SO_DETACH_BPF/SO_DETACH_FILTER")
        inputs = call.get("in") or {}
        optval = inputs.get("optval", b"")
        keep = bsys.Buffers()
        if option == nr.SO_ATTACH_BPF:
            if not isinstance(optval, bytes) or len(optval) < 4:
                raise NotReproducible("the recording did not keep the program fd it passed")
            prog = self.state.our_fd(pid, struct.unpack_from("<i", optval)[0], "optval")
            optval = struct.pack("<i", prog) + optval[4:]
        elif option == nr.SO_ATTACH_FILTER:
            # a struct sock_fprog: its filter pointer becomes our copy of the program
            program = inputs.get("filter")
            if not isinstance(optval, bytes) or len(optval) < 16 \
                    or not isinstance(program, bytes):
                raise NotReproducible("the recording did not keep the classic program")
            count = struct.unpack_from("<H", optval)[0]
            if len(program) < 8 * count:
                # the kernel copies len * sizeof(struct sock_filter) bytes from the
                # pointer (sk_attach_filter): never more than our copy holds
                raise NotReproducible(f"the sock_fprog says {count} instructions, the "
                                      f"recording kept {len(program) // 8}")
            optval = optval[:8] + struct.pack("<Q", keep.bytes_at(program)) + optval[16:]
        sock = self._socket(pid, remap.s32(args[0]), result)
        value = optval if isinstance(optval, bytes) else b""
        address = keep.bytes_at(value) if value else 0
        result.adjusted += [("args",), ("in", "optval")]
        try:
            bsys.syscall(nr.SETSOCKOPT, sock, level, option, address, args[4] & 0xFFFFFFFF)
        except OSError:
            pass

    def _socket(self, pid: int, recorded: int, result: CallResult) -> int:
        """The packet socket on lo standing for the recording's socket ``recorded``."""
        known = self.state.sockets.get((pid, recorded))
        if known is not None:
            return known
        try:
            fd = bsys.syscall(SOCKET, AF_PACKET, SOCK_RAW | SOCK_CLOEXEC,
                              _htons(ETH_P_ALL))
        except OSError as e:
            raise NotReproducible(f"making a packet socket: {e.strerror}") from e
        self.state.sockets[(pid, recorded)] = fd
        lo = _loopback_ifindex()
        address = struct.pack("<HHi", AF_PACKET, _htons(ETH_P_ALL), lo) + bytes(12)
        keep = bsys.Buffers()
        try:
            bsys.syscall(BIND, fd, keep.bytes_at(address), len(address))
        except OSError as e:
            raise NotReproducible(f"binding a packet socket to lo: {e.strerror}") from e
        result.notes.append(f"socket {recorded} of the recording -> a packet socket on lo "
                            "made by the replay")
        return fd


def cmd_name_of_attach(value: int) -> str:
    from bpfreplay.uapi import enum_name

    return enum_name("bpf_attach_type", value) or ""


def _htons(value: int) -> int:
    return ((value & 0xFF) << 8) | (value >> 8)


def _loopback_ifindex() -> int:
    try:
        with open("/sys/class/net/lo/ifindex") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 1

