"""libbpf's low-level calls (its bpf.c) as libbpf 1.1.2 makes them: the same attr sizes,
the same fields set, the same retries. Every syscall goes through ``bpfreplay.sys``.

Sizes are ``offsetofend(union bpf_attr, <last field libbpf 1.1.2 knows>)``: the kernel
accepts any size up to its own, and parity means passing the same one.
"""

from __future__ import annotations

import errno as errno_codes
import struct
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from bpfreplay import sys as bsys
from bpfreplay.uapi import attr_layout, cmd_value
from bpfreplay.uapi.layout import Field

if TYPE_CHECKING:
    from bpfreplay.loader.features import Features

BPF_MAP_CREATE = cmd_value("BPF_MAP_CREATE")
BPF_MAP_UPDATE_ELEM = cmd_value("BPF_MAP_UPDATE_ELEM")
BPF_MAP_FREEZE = cmd_value("BPF_MAP_FREEZE")
BPF_MAP_LOOKUP_ELEM = cmd_value("BPF_MAP_LOOKUP_ELEM")
BPF_MAP_DELETE_ELEM = cmd_value("BPF_MAP_DELETE_ELEM")
BPF_MAP_GET_NEXT_KEY = cmd_value("BPF_MAP_GET_NEXT_KEY")
BPF_PROG_LOAD = cmd_value("BPF_PROG_LOAD")
BPF_BTF_LOAD = cmd_value("BPF_BTF_LOAD")
BPF_LINK_CREATE = cmd_value("BPF_LINK_CREATE")
BPF_PROG_BIND_MAP = cmd_value("BPF_PROG_BIND_MAP")
BPF_RAW_TRACEPOINT_OPEN = cmd_value("BPF_RAW_TRACEPOINT_OPEN")


def _offsetofend(cmd: int, field_name: str) -> int:
    layout = attr_layout(cmd)
    assert layout is not None
    f = layout.field(field_name)
    assert f is not None, field_name
    return f.end


MAP_CREATE_SIZE = _offsetofend(BPF_MAP_CREATE, "map_extra")  # 72
MAP_ELEM_SIZE = _offsetofend(BPF_MAP_UPDATE_ELEM, "flags")  # 32
MAP_FREEZE_SIZE = _offsetofend(BPF_MAP_FREEZE, "map_fd")  # 4
MAP_NEXT_KEY_SIZE = _offsetofend(BPF_MAP_GET_NEXT_KEY, "next_key")  # 24
PROG_LOAD_SIZE = _offsetofend(BPF_PROG_LOAD, "fd_array")  # 128
PROG_NAME_PROBE_SIZE = _offsetofend(BPF_PROG_LOAD, "prog_name")  # 64
MEMCG_PROBE_SIZE = _offsetofend(BPF_PROG_LOAD, "attach_btf_obj_fd")  # 116
BTF_LOAD_SIZE = _offsetofend(BPF_BTF_LOAD, "btf_log_level")  # 28
PROG_BIND_MAP_SIZE = _offsetofend(BPF_PROG_BIND_MAP, "flags")  # 12
# sizeof(raw_tracepoint) in libbpf 1.1.2's uapi: {u64 name; u32 prog_fd}, padded to 16.
RAW_TRACEPOINT_OPEN_SIZE = 16
# sizeof(link_create) in libbpf 1.1.2's uapi: its largest union member then was
# kprobe_multi (flags, cnt, syms, addrs, cookies), ending at 48.
LINK_CREATE_SIZE = 48

PROG_LOAD_ATTEMPTS = 5  # libbpf retries PROG_LOAD on EAGAIN
BPF_LOG_BUF_SIZE = 0xFFFFFFFF >> 8  # libbpf's first own log buffer (16 MiB)
BPF_OBJ_NAME_LEN = 16


_FIELDS: dict[int, dict[str, Field]] = {}


