"""BTF queries with libbpf's exact semantics (btf__resolve_size, btf__align_of,
skip_mods_and_typedefs, btf__find_by_name ...), on a parsed ``Btf``.

Void (id 0) is ``None``. Errors are returned as None / negative numbers where libbpf
returns error codes, so callers can word the failure the way libbpf does.
"""

from __future__ import annotations

from bpfreplay.decode.btf import Btf, Kind, Type

MAX_RESOLVE_DEPTH = 32
_MODS = frozenset({Kind.VOLATILE, Kind.CONST, Kind.RESTRICT, Kind.TYPE_TAG})
_SIZED = frozenset({Kind.INT, Kind.STRUCT, Kind.UNION, Kind.ENUM, Kind.ENUM64, Kind.DATASEC,
                    Kind.FLOAT})
_REF = frozenset({Kind.TYPEDEF, Kind.VOLATILE, Kind.CONST, Kind.RESTRICT, Kind.VAR,
                  Kind.DECL_TAG, Kind.TYPE_TAG})


def skip_mods_and_typedefs(btf: Btf, type_id: int) -> tuple[Type | None, int]:
    """(type, id) after following const/volatile/restrict/type tags and typedefs."""
    t = btf.type(type_id)
    for _ in range(1000):
        if t is None or (t.kind not in _MODS and t.kind != Kind.TYPEDEF):
            break
        type_id = t.ref
        t = btf.type(type_id)
    return t, type_id


def resolve_size(btf: Btf, type_id: int) -> int:
    """libbpf's btf__resolve_size(): the size, or -1 when the type has none (void,
    functions, too deep, too big)."""
    nelems = 1
    size = -1
    t = btf.type(type_id)
    for _ in range(MAX_RESOLVE_DEPTH):
        if t is None:
            break
        if t.kind in _SIZED:
            size = t.size
            break
        if t.kind == Kind.PTR:
            size = 8  # BPF objects: 8-byte pointers (btf__set_pointer_size(8))
            break
        if t.kind in _REF:
            type_id = t.ref
        elif t.kind == Kind.ARRAY:
            if nelems and t.nelems > 0xFFFFFFFF // nelems:
                return -1
            nelems *= t.nelems
            type_id = t.elem_type
        else:
            return -1
        t = btf.type(type_id)
    if size < 0:
        return -1
    if nelems and size > 0xFFFFFFFF // nelems:
        return -1
    return nelems * size


def align_of(btf: Btf, type_id: int, depth: int = 0) -> int:
    """libbpf's btf__align_of() (pointer size 8); <= 0 when it has none."""
    t = btf.type(type_id)
    if t is None or depth > MAX_RESOLVE_DEPTH:
        return 0
    if t.kind in (Kind.INT, Kind.ENUM, Kind.ENUM64, Kind.FLOAT):
        return min(8, t.size)
    if t.kind == Kind.PTR:
        return 8
    if t.kind in (Kind.TYPEDEF, Kind.VOLATILE, Kind.CONST, Kind.RESTRICT, Kind.TYPE_TAG):
        return align_of(btf, t.ref, depth + 1)
    if t.kind == Kind.ARRAY:
        return align_of(btf, t.elem_type, depth + 1)
    if t.kind in (Kind.STRUCT, Kind.UNION):
        max_align = 1
        for m in t.members:
            align = align_of(btf, m.type, depth + 1)
            if align <= 0:
                return align
            max_align = max(max_align, align)
            # a member off its natural alignment means a packed struct
            if m.bitfield_size == 0 and m.bit_offset % (8 * align) != 0:
                return 1
        if t.size % max_align != 0:
            return 1
        return max_align
    return 0


def find_by_name(btf: Btf, name: str) -> int:
    """libbpf's btf__find_by_name(): the first type (any kind) called ``name``, or -1.
    Like libbpf, "void" finds id 0."""
    if name == "void":
        return 0
    t = btf.by_name(name)
    return t.id if t is not None else -1


def find_by_name_kind(btf: Btf, name: str, kind: int) -> int:
    t = btf.by_name(name, kind)
    return t.id if t is not None else -1


def member_bit_offset(t: Type, index: int) -> int:
    return t.members[index].bit_offset


def is_composite(t: Type | None) -> bool:
    return t is not None and t.kind in (Kind.STRUCT, Kind.UNION)


def is_any_enum(t: Type | None) -> bool:
    return t is not None and t.kind in (Kind.ENUM, Kind.ENUM64)


def kind_core_compat(a: Type | None, b: Type | None) -> bool:
    """libbpf's btf_kind_core_compat(): same kind, or both enums of either width."""
    ka = a.kind if a is not None else 0
    kb = b.kind if b is not None else 0
    return ka == kb or (is_any_enum(a) and is_any_enum(b))


def kind_str(t: Type | None) -> str:
    """libbpf's btf_kind_str() wording ("struct", "typedef", ...)."""
    if t is None:
        return "void"
    return _KIND_STR.get(t.kind, "unknown")


_KIND_STR = {
    Kind.UNKN: "void", Kind.INT: "int", Kind.PTR: "ptr", Kind.ARRAY: "array",
    Kind.STRUCT: "struct", Kind.UNION: "union", Kind.ENUM: "enum", Kind.FWD: "fwd",
    Kind.TYPEDEF: "typedef", Kind.VOLATILE: "volatile", Kind.CONST: "const",
    Kind.RESTRICT: "restrict", Kind.FUNC: "func", Kind.FUNC_PROTO: "func_proto",
    Kind.VAR: "var", Kind.DATASEC: "datasec", Kind.FLOAT: "float", Kind.DECL_TAG: "decl_tag",
    Kind.TYPE_TAG: "type_tag", Kind.ENUM64: "enum64",
}
