"""Which ``bpf_attr`` fields are user pointers, and how long the buffers behind them are.

BTF says a field is a ``__u64``; only the uapi's comments say that it points at
``insn_cnt`` instructions or at a map key. This table is that knowledge, per
command (one member of ``union bpf_attr`` serves commands whose buffers differ in
direction: ``value`` is read by MAP_UPDATE_ELEM and written by MAP_LOOKUP_ELEM).

Everything here is pure: ``plan_buffers`` turns attr bytes into a list of
(field, address, length) to copy; the recorder and the loader's own tracer do the
copying from their own memory.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import NamedTuple

from bpfreplay.uapi import attr_layout, cmd_name, enum_values
from bpfreplay.uapi.layout import Field

IN, OUT, INOUT = "in", "out", "inout"

# Strings the kernel reads (paths, license, tracepoint names) are bounded like PATH_MAX.
CSTRING_MAX = 4096


class Count(NamedTuple):
    """``count_field`` elements of ``elem_size`` bytes (or of the size another field says)."""

    count_field: str
    elem_size: int | str


class Size(NamedTuple):
    """As many bytes as ``size_field`` says."""

    size_field: str


class CString(NamedTuple):
    """A NUL-terminated string (the NUL is not kept)."""


class Log(NamedTuple):
    """An output text buffer of ``size_field`` bytes; what the kernel wrote ends at a NUL."""

    size_field: str


class MapKey(NamedTuple):
    """One key of the map named by the attr's ``map_fd``."""


class MapValue(NamedTuple):
    """One value of the map named by ``map_fd`` (per-CPU maps: one slot per possible CPU)."""


class MapKeys(NamedTuple):
    """``count_field`` keys of the map named by ``map_fd``."""

    count_field: str


class MapValues(NamedTuple):
    """``count_field`` values of the map named by ``map_fd``."""

    count_field: str


class FdArray(NamedTuple):
    """PROG_LOAD's fd_array: ``fd_array_cnt`` fds, or as many as the instructions index."""


Length = Count | Size | CString | Log | MapKey | MapValue | MapKeys | MapValues | FdArray


class Buffer(NamedTuple):
    field: str
    direction: str
    length: Length
    # Only when the attr's ``when[0]`` field holds one of the enum names in ``when[1]``.
    when: tuple[str, str, frozenset[str]] | None = None


def _if(field: str, enum: str, *names: str) -> tuple[str, str, frozenset[str]]:
    return (field, enum, frozenset(names))


_KPROBE_MULTI = _if("attach_type", "bpf_attach_type",
                    "BPF_TRACE_KPROBE_MULTI", "BPF_TRACE_KPROBE_SESSION")
_UPROBE_MULTI = _if("attach_type", "bpf_attach_type",
                    "BPF_TRACE_UPROBE_MULTI", "BPF_TRACE_UPROBE_SESSION")
_ITER = _if("attach_type", "bpf_attach_type", "BPF_TRACE_ITER")

_KEY = Buffer("key", IN, MapKey())
_BATCH_IN = Buffer("in_batch", IN, MapKey())
_BATCH_OUT = Buffer("out_batch", OUT, MapKey())