def _fields(cmd: int) -> dict[str, Field]:
    fields = _FIELDS.get(cmd)
    if fields is None:
        layout = attr_layout(cmd)
        assert layout is not None
        fields = _FIELDS[cmd] = {}
        for f in layout.fields:
            fields.setdefault(f.name, f)
    return fields


_PACKERS = {size: struct.Struct(fmt).pack_into
            for size, fmt in ((1, "<B"), (2, "<H"), (4, "<I"), (8, "<Q"))}
_MASKS = {size: (1 << (8 * size)) - 1 for size in _PACKERS}


class Attr:
    """A ``union bpf_attr`` of ``size`` bytes for ``cmd``, filled field by field."""

    def __init__(self, cmd: int, size: int):
        self.cmd = cmd
        self.fields = _fields(cmd)
        self.data = bytearray(size)

    def set(self, name: str, value: int | bytes) -> Attr:
        f = self.fields[name]
        if isinstance(value, bytes):
            self.data[f.offset:f.end] = value[: f.size].ljust(f.size, b"\0")
        else:
            packer = _PACKERS.get(f.size)
            if packer is not None:  # (the common case, without building bytes)
                packer(self.data, f.offset, value & _MASKS[f.size])
            else:
                self.data[f.offset:f.end] = (value & ((1 << (8 * f.size)) - 1)).to_bytes(
                    f.size, "little")
        return self

    def get(self, name: str) -> int:
        f = self.fields[name]
        return int.from_bytes(self.data[f.offset:f.end], "little")

    def call(self) -> int:
        return bsys.bpf(self.cmd, self.data)


def object_name(name: str) -> bytes:
    """libbpf_strlcpy into a 16-byte name field: at most 15 bytes and a NUL."""
    return name.encode()[: BPF_OBJ_NAME_LEN - 1]


@dataclass
class ProgLoad:
    """What libbpf's bpf_prog_load() takes: program type, name, license, instructions
    and the options libbpf 1.1.2 passes."""

    prog_type: int
    insns: bytes
    license: str = "GPL"
    name: str | None = None
    expected_attach_type: int = 0
    prog_btf_fd: int = 0
    prog_flags: int = 0
    prog_ifindex: int = 0
    kern_version: int = 0
    attach_btf_id: int = 0
    attach_prog_fd: int = 0
    attach_btf_obj_fd: int = 0
    func_info: bytes = b""
    func_info_rec_size: int = 0
    func_info_cnt: int = 0
    line_info: bytes = b""
    line_info_rec_size: int = 0
    line_info_cnt: int = 0
    fd_array: bytes = b""
    log_level: int = 0
    log_size: int = 0
    keep: bsys.Buffers = field(default_factory=bsys.Buffers)


