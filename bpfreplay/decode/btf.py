"""BTF: parse a raw BTF blob (as given to BPF_BTF_LOAD, in an object's .BTF section or
in /sys/kernel/btf/vmlinux) into types, and print it the way ``bpftool btf dump file``
does.

Pure: bytes in, meaning out. Corrupt input raises ``DecodeError``, never anything else.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from bpfreplay.errors import DecodeError

BTF_MAGIC = 0xEB9F
BTF_HEADER_MIN = 24


class Kind(enum.IntEnum):
    UNKN = 0
    INT = 1
    PTR = 2
    ARRAY = 3
    STRUCT = 4
    UNION = 5
    ENUM = 6
    FWD = 7
    TYPEDEF = 8
    VOLATILE = 9
    CONST = 10
    RESTRICT = 11
    FUNC = 12
    FUNC_PROTO = 13
    VAR = 14
    DATASEC = 15
    FLOAT = 16
    DECL_TAG = 17
    TYPE_TAG = 18
    ENUM64 = 19


# INT encoding bits.
INT_SIGNED, INT_CHAR, INT_BOOL = 1, 2, 4
# Linkage of FUNC (in vlen) and VAR.
FUNC_LINKAGE = {0: "static", 1: "global", 2: "extern"}
VAR_LINKAGE = {0: "static", 1: "global", 2: "extern"}

# Kinds whose third word is a size, not a type id.
SIZED_KINDS = frozenset({Kind.INT, Kind.STRUCT, Kind.UNION, Kind.ENUM, Kind.DATASEC,
                         Kind.FLOAT, Kind.ENUM64})
# Kinds that only qualify or rename another type.
MODIFIER_KINDS = frozenset({Kind.TYPEDEF, Kind.VOLATILE, Kind.CONST, Kind.RESTRICT,
                            Kind.TYPE_TAG})


@dataclass(frozen=True, slots=True)
class Header:
    magic: int
    version: int
    flags: int
    hdr_len: int
    type_off: int
    type_len: int
    str_off: int
    str_len: int
    extra: bytes = b""  # header bytes past the fields above (newer kernels' additions)


# Member, Enumerator and SecInfo are read-only by convention, like Type: a full parse
# builds one per struct member (~2 per type of an object's BTF, ~70,000 in vmlinux's),
# and a frozen dataclass's __init__ (object.__setattr__ per field) costs 3 times a
# plain one's. unsafe_hash keeps them hashable, as frozen ones were.
@dataclass(slots=True, unsafe_hash=True)
class Member:
    """A struct/union member or a function parameter (offset 0)."""

    name: str
    type: int
    bit_offset: int = 0
    bitfield_size: int = 0


@dataclass(slots=True, unsafe_hash=True)
class Enumerator:
    name: str
    value: int


@dataclass(slots=True, unsafe_hash=True)
class SecInfo:
    type: int
    offset: int
    size: int


@dataclass(slots=True)
class Type:
    """One BTF type. ``size`` is set for sized kinds, ``ref`` for kinds pointing at
    another type (PTR, TYPEDEF, modifiers, FUNC, VAR, DECL_TAG, FUNC_PROTO's return).
    Read-only by convention: not frozen because vmlinux has ~150,000 types and a frozen
    dataclass's __init__ doubles the parse time."""

    id: int
    kind: int  # a Kind value; unknown kinds are refused at parse time
    name: str
    name_off: int
    vlen: int
    kind_flag: bool
    size: int = 0
    ref: int = 0
    # INT
    encoding: int = 0
    bits_offset: int = 0
    nr_bits: int = 0
    # ARRAY
    elem_type: int = 0
    index_type: int = 0
    nelems: int = 0
    # STRUCT, UNION, FUNC_PROTO (params)
    members: tuple[Member, ...] = ()
    # ENUM, ENUM64
    enumerators: tuple[Enumerator, ...] = ()
    # VAR linkage, FUNC linkage (= vlen), DECL_TAG component_idx
    linkage: int = 0
    component_idx: int = 0
    # DATASEC
    secinfos: tuple[SecInfo, ...] = ()

    @property
    def kind_name(self) -> str:
        return Kind(self.kind).name


@dataclass
class Btf:
    """A parsed BTF blob. ``types[i]`` is type id ``start_id + i``; id 0 is void."""

    header: Header
    types: list[Type]
    strings: bytes
    start_id: int = 1
    base: Btf | None = None
    _by_name: dict[str, list[int]] | None = field(default=None, repr=False)
    _by_essential: dict[str, list[int]] | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return self.start_id + len(self.types)

    def type(self, type_id: int) -> Type | None:
        """The type with this id (looking in the base BTF for split BTF); None for void
        or an id out of range."""
        if type_id >= self.start_id:
            index = type_id - self.start_id
            return self.types[index] if index < len(self.types) else None
        if self.base is not None:
            return self.base.type(type_id)
        return None

    def name(self, type_id: int) -> str:
        t = self.type(type_id)
        return t.name if t else ""

    def by_name(self, name: str, kind: int | None = None) -> Type | None:
        """The first type called ``name`` (of ``kind`` if given)."""
        for type_id in self._ids_named(name):
            t = self.type(type_id)
            if t is not None and (kind is None or t.kind == kind):
                return t
        return None

    def _ids_named(self, name: str) -> list[int]:
        """Ids (in order) of this BTF's own types called ``name``."""
        if self._by_name is None:
            index: dict[str, list[int]] = {}
            for t in self.types:
                if t.name:
                    index.setdefault(t.name, []).append(t.id)
            self._by_name = index
        return self._by_name.get(name, [])

    def ids_by_essential_name(self, essential: str,
                              essential_len: Callable[[str], int]) -> list[int]:
        """Ids of this BTF's own types whose name, without its "___flavour" suffix
        (``essential_len`` says where that starts), is ``essential``: CO-RE candidates."""
        index = self._by_essential
        if index is None:
            index = {}
            for t in self.types:
                if t.name:
                    index.setdefault(t.name[:essential_len(t.name)], []).append(t.id)
            self._by_essential = index
        return index.get(essential, [])

    def string_at(self, offset: int) -> str:
        if self.base is not None:  # split BTF: offsets continue the base's strings
            base_len = self.base.header.str_len
            if offset < base_len:
                return self.base.string_at(offset)
            return string_in(self.strings, offset - base_len)
        return string_in(self.strings, offset)

    def skip_modifiers(self, type_id: int) -> Type | None:
        """Follow typedefs and qualifiers to the type they stand for."""
        seen = 0
        t = self.type(type_id)
        while t is not None and t.kind in MODIFIER_KINDS and seen < 64:
            t = self.type(t.ref)
            seen += 1
        return t

    def type_size(self, type_id: int) -> int:
        """sizeof() of a type; DecodeError if it has none (void, functions) or loops."""
        for _ in range(64):
            t = self.type(type_id)
            if t is None:
                raise DecodeError(f"BTF type {type_id} has no size")
            if t.kind in SIZED_KINDS:
                return t.size
            if t.kind == Kind.PTR:
                return 8
            if t.kind == Kind.ARRAY:
                return t.nelems * self.type_size(t.elem_type)
            if t.kind in MODIFIER_KINDS or t.kind == Kind.VAR:
                type_id = t.ref
                continue
            raise DecodeError(f"BTF type {type_id} ({t.kind_name}) has no size")
        raise DecodeError(f"BTF type {type_id}: chain of types too long")


def string_in(strings: bytes, offset: int) -> str:
    """The NUL-terminated string at ``offset`` of a BTF string section."""
    if offset >= len(strings):
        raise DecodeError(f"BTF string offset {offset} is past the string section "
                          f"({len(strings)} bytes)")
    end = strings.find(b"\0", offset)
    if end < 0:
        end = len(strings)
    return strings[offset:end].decode("utf-8", errors="replace")


_HEADER = struct.Struct("<HBBIIIII")
_TYPE = struct.Struct("<III")
_TYPE_UNPACK = _TYPE.unpack_from
_PAIR = struct.Struct("<II")
_SIGNED_PAIR = struct.Struct("<Ii")
_U32 = struct.Struct("<I")
_I32 = struct.Struct("<i")


def parse_header(blob: bytes) -> Header:
    if len(blob) < BTF_HEADER_MIN:
        raise DecodeError(f"BTF blob of {len(blob)} bytes is shorter than a BTF header")
    magic, version, flags, hdr_len, type_off, type_len, str_off, str_len = \
        _HEADER.unpack_from(blob)
    if magic != BTF_MAGIC:
        if magic == 0x9FEB:
            raise DecodeError("BTF blob is big-endian; only little-endian BTF is supported")
        raise DecodeError(f"not BTF: magic {magic:#06x}, expected {BTF_MAGIC:#06x}")
    if hdr_len < BTF_HEADER_MIN or hdr_len > len(blob):
        raise DecodeError(f"BTF header length {hdr_len} does not fit a {len(blob)}-byte blob")
    for what, off, length in (("type", type_off, type_len), ("string", str_off, str_len)):
        if hdr_len + off + length > len(blob):
            raise DecodeError(f"BTF {what} section ({off}+{length} after a {hdr_len}-byte "
                              f"header) runs past the {len(blob)}-byte blob")
    return Header(magic, version, flags, hdr_len, type_off, type_len, str_off, str_len,
                  bytes(blob[BTF_HEADER_MIN:hdr_len]))


def parse_btf(blob: bytes, base: Btf | None = None) -> Btf:
    """Parse a raw BTF blob. With ``base`` (vmlinux), ``blob`` is split BTF (a module's)
    whose ids continue the base's."""
    blob = bytes(blob)
    header = parse_header(blob)
    types_start = header.hdr_len + header.type_off
    strings_start = header.hdr_len + header.str_off
    strings = blob[strings_start:strings_start + header.str_len]
    if strings and strings[0] != 0 and base is None:
        raise DecodeError("BTF string section does not start with an empty string")
    start_id = len(base) if base is not None else 1
    types = _parse_types(blob, types_start, types_start + header.type_len, strings, start_id,
                         base)
    return Btf(header, types, strings, start_id, base)


def _parse_types(blob: bytes, pos: int, end: int, strings: bytes, next_id: int,
                 base: Btf | None = None) -> list[Type]:
    """The type records; in split BTF (``base`` given) a name offset below the base's
    string section names a base string, the rest the split BTF's own strings (the
    kernel's btf_str_by_offset())."""
    types: list[Type] = []
    append = types.append
    names: dict[int, str] = {0: ""} if base is not None else strings_by_offset(strings)
    base_len = base.header.str_len if base is not None else 0

    def name_of(offset: int) -> str:
        hit = names.get(offset)
        if hit is None:
            if base is not None and offset < base_len:
                hit = base.string_at(offset)
            else:
                hit = string_in(strings, offset - base_len)
            names[offset] = hit
        return hit

    while pos < end:
        t, pos = decode_type(blob, pos, end, next_id, name_of)
        append(t)
        next_id += 1
    return types


def strings_by_offset(strings: bytes) -> dict[int, str]:
    """Every string of a string section by its offset, decoded in one go: a full parse
    names nearly all of them, and one split costs less than a search per name. (A name
    offset into the middle of a string is legal BTF; name_of() decodes those itself.)"""
    names: dict[int, str] = {}
    at = 0
    for raw in strings.split(b"\0"):
        names[at] = raw.decode("utf-8", errors="replace")
        at += len(raw) + 1
    names.pop(len(strings), None)  # the split's empty tail past the last NUL
    names[0] = ""
    return names


def decode_type(blob: bytes, pos: int, end: int, type_id: int,
                name_of: Callable[[int], str]) -> tuple[Type, int]:
    """The type record at ``pos`` (a struct btf_type and what follows it), and where the
    next one starts."""
    if pos + 12 > end:
        raise DecodeError(f"BTF type {type_id} is truncated")
    name_off, info, size_or_type = _TYPE_UNPACK(blob, pos)
    pos += 12
    kind = (info >> 24) & 0x1F
    vlen = info & 0xFFFF
    kind_flag = info >> 31 == 1
    name = name_of(name_off)
    extra = KIND_RECORD_SIZES.get(kind)
    if extra is None:
        raise DecodeError(f"BTF type {type_id} has unknown kind {kind}")
    length = extra[0] + extra[1] * vlen
    if pos + length > end:
        raise DecodeError(f"BTF type {type_id} ({Kind(kind).name} '{name}') is truncated")
    if kind in _SIZED_INTS:
        t = Type(type_id, kind, name, name_off, vlen, kind_flag, size_or_type)
    else:
        t = Type(type_id, kind, name, name_off, vlen, kind_flag, 0, size_or_type)
    if kind == 4 or kind == 5:  # STRUCT, UNION
        if vlen:
            words = _TYPE.iter_unpack(blob[pos:pos + length])
            if kind_flag:
                t.members = tuple([Member(name_of(n), ty, off & 0xFFFFFF, off >> 24)
                                   for n, ty, off in words])
            else:
                t.members = tuple([Member(name_of(n), ty, off) for n, ty, off in words])
    elif kind == 1:  # INT
        (word,) = _U32.unpack_from(blob, pos)
        t.encoding, t.bits_offset, t.nr_bits = (word >> 24) & 0x0F, (word >> 16) & 0xFF, \
            word & 0xFF
    elif kind == 13:  # FUNC_PROTO
        if vlen:
            t.members = tuple([Member(name_of(n), ty)
                               for n, ty in _PAIR.iter_unpack(blob[pos:pos + length])])
    elif kind == 3:  # ARRAY
        t.elem_type, t.index_type, t.nelems = _TYPE_UNPACK(blob, pos)
    elif kind == 12:  # FUNC
        t.linkage = vlen
    elif kind == 14:  # VAR
        (t.linkage,) = _U32.unpack_from(blob, pos)
    elif kind == 6:  # ENUM
        t.enumerators = tuple([Enumerator(name_of(n), v) for n, v in (
            _SIGNED_PAIR if kind_flag else _PAIR).iter_unpack(blob[pos:pos + length])])
    elif kind == 15:  # DATASEC
        t.secinfos = tuple([SecInfo(*v) for v in _TYPE.iter_unpack(blob[pos:pos + length])])
    elif kind == 19:  # ENUM64
        values = []
        for n, lo, hi in _TYPE.iter_unpack(blob[pos:pos + length]):
            value = (hi << 32) | lo
            if kind_flag and value >= 1 << 63:
                value -= 1 << 64
            values.append(Enumerator(name_of(n), value))
        t.enumerators = tuple(values)
    elif kind == 17:  # DECL_TAG
        (t.component_idx,) = _I32.unpack_from(blob, pos)
    return t, pos + length


# Per kind: (fixed bytes after btf_type, bytes per vlen entry).
_EXTRA_SIZE = {
    Kind.INT: (4, 0), Kind.PTR: (0, 0), Kind.ARRAY: (12, 0), Kind.STRUCT: (0, 12),
    Kind.UNION: (0, 12), Kind.ENUM: (0, 8), Kind.FWD: (0, 0), Kind.TYPEDEF: (0, 0),
    Kind.VOLATILE: (0, 0), Kind.CONST: (0, 0), Kind.RESTRICT: (0, 0), Kind.FUNC: (0, 0),
    Kind.FUNC_PROTO: (0, 8), Kind.VAR: (4, 0), Kind.DATASEC: (0, 12), Kind.FLOAT: (0, 0),
    Kind.DECL_TAG: (4, 0), Kind.TYPE_TAG: (0, 0), Kind.ENUM64: (0, 12),
}
# The same by plain int kind: what the record of a type takes after struct btf_type.
KIND_RECORD_SIZES = {int(k): v for k, v in _EXTRA_SIZE.items()}
_SIZED_INTS = frozenset(int(k) for k in SIZED_KINDS)


# --------------------------------------------------------------------- printing


def _int_encoding(encoding: int) -> str:
    return {0: "(none)", INT_SIGNED: "SIGNED", INT_CHAR: "CHAR", INT_BOOL: "BOOL"}.get(
        encoding, "UNKN")


def _quoted(name: str) -> str:
    return f"'{name or '(anon)'}'"


def dump_type(btf: Btf, t: Type) -> Iterator[str]:
    """The lines ``bpftool btf dump`` prints for one type (raw format)."""
    head = f"[{t.id}] {t.kind_name} {_quoted(t.name)}"
    kind = t.kind
    if kind == Kind.INT:
        yield (f"{head} size={t.size} bits_offset={t.bits_offset} nr_bits={t.nr_bits} "
               f"encoding={_int_encoding(t.encoding)}")
    elif kind in (Kind.PTR, Kind.CONST, Kind.VOLATILE, Kind.RESTRICT, Kind.TYPEDEF,
                  Kind.TYPE_TAG):
        yield f"{head} type_id={t.ref}"
    elif kind == Kind.ARRAY:
        yield f"{head} type_id={t.elem_type} index_type_id={t.index_type} nr_elems={t.nelems}"
    elif kind in (Kind.STRUCT, Kind.UNION):
        yield f"{head} size={t.size} vlen={t.vlen}"
        for m in t.members:
            line = f"\t{_quoted(m.name)} type_id={m.type} bits_offset={m.bit_offset}"
            if m.bitfield_size:
                line += f" bitfield_size={m.bitfield_size}"
            yield line
    elif kind in (Kind.ENUM, Kind.ENUM64):
        sign = "SIGNED" if t.kind_flag else "UNSIGNED"
        yield f"{head} encoding={sign} size={t.size} vlen={t.vlen}"
        suffix = ("LL" if t.kind_flag else "ULL") if kind == Kind.ENUM64 else ""
        for e in t.enumerators:
            yield f"\t{_quoted(e.name)} val={e.value}{suffix}"
    elif kind == Kind.FWD:
        yield f"{head} fwd_kind={'union' if t.kind_flag else 'struct'}"
    elif kind == Kind.FUNC:
        linkage = FUNC_LINKAGE.get(t.linkage, "(unknown)")
        yield f"{head} type_id={t.ref} linkage={linkage}"
    elif kind == Kind.FUNC_PROTO:
        yield f"{head} ret_type_id={t.ref} vlen={t.vlen}"
        for p in t.members:
            yield f"\t{_quoted(p.name)} type_id={p.type}"
    elif kind == Kind.VAR:
        linkage = VAR_LINKAGE.get(t.linkage, "(unknown)")
        yield f"{head} type_id={t.ref}, linkage={linkage}"
    elif kind == Kind.DATASEC:
        yield f"{head} size={t.size} vlen={t.vlen}"
        for s in t.secinfos:
            var = btf.type(s.type)
            what = f" ({var.kind_name} {_quoted(var.name)})" if var is not None else ""
            yield f"\ttype_id={s.type} offset={s.offset} size={s.size}{what}"
    elif kind == Kind.FLOAT:
        yield f"{head} size={t.size}"
    elif kind == Kind.DECL_TAG:
        yield f"{head} type_id={t.ref} component_idx={t.component_idx}"
    else:
        yield head


def dump_btf(btf: Btf) -> Iterator[str]:
    """Every type of ``btf`` as ``bpftool btf dump file BLOB`` prints them."""
    for t in btf.types:
        yield from dump_type(btf, t)