BUFFERS: dict[str, tuple[Buffer, ...]] = {
    "BPF_MAP_CREATE": (Buffer("excl_prog_hash", IN, Size("excl_prog_hash_size")),),
    "BPF_MAP_LOOKUP_ELEM": (_KEY, Buffer("value", OUT, MapValue())),
    "BPF_MAP_UPDATE_ELEM": (_KEY, Buffer("value", IN, MapValue())),
    "BPF_MAP_DELETE_ELEM": (_KEY,),
    "BPF_MAP_GET_NEXT_KEY": (_KEY, Buffer("next_key", OUT, MapKey())),
    "BPF_MAP_LOOKUP_AND_DELETE_ELEM": (_KEY, Buffer("value", OUT, MapValue())),
    "BPF_PROG_LOAD": (
        Buffer("insns", IN, Count("insn_cnt", 8)),
        Buffer("license", IN, CString()),
        Buffer("log_buf", OUT, Log("log_size")),
        Buffer("func_info", IN, Count("func_info_cnt", "func_info_rec_size")),
        Buffer("line_info", IN, Count("line_info_cnt", "line_info_rec_size")),
        Buffer("fd_array", IN, FdArray()),
        Buffer("core_relos", IN, Count("core_relo_cnt", "core_relo_rec_size")),
        Buffer("signature", IN, Size("signature_size")),
    ),
    "BPF_OBJ_PIN": (Buffer("pathname", IN, CString()),),
    "BPF_OBJ_GET": (Buffer("pathname", IN, CString()),),
    "BPF_PROG_TEST_RUN": (
        Buffer("data_in", IN, Size("data_size_in")),
        Buffer("data_out", OUT, Size("data_size_out")),
        Buffer("ctx_in", IN, Size("ctx_size_in")),
        Buffer("ctx_out", OUT, Size("ctx_size_out")),
    ),
    "BPF_OBJ_GET_INFO_BY_FD": (Buffer("info", INOUT, Size("info_len")),),
    "BPF_PROG_QUERY": (
        Buffer("prog_ids", OUT, Count("prog_cnt", 4)),
        Buffer("prog_attach_flags", OUT, Count("prog_cnt", 4)),
        Buffer("link_ids", OUT, Count("prog_cnt", 4)),
        Buffer("link_attach_flags", OUT, Count("prog_cnt", 4)),
    ),
    "BPF_RAW_TRACEPOINT_OPEN": (Buffer("name", IN, CString()),),
    "BPF_BTF_LOAD": (
        Buffer("btf", IN, Size("btf_size")),
        Buffer("btf_log_buf", OUT, Log("btf_log_size")),
    ),
    "BPF_TASK_FD_QUERY": (Buffer("buf", OUT, Log("buf_len")),),
    "BPF_MAP_LOOKUP_BATCH": (
        _BATCH_IN, _BATCH_OUT,
        Buffer("keys", OUT, MapKeys("count")), Buffer("values", OUT, MapValues("count")),
    ),
    "BPF_MAP_LOOKUP_AND_DELETE_BATCH": (
        _BATCH_IN, _BATCH_OUT,
        Buffer("keys", OUT, MapKeys("count")), Buffer("values", OUT, MapValues("count")),
    ),
    "BPF_MAP_UPDATE_BATCH": (
        Buffer("keys", IN, MapKeys("count")), Buffer("values", IN, MapValues("count")),
    ),
    "BPF_MAP_DELETE_BATCH": (Buffer("keys", IN, MapKeys("count")),),
    "BPF_LINK_CREATE": (
        Buffer("iter_info", IN, Size("iter_info_len"), _ITER),
        Buffer("kprobe_multi.syms", IN, Count("kprobe_multi.cnt", 8), _KPROBE_MULTI),
        Buffer("kprobe_multi.addrs", IN, Count("kprobe_multi.cnt", 8), _KPROBE_MULTI),
        Buffer("kprobe_multi.cookies", IN, Count("kprobe_multi.cnt", 8), _KPROBE_MULTI),
        Buffer("uprobe_multi.path", IN, CString(), _UPROBE_MULTI),
        Buffer("uprobe_multi.offsets", IN, Count("uprobe_multi.cnt", 8), _UPROBE_MULTI),
        Buffer("uprobe_multi.ref_ctr_offsets", IN, Count("uprobe_multi.cnt", 8), _UPROBE_MULTI),
        Buffer("uprobe_multi.cookies", IN, Count("uprobe_multi.cnt", 8), _UPROBE_MULTI),
    ),
    "BPF_PROG_STREAM_READ_BY_FD": (Buffer("stream_buf", OUT, Log("stream_buf_len")),),
}
BUFFERS["BPF_PROG_RUN"] = BUFFERS["BPF_PROG_TEST_RUN"]

# Buffers of struct bpf_common_attr (bpf() with BPF_COMMON_ATTRS).
COMMON_BUFFERS = (Buffer("log_buf", OUT, Log("log_size")),)

# ``char **`` fields: the array (above, copied as it is) holds pointers to NUL-terminated
# strings, which the recorder follows too (trace format 2): ``in[<field> + STRINGS]`` is
# the strings in array order, each with its NUL. kprobe_multi.syms is the only one in
# union bpf_attr up to 6.18 (uprobe_multi.path is one ``const char *``: a CString).
STRING_ARRAYS = frozenset({"kprobe_multi.syms"})
STRINGS = ".strings"

# Map types whose lookup/update value holds one slot per possible CPU, each rounded up to 8.
PERCPU_MAP_TYPES = frozenset(
    enum_values("bpf_map_type").get(name, -1)
    for name in (
        "BPF_MAP_TYPE_PERCPU_HASH",
        "BPF_MAP_TYPE_PERCPU_ARRAY",
        "BPF_MAP_TYPE_LRU_PERCPU_HASH",
        "BPF_MAP_TYPE_PERCPU_CGROUP_STORAGE",
    )
)


