"""BTF read lazily: one pass over the raw bytes records where each type starts and which
types carry each name; a type is decoded only when something asks for it.

vmlinux BTF has ~130,000 types and a CO-RE load touches a few hundred of them: decoding
all of them (``parse_btf``) costs ~0.9 s, this index ~0.07 s (cilium/ebpf's lazy
``btf/unmarshal.go`` does the same). Lookups by name search the string section for the
exact NUL-terminated string, then map its offset to the types that use it, so names are
never decoded in bulk either.

Pure: a buffer in (bytes, or an mmap of /sys/kernel/btf/vmlinux), types out. Corrupt
input raises ``DecodeError``: the index pass checks every record's length and kind, so a
type that later fails to decode was already refused here.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import overload

from bpfreplay.decode.btf import (
    KIND_RECORD_SIZES,
    Btf,
    Header,
    Kind,
    Type,
    decode_type,
    parse_header,
)
from bpfreplay.errors import DecodeError

# Per kind: words after struct btf_type, fixed and per vlen entry (0 for unknown kinds,
# which the pass refuses).
_FIXED_WORDS = [0] * 32
_WORDS_PER_VLEN = [0] * 32
for _kind, (_fixed, _per) in KIND_RECORD_SIZES.items():
    _FIXED_WORDS[_kind], _WORDS_PER_VLEN[_kind] = _fixed // 4, _per // 4


@dataclass(frozen=True)
class NameIndex:
    """The index in flat arrays, as the loader's cache keeps it: ``offsets[i]`` is where
    type i + 1 starts (in 4-byte words from the type section); ``name_offs`` (ascending)
    and ``ids`` pair each named type's name offset with its id. Arrays when built,
    views of unsigned ints (format "I") over a cache file's bytes when read."""

    offsets: array | memoryview
    name_offs: array | memoryview
    ids: array | memoryview


class LazyBtf(Btf):
    """A base (non-split) BTF blob with the interface of ``Btf``; ``types`` is a
    sequence that decodes on access."""

    def __init__(self, data: bytes | memoryview, keep: object = None,
                 index: NameIndex | None = None) -> None:
        """``data``: the raw BTF; ``keep``: what must live as long as ``data`` does
        (the mapping a memoryview shows); ``index``: a cached index of these bytes
        (ValueError if it cannot be theirs), instead of the pass."""
        # (Btf's dataclass __init__ is not used: there is no list of types to pass.)
        self.header: Header = parse_header(data)
        self._keep = keep
        self.start_id = 1
        self.base = None
        self._by_name = None
        self._by_essential = None
        self._data = data
        h = self.header
        self._types_start = h.hdr_len + h.type_off
        self._types_end = self._types_start + h.type_len
        self._strings_start = h.hdr_len + h.str_off
        self._strings_end = self._strings_start + h.str_len
        if h.str_len and data[self._strings_start] != 0:  # as parse_btf() checks
            raise DecodeError("BTF string section does not start with an empty string")
        self._pairs: NameIndex | None = None
        if index is None:
            self._offsets, self._ids_by_name_off = _index(data, self._types_start,
                                                         self._types_end)
        else:
            _check_index(data, self._types_start, self._types_end, index)
            self._offsets, self._ids_by_name_off = index.offsets, {}
            self._pairs = index
        self._decoded: dict[int, Type] = {}
        self._names: dict[int, str] = {0: ""}
        # The string section, copied once (~2.5 MB for vmlinux): a memoryview cannot
        # search, and every lookup by name does.
        self._strings = bytes(data[self._strings_start:self._strings_end])

    # ------------------------------------------------------------ Btf's interface

    @property  # type: ignore[override]
    def strings(self) -> bytes:
        return self._strings

    @property  # type: ignore[override]
    def types(self) -> _LazyTypes:
        """A sequence decoding on access (made per use: no reference cycle keeps the
        BTF, and the mapping under it, alive past its last user)."""
        return _LazyTypes(self)

    def __len__(self) -> int:
        return 1 + len(self._offsets)

    def type(self, type_id: int) -> Type | None:
        index = type_id - 1
        if type_id < 1 or index >= len(self._offsets):
            return None
        t = self._decoded.get(type_id)
        if t is None:
            t, _ = decode_type(self._data, self._types_start + 4 * self._offsets[index],
                               self._types_end, type_id, self.string_at)
            self._decoded[type_id] = t
        return t

    def ids_by_essential_name(self, essential: str,
                              essential_len: Callable[[str], int]) -> list[int]:
        """Types named ``essential`` or ``essential___flavour``: the exact string, and
        every string that starts with it and "___" whose essential part it is."""
        if not essential:
            return []
        # (a type named exactly "a___b" has the essential name "a", not "a___b")
        ids = list(self._ids_named(essential)) if essential_len(essential) == len(
            essential) else []
        prefix = b"\0" + essential.encode() + b"___"
        for offset in self._string_offsets(prefix):
            if essential_len(self.string_at(offset)) == len(essential):
                ids.extend(self._ids_at(offset))
        ids.sort()
        return ids

    def string_at(self, offset: int) -> str:
        hit = self._names.get(offset)
        if hit is None:
            if offset >= self.header.str_len:
                raise DecodeError(f"BTF string offset {offset} is past the string section "
                                  f"({self.header.str_len} bytes)")
            strings = self._strings
            end = strings.find(b"\0", offset)
            if end < 0:
                end = len(strings)
            hit = strings[offset:end].decode("utf-8", errors="replace")
            self._names[offset] = hit
        return hit

    # ------------------------------------------------------------ lookups

    def _ids_named(self, name: str) -> list[int]:
        """Ids (in order) of the types whose name is exactly ``name``."""
        if not name:
            return []
        ids: list[int] = []
        for offset in self._string_offsets(b"\0" + name.encode() + b"\0"):
            ids.extend(self._ids_at(offset))
        if len(ids) > 1:
            ids.sort()
        return ids

    def name_index(self) -> NameIndex:
        """The index as flat arrays (for the loader's cache)."""
        if self._pairs is not None:
            return self._pairs
        name_offs, ids = array("I"), array("I")
        for name_off in sorted(self._ids_by_name_off):
            for type_id in self._ids_at(name_off):
                name_offs.append(name_off)
                ids.append(type_id)
        return NameIndex(self._offsets, name_offs, ids)

    def _ids_at(self, name_off: int) -> Sequence[int]:
        pairs = self._pairs
        if pairs is not None:
            at = bisect_left(pairs.name_offs, name_off)
            end = at
            while end < len(pairs.name_offs) and pairs.name_offs[end] == name_off:
                end += 1
            return pairs.ids[at:end]
        ids = self._ids_by_name_off.get(name_off)
        if ids is None:
            return ()
        return (ids,) if type(ids) is int else ids  # type: ignore[return-value]

    def _string_offsets(self, needle: bytes) -> Iterator[int]:
        """String offsets of every occurrence of ``needle`` (which starts with the NUL
        ending the string before it)."""
        strings = self._strings
        at = 0
        while True:
            found = strings.find(needle, at)
            if found < 0:
                return
            yield found + 1
            at = found + 1


