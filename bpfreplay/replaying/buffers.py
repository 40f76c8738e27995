"""The memory a replayed bpf() attr points to: every input buffer from the payload the
recording captured, every output buffer zeroed at the size the recorded attr asks for
(uapi/pointers.py's table, the same one the recorder copied by).

A pointer the table does not know, or one whose bytes the recording could not read,
makes the call not reproducible: a recorded address is never passed on (it would name
memory of the recording process, which in ours is anything). The same holds for the
pointers inside an OBJ_GET_INFO_BY_FD info struct: each gets a zeroed buffer of the
length its own field gives, as the caller allocated it.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable

from bpfreplay import sys as bsys
from bpfreplay.replaying.errors import NotReproducible
from bpfreplay.replaying.remap import read_at, write_at
from bpfreplay.uapi import struct_layout
from bpfreplay.uapi.pointers import (
    IN,
    INFO_BUFFERS,
    INFO_STRUCTS,
    INOUT,
    OUT,
    STRING_ARRAYS,
    STRINGS,
    CompiledCommand,
    MapShape,
)

# Larger output buffers than this are refused rather than allocated (a verifier log of
# libbpf's largest retry is 16 MiB).
MAX_BUFFER = 64 << 20

# Inside the info structs: pointer -> (length field, element size or the field that
# holds it), as bpftool and libbpf size the buffers they pass (uapi/pointers.py's table).
_INFO_BUFFERS: dict[str, dict[str, tuple[str, int | str]]] = {
    struct: {b.pointer: (b.count, b.element) for b in buffers}
    for struct, buffers in INFO_BUFFERS.items() if struct != "bpf_link_info"}


def _allocate(keep: bsys.Buffers, content: bytes, length: int) -> int:
    """The address of a buffer of ``max(len(content), length)`` bytes (at least one, so
    that a non-NULL pointer stays non-NULL) holding ``content``."""
    size = max(len(content), length, 1)
    if size > MAX_BUFFER:
        raise NotReproducible(f"a buffer of {size} bytes (more than {MAX_BUFFER >> 20} MiB)")
    address, _ = keep.zeroed(size)
    if content:
        ctypes.memmove(address, content, len(content))
    return address


def info_with_buffers(info: bytes, kind: str, keep: bsys.Buffers) -> bytes:
    """An OBJ_GET_INFO_BY_FD input info struct with each of its non-NULL pointers made a
    zeroed buffer of ours of the length the struct asks for."""
    name = INFO_STRUCTS.get(kind)
    layout = struct_layout(name) if name else None
    out = bytearray(info)
    if layout is None:
        if any(info):
            raise NotReproducible(f"the info struct of a {kind or 'non-BPF'} fd is not "
                                  "known here (it may hold pointers)")
        return info
    fields = {f.name: f for f in layout.fields}
    table = _INFO_BUFFERS.get(name or "", {})
    if name == "bpf_link_info":
        if any(info[16:]):
            raise NotReproducible("a bpf_link_info asking for type-specific buffers")
        return info
    for pointer, (count_name, element) in table.items():
        f = fields.get(pointer)
        if f is None or not read_at(out, f):
            continue
        count = read_at(out, fields[count_name]) if count_name in fields else 0
        size = element if isinstance(element, int) else (
            read_at(out, fields[element]) if element in fields else 0)
        write_at(out, f, _allocate(keep, b"", count * size))
    return bytes(out)


def attach_buffers(compiled: CompiledCommand, data: bytearray, inputs: dict[str, bytes],
                   faults: dict[str, str], keep: bsys.Buffers,
                   shape_of: Callable[[int], MapShape | None], ncpus: int,
                   insns: bytes | None) -> set[str]:
    """Point each pointer field of ``data`` (already holding our fds) at our memory: the
    recorded payload of an input (``inputs``: already remapped), a zeroed buffer of the
    asked size for an output. Returns the pointer fields it set."""
    values = compiled.reader.unpack(bytes(data))
    done: set[str] = set()
    for b in compiled.at_entry + compiled.at_exit:
        if b.field in done:
            continue
        done.add(b.field)
        address = values[b.pointer_index]
        if address == 0 or b.pointer.end > len(data):
            continue
        if b.when is not None and values[b.when[0]] not in b.when[1]:
            continue  # the bytes are another union member's here
        if b.field in faults:
            raise NotReproducible(f"the recording could not read {b.field} "
                                  f"({faults[b.field]})")
        length = b.length_of(values, shape_of, ncpus, insns)
        if b.field in STRING_ARRAYS:
            write_at(data, b.pointer, _string_array(keep, b.field, inputs, faults, length))
            continue
        content = b""
        if b.direction in (IN, INOUT):
            content = inputs.get(b.field, b"")
            if length is None:  # a NUL-terminated string
                content += b"\0"
        elif b.direction == OUT and length is None:
            raise NotReproducible(f"{b.field}: an output of unknown size")
        write_at(data, b.pointer, _allocate(keep, content, length or 0))
    return done


def _string_array(keep: bsys.Buffers, name: str, inputs: dict[str, bytes],
                  faults: dict[str, str], length: int | None) -> int:
    """A ``char **`` of ours (kprobe_multi.syms): each recorded string (trace format 2's
    ``<field>.strings``) in a buffer of ours, the array of their addresses."""
    strings = inputs.get(name + STRINGS)
    if name + STRINGS in faults:
        raise NotReproducible(f"the recording could not read the strings of {name} "
                              f"({faults[name + STRINGS]})")
    if strings is None:
        raise NotReproducible(f"{name} is an array of the recorder's pointers to strings "
                              "it did not copy (a version-1 trace)")
    items = strings.split(b"\0")[:-1]
    if length is not None and len(items) * 8 != length:
        raise NotReproducible(f"{name}: {len(items)} strings recorded for {length // 8} "
                              "elements")
    array = b"".join(_allocate(keep, item + b"\0", 0).to_bytes(8, "little")
                     for item in items)
    return _allocate(keep, array, length or 0)


def unknown_pointer(cmd: int, data: bytes, handled: set[str]) -> str | None:
    """The first non-NULL field the decoder's view reads as a pointer that is not one
    of ``handled``."""
    from bpfreplay.decode.attr_fields import POINTER
    from bpfreplay.decode.attrs import attr_view

    for vf in attr_view(cmd, data) or ():
        if vf.spec.role == POINTER and vf.field.name not in handled \
                and vf.field.end <= len(data) and read_at(data, vf.field):
            return vf.field.name
    return None


def attach_common_log(common: bytearray, keep: bsys.Buffers) -> None:
    """The 5-argument form's struct bpf_common_attr: its log buffer ours."""
    from bpfreplay.uapi.pointers import COMMON_BUFFERS

    layout = struct_layout("bpf_common_attr")
    if layout is None:
        return
    fields = {f.name: f for f in layout.fields}
    for b in COMMON_BUFFERS:
        pointer = fields.get(b.field)
        size_field = fields.get(getattr(b.length, "size_field", ""))
        if pointer is None or not read_at(common, pointer):
            continue
        size = read_at(common, size_field) if size_field is not None else 0
        write_at(common, pointer, _allocate(keep, b"", size))