class MapShape(NamedTuple):
    """What the recorder knows of a map fd: enough to size its keys and values."""

    map_type: int
    key_size: int
    value_size: int


class PlannedBuffer(NamedTuple):
    field: str
    address: int
    length: int | None  # None: read a NUL-terminated string of at most CSTRING_MAX
    direction: str
    until_nul: bool = False  # keep only what precedes the first NUL (logs)


MapLookup = Callable[[int], MapShape | None]
# (field values, map_shape, ncpus, insns) -> length in bytes; None for a NUL-terminated
# string. The values are the command's FieldReader.unpack(attr).
LengthOf = Callable[[tuple[int, ...], MapLookup, int, "bytes | None"], "int | None"]


def read_field(attr: bytes, field: Field) -> int:
    """A field's unsigned value; bytes past the caller's size read as zero, as in the kernel."""
    offset = field.offset
    end = offset + field.size
    if end <= len(attr):
        return int.from_bytes(attr[offset:end], "little")
    if offset >= len(attr):
        return 0
    return int.from_bytes(attr[offset:].ljust(field.size, b"\0"), "little")


_STRUCT_CODES = {1: "B", 2: "H", 4: "I", 8: "Q"}


class FieldReader:
    """Reads a fixed set of attr fields with one ``struct`` call, compiled once per command:
    ``unpack(attr)`` gives their unsigned values in the order given, reading bytes past
    the attr's end as zero (as ``read_field`` does). Fields must come in attr order, the
    ones this layout lacks (None, read as zero) last; fields that overlap (members of one
    union) or have odd sizes are read one by one with ``read_field``."""

    def __init__(self, fields: tuple[Field | None, ...]):
        self.fields = fields
        present = [f for f in fields if f is not None]
        self._absent = (0,) * (len(fields) - len(present))
        fmt, position = "<", 0
        for f in present:
            if f.offset < position or f.size not in _STRUCT_CODES or f.bit_size:
                self.unpack = self._unpack_each  # type: ignore[method-assign]
                return
            fmt += f"{f.offset - position}x" * (f.offset > position) + _STRUCT_CODES[f.size]
            position = f.end
        self._struct = struct.Struct(fmt)
        self._size = self._struct.size

    def unpack(self, attr: bytes) -> tuple[int, ...]:
        if len(attr) < self._size:
            attr = attr + bytes(self._size - len(attr))
        if self._absent:
            return self._struct.unpack_from(attr) + self._absent
        return self._struct.unpack_from(attr)

    def _unpack_each(self, attr: bytes) -> tuple[int, ...]:
        return tuple(0 if f is None else read_field(attr, f) for f in self.fields)


class CompiledBuffer(NamedTuple):
    field: str
    pointer: Field
    direction: str
    length_of: LengthOf
    until_nul: bool
    # Only when the value at this index (of the command's reader) is in the set.
    when: tuple[int, frozenset[int]] | None
    pointer_index: int  # the pointer's index in the command's reader
    plain: bool  # a fixed length that is read as it is (no string, no log)


class CompiledCommand(NamedTuple):
    """A command's attr fields by name and its buffers split by when they are copied;
    only buffers whose pointer field exists in this kernel's layout are kept. ``reader``
    unpacks every field the buffers' pointers, lengths and conditions need."""

    fields: dict[str, Field]
    at_entry: tuple[CompiledBuffer, ...]
    at_exit: tuple[CompiledBuffer, ...]
    reader: FieldReader


_compiled: dict[int, CompiledCommand] = {}


def compiled_command(cmd: int) -> CompiledCommand:
    """The compiled buffer table of ``cmd`` (cached per command value)."""
    hit = _compiled.get(cmd)
    if hit is None:
        layout = attr_layout(cmd)
        fields = {f.name: f for f in layout.fields} if layout else {}
        wanted = [b for b in BUFFERS.get(cmd_name(cmd) or "", ()) if b.field in fields]
        # Every field the buffers need, in attr order (absent ones last): the reader's
        # output then needs no reordering.
        needed = {name for b in wanted for name in _fields_of(b)}
        order = sorted(needed, key=lambda n: (0, fields[n].offset) if n in fields else (1, 0))
        names = {name: i for i, name in enumerate(order)}
        buffers = [_compile(b, fields, names) for b in wanted]
        hit = _compiled[cmd] = CompiledCommand(
            fields,
            tuple(b for b in buffers if b.direction in (IN, INOUT)),
            tuple(b for b in buffers if b.direction in (OUT, INOUT)),
            FieldReader(tuple(fields.get(name) for name in order)),
        )
    return hit


