"""Maps as libbpf 1.1.2's bpf_object__init_maps() defines them: BTF-defined maps of the
``.maps`` section (parse_btf_map_def), then one array map per global data section
(.data*, .rodata*, .bss*), then the .kconfig map.
"""

from __future__ import annotations

import re
from dataclasses import replace

from bpfreplay.decode.btf import Btf, Kind, Type
from bpfreplay.errors import LoaderError
from bpfreplay.loader import btf_util
from bpfreplay.loader.spec import BPF_OBJ_NAME_LEN, MapKind, MapSpec
from bpfreplay.uapi import enum_values

MAPS_SEC = ".maps"
LIBBPF_PIN_NONE, LIBBPF_PIN_BY_NAME = 0, 1
BPF_F_RDONLY_PROG = 1 << 7
BPF_F_MMAPABLE = 1 << 10


def _map_type(name: str) -> int:
    return enum_values("bpf_map_type")["BPF_MAP_TYPE_" + name]


def is_map_in_map(map_type: int) -> bool:
    return map_type in (_map_type("ARRAY_OF_MAPS"), _map_type("HASH_OF_MAPS"))


# ------------------------------------------------------------- BTF-defined maps


class _MapDef:
    """libbpf's struct btf_map_def while a definition is parsed."""

    def __init__(self) -> None:
        self.map_type = 0
        self.key_type_id = 0
        self.key_size = 0
        self.value_type_id = 0
        self.value_size = 0
        self.max_entries = 0
        self.map_flags = 0
        self.numa_node = 0
        self.pinning = 0
        self.map_extra = 0
        self.inner: _MapDef | None = None


def btf_maps(btf: Btf | None, section_index: int, section_size: int, *, strict: bool = True,
             page_size: int = 4096) -> list[MapSpec]:
    """The maps of the ``.maps`` DATASEC, in its (offset-sorted) order."""
    if btf is None:
        raise LoaderError("BTF is required, but is missing or corrupted.")
    sec = btf.by_name(MAPS_SEC, Kind.DATASEC)
    if sec is None:
        raise LoaderError(f"DATASEC '{MAPS_SEC}' not found.")
    maps = []
    for var_index, info in enumerate(sec.secinfos):
        var = btf.type(info.type)
        name = var.name if var is not None else ""
        if not name:
            raise LoaderError(f"map #{var_index}: empty name.")
        if info.offset + info.size > section_size:
            raise LoaderError(f"map '{name}' BTF data is corrupted.")
        assert var is not None
        if var.kind != Kind.VAR:
            raise LoaderError(f"map '{name}': unexpected var kind {btf_util.kind_str(var)}.")
        if var.linkage != 1:
            raise LoaderError(f"map '{name}': unsupported map linkage "
                              f"{_linkage_str(var.linkage)}.")
        definition, _ = btf_util.skip_mods_and_typedefs(btf, var.ref)
        if definition is None or definition.kind != Kind.STRUCT:
            raise LoaderError(f"map '{name}': unexpected def kind {btf_util.kind_str(var)}.")
        if definition.size > info.size:
            raise LoaderError(f"map '{name}': invalid def size.")
        outer, inner = _MapDef(), _MapDef()
        _parse_map_def(name, btf, definition, strict, outer, inner)
        inner_spec = None
        if outer.inner is not None:
            inner_spec = _from_def(f"{name}.inner", inner, MapKind.USER, MAPS_SEC,
                                   section_index, 0, page_size)
        spec = _from_def(name, outer, MapKind.USER, MAPS_SEC, section_index, info.offset,
                         page_size)
        maps.append(replace(spec, inner=inner_spec, pinning=outer.pinning,
                            btf_var_index=var_index))
    return maps


def _linkage_str(linkage: int) -> str:
    return {0: "static", 1: "global", 2: "extern"}.get(linkage, "unknown")


def _from_def(name: str, d: _MapDef, kind: MapKind, section: str, section_index: int,
              offset: int, page_size: int) -> MapSpec:
    max_entries = d.max_entries
    if d.map_type in (_map_type("RINGBUF"), _map_type("USER_RINGBUF")):
        max_entries = adjust_ringbuf_size(max_entries, page_size)
    return MapSpec(name=name, real_name=name, kind=kind, type=d.map_type,
                   key_size=d.key_size, value_size=d.value_size, max_entries=max_entries,
                   flags=d.map_flags, numa_node=d.numa_node, map_extra=d.map_extra,
                   btf_key_type_id=d.key_type_id, btf_value_type_id=d.value_type_id,
                   section=section, section_index=section_index, section_offset=offset)


