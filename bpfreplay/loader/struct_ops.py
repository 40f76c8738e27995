"""struct_ops maps (SEC(".struct_ops")): a kernel struct of function pointers filled with
the object's programs, as libbpf 1.1.2 opens, loads and attaches them.

Open (spec stage, no kernel):

- bpf_object__init_struct_ops_maps(): one map per VAR of the ``.struct_ops`` DATASEC,
  named after the variable, after every other map; its type the VAR's type with
  typedefs and modifiers resolved (btf__resolve_type()), which must be a named struct;
  BPF_MAP_TYPE_STRUCT_OPS, key 4 bytes, value the local struct's size, one entry, no
  BTF key/value ids (map_fill_btf_type_info() skips struct_ops maps); the variable's
  bytes of the section as its data.
- bpf_object__collect_st_ops_relos(): each relocation of ``.rel.struct_ops`` names the
  map by its offset, the member by the offset within the map, and the program by the
  symbol's section and instruction; the member must be a function pointer and the
  program of type STRUCT_OPS.

Load (kernel stage), bpf_map__init_kern_struct_ops() from
bpf_object__init_kern_struct_ops_maps(), after the maps are sanitised and before they
are created:

- ``struct <name>`` and ``struct bpf_struct_ops_<name>`` in vmlinux BTF (the first of
  each name, btf__find_by_name_kind()); the member of the second whose type is the
  first holds the data;
- the map's value size becomes the kernel value struct's size and
  btf_vmlinux_value_type_id its type id (BPF_MAP_CREATE carries both);
- each local member, found by name in the kernel struct (no bitfields, same BTF kind
  after typedefs and modifiers): a function pointer with a program sets that program's
  attach_btf_id (the kernel struct's id) and expected_attach_type (the kernel member's
  index) for its BPF_PROG_LOAD and remembers where its fd goes; any other member is
  copied into the kernel value if its size is the kernel's.

Attach: bpf_map__attach_struct_ops() writes each program's fd (8 bytes) at its place
and updates key 0 with the value (the kernel registers the struct); the link's fd is the
map's, and bpf_link__detach_struct_ops() deletes key 0. A skeleton's attach in 1.1.2
attaches programs only, never struct_ops maps (bpf_object__attach_skeleton()), so
``bpfreplay run`` does not call ``attach``.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from bpfreplay.decode.btf import Btf, Kind, Type
from bpfreplay.errors import LoaderError
from bpfreplay.loader.btf_util import find_by_name_kind, resolve_size, skip_mods_and_typedefs
from bpfreplay.uapi import cmd_value, enum_values

if TYPE_CHECKING:
    from bpfreplay.loader.elf import ElfObject, Section
    from bpfreplay.loader.kernel import Link, LoadedObject
    from bpfreplay.loader.spec import MapSpec

STRUCT_OPS_SEC = ".struct_ops"
VALUE_PREFIX = "bpf_struct_ops_"  # libbpf's STRUCT_OPS_VALUE_PREFIX
BTF_MAX_NAME_SIZE = 128  # find_btf_by_prefix_kind(): longer names are ENAMETOOLONG
BPF_MAP_TYPE_STRUCT_OPS = enum_values("bpf_map_type")["BPF_MAP_TYPE_STRUCT_OPS"]
BPF_PROG_TYPE_STRUCT_OPS = enum_values("bpf_prog_type")["BPF_PROG_TYPE_STRUCT_OPS"]
BPF_INSN_SZ = 8
SHN_LORESERVE = 0xFF00
_RESOLVED_AWAY = frozenset({Kind.TYPEDEF, Kind.VOLATILE, Kind.CONST, Kind.RESTRICT,
                            Kind.VAR, Kind.DECL_TAG, Kind.TYPE_TAG})


@dataclass(frozen=True, slots=True)
class StructOpsSpec:
    """What libbpf's struct bpf_struct_ops holds after open: the local struct and the
    program of each function-pointer member (by member index)."""

    type_name: str
    type_id: int  # in the object's BTF
    data: bytes = field(repr=False)
    programs: tuple[tuple[int, str], ...] = ()  # (local member index, program name)


@dataclass
class KernStructOps:
    """bpf_map__init_kern_struct_ops()'s result for one map: the kernel's value and
    where each program's fd goes in it."""

    value_type_id: int  # btf_vmlinux_value_type_id
    type_id: int  # struct <name> in vmlinux: the programs' attach_btf_id
    value: bytearray  # kern_vdata
    func_offsets: list[tuple[str, int]] = field(default_factory=list)  # (prog, offset)
    member_of: dict[str, int] = field(default_factory=dict)  # prog -> kernel member index