def prog_load(p: ProgLoad, *, features: Features, log_buf: int = 0) -> int:
    """bpf_prog_load(): one PROG_LOAD of 128 bytes (retried on EAGAIN), and, when the
    caller passed a log buffer with log_level 0, one more with log_level 1 on failure.
    Like libbpf, it bumps the memlock limit first and asks whether names are supported
    only when there is a name to give."""
    features.bump_memlock()
    keep = p.keep
    attr = Attr(BPF_PROG_LOAD, PROG_LOAD_SIZE)
    attr.set("prog_type", p.prog_type)
    attr.set("expected_attach_type", p.expected_attach_type)
    attr.set("prog_btf_fd", p.prog_btf_fd)
    attr.set("prog_flags", p.prog_flags)
    attr.set("prog_ifindex", p.prog_ifindex)
    attr.set("kern_version", p.kern_version)
    if p.name and features.supports("prog_name"):
        attr.set("prog_name", object_name(p.name))
    attr.set("license", keep.cstring_at(p.license))
    attr.set("insns", keep.bytes_at(p.insns))
    attr.set("insn_cnt", len(p.insns) // 8)
    attr.set("attach_btf_id", p.attach_btf_id)
    attr.set("attach_prog_fd", p.attach_prog_fd or p.attach_btf_obj_fd)
    attr.set("func_info_rec_size", p.func_info_rec_size)
    attr.set("func_info", keep.bytes_at(p.func_info))
    attr.set("func_info_cnt", p.func_info_cnt)
    attr.set("line_info_rec_size", p.line_info_rec_size)
    attr.set("line_info", keep.bytes_at(p.line_info))
    attr.set("line_info_cnt", p.line_info_cnt)
    attr.set("fd_array", keep.bytes_at(p.fd_array))
    if p.log_level:
        attr.set("log_buf", log_buf)
        attr.set("log_size", p.log_size)
        attr.set("log_level", p.log_level)
    try:
        return _prog_load_attempts(attr)
    except OSError:
        if p.log_level == 0 and log_buf:
            attr.set("log_buf", log_buf).set("log_size", p.log_size).set("log_level", 1)
            return _prog_load_attempts(attr)
        raise


def _prog_load_attempts(attr: Attr, attempts: int = PROG_LOAD_ATTEMPTS) -> int:
    while True:
        try:
            return attr.call()
        except OSError as e:
            attempts -= 1
            if e.errno != errno_codes.EAGAIN or attempts <= 0:
                raise


def raw_prog_load(attr: Attr) -> int:
    """sys_bpf_prog_load() on an attr built by the caller (libbpf's name probe)."""
    return _prog_load_attempts(attr)


def map_create(map_type: int, name: str | None, key_size: int, value_size: int,
               max_entries: int, *, features: Features, map_flags: int = 0,
               btf_fd: int = 0, btf_key_type_id: int = 0, btf_value_type_id: int = 0,
               btf_vmlinux_value_type_id: int = 0, inner_map_fd: int = 0,
               map_extra: int = 0, numa_node: int = 0, map_ifindex: int = 0) -> int:
    """bpf_map_create()."""
    features.bump_memlock()
    attr = Attr(BPF_MAP_CREATE, MAP_CREATE_SIZE)
    attr.set("map_type", map_type)
    if name and features.supports("prog_name"):
        attr.set("map_name", object_name(name))
    attr.set("key_size", key_size).set("value_size", value_size)
    attr.set("max_entries", max_entries)
    attr.set("btf_fd", btf_fd).set("btf_key_type_id", btf_key_type_id)
    attr.set("btf_value_type_id", btf_value_type_id)
    attr.set("btf_vmlinux_value_type_id", btf_vmlinux_value_type_id)
    attr.set("inner_map_fd", inner_map_fd).set("map_flags", map_flags)
    attr.set("map_extra", map_extra).set("numa_node", numa_node)
    attr.set("map_ifindex", map_ifindex)
    return attr.call()


def map_update_elem(fd: int, key: bytes, value: bytes, flags: int = 0) -> None:
    keep = bsys.Buffers()
    attr = Attr(BPF_MAP_UPDATE_ELEM, MAP_ELEM_SIZE)
    attr.set("map_fd", fd).set("key", keep.bytes_at(key))
    attr.set("value", keep.bytes_at(value)).set("flags", flags)
    attr.call()


def map_update_elem_at(fd: int, key: bytes, value_address: int, flags: int = 0) -> None:
    """MAP_UPDATE_ELEM whose value is memory the caller owns (a data map's image)."""
    keep = bsys.Buffers()
    attr = Attr(BPF_MAP_UPDATE_ELEM, MAP_ELEM_SIZE)
    attr.set("map_fd", fd).set("key", keep.bytes_at(key))
    attr.set("value", value_address).set("flags", flags)
    attr.call()


def map_lookup_elem(fd: int, key: bytes, value_size: int, flags: int = 0) -> bytes:
    """bpf_map_lookup_elem[_flags](): the value (``value_size`` bytes: per-CPU maps
    give one 8-byte-aligned slot per possible CPU); OSError ENOENT when absent."""
    keep = bsys.Buffers()
    address, out = keep.zeroed(value_size)
    attr = Attr(BPF_MAP_LOOKUP_ELEM, MAP_ELEM_SIZE)
    attr.set("map_fd", fd).set("key", keep.bytes_at(key))
    attr.set("value", address).set("flags", flags)
    attr.call()
    return out.raw[:value_size]


def map_delete_elem(fd: int, key: bytes) -> None:
    """bpf_map_delete_elem(): libbpf 1.1.2 passes offsetofend(flags) bytes here too."""
    keep = bsys.Buffers()
    Attr(BPF_MAP_DELETE_ELEM, MAP_ELEM_SIZE).set("map_fd", fd) \
        .set("key", keep.bytes_at(key)).call()


def map_get_next_key(fd: int, key: bytes | None, key_size: int) -> bytes | None:
    """bpf_map_get_next_key(): the key after ``key`` (None: the first), None at the end
    (ENOENT)."""
    keep = bsys.Buffers()
    address, out = keep.zeroed(key_size)
    attr = Attr(BPF_MAP_GET_NEXT_KEY, MAP_NEXT_KEY_SIZE).set("map_fd", fd)
    attr.set("key", keep.bytes_at(key) if key is not None else 0).set("next_key", address)
    try:
        attr.call()
    except OSError as e:
        if e.errno == errno_codes.ENOENT:
            return None
        raise
    return out.raw[:key_size]


def map_freeze(fd: int) -> None:
    Attr(BPF_MAP_FREEZE, MAP_FREEZE_SIZE).set("map_fd", fd).call()


def btf_load(blob: bytes, *, features: Features, log_buf: int = 0, log_size: int = 0,
             log_level: int = 0) -> int:
    """bpf_btf_load()."""
    features.bump_memlock()
    keep = bsys.Buffers()
    attr = Attr(BPF_BTF_LOAD, BTF_LOAD_SIZE)
    attr.set("btf", keep.bytes_at(blob)).set("btf_size", len(blob))
    if log_level:
        attr.set("btf_log_buf", log_buf).set("btf_log_size", log_size)
        attr.set("btf_log_level", log_level)
    try:
        return attr.call()
    except OSError:
        if log_buf and log_level == 0:
            attr.set("btf_log_buf", log_buf).set("btf_log_size", log_size)
            attr.set("btf_log_level", 1)
            return attr.call()
        raise


BTF_MAGIC, BTF_VERSION, BTF_HEADER_SIZE = 0xEB9F, 1, 24


def raw_btf(types: bytes, strings: bytes) -> bytes:
    """A BTF blob as libbpf__load_raw_btf() lays it out: header, types, strings."""
    header = struct.pack("<HBBIIIII", BTF_MAGIC, BTF_VERSION, 0, BTF_HEADER_SIZE, 0,
                         len(types), len(types), len(strings))
    return header + types + strings


def link_create(prog_fd: int, target_fd: int, attach_type: int, *, flags: int = 0,
                bpf_cookie: int = 0, iter_info: int = 0, iter_info_len: int = 0) -> int:
    """bpf_link_create() for the perf_event form, the iterator form (iter_info: the
    address of a union bpf_iter_link_info, 0 when the caller gave none, as libbpf's
    auto-attach does) and the plain ones."""
    attr = Attr(BPF_LINK_CREATE, LINK_CREATE_SIZE)
    attr.set("prog_fd", prog_fd).set("target_fd", target_fd)
    attr.set("attach_type", attach_type).set("flags", flags)
    if bpf_cookie:
        attr.set("perf_event.bpf_cookie", bpf_cookie)
    if iter_info or iter_info_len:
        attr.set("iter_info", iter_info).set("iter_info_len", iter_info_len)
    return attr.call()


BPF_ITER_CREATE = cmd_value("BPF_ITER_CREATE")
ITER_CREATE_SIZE = _offsetofend(BPF_ITER_CREATE, "flags")  # 8


def iter_create(link_fd: int) -> int:
    """bpf_iter_create(): a new fd reading the iterator behind ``link_fd``."""
    return Attr(BPF_ITER_CREATE, ITER_CREATE_SIZE).set("link_fd", link_fd).call()


def prog_bind_map(prog_fd: int, map_fd: int, flags: int = 0) -> None:
    attr = Attr(BPF_PROG_BIND_MAP, PROG_BIND_MAP_SIZE)
    attr.set("prog_fd", prog_fd).set("map_fd", map_fd).set("flags", flags)
    attr.call()


def raw_tracepoint_open(name: str | None, prog_fd: int) -> int:
    keep = bsys.Buffers()
    attr = Attr(BPF_RAW_TRACEPOINT_OPEN, RAW_TRACEPOINT_OPEN_SIZE)
    attr.set("name", keep.cstring_at(name) if name else 0).set("prog_fd", prog_fd)
    return attr.call()


BPF_BTF_GET_NEXT_ID = cmd_value("BPF_BTF_GET_NEXT_ID")
BPF_BTF_GET_FD_BY_ID = cmd_value("BPF_BTF_GET_FD_BY_ID")
BPF_OBJ_GET_INFO_BY_FD = cmd_value("BPF_OBJ_GET_INFO_BY_FD")
GET_ID_SIZE = _offsetofend(BPF_BTF_GET_NEXT_ID, "open_flags")  # 12
INFO_SIZE = 16  # offsetofend(union bpf_attr, info)
# sizeof(struct bpf_btf_info) in libbpf 1.1.2's uapi: btf, btf_size, id, name, name_len,
# kernel_btf.
BTF_INFO_SIZE = 32


def btf_get_next_id(start_id: int) -> int:
    """bpf_btf_get_next_id(); OSError(ENOENT) after the last."""
    attr = Attr(BPF_BTF_GET_NEXT_ID, GET_ID_SIZE).set("start_id", start_id)
    attr.call()
    return attr.get("next_id")


def btf_get_fd_by_id(btf_id: int) -> int:
    return Attr(BPF_BTF_GET_FD_BY_ID, GET_ID_SIZE).set("btf_id", btf_id).call()


def obj_info(fd: int, info: bytearray, keep: bsys.Buffers) -> None:
    """bpf_obj_get_info_by_fd(): the kernel fills ``info`` (its length is info_len)."""
    attr = Attr(BPF_OBJ_GET_INFO_BY_FD, INFO_SIZE)
    attr.set("bpf_fd", fd).set("info_len", len(info)).set("info", keep.address_of(info))
    attr.call()


def btf_info(fd: int, name_len: int) -> tuple[bytes, str]:
    """bpf_obj_get_info_by_fd() of a BTF object asking for its name: (info, name)."""
    keep = bsys.Buffers()
    name_address, name_buf = keep.zeroed(name_len)
    info = bytearray(BTF_INFO_SIZE)
    struct.pack_into("<QI", info, 16, name_address, name_len)
    obj_info(fd, info, keep)
    return bytes(info), name_buf.value.decode(errors="replace")


# btf_get_from_fd(): a first guess at the size of a BTF object's data.
BTF_DATA_GUESS = 4096


def btf_data(fd: int) -> bytes:
    """libbpf 1.1.2 btf_get_from_fd()'s queries: OBJ_GET_INFO_BY_FD with a 4 KiB buffer,
    and once more with a buffer of the size the kernel reported if that was larger."""
    size = BTF_DATA_GUESS
    for _ in range(2):
        keep = bsys.Buffers()
        address, buf = keep.zeroed(size)
        info = bytearray(BTF_INFO_SIZE)
        struct.pack_into("<QI", info, 0, address, size)
        obj_info(fd, info, keep)
        reported = struct.unpack_from("<I", info, 8)[0]
        if reported <= size:
            return bytes(buf.raw[:reported])
        size = reported
    raise OSError(errno_codes.E2BIG, "BTF object grew between two queries")