def _fields_of(buffer: Buffer) -> list[str]:
    """The attr fields a buffer's pointer, length and condition are read from."""
    rule = buffer.length
    names = [buffer.field]
    if buffer.when is not None:
        names.append(buffer.when[0])
    match rule:
        case Count(count_field, elem_size):
            names.append(count_field)
            if isinstance(elem_size, str):
                names.append(elem_size)
        case Size(size_field) | Log(size_field):
            names.append(size_field)
        case FdArray():
            names.append("fd_array_cnt")
        case MapKey() | MapValue():
            names.append("map_fd")
        case MapKeys(count_field) | MapValues(count_field):
            names += ["map_fd", count_field]
    return names


def _compile(buffer: Buffer, fields: dict[str, Field], names: dict[str, int]) -> CompiledBuffer:
    when = None
    if buffer.when is not None:
        field_name, enum, names_wanted = buffer.when
        values = frozenset(
            v for n in names_wanted if (v := enum_values(enum).get(n)) is not None)
        when = (names[field_name], values)
    plain = not isinstance(buffer.length, CString | Log)
    return CompiledBuffer(buffer.field, fields[buffer.field], buffer.direction,
                          _compile_length(buffer.length, names),
                          isinstance(buffer.length, Log), when, names[buffer.field], plain)


def _value_size(shape: MapShape, ncpus: int) -> int:
    if shape.map_type in PERCPU_MAP_TYPES:
        return ((shape.value_size + 7) & ~7) * ncpus
    return shape.value_size


def _compile_length(rule: Length, names: dict[str, int]) -> LengthOf:
    """A function computing the rule's length from the command's field values."""
    match rule:
        case Count(count_field, int(elem_size)):
            count = names[count_field]
            return lambda values, shapes, ncpus, insns: values[count] * elem_size
        case Count(count_field, str(size_field)):
            count, size = names[count_field], names[size_field]
            return lambda values, shapes, ncpus, insns: values[count] * values[size]
        case Size(size_field) | Log(size_field):
            size = names[size_field]
            return lambda values, shapes, ncpus, insns: values[size]
        case CString():
            return lambda values, shapes, ncpus, insns: None
        case FdArray():
            slots = names["fd_array_cnt"]
            return lambda values, shapes, ncpus, insns: 4 * (
                values[slots] or fd_array_entries(insns or b""))
    map_fd = names["map_fd"]
    # Called for every map update or lookup recorded: one closure per rule, no helpers.
    match rule:
        case MapKey():
            def key_length(values: tuple[int, ...], shapes: MapLookup, ncpus: int,
                           insns: bytes | None) -> int:
                shape = shapes(values[map_fd] & 0xFFFFFFFF)
                return 0 if shape is None else shape.key_size
            return key_length
        case MapValue():
            def value_length(values: tuple[int, ...], shapes: MapLookup, ncpus: int,
                             insns: bytes | None) -> int:
                shape = shapes(values[map_fd] & 0xFFFFFFFF)
                return 0 if shape is None else _value_size(shape, ncpus)
            return value_length
        case MapKeys(count_field):
            count = names[count_field]

            def keys_length(values: tuple[int, ...], shapes: MapLookup, ncpus: int,
                            insns: bytes | None) -> int:
                shape = shapes(values[map_fd] & 0xFFFFFFFF)
                return 0 if shape is None else shape.key_size * values[count]
            return keys_length
        case MapValues(count_field):
            count = names[count_field]

            def values_length(values: tuple[int, ...], shapes: MapLookup, ncpus: int,
                              insns: bytes | None) -> int:
                shape = shapes(values[map_fd] & 0xFFFFFFFF)
                return 0 if shape is None else _value_size(shape, ncpus) * values[count]
            return values_length
    raise AssertionError(f"unknown length rule {rule!r}")