class _LazyTypes(Sequence[Type]):
    """``btf.types`` of a LazyBtf: ``types[i]`` is type id i + 1, decoded when read."""

    def __init__(self, btf: LazyBtf) -> None:
        self._btf = btf

    def __len__(self) -> int:
        return len(self._btf) - 1

    @overload
    def __getitem__(self, index: int) -> Type: ...
    @overload
    def __getitem__(self, index: slice) -> list[Type]: ...

    def __getitem__(self, index: int | slice) -> Type | list[Type]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        t = self._btf.type(index + 1) if 0 <= index < len(self) else None
        if t is None:
            raise IndexError(index)
        return t

    def __iter__(self) -> Iterator[Type]:
        for type_id in range(1, len(self) + 1):
            t = self._btf.type(type_id)
            assert t is not None
            yield t


def _index(data: bytes | memoryview, start: int, end: int) -> tuple[array, dict[int, object]]:
    """One pass over the type records: each record's start (in 4-byte words from
    ``start``) and, per name offset, the id (or list of ids, in order) of the types
    using it (a list for each of ~70,000 names would cost as much as the pass)."""
    length = end - start
    if length % 4:
        raise DecodeError(f"BTF type section of {length} bytes is not made of 4-byte words")
    words = memoryview(data)[start:end].cast("I")
    offsets = array("I")
    append = offsets.append
    by_name: dict[int, object] = {}
    get = by_name.get
    fixed, per_vlen = _FIXED_WORDS, _WORDS_PER_VLEN
    known = KIND_RECORD_SIZES
    count = len(words)
    i, type_id = 0, 1
    while i < count:
        if i + 3 > count:
            raise DecodeError(f"BTF type {type_id} is truncated")
        append(i)
        name_off = words[i]
        info = words[i + 1]
        kind = (info >> 24) & 0x1F
        if kind not in known:
            raise DecodeError(f"BTF type {type_id} has unknown kind {kind}")
        if name_off:
            prev = get(name_off)
            if prev is None:
                by_name[name_off] = type_id
            elif type(prev) is int:
                by_name[name_off] = [prev, type_id]
            else:
                prev.append(type_id)  # type: ignore[attr-defined]
        i += 3 + fixed[kind] + per_vlen[kind] * (info & 0xFFFF)
        type_id += 1
    if i > count:
        t = Kind(kind).name  # the last record's kind
        raise DecodeError(f"BTF type {type_id - 1} ({t}) is truncated")
    return offsets, by_name


def _check_index(data: bytes | memoryview, start: int, end: int, index: NameIndex) -> None:
    """ValueError unless ``index`` can describe these bytes: the first and last records
    where it says, records ending where the next begins (a sample of them), name/id
    pairs in range and ascending. (Its integrity is the cache's CRC-32; this catches an
    index of other bytes.)"""
    words = memoryview(data)[start:end].cast("I") if (end - start) % 4 == 0 else None
    offsets, count = index.offsets, len(index.offsets)
    if words is None or not count or offsets[0] != 0 or \
            len(index.name_offs) != len(index.ids):
        raise ValueError("index does not fit this BTF")

    def record_end(i: int) -> int:
        at = offsets[i]
        if at + 3 > len(words):
            raise ValueError("index does not fit this BTF")
        info = words[at + 1]
        kind = (info >> 24) & 0x1F
        return at + 3 + _FIXED_WORDS[kind] + _WORDS_PER_VLEN[kind] * (info & 0xFFFF)

    step = max(1, count // 256)
    for i in range(0, count - 1, step):
        if record_end(i) != offsets[i + 1]:
            raise ValueError("index does not fit this BTF")
    if record_end(count - 1) != len(words):
        raise ValueError("index does not fit this BTF")
    pairs = len(index.ids)
    for j in range(0, pairs, max(1, pairs // 256)):
        type_id = index.ids[j]
        if not 1 <= type_id <= count or words[offsets[type_id - 1]] != index.name_offs[j] \
                or (j and index.name_offs[j - 1] > index.name_offs[j]):
            raise ValueError("index does not fit this BTF")