# ------------------------------------------------------------------ open


def _resolve_type(btf: Btf, type_id: int) -> int:
    """btf__resolve_type(): through typedefs, modifiers, VARs and tags; -1 on void."""
    for _ in range(32):
        t = btf.type(type_id)
        if t is None:
            return -1
        if t.kind not in _RESOLVED_AWAY:
            return type_id
        type_id = t.ref
    return -1


def init_maps(btf: Btf | None, section: Section) -> list[MapSpec]:
    """bpf_object__init_struct_ops_maps() for the object's ``.struct_ops`` section."""
    from bpfreplay.loader.spec import MapKind, MapSpec

    datasec = btf.by_name(STRUCT_OPS_SEC, Kind.DATASEC) if btf is not None else None
    if btf is None or datasec is None:
        raise LoaderError(f"struct_ops init: DATASEC {STRUCT_OPS_SEC} not found")
    out = []
    for info in datasec.secinfos:
        var = btf.type(info.type)
        var_name = var.name if var is not None else ""
        type_id = _resolve_type(btf, info.type)
        if type_id < 0:
            raise LoaderError(f"struct_ops init: Cannot resolve var type_id {info.type} in "
                              f"DATASEC {STRUCT_OPS_SEC}")
        t = btf.type(type_id)
        assert t is not None
        if not t.name:
            raise LoaderError("struct_ops init: anonymous type is not supported")
        if t.kind != Kind.STRUCT:
            raise LoaderError(f"struct_ops init: {t.name} is not a struct")
        if info.offset + t.size > section.size:
            raise LoaderError(f"struct_ops init: var {var_name} is beyond the end of "
                              f"DATASEC {STRUCT_OPS_SEC}")
        data = section.data[info.offset:info.offset + t.size]
        out.append(MapSpec(
            name=var_name, real_name=var_name, kind=MapKind.USER,
            type=BPF_MAP_TYPE_STRUCT_OPS, key_size=4, value_size=t.size, max_entries=1,
            flags=0, section=STRUCT_OPS_SEC, section_index=section.index,
            section_offset=info.offset,
            struct_ops=StructOpsSpec(t.name, type_id, data)))
    return out


def _member_at(t: Type, bit_offset: int) -> int:
    """find_member_by_offset(): the index of the member at that bit offset, or -1."""
    for i, m in enumerate(t.members):
        if m.bit_offset == bit_offset:
            return i
    return -1


def _func_ptr(btf: Btf, type_id: int) -> bool:
    """resolve_func_ptr(): a pointer (through typedefs/modifiers) to a FUNC_PROTO."""
    t, _ = skip_mods_and_typedefs(btf, type_id)
    if t is None or t.kind != Kind.PTR:
        return False
    target, _ = skip_mods_and_typedefs(btf, t.ref)
    return target is not None and target.kind == Kind.FUNC_PROTO


