"""A fake kernel for ``bpfreplay.sys.override_syscall``: it answers the calls a replay
issues as a kernel would (fresh fds, mappings, ids on request, some calls failing with
an errno) and writes down every call that breaks the replay's promise (issue 10: "it
issues only the syscalls listed, on objects it made"):

- only bpf(), perf_event_open(), the perf ioctls that take no pointer, mmap()/munmap()
  of the fds it handed out, close()/dup() of them, and, for SO_ATTACH_BPF, socket() of
  a packet socket, bind() of it and setsockopt(SOL_SOCKET,
  SO_ATTACH_BPF/SO_ATTACH_FILTER/SO_DETACH_BPF) on it;
- every fd argument (call arguments, the fd fields of the attr's union member, ld_imm64
  map and module-BTF fds in instructions, fds written as values of maps that hold fds)
  is an fd this fake handed out and that is still open (of any kind: a mutated trace
  may well pass a program where a map belongs, which the kernel refuses; only bind()
  and setsockopt() must be on the packet socket); every page unmapped is of a mapping
  it handed out; nothing is closed twice.

``open_fds`` and ``mappings`` left at the end are what the replay did not undo. The fd
numbers start far above what the test process has open, so that a recorded fd passed on
unchanged (3, 4, ... in every recording) cannot pass for one of ours.
"""

from __future__ import annotations

import ctypes
import errno
import os
import random
import struct
from dataclasses import dataclass, field

from bpfreplay.decode.attr_fields import FD
from bpfreplay.decode.attrs import attr_view
from bpfreplay.recording import syscalls as nr
from bpfreplay.uapi import BPF_COMMON_ATTRS, attr_layout, cmd_name, enum_values
from bpfreplay.uapi.fds import LD_IMM64, PSEUDO_MAP_FD, PSEUDO_MAP_VALUE

SOCKET, BIND = 41, 49
AF_PACKET, SOCK_RAW, SOCK_CLOEXEC = 17, 3, 0o2000000
ETH_P_ALL_BE = 0x0300  # htons(ETH_P_ALL)
MAP_FIXED, MAP_ANONYMOUS, MAP_FIXED_NOREPLACE = 0x10, 0x20, 0x100000
PERF_FLAG_PID_CGROUP = 1 << 2
# include/uapi/linux/perf_event.h: the ioctls whose argument is a number or an fd
# (_IO('$', n) and _IOW('$', n, __u32)); SET_FILTER, ID, QUERY_BPF,
# MODIFY_ATTRIBUTES take pointers.
PERF_IOCTLS = {0x2400: "ENABLE", 0x2401: "DISABLE", 0x2402: "REFRESH", 0x2403: "RESET",
               0x2405: "SET_OUTPUT", 0x40042408: "SET_BPF", 0x40042409: "PAUSE_OUTPUT"}
PSEUDO_BTF_ID = 3
# fd fields where 0 means none (include/uapi/linux/bpf.h says so for each)
OPTIONAL_FDS = frozenset({
    "btf_fd", "inner_map_fd", "value_type_btf_obj_fd", "map_token_fd", "prog_btf_fd",
    "attach_prog_fd", "attach_btf_obj_fd", "prog_token_fd", "btf_token_fd",
    "fd_by_id_token_fd", "replace_bpf_fd", "relative_fd", "tcx.relative_fd",
    "netkit.relative_fd", "cgroup.relative_fd", "path_fd", "old_prog_fd",
    "uprobe_multi.path_fd", "attach_bpf_fd"})
# BPF_OBJ_GET's bpf_fd must be 0 (kernel/bpf/syscall.c bpf_obj_get)
NOT_READ = {"BPF_OBJ_GET": frozenset({"bpf_fd"})}
_TYPES = enum_values("bpf_map_type")
BPF_FD_VALUE_MAPS = {_TYPES[f"BPF_MAP_TYPE_{n}"] for n in (
    "PROG_ARRAY", "PERF_EVENT_ARRAY", "ARRAY_OF_MAPS", "HASH_OF_MAPS")}
FOREIGN_FD_VALUE_MAPS = {_TYPES[f"BPF_MAP_TYPE_{n}"] for n in (
    "CGROUP_ARRAY", "SOCKMAP", "SOCKHASH", "XSKMAP", "REUSEPORT_SOCKARRAY")}