def plan_buffers(
    cmd: int,
    attr: bytes,
    *,
    at_exit: bool,
    map_shape: MapLookup,
    ncpus: int = 1,
    insns: bytes | None = None,
) -> list[PlannedBuffer]:
    """The buffers to copy for a bpf(cmd, attr) call: at entry the ``in``/``inout`` ones,
    at exit (``attr`` then being the attr as the kernel left it) the ``out``/``inout`` ones.
    Null pointers and zero lengths are left out."""
    return [PlannedBuffer(b.field, address, length, b.direction, b.until_nul)
            for b, address, length in planned_buffers(compiled_command(cmd), attr, at_exit,
                                                      map_shape, ncpus, insns)]


def planned_buffers(compiled: CompiledCommand, attr: bytes, at_exit: bool,
                    map_shape: MapLookup, ncpus: int, insns: bytes | None,
                    ) -> list[tuple[CompiledBuffer, int, int | None]]:
    """``plan_buffers`` for the recorder's hot path: (buffer, address, length) triples
    of an already compiled command."""
    buffers = compiled.at_exit if at_exit else compiled.at_entry
    if not buffers:
        return []
    values = compiled.reader.unpack(attr)
    planned = []
    for b in buffers:
        address = values[b.pointer_index]
        if address == 0:
            continue
        if b.when is not None and values[b.when[0]] not in b.when[1]:
            continue
        length = b.length_of(values, map_shape, ncpus, insns)
        if length == 0:
            continue
        planned.append((b, address, length))
    return planned


_INSN = struct.Struct("<BBhi")
_LD_IMM64 = 0x18
_CALL = 0x85
_PSEUDO_MAP_IDX, _PSEUDO_MAP_IDX_VALUE, _PSEUDO_KFUNC_CALL = 5, 6, 2


def fd_array_entries(insns: bytes) -> int:
    """How many fd_array slots a program's instructions reach when fd_array_cnt is 0:
    ld_imm64 of map by index (BPF_PSEUDO_MAP_IDX[_VALUE]) indexes it by imm, kfunc calls
    by their offset (module BTF)."""
    highest = -1
    for code, regs, off, imm in _INSN.iter_unpack(insns[: len(insns) - len(insns) % 8]):
        src = regs >> 4
        if code == _LD_IMM64 and src in (_PSEUDO_MAP_IDX, _PSEUDO_MAP_IDX_VALUE):
            highest = max(highest, imm)
        elif code == _CALL and src == _PSEUDO_KFUNC_CALL and off > 0:
            highest = max(highest, off)
    return highest + 1


# ------------------------------------------------ buffers inside OBJ_GET_INFO_BY_FD's info

# The info struct the kernel writes for each kind of object an fd names
# (bpf_obj_get_info_by_fd() in kernel/bpf/syscall.c dispatches on the fd's file ops).
INFO_STRUCTS = {"prog": "bpf_prog_info", "map": "bpf_map_info", "btf": "bpf_btf_info",
                "link": "bpf_link_info"}


class InfoBuffer(NamedTuple):
    """A user pointer inside an info struct: ``count`` elements of ``element`` bytes (or
    of the size another field says). The caller's ``count`` sizes the buffer, the kernel
    writes back how many it has and fills the smaller of the two. ``text``: a string the
    kernel ends with a NUL (the caller's count is the buffer's size)."""

    pointer: str
    count: str
    element: int | str
    text: bool = False


INFO_BUFFERS: dict[str, tuple[InfoBuffer, ...]] = {
    "bpf_prog_info": (
        InfoBuffer("jited_prog_insns", "jited_prog_len", 1),
        InfoBuffer("xlated_prog_insns", "xlated_prog_len", 1),
        InfoBuffer("map_ids", "nr_map_ids", 4),
        InfoBuffer("jited_ksyms", "nr_jited_ksyms", 8),
        InfoBuffer("jited_func_lens", "nr_jited_func_lens", 4),
        InfoBuffer("func_info", "nr_func_info", "func_info_rec_size"),
        InfoBuffer("line_info", "nr_line_info", "line_info_rec_size"),
        InfoBuffer("jited_line_info", "nr_jited_line_info", "jited_line_info_rec_size"),
        InfoBuffer("prog_tags", "nr_prog_tags", 8),
    ),
    "bpf_map_info": (InfoBuffer("hash", "hash_size", 1),),
    "bpf_btf_info": (InfoBuffer("btf", "btf_size", 1), InfoBuffer("name", "name_len", 1, True)),
    # bpf_link_info: one union member per link type (see info_fields_of); only that
    # member's pointers mean anything.
    "bpf_link_info": (
        InfoBuffer("raw_tracepoint.tp_name", "raw_tracepoint.tp_name_len", 1, True),
        InfoBuffer("iter.target_name", "iter.target_name_len", 1, True),
        InfoBuffer("perf_event.uprobe.file_name", "perf_event.uprobe.name_len", 1, True),
        InfoBuffer("perf_event.kprobe.func_name", "perf_event.kprobe.name_len", 1, True),
        InfoBuffer("perf_event.tracepoint.tp_name", "perf_event.tracepoint.name_len", 1, True),
        InfoBuffer("kprobe_multi.addrs", "kprobe_multi.count", 8),
        InfoBuffer("kprobe_multi.cookies", "kprobe_multi.count", 8),
        InfoBuffer("uprobe_multi.path", "uprobe_multi.path_size", 1, True),
        InfoBuffer("uprobe_multi.offsets", "uprobe_multi.count", 8),
        InfoBuffer("uprobe_multi.ref_ctr_offsets", "uprobe_multi.count", 8),
        InfoBuffer("uprobe_multi.cookies", "uprobe_multi.count", 8),
    ),
}

