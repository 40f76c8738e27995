"""Which call made the fd another call uses: file descriptors followed through a trace.

A loader's calls refer to each other only through fd numbers (a PROG_LOAD names its
BTF by ``prog_btf_fd``, a ``close()`` ends a map, an ``ld_imm64`` carries a map fd),
and numbers are reused as soon as they are closed. ``FdTable.step`` moves the open
fds past one call, per process; ``FdTracker`` runs it over a whole list and records for
each fd a call mentions the ``FdLife`` it named at that moment: the call that created
it, the calls that used it, the call that closed it. ``FdCursor`` runs it as a pass
over a file goes by, and answers only for the call it is at.

Pure: call records in (as ``bpfreplay.trace.read_trace(...).calls()`` yields them),
meaning out. Malformed records are skipped, never raised on.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, NamedTuple

from bpfreplay.uapi import BPF_COMMON_ATTRS, Field, attr_layout, cmd_name
from bpfreplay.uapi.fds import (
    FD_FIELDS,
    LD_IMM64,
    PERF_EVENT_IOC_SET_BPF,
    PSEUDO_BTF_ID,
    PSEUDO_MAP_FD,
    PSEUDO_MAP_VALUE,
)

Call = dict[str, Any]

# Commands whose non-negative return value is a new fd (BPF_ENABLE_STATS too: the
# kernel's bpf_enable_runtime_stats() answers with an anon-inode "bpf-stats" fd, and
# the stats stay on until it is closed).
FD_CREATING_COMMANDS = frozenset({
    "BPF_MAP_CREATE", "BPF_PROG_LOAD", "BPF_BTF_LOAD", "BPF_OBJ_GET", "BPF_LINK_CREATE",
    "BPF_RAW_TRACEPOINT_OPEN", "BPF_PROG_GET_FD_BY_ID", "BPF_MAP_GET_FD_BY_ID",
    "BPF_BTF_GET_FD_BY_ID", "BPF_LINK_GET_FD_BY_ID", "BPF_ITER_CREATE", "BPF_TOKEN_CREATE",
    "BPF_ENABLE_STATS",
})

# attr fields that hold an fd, per command: bpfreplay.uapi.fds. fd 0 in these fields
# means "none" for every loader we know (libbpf moves its fds off 0-2), so 0 is not
# followed.
_INSN = struct.Struct("<BBhi")
F_DUPFD, F_DUPFD_CLOEXEC = 0, 1030


@lru_cache(maxsize=1024)
def _command_name(cmd: int) -> str | None:
    return cmd_name(cmd & ~BPF_COMMON_ATTRS)


def command(call: Call) -> str | None:
    """``BPF_PROG_LOAD`` for a bpf() call record, None for other syscalls or unknown
    commands."""
    if call.get("syscall") != "bpf":
        return None
    cmd = call.get("cmd")
    return _command_name(cmd) if isinstance(cmd, int) else None


@lru_cache(maxsize=4096)  # a few fields of a few commands, asked for on every call
def _attr_field(cmd: int, name: str) -> Field | None:
    layout = attr_layout(cmd & ~BPF_COMMON_ATTRS)
    return layout.field(name) if layout else None


def attr_field(call: Call, name: str, *, signed: bool = False) -> int:
    """An integer field of a bpf() call's attr; 0 when the attr is absent or shorter
    than the field (the kernel reads missing bytes as zero too)."""
    attr = call.get("attr")
    cmd = call.get("cmd")
    if not isinstance(attr, bytes | bytearray) or not isinstance(cmd, int):
        return 0
    f = _attr_field(cmd, name)
    if f is None or f.end > len(attr) or f.size > 8 or "[" in f.type:
        return 0
    return int.from_bytes(attr[f.offset:f.end], "little", signed=signed or f.signed)


def attr_string(call: Call, name: str) -> str:
    """A char[] field of a bpf() call's attr (``prog_name``, ``map_name``) up to its NUL."""
    attr = call.get("attr")
    cmd = call.get("cmd")
    if not isinstance(attr, bytes | bytearray) or not isinstance(cmd, int):
        return ""
    f = _attr_field(cmd, name)
    if f is None or f.offset >= len(attr):
        return ""
    raw = bytes(attr[f.offset:min(f.end, len(attr))])
    return raw.split(b"\0", 1)[0].decode("utf-8", errors="replace")


def buffer(call: Call, name: str) -> bytes:
    """A captured input buffer of a call (``insns``, ``btf``, ...), or b""."""
    inputs = call.get("in")
    value = inputs.get(name) if isinstance(inputs, dict) else None
    if type(value) is bytes:
        return value  # as the reader gives it: no copy (rules ask for insns per rule)
    return bytes(value) if isinstance(value, bytes | bytearray) else b""