PINNED = "pinned"  # an OBJ_GET: whatever was pinned there
_KIND = {"BPF_MAP_CREATE": "map", "BPF_PROG_LOAD": "prog", "BPF_BTF_LOAD": "btf",
         "BPF_MAP_GET_FD_BY_ID": "map", "BPF_PROG_GET_FD_BY_ID": "prog",
         "BPF_BTF_GET_FD_BY_ID": "btf", "BPF_LINK_GET_FD_BY_ID": "link",
         "BPF_LINK_CREATE": "link", "BPF_RAW_TRACEPOINT_OPEN": "link",
         "BPF_ITER_CREATE": "iter", "BPF_ENABLE_STATS": "stats", "BPF_OBJ_GET": PINNED,
         "BPF_TOKEN_CREATE": "token"}
# The commands whose answer is a new fd, read from kernel/bpf/syscall.c (what calls
# bpf_map_new_fd, bpf_prog_new_fd, btf_new_fd, bpf_link_settle/bpf_link_new_fd,
# bpf_iter_new_fd, anon_inode_getfd), not from bpfreplay's own list.
FD_CREATING_COMMANDS = frozenset({
    "BPF_MAP_CREATE", "BPF_PROG_LOAD", "BPF_OBJ_GET", "BPF_PROG_GET_FD_BY_ID",
    "BPF_MAP_GET_FD_BY_ID", "BPF_RAW_TRACEPOINT_OPEN", "BPF_BTF_LOAD",
    "BPF_BTF_GET_FD_BY_ID", "BPF_LINK_CREATE", "BPF_LINK_GET_FD_BY_ID",
    "BPF_ENABLE_STATS", "BPF_ITER_CREATE", "BPF_TOKEN_CREATE"})
_GET_NEXT_ID = {"BPF_PROG_GET_NEXT_ID", "BPF_MAP_GET_NEXT_ID", "BPF_BTF_GET_NEXT_ID",
                "BPF_LINK_GET_NEXT_ID"}
ERRNOS = [errno.EPERM, errno.EINVAL, errno.ENOMEM, errno.E2BIG, errno.EACCES,
          errno.ENOENT, errno.EBADF, errno.EFAULT, errno.ENOSPC, errno.EEXIST,
          errno.EOPNOTSUPP]


PAGE = os.sysconf("SC_PAGE_SIZE")


def _pages(length: int) -> int:
    return (length + PAGE - 1) // PAGE * PAGE


@dataclass
class OpenFd:
    kind: str  # map, prog, btf, link, iter, perf_event, socket, ...
    map_type: int = -1
    value_size: int = 0