# enum bpf_perf_event_type -> the member of bpf_link_info.perf_event it fills
_PERF_EVENT_MEMBERS = {1: "uprobe", 2: "uprobe", 3: "kprobe", 4: "kprobe", 5: "tracepoint",
                       6: "event"}
# Larger buffers than this inside an info struct are not copied (a count that big is
# the caller's garbage, not a buffer it allocated).
INFO_BUFFER_MAX = 64 << 20


def link_info_member(info: bytes) -> str:
    """The union member of a bpf_link_info its type means, as a dotted prefix
    (``raw_tracepoint.``, ``perf_event.kprobe.``); "" for a type no member serves."""
    if len(info) < 4:
        return ""
    link_type = next((name for name, value in enum_values("bpf_link_type").items()
                      if value == int.from_bytes(info[:4], "little")
                      and not name.startswith("__")), "")
    member = link_type.removeprefix("BPF_LINK_TYPE_").lower()
    if member == "perf_event":
        perf_type = int.from_bytes(info[16:20], "little") if len(info) >= 20 else 0
        return f"perf_event.{_PERF_EVENT_MEMBERS.get(perf_type, '(none)')}."
    return member + "." if member else ""


def info_fields_of(struct_name: str, info: bytes) -> list[Field]:
    """The fields of an info struct this object's info means: for a link, the members of
    its type's union member (and ``perf_event.type``); every field of the others."""
    from bpfreplay.uapi import struct_layout

    layout = struct_layout(struct_name)
    if layout is None:
        return []
    if struct_name != "bpf_link_info":
        return list(layout.fields)
    member = link_info_member(info)
    return [f for f in layout.fields
            if "." not in f.name or (member and f.name.startswith(member))
            or (member.startswith("perf_event.") and f.name == "perf_event.type")]


def plan_info_buffers(kind: str, info_in: bytes, info_out: bytes,
                      ) -> list[tuple[str, int, int, bool]]:
    """(field, address, length, text) of each buffer the kernel filled in answer to an
    OBJ_GET_INFO_BY_FD of a ``kind`` fd (``prog``, ``map``, ``btf``, ``link``): the
    pointers the caller set in ``info_in``, each as long as the smaller of the count it
    passed and the count the kernel wrote back in ``info_out`` (a string: the caller's
    buffer, up to its NUL). Fields named ``info.<pointer>`` in a trace's ``out``."""
    struct_name = INFO_STRUCTS.get(kind)
    if struct_name is None:
        return []
    fields = {f.name: f for f in info_fields_of(struct_name, info_out)}
    planned = []
    for b in INFO_BUFFERS.get(struct_name, ()):
        pointer, count = fields.get(b.pointer), fields.get(b.count)
        if pointer is None or count is None or pointer.end > len(info_in):
            continue
        address = read_field(info_in, pointer)
        if not address:
            continue
        asked, have = read_field(info_in, count), read_field(info_out, count)
        if b.text:
            length = asked
        else:
            size_field = fields.get(b.element) if isinstance(b.element, str) else None
            element = b.element if isinstance(b.element, int) else (
                read_field(info_out, size_field) if size_field is not None else 0)
            length = min(asked, have) * element
        if 0 < length <= INFO_BUFFER_MAX:
            planned.append((b.pointer, address, length, b.text))
    return planned
