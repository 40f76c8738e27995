"""Reading a loaded map's contents as ``bpftool map dump`` does (map.c map_dump()): its
struct bpf_map_info, its BTF fetched from the kernel by the map's ``btf_id``
(btf__load_from_kernel_by_id()), then bpf_map_get_next_key() from NULL and a lookup of
each key. The text is decode/map_dump.py's; every call goes through bpfreplay.sys.
"""

from __future__ import annotations

import errno as errno_codes
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol, TextIO, TypeAlias

from bpfreplay.decode.btf import Btf, parse_btf
from bpfreplay.decode.map_dump import BtfValue, MapLayout, btf_value, format_map_dump
from bpfreplay.errors import BpfReplayError, DecodeError, LoaderError

MAP_INFO_SIZE = 88  # struct bpf_map_info up to map_extra, as libbpf 1.1.2 knows it


@dataclass(frozen=True)
class MapInfo:
    """The parts of a map's struct bpf_map_info a dump needs."""

    id: int
    name: str
    type: int
    layout: MapLayout
    vmlinux_value: bool = False  # a struct_ops map: its value type is the kernel's


def _type_sets() -> tuple[frozenset[int], frozenset[int]]:
    from bpfreplay.uapi import enum_values

    types = enum_values("bpf_map_type")
    # bpftool main.h map_is_per_cpu(), map_is_map_of_maps() + map_is_map_of_progs()
    per_cpu = {"BPF_MAP_TYPE_PERCPU_HASH", "BPF_MAP_TYPE_PERCPU_ARRAY",
               "BPF_MAP_TYPE_LRU_PERCPU_HASH", "BPF_MAP_TYPE_PERCPU_CGROUP_STORAGE"}
    fd_slots = {"BPF_MAP_TYPE_ARRAY_OF_MAPS", "BPF_MAP_TYPE_HASH_OF_MAPS",
                "BPF_MAP_TYPE_PROG_ARRAY"}
    return (frozenset(types[n] for n in per_cpu if n in types),
            frozenset(types[n] for n in fd_slots if n in types))


def map_info(fd: int) -> MapInfo:
    """bpf_obj_get_info_by_fd() of map ``fd``."""
    from bpfreplay import sys as bsys
    from bpfreplay.loader import bpfcalls
    from bpfreplay.recording.procfs import possible_cpus

    info = bytearray(MAP_INFO_SIZE)
    bpfcalls.obj_info(fd, info, bsys.Buffers())
    (map_type, map_id, key_size, value_size) = struct.unpack_from("<4I", info, 0)
    vmlinux_value_id = struct.unpack_from("<I", info, 44)[0]
    btf_id, key_id, value_id = struct.unpack_from("<3I", info, 64)
    per_cpu, fd_slots = _type_sets()
    layout = MapLayout(key_size=key_size, value_size=value_size,
                       per_cpu=map_type in per_cpu,
                       cpus=possible_cpus() if map_type in per_cpu else 1,
                       btf_id=btf_id, key_type_id=key_id,
                       value_type_id=vmlinux_value_id or value_id,
                       fd_slots=map_type in fd_slots)
    name = info[24:40].split(b"\0", 1)[0].decode(errors="replace")
    return MapInfo(map_id, name, map_type, layout, vmlinux_value=bool(vmlinux_value_id))


@dataclass
class BtfCache:
    """Kernel BTF objects by id, each fetched once (bpftool's get_map_kv_btf()); the
    kernel's own for struct_ops values (btf_vmlinux_value_type_id)."""

    by_id: dict[int, Btf] = field(default_factory=dict)
    vmlinux: Btf | None = None

    def for_map(self, info: MapInfo) -> Btf | None:
        layout = info.layout
        if not layout.btf_id or not layout.value_type_id:
            return None
        if info.vmlinux_value:
            if self.vmlinux is None:
                from bpfreplay.loader.kernel import LoadOptions, _vmlinux_btf

                self.vmlinux = _vmlinux_btf(LoadOptions())  # lazy: decoded as reached
            return self.vmlinux
        if layout.btf_id not in self.by_id:
            self.by_id[layout.btf_id] = _kernel_btf(layout.btf_id)
        return self.by_id[layout.btf_id]


def _kernel_btf(btf_id: int) -> Btf:
    """BTF_GET_FD_BY_ID, its data (libbpf's btf_get_from_fd()), parsed; fd closed."""
    from bpfreplay.loader import bpfcalls
    from bpfreplay.loader.kernel import _close_quietly

    fd = bpfcalls.btf_get_fd_by_id(btf_id)
    try:
        blob = bpfcalls.btf_data(fd)
    finally:
        _close_quietly(fd)
    return parse_btf(blob)


def entries(fd: int, layout: MapLayout) -> list[tuple[bytes, bytes | int]]:
    """bpftool's walk: get_next_key from NULL until ENOENT, a lookup of each key (its
    errno in place of the value when it fails). OSError if the walk itself fails."""
    from bpfreplay.loader import bpfcalls

    value_size = layout.slot * layout.cpus if layout.per_cpu else layout.value_size
    found: list[tuple[bytes, bytes | int]] = []
    key: bytes | None = None
    while True:
        key = bpfcalls.map_get_next_key(fd, key, layout.key_size)
        if key is None:
            return found
        try:
            found.append((key, bpfcalls.map_lookup_elem(fd, key, value_size)))
        except OSError as e:
            found.append((key, e.errno or errno_codes.EIO))