@dataclass
class FakeKernel:
    rng: random.Random
    failure_rate: float = 0.0
    open_fds: dict[int, OpenFd] = field(default_factory=dict)
    mappings: dict[int, int] = field(default_factory=dict)  # address -> length
    violations: list[str] = field(default_factory=list)
    calls: list[tuple[int, tuple[int, ...]]] = field(default_factory=list)
    handed_out: set[int] = field(default_factory=set)
    _next_fd: int = 20000
    _next_address: int = 0x7E0000000000

    # ------------------------------------------------------------ bookkeeping

    def _fresh_fd(self, kind: str, **facts: int) -> int:
        while os.path.exists(f"/proc/self/fd/{self._next_fd}"):
            self._next_fd += 1  # an fd this process really has: not one to hand out
        fd = self._next_fd
        self._next_fd += 1
        self.open_fds[fd] = OpenFd(kind, **facts)
        self.handed_out.add(fd)
        return fd

    def _violation(self, text: str) -> tuple[int, int]:
        self.violations.append(text)
        return -1, errno.EPERM

    def _ours(self, fd: int, what: str, *kinds: str) -> bool:
        fd = struct.unpack("<i", struct.pack("<I", fd & 0xFFFFFFFF))[0]
        entry = self.open_fds.get(fd)
        if entry is None:
            state = "closed before" if fd in self.handed_out else "never handed out"
            self.violations.append(f"{what}: fd {fd} ({state})")
            return False
        if kinds and entry.kind not in kinds and not (
                entry.kind == PINNED and {"map", "prog", "btf", "link"} & set(kinds)):
            self.violations.append(f"{what}: fd {fd} is a {entry.kind}, not {kinds}")
            return False
        return True

    def _fails(self) -> int:
        if self.failure_rate and self.rng.random() < self.failure_rate:
            return self.rng.choice(ERRNOS)
        return 0

    # ------------------------------------------------------------ the calls

    def __call__(self, number: int, args: tuple[int, ...]) -> tuple[int, int]:
        self.calls.append((number, args))
        if number == nr.BPF:
            return self._bpf(args)
        if number == nr.PERF_EVENT_OPEN:
            if args[4] & PERF_FLAG_PID_CGROUP:
                return self._violation("perf_event_open with a cgroup fd as pid")
            group = struct.unpack("<i", struct.pack("<I", args[3] & 0xFFFFFFFF))[0]
            if group >= 0 and not self._ours(group, "perf_event_open group_fd"):
                return -1, errno.EBADF
            err = self._fails()
            return (-1, err) if err else (self._fresh_fd("perf_event"), 0)
        if number == nr.IOCTL:
            request = args[1] & 0xFFFFFFFF
            if request not in PERF_IOCTLS:
                return self._violation(f"ioctl {request:#x} is not a perf ioctl without "
                                       "a pointer")
            if not self._ours(args[0], f"ioctl {PERF_IOCTLS[request]}"):
                return -1, errno.EBADF
            if PERF_IOCTLS[request] == "SET_BPF" and not self._ours(
                    args[2], "PERF_EVENT_IOC_SET_BPF argument"):
                return -1, errno.EBADF
            if PERF_IOCTLS[request] == "SET_OUTPUT" and args[2] & 0xFFFFFFFF != 0xFFFFFFFF \
                    and not self._ours(args[2], "PERF_EVENT_IOC_SET_OUTPUT"):
                return -1, errno.EBADF
            err = self._fails()
            return (-1, err) if err else (0, 0)
        if number == nr.MMAP:
            return self._mmap(args)
        if number == nr.MUNMAP:
            return self._munmap(args)
        if number == nr.CLOSE:
            if not self._ours(args[0], "close"):
                return -1, errno.EBADF
            del self.open_fds[args[0] & 0xFFFFFFFF]
            return 0, 0
        if number == nr.DUP:
            if not self._ours(args[0], "dup"):
                return -1, errno.EBADF
            err = self._fails()
            if err:
                return -1, err
            entry = self.open_fds[args[0] & 0xFFFFFFFF]
            return self._fresh_fd(entry.kind, map_type=entry.map_type,
                                  value_size=entry.value_size), 0
        if number == SOCKET:
            if (args[0], args[1], args[2]) != (AF_PACKET, SOCK_RAW | SOCK_CLOEXEC,
                                               ETH_P_ALL_BE):
                return self._violation(f"socket{args[:3]} is not the packet socket for "
                                       "SO_ATTACH_BPF")
            err = self._fails()
            return (-1, err) if err else (self._fresh_fd("socket"), 0)
        if number == BIND:
            if not self._ours(args[0], "bind", "socket"):
                return -1, errno.EBADF
            return 0, 0
        if number == nr.SETSOCKOPT:
            return self._setsockopt(args)
        return self._violation(f"syscall {number} is not one replay may issue")

    def _bpf(self, args: tuple[int, ...]) -> tuple[int, int]:
        cmd, address, size = args[0] & 0xFFFFFFFF, args[1], args[2] & 0xFFFFFFFF
        base = cmd & ~BPF_COMMON_ATTRS
        name = cmd_name(base)
        if name is None:
            return self._violation(f"bpf() command {cmd} that no uapi knows")
        attr = ctypes.string_at(address, min(size, 4096)) if address and size else b""
        for vf in attr_view(base, attr) or ():
            if vf.spec.role != FD or vf.field.size != 4 or vf.field.end > len(attr):
                continue
            if vf.field.name in NOT_READ.get(name, ()):
                continue
            value = struct.unpack_from("<i", attr, vf.field.offset)[0]
            if value < 0 or (value == 0 and vf.field.name in OPTIONAL_FDS):
                continue
            if not self._ours(value, f"{name} {vf.field.name}"):
                return -1, errno.EBADF
        layout = attr_layout(base)
        fields = {f.name: f for f in layout.fields} if layout is not None else {}

        def read(name: str) -> int:
            f = fields.get(name)
            if f is None or f.end > len(attr):
                return 0
            return int.from_bytes(attr[f.offset:f.end], "little")

        if name == "BPF_PROG_LOAD" and read("insns") and read("insn_cnt"):
            if not self._check_insns(ctypes.string_at(read("insns"), 8 * read("insn_cnt"))):
                return -1, errno.EBADF
        if name == "BPF_MAP_UPDATE_ELEM" and read("value"):
            entry = self.open_fds.get(read("map_fd"))
            if entry is not None and entry.map_type in FOREIGN_FD_VALUE_MAPS:
                return self._violation(f"an fd of a socket or cgroup written into map type "
                                       f"{entry.map_type}")
            if entry is not None and entry.map_type in BPF_FD_VALUE_MAPS \
                    and entry.value_size >= 4:
                value = struct.unpack("<i", ctypes.string_at(read("value"), 4))[0]
                if not self._ours(value, "a map value that is an fd"):
                    return -1, errno.EBADF
        err = self._fails()
        if err:
            return -1, err
        if name in _GET_NEXT_ID:
            # a kernel with one object of each kind, id 1
            start = read("start_id")
            if start >= 1:
                return -1, errno.ENOENT
            f = fields["next_id"]
            ctypes.memmove(address + f.offset, struct.pack("<I", 1), 4)
            return 0, 0
        if name in FD_CREATING_COMMANDS:
            if name == "BPF_MAP_CREATE":
                return self._fresh_fd("map", map_type=read("map_type"),
                                      value_size=read("value_size")), 0
            return self._fresh_fd(_KIND.get(name, "fd")), 0
        return 0, 0

    def _check_insns(self, insns: bytes) -> bool:
        i = 0
        while i + 16 <= len(insns):
            if insns[i] != LD_IMM64:
                i += 8
                continue
            src = insns[i + 1] >> 4
            if src in (PSEUDO_MAP_FD, PSEUDO_MAP_VALUE):
                fd = struct.unpack_from("<i", insns, i + 4)[0]
                # a negative fd names nothing (the kernel answers EBADF)
                if fd >= 0 and not self._ours(fd, f"insns[{i // 8}] map fd"):
                    return False
            elif src == PSEUDO_BTF_ID:
                fd = struct.unpack_from("<i", insns, i + 12)[0]
                if fd > 0 and not self._ours(fd, f"insns[{i // 8 + 1}] BTF fd"):
                    return False
            i += 16
        return True

    def _mmap(self, args: tuple[int, ...]) -> tuple[int, int]:
        address, length, _prot, flags, fd, _offset = args
        if flags & (MAP_FIXED | MAP_FIXED_NOREPLACE | MAP_ANONYMOUS) or address:
            return self._violation(f"mmap at {address:#x} flags {flags:#x}: not a mapping "
                                   "of an fd where the kernel chooses")
        if not self._ours(fd, "mmap"):
            return -1, errno.EBADF
        err = self._fails()
        if err or not length or length > 1 << 40:
            return -1, err or errno.EINVAL
        address = self._next_address
        self._next_address += (length + 0xFFFFF) & ~0xFFFFF
        self.mappings[address] = _pages(length)
        return address, 0

    def _munmap(self, args: tuple[int, ...]) -> tuple[int, int]:
        """As the kernel: page-aligned address, the length rounded up to pages; any page
        of the range that is not of a mapping handed out is memory of someone else."""
        address, length = args[0], _pages(args[1])
        if address % PAGE or not length:
            return -1, errno.EINVAL
        for start, size in list(self.mappings.items()):
            if start <= address < start + size:
                if address + length > start + size:
                    return self._violation(f"munmap of {length} bytes at {address:#x} goes "
                                           f"past the mapping of {size} at {start:#x}")
                del self.mappings[start]
                if address > start:
                    self.mappings[start] = address - start
                if address + length < start + size:
                    self.mappings[address + length] = start + size - address - length
                return 0, 0
        return self._violation(f"munmap at {address:#x}: not a mapping handed out")

    def _setsockopt(self, args: tuple[int, ...]) -> tuple[int, int]:
        fd, level, option, value, length = args[:5]
        if (level, option) not in ((nr.SOL_SOCKET, nr.SO_ATTACH_BPF),
                                   (nr.SOL_SOCKET, nr.SO_ATTACH_FILTER),
                                   (nr.SOL_SOCKET, nr.SO_DETACH_BPF)):
            return self._violation(f"setsockopt level {level} option {option}")
        if not self._ours(fd, "setsockopt", "socket"):
            return -1, errno.EBADF
        if option == nr.SO_ATTACH_BPF:
            if length < 4 or not value:
                return -1, errno.EINVAL
            prog = struct.unpack("<i", ctypes.string_at(value, 4))[0]
            if not self._ours(prog, "SO_ATTACH_BPF program"):
                return -1, errno.EBADF
        err = self._fails()
        return (-1, err) if err else (0, 0)