def instructions(call: Call) -> list[tuple[int, int, int, int, int]]:
    """PROG_LOAD's instructions as (code, dst_reg, src_reg, off, imm)."""
    insns = buffer(call, "insns")
    return [(code, regs & 0xF, regs >> 4, off, imm)
            for code, regs, off, imm in _INSN.iter_unpack(insns[:len(insns) - len(insns) % 8])]


def _arg(call: Call, i: int) -> int | None:
    args = call.get("args")
    if isinstance(args, list | tuple) and i < len(args) and isinstance(args[i], int):
        return args[i]
    return None


def _as_fd(value: int | None) -> int | None:
    """An argument register or attr value read as an int fd; None for negative fds."""
    if value is None:
        return None
    value &= 0xFFFFFFFF
    return value if value < 1 << 31 else None


def fd_references(call: Call) -> list[tuple[str, int]]:
    """(what, fd) for every fd a call reads: attr fields, map fds in ld_imm64, and the fd
    arguments of close/ioctl/mmap/dup/fcntl/perf_event_open."""
    syscall = call.get("syscall")
    refs: list[tuple[str, int]] = []
    if syscall == "bpf":
        name = command(call)
        for field_name in FD_FIELDS.get(name or "", ()):
            fd = _as_fd(attr_field(call, field_name))
            if fd:
                refs.append((field_name, fd))
        if name == "BPF_PROG_LOAD":
            insns = instructions(call)
            for i, (code, _dst, src, _off, imm) in enumerate(insns):
                if code == LD_IMM64 and src in (PSEUDO_MAP_FD, PSEUDO_MAP_VALUE):
                    fd = _as_fd(imm)
                    if fd is not None:
                        refs.append((f"insns[{i}]", fd))
                elif code == LD_IMM64 and src == PSEUDO_BTF_ID and i + 1 < len(insns):
                    # a ksym's BTF object: insn[1].imm, 0 for vmlinux (the kernel's
                    # check_pseudo_btf_id())
                    fd = _as_fd(insns[i + 1][4])
                    if fd:
                        refs.append((f"insns[{i}]", fd))
            fd_array = buffer(call, "fd_array")
            for i, (fd,) in enumerate(struct.iter_unpack("<i", fd_array[:len(fd_array) // 4 * 4])):
                if fd > 0:
                    refs.append((f"fd_array[{i}]", fd))
        return refs
    first = _as_fd(_arg(call, 0))
    if syscall in ("close", "ioctl", "dup", "dup2", "dup3", "fcntl") and first is not None:
        refs.append(("fd", first))
        if syscall == "ioctl" and _arg(call, 1) == PERF_EVENT_IOC_SET_BPF:
            prog = _as_fd(_arg(call, 2))
            if prog is not None:
                refs.append(("prog_fd", prog))
    elif syscall == "mmap":
        fd = _as_fd(_arg(call, 4))
        if fd is not None:
            refs.append(("fd", fd))
    elif syscall == "setsockopt" and _arg(call, 1) == 1 and _arg(call, 2) in (50, 52):
        optval = buffer(call, "optval")  # SO_ATTACH_BPF/SO_ATTACH_REUSEPORT_EBPF: a prog fd
        fd = _as_fd(int.from_bytes(optval[:4], "little")) if len(optval) >= 4 else None
        if fd is not None:
            refs.append(("optval", fd))
    elif syscall == "perf_event_open":
        group = _as_fd(_arg(call, 3))
        if group is not None:
            refs.append(("group_fd", group))
    return refs


def created_fd(call: Call) -> int | None:
    """The new fd a call returned, if it made one (a BPF object, a perf event, a memfd,
    a duplicate)."""
    ret = call.get("ret")
    if not isinstance(ret, int) or ret < 0:
        return None
    syscall = call.get("syscall")
    if syscall == "bpf":
        return ret if command(call) in FD_CREATING_COMMANDS else None
    if syscall in ("perf_event_open", "memfd_create", "dup", "dup2", "dup3"):
        return ret
    if syscall == "fcntl" and _arg(call, 1) in (F_DUPFD, F_DUPFD_CLOEXEC):
        return ret
    return None


@dataclass(eq=False, slots=True)
class FdLife:
    """One fd from the call that made it to the call that closed it. A duplicate
    (dup, F_DUPFD) gets a life of its own whose ``original`` is the duplicated one."""

    pid: int
    fd: int
    created: int  # index of the creating call
    closed: int | None = None  # index of the close(), None if never closed in the trace
    users: list[int] = field(default_factory=list)  # calls that read the fd (FdTracker only)
    original: FdLife | None = None
    call: Call | None = None  # the creating call
    refs: list[tuple[str, FdLife]] = field(default_factory=list)  # ... and the fds it read
    # What a reader of the trace hangs on the fd while it matters: the labeller's node,
    # the decoder's name and parsed BTF of the object. Goes when the life goes.
    data: Any = None

    @property
    def root(self) -> FdLife:
        life = self
        for _ in range(64):
            if life.original is None:
                break
            life = life.original
        return life


class Step(NamedTuple):
    """What one call did to the fds: read some, made one, ended one."""

    refs: list[tuple[str, FdLife]]  # (what, life) for each fd it read that was open
    created: FdLife | None  # the fd it made
    ended: FdLife | None  # the fd its close() (or a dup2 over it) ended


class FdTable:
    """The fds open at one point of a trace, moved on one call at a time. The one copy
    of how calls make, read, duplicate and close fds: ``FdTracker`` runs it over a whole
    list, ``bpfreplay explain`` over a file as it streams by. Only the open fds are held
    (and, through their ``refs``, the closed ones an open object still names)."""

    def __init__(self, *, keep_users: bool = False) -> None:
        self.open: dict[tuple[int, int], FdLife] = {}
        self.keep_users = keep_users

    def step(self, call: Call, index: int) -> Step:
        pid = call.get("pid")
        pid = pid if isinstance(pid, int) else 0
        open_fds = self.open
        refs: list[tuple[str, FdLife]] = []
        for what, fd in fd_references(call):
            life = open_fds.get((pid, fd))
            if life is not None:
                refs.append((what, life))
                if self.keep_users:
                    life.users.append(index)
        syscall = call.get("syscall")
        if syscall == "close":
            fd = _as_fd(_arg(call, 0))
            life = open_fds.pop((pid, fd), None) if fd is not None else None
            if life is not None:
                life.closed = index
            return Step(refs, None, life)
        new_fd = created_fd(call)
        if new_fd is None:
            return Step(refs, None, None)
        previous = open_fds.pop((pid, new_fd), None)  # dup2/dup3 over an open fd
        if previous is not None:
            previous.closed = index
        original = refs[0][1] if syscall in ("dup", "dup2", "dup3", "fcntl") and refs \
            else None
        life = FdLife(pid, new_fd, index, original=original, call=call, refs=refs)
        open_fds[(pid, new_fd)] = life
        return Step(refs, life, previous)


def creator_reference(life: FdLife | None, what: str) -> FdLife | None:
    """The fd the call that made ``life``'s object read as ``what`` (a map's ``btf_fd``)."""
    if life is None:
        return None
    for name, ref in life.root.refs:
        if name == what:
            return ref
    return None


class FdTracker:
    """Follows every fd through a list of call records. Look-ups go by call index."""

    def __init__(self, calls: Iterable[Call]) -> None:
        self.calls: list[Call] = [c for c in calls if isinstance(c, dict)]
        self.by_index: dict[int, Call] = {}
        self._created: dict[int, FdLife] = {}
        self._refs: dict[int, list[tuple[str, FdLife]]] = {}
        table = FdTable(keep_users=True)
        for position, call in enumerate(self.calls):
            index = call.get("index")
            if not isinstance(index, int):
                index = position
                call = {**call, "index": index}
                self.calls[position] = call
            self.by_index[index] = call
            step = table.step(call, index)
            self._refs[index] = step.refs
            if step.created is not None:
                self._created[index] = step.created

    def created_by(self, index: int) -> FdLife | None:
        """The fd the call at ``index`` made."""
        return self._created.get(index)

    def references(self, index: int) -> list[tuple[str, FdLife]]:
        """(what, life) for each fd the call at ``index`` read that the trace saw made."""
        return self._refs.get(index, [])

    def reference(self, index: int, what: str) -> FdLife | None:
        for name, life in self._refs.get(index, []):
            if name == what:
                return life
        return None

    def creator(self, life: FdLife | None) -> Call | None:
        """The call that made the object behind ``life`` (through duplicates)."""
        return self.by_index.get(life.root.created) if life is not None else None

    def creator_reference(self, life: FdLife | None, what: str) -> FdLife | None:
        return creator_reference(life, what)

    def users(self, index: int) -> Iterator[Call]:
        """The calls that read the fd the call at ``index`` made."""
        life = self._created.get(index)
        for user in life.users if life is not None else ():
            yield self.by_index[user]


class FdCursor:
    """``FdTracker``'s answers for the call a forward pass over a trace is at (and for
    the objects of the fds open then): what a second pass needs, in the memory of the
    open fds. ``advance`` to each call in turn."""

    def __init__(self) -> None:
        self.table = FdTable()
        self.index: int | None = None
        self.step = Step([], None, None)

    def advance(self, call: Call, index: int) -> Step:
        self.index = index
        self.step = self.table.step(call, index)
        return self.step

    def created_by(self, index: int) -> FdLife | None:
        return self.step.created if index == self.index else None

    def references(self, index: int) -> list[tuple[str, FdLife]]:
        return self.step.refs if index == self.index else []

    def reference(self, index: int, what: str) -> FdLife | None:
        if index != self.index:
            return None
        for name, life in self.step.refs:
            if name == what:
                return life
        return None

    def creator(self, life: FdLife | None) -> Call | None:
        return life.root.call if life is not None else None

    def creator_reference(self, life: FdLife | None, what: str) -> FdLife | None:
        return creator_reference(life, what)