def dump_text(fd: int, cache: BtfCache | None = None) -> tuple[MapInfo, str]:
    """The map's info and what ``bpftool map dump id ID`` prints for it."""
    try:
        info = map_info(fd)
        btf = (cache or BtfCache()).for_map(info)
        return info, format_map_dump(info.layout, entries(fd, info.layout), btf)
    except OSError as e:
        raise LoaderError(f"dumping map fd {fd}: {e.strerror}") from e
    except DecodeError as e:
        raise BpfReplayError(f"dumping map fd {fd}: its BTF: {e}") from e


class BytesMap(Protocol):
    """What a typed view reads through: bpfreplay.api.Map."""

    @property
    def name(self) -> str: ...

    @property
    def fd(self) -> int: ...

    def lookup(self, key: bytes | int) -> bytes | None: ...

    def keys(self) -> Iterator[bytes]: ...


# A typed view's key: decoded through the key's BTF type; the bytes for a map without
# one (the data sections' maps, whose only key is 0).
TypedKey: TypeAlias = BtfValue | bytes
# A typed view's value: one BtfValue, or one for each possible CPU for a per-CPU map.
TypedValue: TypeAlias = BtfValue | list[BtfValue]


class TypedMap:
    """A map's keys and values decoded through the map's BTF, as ``bpftool -j map dump``
    shows them in its ``formatted`` field (structs as dicts, arrays as lists, a char
    array holding a C string as a str, enums by name, bitfields as "0x.." strings,
    per-CPU values as a list with one value per possible CPU). The BTF is the kernel's
    copy, fetched by the map's btf_id once. Keys are given as for the bytes map (bytes,
    or an int packed to the key size)."""

    def __init__(self, source: BytesMap):
        self.source = source
        self._info: MapInfo | None = None
        self._btf: Btf | None = None

    def _types(self) -> tuple[MapInfo, Btf]:
        if self._info is None:
            try:
                info = map_info(self.source.fd)
                btf = BtfCache().for_map(info)
            except OSError as e:
                raise LoaderError(f"map '{self.source.name}': reading its info and BTF: "
                                  f"{e.strerror}") from e
            if btf is None:
                raise LoaderError(f"map '{self.source.name}' has no BTF value type: only "
                                  "its bytes can be read (obj.maps[name].items())")
            self._info, self._btf = info, btf
        assert self._btf is not None
        return self._info, self._btf

    def decode_key(self, key: bytes) -> TypedKey:
        info, btf = self._types()
        if not info.layout.key_type_id:
            return key
        return self._decoded(btf, info.layout.key_type_id, key)

    def decode_value(self, value: bytes) -> TypedValue:
        info, btf = self._types()
        layout = info.layout
        if not layout.per_cpu:
            return self._decoded(btf, layout.value_type_id, value)
        return [self._decoded(btf, layout.value_type_id,
                              value[cpu * layout.slot:cpu * layout.slot + layout.value_size])
                for cpu in range(layout.cpus)]

    def _decoded(self, btf: Btf, type_id: int, data: bytes) -> BtfValue:
        try:
            return btf_value(btf, type_id, data)
        except DecodeError as e:
            raise BpfReplayError(f"map '{self.source.name}': {e}") from e

    def lookup(self, key: bytes | int) -> TypedValue | None:
        """The decoded value of ``key``, None when it is absent."""
        value = self.source.lookup(key)
        return None if value is None else self.decode_value(value)

    def keys(self) -> Iterator[TypedKey]:
        for key in self.source.keys():
            yield self.decode_key(key)

    def items(self) -> Iterator[tuple[TypedKey, TypedValue]]:
        """(key, value) of every present key, decoded (a key deleted meanwhile is
        skipped)."""
        for key in list(self.source.keys()):
            value = self.source.lookup(key)
            if value is not None:
                yield self.decode_key(key), self.decode_value(value)

    def __getitem__(self, key: bytes | int) -> TypedValue:
        value = self.lookup(key)
        if value is None:
            raise KeyError(key)
        return value


class MapDumper:
    """``run --dump-maps``: every map of a loaded object, in the object's order, printed
    to ``out`` as ``bpftool map dump id ID`` prints it, each after a header line naming
    it (``bpfreplay: map NAME (id ID) WHEN:``). A map whose keys cannot be walked (a
    ring buffer) gets a line on ``notes`` instead."""

    def __init__(self, maps: list[tuple[str, int]], out: TextIO, notes: TextIO):
        self.maps = maps  # (name, fd)
        self.out = out
        self.notes = notes
        self.cache = BtfCache()

    def dump(self, when: str) -> None:
        for name, fd in self.maps:
            try:
                info, text = dump_text(fd, self.cache)
            except BpfReplayError as e:
                print(f"bpfreplay: map {name}: not dumped: {e}", file=self.notes)
                continue
            self.out.write(f"bpfreplay: map {name} (id {info.id}) {when}:\n{text}")
        self.out.flush()
