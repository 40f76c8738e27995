"""The recording's fds, ids and pid inside a bpf() call, made ours.

fds are where parity.md's rule 1 finds them: the attr fields the union member of this
call holds as fds (decode/attrs.py's view), the map fds of ld_imm64 instructions
(``BPF_PSEUDO_MAP_FD``/``_VALUE``) and the module-BTF fd of a ``BPF_PSEUDO_BTF_ID``
load (its second instruction's imm), the slots of fd_array, and the values written
into maps that hold fds. Every fd must be one the trace made (NotReproducible
otherwise: the replay touches no fd it did not make); ids of objects the trace made
become our objects' ids; aligned 4-byte copies of the recording process's pid in map
values become ours (parity.md's rule 3; reference_globals.py takes the pid the same
way), unless ``--exact``.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from bpfreplay.decode.attr_fields import FD
from bpfreplay.replaying.errors import NotReproducible
from bpfreplay.uapi import enum_values
from bpfreplay.uapi.fds import LD_IMM64, PSEUDO_MAP_FD, PSEUDO_MAP_VALUE
from bpfreplay.uapi.layout import Field

PSEUDO_BTF_ID = 3
# fd fields where 0 means "none" (libbpf leaves them 0 when unused), per their uapi
# comments; in every other fd field fd 0 would be a real fd (ours: stdin).
OPTIONAL_FDS = frozenset({
    "btf_fd", "inner_map_fd", "value_type_btf_obj_fd", "map_token_fd", "prog_btf_fd",
    "attach_prog_fd", "attach_btf_obj_fd", "prog_token_fd", "btf_token_fd",
    "fd_by_id_token_fd", "replace_bpf_fd", "relative_fd", "tcx.relative_fd",
    "netkit.relative_fd", "cgroup.relative_fd", "path_fd", "old_prog_fd",
    "uprobe_multi.path_fd", "attach_bpf_fd"})

# fd fields of the union member that a command does not read (BPF_OBJ_GET refuses a
# non-zero bpf_fd: kernel/bpf/syscall.c bpf_obj_get()).
NOT_READ = {"BPF_OBJ_GET": frozenset({"bpf_fd"})}

# Link kinds whose attach the kernel makes without target_fd (bpf_kprobe_multi_link_attach,
# bpf_uprobe_multi_link_attach): libbpf passes 0 there (bpf_link_create(prog_fd, 0, ...)
# in bpf_program__attach_kprobe_multi_opts()), which is not the recording's stdin.
_TARGET_FD_NOT_READ = frozenset(
    enum_values("bpf_attach_type").get(n, -1) for n in (
        "BPF_TRACE_KPROBE_MULTI", "BPF_TRACE_KPROBE_SESSION", "BPF_TRACE_UPROBE_MULTI",
        "BPF_TRACE_UPROBE_SESSION"))

_MAP_TYPES = enum_values("bpf_map_type")


def _map_types(*names: str) -> frozenset[int]:
    return frozenset(_MAP_TYPES.get("BPF_MAP_TYPE_" + n, -1) for n in names)


# Maps whose values user space writes as fds of BPF objects the trace makes ...
BPF_FD_VALUE_MAPS = _map_types("ARRAY_OF_MAPS", "HASH_OF_MAPS", "PROG_ARRAY",
                               "PERF_EVENT_ARRAY")
# ... and of objects no trace makes (cgroups, sockets).
OTHER_FD_VALUE_MAPS = _map_types("CGROUP_ARRAY", "SOCKMAP", "SOCKHASH", "XSKMAP",
                                 "REUSEPORT_SOCKARRAY")
STRUCT_OPS = _map_types("STRUCT_OPS")

# Resolves (what, recorded fd) to our fd, raising NotReproducible/NeedsCall.
Resolve = Callable[[str, int], int]


def s32(value: int) -> int:
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value >= 1 << 31 else value


def read_at(data: bytes | bytearray, f: Field) -> int:
    if f.end > len(data):
        return 0
    return int.from_bytes(data[f.offset:f.end], "little")


def write_at(data: bytearray, f: Field, value: int) -> None:
    data[f.offset:f.end] = (value & ((1 << (8 * f.size)) - 1)).to_bytes(f.size, "little")


def remap_attr_fds(cmd: int, data: bytearray, resolve: Resolve) -> None:
    """Every fd field of the union member this call means (decode/attrs.py's view)."""
    from bpfreplay.decode.attrs import attr_view
    from bpfreplay.uapi import cmd_name

    name = cmd_name(cmd) or ""
    not_read = NOT_READ.get(name, frozenset())
    if name == "BPF_LINK_CREATE" and len(data) >= 12 and \
            int.from_bytes(data[8:12], "little") in _TARGET_FD_NOT_READ:
        not_read = not_read | {"target_fd"}
    for vf in attr_view(cmd, bytes(data)) or ():
        f = vf.field
        if vf.spec.role != FD or f.end > len(data) or f.size != 4 or f.name in not_read:
            continue
        value = s32(read_at(data, f))
        if value < 0 or (value == 0 and f.name in OPTIONAL_FDS):
            continue  # not an fd (-1, AT_FDCWD), or "none"
        write_at(data, f, resolve(f.name, value))


def remap_insns(insns: bytes, resolve: Resolve) -> bytes:
    """Map fds in ld_imm64 (PSEUDO_MAP_FD, PSEUDO_MAP_VALUE) and the module-BTF fd of
    PSEUDO_BTF_ID (insn[1].imm; 0 is vmlinux) made ours."""
    out = bytearray(insns[:len(insns) - len(insns) % 8])
    i = 0
    while i + 8 <= len(out):
        code, regs = out[i], out[i + 1]
        if code == LD_IMM64 and i + 16 <= len(out):
            src = regs >> 4
            at = None
            if src in (PSEUDO_MAP_FD, PSEUDO_MAP_VALUE):
                at = i + 4
            elif src == PSEUDO_BTF_ID and struct.unpack_from("<i", out, i + 12)[0] > 0:
                at = i + 12
            if at is not None:
                fd = struct.unpack_from("<i", out, at)[0]
                if fd >= 0:
                    struct.pack_into("<i", out, at, resolve(f"insns[{i // 8}]", fd))
            i += 16
            continue
        i += 8
    return bytes(out) + insns[len(out):]


def remap_fd_array(fd_array: bytes, resolve: Resolve) -> bytes:
    out = bytearray(fd_array)
    for i in range(0, len(out) - len(out) % 4, 4):
        fd = struct.unpack_from("<i", out, i)[0]
        if fd > 0:
            struct.pack_into("<i", out, i, resolve(f"fd_array[{i // 4}]", fd))
    return bytes(out)


def remap_fd_values(values: bytes, value_size: int, map_type: int, resolve: Resolve,
                    ) -> bytes:
    """Values written into a map that holds fds: each value's fd made ours."""
    if map_type in STRUCT_OPS:
        raise NotReproducible("a struct_ops value holds program fds at offsets only the "
                              "kernel's BTF of the struct says")
    if map_type in OTHER_FD_VALUE_MAPS:
        raise NotReproducible("the value is the fd of a socket or cgroup the recorded "
                              "program opened itself")
    if map_type not in BPF_FD_VALUE_MAPS or value_size < 4:
        return values
    out = bytearray(values)
    for i in range(0, len(out) - value_size + 1, value_size):
        fd = struct.unpack_from("<i", out, i)[0]
        if fd >= 0:
            struct.pack_into("<i", out, i, resolve("value", fd))
    return bytes(out)


def replace_pid(data: bytes, recorded: int, ours: int) -> tuple[bytes, int]:
    """Each aligned 4-byte copy of ``recorded`` made ``ours``; how many there were."""
    if recorded <= 0 or recorded == ours:
        return data, 0
    needle, mine = struct.pack("<I", recorded), struct.pack("<I", ours)
    out = bytearray(data)
    count = 0
    for i in range(0, len(out) - 3, 4):
        if out[i:i + 4] == needle:
            out[i:i + 4] = mine
            count += 1
    return bytes(out), count