def adjust_ringbuf_size(size: int, page_size: int) -> int:
    """libbpf's adjust_ringbuf_sz(): ring buffers are a power-of-2 number of pages;
    a size that is not is rounded up to the next one (0 stays 0, for the kernel to
    refuse)."""
    if size == 0:
        return 0
    if size % page_size == 0 and _is_pow2(size // page_size):
        return size
    mul = 1
    while mul <= 0xFFFFFFFF // page_size:
        if mul * page_size > size:
            return mul * page_size
        mul <<= 1
    return size


def _is_pow2(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


def _field_int(map_name: str, btf: Btf, member_type: int, field: str) -> int:
    """``__uint(field, N)`` is ``int (*field)[N]``: N is the array's length."""
    t, _ = btf_util.skip_mods_and_typedefs(btf, member_type)
    if t is None or t.kind != Kind.PTR:
        raise LoaderError(f"map '{map_name}': attr '{field}': expected PTR, got "
                          f"{btf_util.kind_str(t)}.")
    arr = btf.type(t.ref)
    if arr is None:
        raise LoaderError(f"map '{map_name}': attr '{field}': type [{t.ref}] not found.")
    if arr.kind != Kind.ARRAY:
        raise LoaderError(f"map '{map_name}': attr '{field}': expected ARRAY, got "
                          f"{btf_util.kind_str(arr)}.")
    return arr.nelems


def _parse_map_def(map_name: str, btf: Btf, def_t: Type, strict: bool, d: _MapDef,
                   inner_def: _MapDef | None) -> None:
    """libbpf's parse_btf_map_def(); ``inner_def`` None means this is an inner map."""
    is_inner = inner_def is None
    vlen = len(def_t.members)
    for i, m in enumerate(def_t.members):
        name = m.name
        if name == "type":
            d.map_type = _field_int(map_name, btf, m.type, name)
        elif name == "max_entries":
            d.max_entries = _field_int(map_name, btf, m.type, name)
        elif name == "map_flags":
            d.map_flags = _field_int(map_name, btf, m.type, name)
        elif name == "numa_node":
            d.numa_node = _field_int(map_name, btf, m.type, name)
        elif name in ("key_size", "value_size"):
            size = _field_int(map_name, btf, m.type, name)
            _set_size(map_name, d, name[:-5], size)
        elif name in ("key", "value"):
            t = btf.type(m.type)
            if t is None:
                raise LoaderError(f"map '{map_name}': {name} type [{m.type}] not found.")
            if t.kind != Kind.PTR:
                raise LoaderError(f"map '{map_name}': {name} spec is not PTR: "
                                  f"{btf_util.kind_str(t)}.")
            size = btf_util.resolve_size(btf, t.ref)
            if size < 0:
                raise LoaderError(f"map '{map_name}': can't determine {name} size for type "
                                  f"[{t.ref}]: {size}.")
            _set_size(map_name, d, name, size)
            setattr(d, f"{name}_type_id", t.ref)
        elif name == "values":
            in_map = is_map_in_map(d.map_type)
            prog_array = d.map_type == _map_type("PROG_ARRAY")
            desc = "map-in-map inner" if in_map else "prog-array value"
            if is_inner:
                raise LoaderError(f"map '{map_name}': multi-level inner maps not supported.")
            if i != vlen - 1:
                raise LoaderError(f"map '{map_name}': '{name}' member should be last.")
            if not in_map and not prog_array:
                raise LoaderError(f"map '{map_name}': should be map-in-map or prog-array.")
            if d.value_size and d.value_size != 4:
                raise LoaderError(f"map '{map_name}': conflicting value size "
                                  f"{d.value_size} != 4.")
            d.value_size = 4
            t = btf.type(m.type)
            if t is None:
                raise LoaderError(f"map '{map_name}': {desc} type [{m.type}] not found.")
            if t.kind != Kind.ARRAY or t.nelems:
                raise LoaderError(f"map '{map_name}': {desc} spec is not a zero-sized array.")
            t, _ = btf_util.skip_mods_and_typedefs(btf, t.elem_type)
            if t is None or t.kind != Kind.PTR:
                raise LoaderError(f"map '{map_name}': {desc} def is of unexpected kind "
                                  f"{btf_util.kind_str(t)}.")
            t, _ = btf_util.skip_mods_and_typedefs(btf, t.ref)
            if prog_array:
                if t is None or t.kind != Kind.FUNC_PROTO:
                    raise LoaderError(f"map '{map_name}': prog-array value def is of "
                                      f"unexpected kind {btf_util.kind_str(t)}.")
                continue
            if t is None or t.kind != Kind.STRUCT:
                raise LoaderError(f"map '{map_name}': map-in-map inner def is of unexpected "
                                  f"kind {btf_util.kind_str(t)}.")
            assert inner_def is not None
            _parse_map_def(f"{map_name}.inner", btf, t, strict, inner_def, None)
            d.inner = inner_def
        elif name == "pinning":
            if is_inner:
                raise LoaderError(f"map '{map_name}': inner def can't be pinned.")
            value = _field_int(map_name, btf, m.type, name)
            if value not in (LIBBPF_PIN_NONE, LIBBPF_PIN_BY_NAME):
                raise LoaderError(f"map '{map_name}': invalid pinning value {value}.")
            d.pinning = value
        elif name == "map_extra":
            d.map_extra = _field_int(map_name, btf, m.type, name)
        elif strict:
            raise LoaderError(f"map '{map_name}': unknown field '{name}'.")
    if d.map_type == 0:
        raise LoaderError(f"map '{map_name}': map type isn't specified.")


def _set_size(map_name: str, d: _MapDef, what: str, size: int) -> None:
    current = getattr(d, f"{what}_size")
    if current and current != size:
        raise LoaderError(f"map '{map_name}': conflicting {what} size {current} != {size}.")
    setattr(d, f"{what}_size", size)


# ------------------------------------------------------------- global data maps


def internal_map_name(obj_name: str, real_name: str) -> str:
    """libbpf's internal_map_name(): object-name prefix + section name in 15 bytes,
    keeping at least 7 bytes (all of ".rodata") for the section part; sections with a
    second dot (.rodata.str1.1, .data.custom) get no prefix. Characters the kernel
    refuses become '_'."""
    limit = BPF_OBJ_NAME_LEN - 1
    real = real_name.encode()
    obj = obj_name.encode()
    sfx_len = min(max(7, len(real)), limit)
    if b"." in real[1:]:
        pfx_len = 0
    else:
        pfx_len = min(BPF_OBJ_NAME_LEN - sfx_len - 1, len(obj))
    name = (obj[:pfx_len] + real[:sfx_len])[:limit]
    return re.sub(rb"[^A-Za-z0-9_.]", b"_", name).decode("ascii")


def data_map(btf: Btf | None, obj_name: str, kind: MapKind, section: str, section_index: int,
             data: bytes | None, size: int) -> MapSpec:
    """An array map of one entry holding a global data section (libbpf's
    bpf_object__init_internal_map())."""
    flags = BPF_F_RDONLY_PROG if kind in (MapKind.RODATA, MapKind.KCONFIG) else 0
    value_type_id = 0
    if btf is not None:
        found = btf_util.find_by_name(btf, section)
        # failure is fine (.rodata.str1.1 has no DATASEC)
        value_type_id = found if found > 0 else 0
    if _is_mmapable(btf, value_type_id):
        flags |= BPF_F_MMAPABLE
    return MapSpec(name=internal_map_name(obj_name, section), real_name=section, kind=kind,
                   type=_map_type("ARRAY"), key_size=4, value_size=size, max_entries=1,
                   flags=flags, btf_value_type_id=value_type_id,
                   initial_value=bytes(data) if data is not None else bytes(size),
                   section=section, section_index=section_index)


def _is_mmapable(btf: Btf | None, value_type_id: int) -> bool:
    """libbpf's map_is_mmapable(): the DATASEC has a variable user space can see (not
    static, not hidden) — the skeleton will mmap such a map."""
    if btf is None or not value_type_id:
        return False
    t = btf.type(value_type_id)
    if t is None or t.kind != Kind.DATASEC:
        return False
    for info in t.secinfos:
        var = btf.type(info.type)
        if var is not None and var.kind == Kind.VAR and var.linkage != 0:
            return True
    return False