def collect_relos(maps: list[MapSpec], btf: Btf, elf: ElfObject, relo_section: Section,
                  find_prog: Callable[[int, int], tuple[str, int] | None]) -> None:
    """bpf_object__collect_st_ops_relos(): each relocation's program recorded in its
    map's spec (``maps`` updated in place). ``find_prog(section index, insn index)``
    gives (name, prog type) of the program there (find_prog_by_sec_insn())."""
    seen: dict[str, tuple[int, int]] = {}  # prog -> (struct type id, member index)
    progs: dict[int, dict[int, str]] = {}  # map index -> member index -> prog
    for rel in elf.relocations(relo_section):
        if rel.symbol >= len(elf.symbols):
            raise LoaderError(f"struct_ops reloc: symbol {rel.symbol:x} not found")
        sym = elf.symbols[rel.symbol]
        index = next((k for k, m in enumerate(maps) if m.struct_ops is not None
                      and m.section_offset <= rel.offset < m.section_offset + m.value_size),
                     -1)
        if index < 0:
            raise LoaderError(f"struct_ops reloc: cannot find map at rel->r_offset "
                              f"{rel.offset}")
        m = maps[index]
        st_ops = m.struct_ops
        assert st_ops is not None
        moff = rel.offset - m.section_offset
        if sym.shndx >= SHN_LORESERVE:
            raise LoaderError(f"struct_ops reloc {m.name}: rel->r_offset {rel.offset} "
                              f"shdr_idx {sym.shndx} unsupported non-static function")
        if sym.value % BPF_INSN_SZ:
            raise LoaderError(f"struct_ops reloc {m.name}: invalid target program offset "
                              f"{sym.value}")
        t = btf.type(st_ops.type_id)
        assert t is not None
        member_index = _member_at(t, moff * 8)
        if member_index < 0:
            raise LoaderError(f"struct_ops reloc {m.name}: cannot find member at moff "
                              f"{moff}")
        member = t.members[member_index]
        if not _func_ptr(btf, member.type):
            raise LoaderError(f"struct_ops reloc {m.name}: cannot relocate non func ptr "
                              f"{member.name}")
        found = find_prog(sym.shndx, sym.value // BPF_INSN_SZ)
        if found is None:
            raise LoaderError(f"struct_ops reloc {m.name}: cannot find prog at shdr_idx "
                              f"{sym.shndx} to relocate func ptr {member.name}")
        prog, prog_type = found
        if prog_type != BPF_PROG_TYPE_STRUCT_OPS:
            raise LoaderError(f"struct_ops reloc {m.name}: prog {prog} is not struct_ops "
                              "BPF program")
        first = seen.setdefault(prog, (st_ops.type_id, member_index))
        if first != (st_ops.type_id, member_index):
            raise LoaderError(f"struct_ops reloc {m.name}: cannot use prog {prog} with "
                              f"attach_btf_id {first[0]} expected_attach_type {first[1]} "
                              f"for func ptr {member.name}")
        progs.setdefault(index, {})[member_index] = prog
    for index, by_member in progs.items():
        st_ops = maps[index].struct_ops
        assert st_ops is not None
        maps[index] = replace(maps[index], struct_ops=replace(
            st_ops, programs=tuple(sorted(by_member.items()))))


# ------------------------------------------------------------------ load


def _kern_types(vmlinux: Btf, name: str) -> tuple[Type, Type, int]:
    """find_struct_ops_kern_types(): (struct <name>, struct bpf_struct_ops_<name>, the
    byte offset of the data member in the second)."""
    type_id = find_by_name_kind(vmlinux, name, Kind.STRUCT)
    if type_id < 0:
        raise LoaderError(f"struct_ops init_kern: struct {name} is not found in kernel BTF")
    if len(VALUE_PREFIX + name) >= BTF_MAX_NAME_SIZE:
        raise LoaderError(f"struct_ops init_kern: struct {VALUE_PREFIX}{name} is not found "
                          "in kernel BTF (name too long)")
    value_id = find_by_name_kind(vmlinux, VALUE_PREFIX + name, Kind.STRUCT)
    if value_id < 0:
        raise LoaderError(f"struct_ops init_kern: struct {VALUE_PREFIX}{name} is not found "
                          "in kernel BTF")
    kern_type, kern_value = vmlinux.type(type_id), vmlinux.type(value_id)
    assert kern_type is not None and kern_value is not None
    for m in kern_value.members:
        if m.type == type_id:
            return kern_type, kern_value, m.bit_offset // 8
    raise LoaderError(f"struct_ops init_kern: struct {name} data is not found in struct "
                      f"{VALUE_PREFIX}{name}")


def init_kern(m: MapSpec, btf: Btf, vmlinux: Btf) -> KernStructOps:
    """bpf_map__init_kern_struct_ops() for one map."""
    st_ops = m.struct_ops
    assert st_ops is not None
    where = f"struct_ops init_kern {m.name}"
    kern_type, kern_value, data_off = _kern_types(vmlinux, st_ops.type_name)
    out = KernStructOps(kern_value.id, kern_type.id, bytearray(kern_value.size))
    local = btf.type(st_ops.type_id)
    assert local is not None
    progs = dict(st_ops.programs)
    for i, member in enumerate(local.members):
        kern_index = next((k for k, km in enumerate(kern_type.members)
                           if km.name == member.name), -1)
        if kern_index < 0:
            raise LoaderError(f"{where}: Cannot find member {member.name} in kernel BTF")
        kern_member = kern_type.members[kern_index]
        if member.bitfield_size or kern_member.bitfield_size:
            raise LoaderError(f"{where}: bitfield {member.name} is not supported")
        moff, kern_moff = member.bit_offset // 8, kern_member.bit_offset // 8
        mtype, mtype_id = skip_mods_and_typedefs(btf, member.type)
        kern_mtype, kern_mtype_id = skip_mods_and_typedefs(vmlinux, kern_member.type)
        kind = mtype.kind if mtype is not None else 0
        kern_kind = kern_mtype.kind if kern_mtype is not None else 0
        if kind != kern_kind:
            raise LoaderError(f"{where}: Unmatched member type {member.name} {kind} != "
                              f"{kern_kind}(kernel)")
        if kind == Kind.PTR:
            prog = progs.get(i)
            if prog is None:
                continue
            assert kern_mtype is not None
            target, _ = skip_mods_and_typedefs(vmlinux, kern_mtype.ref)
            if target is None or target.kind != Kind.FUNC_PROTO:
                raise LoaderError(f"{where}: kernel member {member.name} is not a func ptr")
            out.func_offsets.append((prog, data_off + kern_moff))
            out.member_of[prog] = kern_index
            continue
        size, kern_size = resolve_size(btf, mtype_id), resolve_size(vmlinux, kern_mtype_id)
        if size < 0 or kern_size < 0 or size != kern_size:
            raise LoaderError(f"{where}: Error in size of member {member.name}: {size} != "
                              f"{kern_size}(kernel)")
        out.value[data_off + kern_moff:data_off + kern_moff + size] = \
            st_ops.data[moff:moff + size]
    return out


def init_kern_maps(obj: LoadedObject, vmlinux: Btf | None) -> None:
    """bpf_object__init_kern_struct_ops_maps(): every struct_ops map's kernel value,
    value size and type id (obj.struct_ops, read at map create), and its programs'
    (attach_btf_id, expected_attach_type) (obj.struct_ops_progs, read at load)."""
    for loaded in obj.maps:
        if loaded.spec.struct_ops is None:
            continue
        if vmlinux is None or obj.spec.btf is None:
            raise LoaderError(f"struct_ops init_kern {loaded.spec.name}: no kernel BTF")
        kern = init_kern(loaded.spec, obj.spec.btf, vmlinux)
        obj.struct_ops[loaded.spec.name] = kern
        for prog, kern_index in kern.member_of.items():
            obj.struct_ops_progs[prog] = (kern.type_id, kern_index)


def create_args(obj: LoadedObject, spec: MapSpec) -> tuple[int, int]:
    """(value_size, btf_vmlinux_value_type_id) bpf_object__create_map() passes."""
    kern = obj.struct_ops.get(spec.name) if spec.struct_ops is not None else None
    if kern is None:
        return spec.value_size, 0
    return len(kern.value), kern.value_type_id


# ------------------------------------------------------------------ attach

BPF_MAP_DELETE_ELEM = cmd_value("BPF_MAP_DELETE_ELEM")


def attach(obj: LoadedObject, map_name: str) -> Link:
    """bpf_map__attach_struct_ops(): the programs' fds written into the kernel value,
    key 0 updated with it; the Link's destroy deletes key 0
    (bpf_link__detach_struct_ops())."""
    from bpfreplay.loader import bpfcalls
    from bpfreplay.loader.kernel import Link

    loaded = obj.map(map_name)
    kern = obj.struct_ops.get(loaded.spec.name)
    if kern is None or loaded.fd < 0:
        raise LoaderError(f"map '{map_name}': not a loaded struct_ops map (-EINVAL)")
    for prog, offset in kern.func_offsets:
        struct.pack_into("<Q", kern.value, offset, obj.program(prog).fd & (2**64 - 1))
    try:
        bpfcalls.map_update_elem(loaded.fd, struct.pack("<I", 0), bytes(kern.value))
    except OSError as e:
        raise LoaderError(f"map '{map_name}': registering the struct_ops (MAP_UPDATE_ELEM "
                          f"of key 0) failed: {e.strerror}") from e

    def detach() -> None:
        try:
            _delete_key_zero(loaded.fd)
        except OSError:
            pass

    assert loaded.spec.struct_ops is not None
    return Link(map_name, "struct_ops", loaded.fd,
                target=f"struct {loaded.spec.struct_ops.type_name}", destroy=detach)


def _delete_key_zero(fd: int) -> None:
    """bpf_map_delete_elem(fd, &zero): attr size offsetofend(flags), 32."""
    from bpfreplay import sys as bsys
    from bpfreplay.loader import bpfcalls

    keep = bsys.Buffers()
    attr = bpfcalls.Attr(BPF_MAP_DELETE_ELEM, bpfcalls.MAP_ELEM_SIZE)
    attr.set("map_fd", fd).set("key", keep.bytes_at(struct.pack("<I", 0)))
    attr.call()

