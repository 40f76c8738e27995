"""CO-RE relocations, as libbpf 1.1.2's relo_core.c computes and applies them.

For each .BTF.ext CO-RE record: parse the local access spec ("0:1:2" against a local
type), find target candidates (target types of a compatible kind whose name matches
up to a "___flavor" suffix), match the spec against each, compute the old and new
values, and patch the instruction (ALU imm, LDX/ST/STX offset and size, ld_imm64).
Failed matches that libbpf tolerates poison the instruction (call to helper 0xbad2310)
for the verifier to reject only if it is reachable.

libbpf keeps one candidate list per local type for the whole object and prunes it as
relocations match; that cache is reproduced (``CoreTarget`` indexes the target BTF by
name once, ``apply_core_relocations`` keeps the per-object candidate cache).
"""

from __future__ import annotations

import struct
import weakref
from dataclasses import dataclass, field
from typing import Protocol

from bpfreplay.decode.btf import Btf, Kind, Type
from bpfreplay.errors import LoaderError
from bpfreplay.loader import btf_util
from bpfreplay.loader.btf_ext import CoreReloKind as K
from bpfreplay.loader.spec import ObjectSpec, ProgramCoreRelo

SPEC_MAX_LEN = 64
POISON_IMM = 195896080  # 0xbad2310: "bad relo"
_U64 = (1 << 64) - 1

_FIELD_KINDS = frozenset({K.FIELD_BYTE_OFFSET, K.FIELD_BYTE_SIZE, K.FIELD_EXISTS,
                          K.FIELD_SIGNED, K.FIELD_LSHIFT_U64, K.FIELD_RSHIFT_U64})
_TYPE_KINDS = frozenset({K.TYPE_ID_LOCAL, K.TYPE_ID_TARGET, K.TYPE_EXISTS, K.TYPE_MATCHES,
                         K.TYPE_SIZE})
_ENUMVAL_KINDS = frozenset({K.ENUMVAL_EXISTS, K.ENUMVAL_VALUE})
_KIND_STR = {K.FIELD_BYTE_OFFSET: "byte_off", K.FIELD_BYTE_SIZE: "byte_sz",
             K.FIELD_EXISTS: "field_exists", K.FIELD_SIGNED: "signed",
             K.FIELD_LSHIFT_U64: "lshift_u64", K.FIELD_RSHIFT_U64: "rshift_u64",
             K.TYPE_ID_LOCAL: "local_type_id", K.TYPE_ID_TARGET: "target_type_id",
             K.TYPE_EXISTS: "type_exists", K.TYPE_MATCHES: "type_matches",
             K.TYPE_SIZE: "type_size", K.ENUMVAL_EXISTS: "enumval_exists",
             K.ENUMVAL_VALUE: "enumval_value"}


class _Poison(Exception):
    """libbpf's -EUCLEAN: the relocation cannot be satisfied; poison the insn."""


class _Fail(Exception):
    """A negative errno from libbpf's CO-RE code (the relocation fails the load)."""

    def __init__(self, errno_name: str, message: str = "") -> None:
        super().__init__(message or errno_name)
        self.errno_name = errno_name


def essential_name_len(name: str) -> int:
    """Length of ``name`` without its last "___flavor" suffix."""
    n = len(name)
    for i in range(n - 5, -1, -1):
        if name[i] != "_" and name[i + 1:i + 4] == "___" and name[i + 4] != "_":
            return i + 1
    return n


class CoreTarget:
    """A target BTF (vmlinux) searched by essential name for candidates (the index is
    the BTF's own: ``Btf.ids_by_essential_name``)."""

    def __init__(self, btf: Btf) -> None:
        self.btf = btf

    def candidates(self, local_btf: Btf, local_id: int) -> list[tuple[Btf, int]]:
        """libbpf's bpf_core_add_cands() over this BTF, in id order."""
        local_t = local_btf.type(local_id)
        name = local_t.name if local_t is not None else ""
        essential = name[:essential_name_len(name)]
        out = []
        for type_id in self.btf.ids_by_essential_name(essential, essential_name_len):
            if btf_util.kind_core_compat(self.btf.type(type_id), local_t):
                out.append((self.btf, type_id))
        return out


_TARGETS: dict[int, tuple[weakref.ref[Btf], CoreTarget]] = {}


def core_target(btf: Btf) -> CoreTarget:
    """The (cached) candidate index of a target BTF: indexing vmlinux's ~100k types
    takes ~0.1 s, and the kernel stage relocates program by program."""
    hit = _TARGETS.get(id(btf))
    if hit is not None and hit[0]() is btf:
        return hit[1]
    key, targets = id(btf), _TARGETS  # (module globals may be gone at exit)
    target = CoreTarget(btf)
    targets[key] = (weakref.ref(btf, lambda _ref: targets.pop(key, None)), target)
    return target


# ------------------------------------------------------------------ specs


@dataclass
class _Accessor:
    type_id: int
    idx: int
    name: str | None = None


@dataclass
class _Spec:
    btf: Btf
    root_type_id: int
    relo_kind: int
    spec: list[_Accessor] = field(default_factory=list)
    raw_spec: list[int] = field(default_factory=list)
    bit_offset: int = 0

    def copy(self) -> _Spec:
        return _Spec(self.btf, self.root_type_id, self.relo_kind,
                     [_Accessor(a.type_id, a.idx, a.name) for a in self.spec],
                     list(self.raw_spec), self.bit_offset)


def _valid(btf: Btf, type_id: int) -> bool:
    """libbpf's btf__type_by_id() is non-NULL for void (id 0) and every id in range."""
    return type_id == 0 or btf.type(type_id) is not None


def _skip(btf: Btf, type_id: int) -> tuple[Type | None, int, bool]:
    t, tid = btf_util.skip_mods_and_typedefs(btf, type_id)
    return t, tid, _valid(btf, tid)


def _kind(t: Type | None) -> int:
    return t.kind if t is not None else Kind.UNKN


def _resolve_size(btf: Btf, type_id: int) -> int:
    size = btf_util.resolve_size(btf, type_id)
    if size < 0:
        raise _Fail("EINVAL")
    return size


def _is_flex_arr(btf: Btf, acc: _Accessor | None, arr: Type) -> bool:
    if acc is None or not acc.name or arr.nelems > 0:
        return False
    t = btf.type(acc.type_id)
    return t is not None and acc.idx == len(t.members) - 1


def parse_spec(btf: Btf, relo_kind: int, type_id: int, access: str) -> _Spec:
    """libbpf's bpf_core_parse_spec()."""
    if not access or access.startswith(":"):
        raise _Fail("EINVAL")
    spec = _Spec(btf, type_id, relo_kind)
    if relo_kind in _TYPE_KINDS:
        if access != "0":
            raise _Fail("EINVAL")
        return spec
    for part in access.split(":"):
        try:
            spec.raw_spec.append(int(part))
        except ValueError:
            raise _Fail("EINVAL") from None
        if len(spec.raw_spec) > SPEC_MAX_LEN:
            raise _Fail("E2BIG")
    t, tid, ok = _skip(btf, type_id)
    if not ok:
        raise _Fail("EINVAL")
    access_idx = spec.raw_spec[0]
    spec.spec.append(_Accessor(tid, access_idx))
    if relo_kind in _ENUMVAL_KINDS:
        if not btf_util.is_any_enum(t) or len(spec.raw_spec) > 1 or \
                access_idx >= len(t.enumerators):  # type: ignore[union-attr]
            raise _Fail("EINVAL")
        spec.spec[0].name = t.enumerators[access_idx].name  # type: ignore[union-attr]
        return spec
    if relo_kind not in _FIELD_KINDS:
        raise _Fail("EINVAL")
    spec.bit_offset = access_idx * _resolve_size(btf, tid) * 8
    for access_idx in spec.raw_spec[1:]:
        t, tid, ok = _skip(btf, tid)
        if not ok:
            raise _Fail("EINVAL")
        if btf_util.is_composite(t):
            assert t is not None
            if access_idx >= len(t.members) or access_idx < 0:
                raise _Fail("EINVAL")
            m = t.members[access_idx]
            spec.bit_offset += m.bit_offset
            if m.name:
                spec.spec.append(_Accessor(tid, access_idx, m.name))
            tid = m.type
        elif t is not None and t.kind == Kind.ARRAY:
            arr = t
            _, tid, ok = _skip(btf, arr.elem_type)
            if not ok:
                raise _Fail("EINVAL")
            flex = _is_flex_arr(btf, spec.spec[-1] if spec.spec else None, arr)
            if not flex and access_idx >= arr.nelems:
                raise _Fail("EINVAL")
            spec.spec.append(_Accessor(tid, access_idx))
            spec.bit_offset += access_idx * _resolve_size(btf, tid) * 8
        else:
            raise _Fail("EINVAL", f"relo for [{type_id}] {access} (at idx "
                                  f"{len(spec.spec)}) captures type [{tid}] of unexpected "
                                  f"kind {btf_util.kind_str(t)}")
    return spec


# ------------------------------------------------------------------ compatibility


def types_are_compat(local_btf: Btf, local_id: int, targ_btf: Btf, targ_id: int,
                     level: int = 32) -> int:
    """libbpf's __bpf_core_types_are_compat(): 1, 0, or raises _Fail."""
    if not btf_util.kind_core_compat(local_btf.type(local_id), targ_btf.type(targ_id)):
        return 0
    depth = 32
    while True:
        depth -= 1
        if depth < 0:
            raise _Fail("EINVAL")
        lt, local_id, lok = _skip(local_btf, local_id)
        tt, targ_id, tok = _skip(targ_btf, targ_id)
        if not lok or not tok:
            raise _Fail("EINVAL")
        if not btf_util.kind_core_compat(lt, tt):
            return 0
        kind = _kind(lt)
        if kind in (Kind.UNKN, Kind.STRUCT, Kind.UNION, Kind.ENUM, Kind.FWD, Kind.ENUM64):
            return 1
        assert lt is not None and tt is not None
        if kind == Kind.INT:
            return int(lt.bits_offset == 0 and tt.bits_offset == 0)
        if kind == Kind.PTR:
            local_id, targ_id = lt.ref, tt.ref
            continue
        if kind == Kind.ARRAY:
            local_id, targ_id = lt.elem_type, tt.elem_type
            continue
        if kind == Kind.FUNC_PROTO:
            if len(lt.members) != len(tt.members):
                return 0
            for lp, tp in zip(lt.members, tt.members, strict=True):
                if level <= 0:
                    raise _Fail("EINVAL")
                _, lpid = btf_util.skip_mods_and_typedefs(local_btf, lp.type)
                _, tpid = btf_util.skip_mods_and_typedefs(targ_btf, tp.type)
                result = types_are_compat(local_btf, lpid, targ_btf, tpid, level - 1)
                if result <= 0:
                    return result
            _, local_id = btf_util.skip_mods_and_typedefs(local_btf, lt.ref)
            _, targ_id = btf_util.skip_mods_and_typedefs(targ_btf, tt.ref)
            continue
        return 0


def _fields_are_compat(local_btf: Btf, local_id: int, targ_btf: Btf, targ_id: int) -> int:
    while True:
        lt, local_id, lok = _skip(local_btf, local_id)
        tt, targ_id, tok = _skip(targ_btf, targ_id)
        if not lok or not tok:
            raise _Fail("EINVAL")
        if btf_util.is_composite(lt) and btf_util.is_composite(tt):
            return 1
        if not btf_util.kind_core_compat(lt, tt):
            return 0
        kind = _kind(lt)
        if kind in (Kind.PTR, Kind.FLOAT):
            return 1
        assert lt is not None and tt is not None
        if kind in (Kind.FWD, Kind.ENUM, Kind.ENUM64):
            ll, tl = essential_name_len(lt.name), essential_name_len(tt.name)
            return int(ll == 0 or tl == 0 or (ll == tl and lt.name[:ll] == tt.name[:ll]))
        if kind == Kind.INT:
            return int(lt.bits_offset == 0 and tt.bits_offset == 0)
        if kind == Kind.ARRAY:
            local_id, targ_id = lt.elem_type, tt.elem_type
            continue
        return 0


def _names_match(local_name: str, targ_name: str) -> bool:
    if not targ_name:
        return not local_name
    tl, ll = essential_name_len(targ_name), essential_name_len(local_name)
    return tl == ll and local_name[:ll] == targ_name[:ll]


def types_match(local_btf: Btf, local_id: int, targ_btf: Btf, targ_id: int,
                behind_ptr: bool = False, level: int = 32) -> int:
    """libbpf's __bpf_core_types_match() (TYPE_MATCHES relocations)."""
    if level <= 0:
        raise _Fail("EINVAL")
    depth = 32
    while True:
        depth -= 1
        if depth < 0:
            raise _Fail("EINVAL")
        lt, local_id, lok = _skip(local_btf, local_id)
        tt, targ_id, tok = _skip(targ_btf, targ_id)
        if not lok or not tok:
            raise _Fail("EINVAL")
        if not _names_match(lt.name if lt else "", tt.name if tt else ""):
            return 0
        lk, tk = _kind(lt), _kind(tt)
        if lk == Kind.UNKN:
            return int(lk == tk)
        assert lt is not None and tt is not None
        if lk == Kind.FWD:
            if behind_ptr:
                if lk == tk:
                    return int(lt.kind_flag == tt.kind_flag)
                return int((tk == Kind.STRUCT and not lt.kind_flag)
                           or (tk == Kind.UNION and lt.kind_flag))
            return int(lk == tk and lt.kind_flag == tt.kind_flag)
        if lk in (Kind.ENUM, Kind.ENUM64):
            if not btf_util.is_any_enum(tt) or lt.size != tt.size:
                return 0
            if len(lt.enumerators) > len(tt.enumerators):
                return 0
            return int(all(any(_names_match(le.name, te.name) for te in tt.enumerators)
                           for le in lt.enumerators))
        if lk in (Kind.STRUCT, Kind.UNION):
            if behind_ptr:
                if lk == tk:
                    return 1
                if tk != Kind.FWD:
                    return 0
                return int((lk == Kind.UNION) == tt.kind_flag)
            if lk != tk or len(lt.members) > len(tt.members):
                return 0
            for lm in lt.members:
                matched = False
                for tm in tt.members:
                    if not _names_match(lm.name, tm.name):
                        continue
                    result = types_match(local_btf, lm.type, targ_btf, tm.type, behind_ptr,
                                         level - 1)
                    if result > 0:
                        matched = True
                        break
                if not matched:
                    return 0
            return 1
        if lk == Kind.INT:
            return int(lk == tk and lt.size == tt.size
                       and (lt.encoding & 1) == (tt.encoding & 1))
        if lk == Kind.PTR:
            if lk != tk:
                return 0
            behind_ptr = True
            local_id, targ_id = lt.ref, tt.ref
            continue
        if lk == Kind.ARRAY:
            if lk != tk or lt.nelems != tt.nelems:
                return 0
            local_id, targ_id = lt.elem_type, tt.elem_type
            continue
        if lk == Kind.FUNC_PROTO:
            if lk != tk or len(lt.members) != len(tt.members):
                return 0
            for lp, tp in zip(lt.members, tt.members, strict=True):
                result = types_match(local_btf, lp.type, targ_btf, tp.type, behind_ptr,
                                     level - 1)
                if result <= 0:
                    return result
            local_id, targ_id = lt.ref, tt.ref
            continue
        return 0


# ------------------------------------------------------------------ matching


def _match_member(local_btf: Btf, local_acc: _Accessor, targ_btf: Btf, targ_id: int,
                  spec: _Spec) -> tuple[int, int]:
    """libbpf's bpf_core_match_member(): (found, next target id). Mutates ``spec``
    exactly as libbpf does, including on the paths where it does not undo its work."""
    tt, targ_id, ok = _skip(targ_btf, targ_id)
    if not ok:
        raise _Fail("EINVAL")
    if not btf_util.is_composite(tt):
        return 0, 0
    assert tt is not None
    local_t = local_btf.type(local_acc.type_id)
    assert local_t is not None
    local_member = local_t.members[local_acc.idx]
    for i, m in enumerate(tt.members):
        if len(spec.raw_spec) == SPEC_MAX_LEN:
            raise _Fail("E2BIG")
        spec.bit_offset += m.bit_offset
        spec.raw_spec.append(i)
        if not m.name:
            found, next_id = _match_member(local_btf, local_acc, targ_btf, m.type, spec)
            if found:
                return found, next_id
        elif m.name == local_member.name:
            spec.spec.append(_Accessor(targ_id, i, m.name))
            found = _fields_are_compat(local_btf, local_member.type, targ_btf, m.type)
            if not found:
                spec.spec.pop()
            return found, m.type
        spec.bit_offset -= m.bit_offset
        spec.raw_spec.pop()
    return 0, 0


def _spec_match(local: _Spec, targ_btf: Btf, targ_id: int) -> tuple[int, _Spec]:
    """libbpf's bpf_core_spec_match(): (1 matched / 0 not, target spec)."""
    targ = _Spec(targ_btf, targ_id, local.relo_kind)
    if local.relo_kind in _TYPE_KINDS:
        if local.relo_kind == K.TYPE_MATCHES:
            return types_match(local.btf, local.root_type_id, targ_btf, targ_id), targ
        return types_are_compat(local.btf, local.root_type_id, targ_btf, targ_id), targ
    if local.relo_kind in _ENUMVAL_KINDS:
        tt, targ_id, _ = _skip(targ_btf, targ_id)
        if not btf_util.is_any_enum(tt):
            return 0, targ
        assert tt is not None
        local_name = local.spec[0].name or ""
        ll = essential_name_len(local_name)
        for i, e in enumerate(tt.enumerators):
            if essential_name_len(e.name) != ll:
                continue
            if e.name[:ll] == local_name[:ll]:
                targ.spec.append(_Accessor(targ_id, i, e.name))
                targ.raw_spec.append(i)
                return 1, targ
        return 0, targ
    if local.relo_kind not in _FIELD_KINDS:
        raise _Fail("EINVAL")
    for i, local_acc in enumerate(local.spec):
        tt, targ_id, ok = _skip(targ_btf, targ_id)
        if not ok:
            raise _Fail("EINVAL")
        if local_acc.name:
            matched, targ_id = _match_member(local.btf, local_acc, targ_btf, targ_id, targ)
            if matched <= 0:
                return matched, targ
        else:
            if i > 0:
                if tt is None or tt.kind != Kind.ARRAY:
                    return 0, targ
                flex = _is_flex_arr(targ_btf, targ.spec[i - 1] if i - 1 < len(targ.spec)
                                    else None, tt)
                if not flex and local_acc.idx >= tt.nelems:
                    return 0, targ
                _, targ_id, ok = _skip(targ_btf, tt.elem_type)
                if not ok:
                    raise _Fail("EINVAL")
            if len(targ.raw_spec) == SPEC_MAX_LEN:
                raise _Fail("E2BIG")
            targ.spec.append(_Accessor(targ_id, local_acc.idx))
            targ.raw_spec.append(local_acc.idx)
            size = btf_util.resolve_size(targ_btf, targ_id)
            if size < 0:
                raise _Fail("EINVAL")
            targ.bit_offset += local_acc.idx * size * 8
    return 1, targ


# ------------------------------------------------------------------ values


@dataclass
class CoreResult:
    """libbpf's struct bpf_core_relo_res."""

    orig_val: int = 0
    new_val: int = 0
    poison: bool = False
    validate: bool = True
    fail_memsz_adjust: bool = False
    orig_sz: int = 0
    new_sz: int = 0
    orig_type_id: int = 0
    new_type_id: int = 0


def _calc_field(prog: str, relo_kind: int, insn_off: int, spec: _Spec | None,
                ) -> tuple[int, int, int, bool]:
    """(value, field size, field type id, validate) of a field relocation."""
    if relo_kind == K.FIELD_EXISTS:
        return (1 if spec else 0), 0, 0, True
    if spec is None:
        raise _Poison
    acc = spec.spec[-1]
    t = spec.btf.type(acc.type_id)
    if not acc.name:
        if relo_kind == K.FIELD_BYTE_OFFSET:
            size = _resolve_size(spec.btf, acc.type_id)
            return spec.bit_offset // 8, size, acc.type_id, True
        if relo_kind == K.FIELD_BYTE_SIZE:
            return _resolve_size(spec.btf, acc.type_id), 0, 0, True
        raise _Fail("EINVAL", f"prog '{prog}': relo {relo_kind} at insn #{insn_off // 8} "
                              f"can't be applied to array access")
    assert t is not None
    m = t.members[acc.idx]
    mt, field_type_id = btf_util.skip_mods_and_typedefs(spec.btf, m.type)
    bit_off = spec.bit_offset
    bit_sz = m.bitfield_size
    bitfield = bit_sz > 0
    if bitfield:
        byte_sz = mt.size if mt is not None else 0
        byte_off = bit_off // 8 // byte_sz * byte_sz if byte_sz else 0
        while bit_off + bit_sz - byte_off * 8 > byte_sz * 8:
            if byte_sz >= 8:
                raise _Fail("E2BIG", f"prog '{prog}': relo {relo_kind} at insn "
                                     f"#{insn_off // 8} can't be satisfied for bitfield")
            byte_sz = byte_sz * 2 if byte_sz else 1
            byte_off = bit_off // 8 // byte_sz * byte_sz
    else:
        byte_sz = _resolve_size(spec.btf, field_type_id)
        byte_off = spec.bit_offset // 8
        bit_sz = byte_sz * 8
    validate = not bitfield
    if relo_kind == K.FIELD_BYTE_OFFSET:
        if not bitfield:
            return byte_off, byte_sz, field_type_id, validate
        return byte_off, 0, 0, validate
    if relo_kind == K.FIELD_BYTE_SIZE:
        return byte_sz, 0, 0, validate
    if relo_kind == K.FIELD_SIGNED:
        signed = (btf_util.is_any_enum(mt) and mt.kind_flag) or \
            (mt is not None and mt.kind == Kind.INT and bool(mt.encoding & 1))
        return int(bool(signed)), 0, 0, True
    if relo_kind == K.FIELD_LSHIFT_U64:
        return 64 - (bit_off + bit_sz - byte_off * 8), 0, 0, validate
    if relo_kind == K.FIELD_RSHIFT_U64:
        return 64 - bit_sz, 0, 0, True
    raise _Fail("EOPNOTSUPP")


def _calc_type(relo_kind: int, spec: _Spec | None) -> tuple[int, bool]:
    if spec is None:
        return 0, True
    if relo_kind == K.TYPE_ID_TARGET:
        return spec.root_type_id, False
    if relo_kind in (K.TYPE_EXISTS, K.TYPE_MATCHES):
        return 1, True
    if relo_kind == K.TYPE_SIZE:
        return _resolve_size(spec.btf, spec.root_type_id), True
    raise _Fail("EOPNOTSUPP")


def _calc_enumval(relo_kind: int, spec: _Spec | None) -> int:
    if relo_kind == K.ENUMVAL_EXISTS:
        return 1 if spec else 0
    if relo_kind == K.ENUMVAL_VALUE:
        if spec is None:
            raise _Poison
        t = spec.btf.type(spec.spec[0].type_id)
        assert t is not None
        value = t.enumerators[spec.spec[0].idx].value
        if t.kind == Kind.ENUM:
            # struct btf_enum's val is __s32: widened to u64 with its sign
            value = value & 0xFFFFFFFF
            if value >= 1 << 31:
                value -= 1 << 32
        return value & _U64
    raise _Fail("EOPNOTSUPP")


def _calc_relo(prog: str, relo_kind: int, insn_off: int, local: _Spec,
               targ: _Spec | None) -> CoreResult:
    res = CoreResult()
    try:
        if relo_kind in _FIELD_KINDS:
            res.orig_val, res.orig_sz, res.orig_type_id, res.validate = \
                _calc_field(prog, relo_kind, insn_off, local)
            res.new_val, res.new_sz, res.new_type_id, _ = \
                _calc_field(prog, relo_kind, insn_off, targ)
            if res.orig_sz != res.new_sz:
                assert targ is not None
                orig_t = local.btf.type(res.orig_type_id)
                new_t = targ.btf.type(res.new_type_id)
                both_ptr = _kind(orig_t) == Kind.PTR and _kind(new_t) == Kind.PTR
                both_unsigned = (_kind(orig_t) == Kind.INT and _kind(new_t) == Kind.INT
                                 and orig_t.encoding != 1  # type: ignore[union-attr]
                                 and new_t.encoding != 1)  # type: ignore[union-attr]
                if not both_ptr and not both_unsigned:
                    res.fail_memsz_adjust = True
        elif relo_kind in _TYPE_KINDS:
            res.orig_val, res.validate = _calc_type(relo_kind, local)
            res.new_val, _ = _calc_type(relo_kind, targ)
        elif relo_kind in _ENUMVAL_KINDS:
            res.orig_val = _calc_enumval(relo_kind, local)
            res.new_val = _calc_enumval(relo_kind, targ)
        else:
            raise _Fail("EOPNOTSUPP")
    except _Poison:
        res.poison = True
    except _Fail as e:
        if e.errno_name == "EOPNOTSUPP":
            name = _KIND_STR.get(relo_kind, "unknown")  # type: ignore[call-overload]
            raise _Fail("EOPNOTSUPP", f"unrecognized CO-RE relocation {name} ({relo_kind}) "
                                      f"at insn #{insn_off // 8}") from None
        raise
    return res


def calc_relo(prog: str, relo: ProgramCoreRelo, local_btf: Btf,
              cands: list[tuple[Btf, int]] | None) -> CoreResult:
    """libbpf's bpf_core_calc_relo_insn(); prunes ``cands`` in place as libbpf does."""
    r = relo.relo
    local_t = local_btf.type(r.type_id)
    if local_t is None:
        raise _Fail("EINVAL", f"relo #{relo.relo_index}: local type [{r.type_id}] not found")
    try:
        local = parse_spec(local_btf, r.kind, r.type_id, r.access)
    except _Fail as e:
        raise _Fail("EINVAL", f"relo #{relo.relo_index}: parsing [{r.type_id}] "
                              f"{btf_util.kind_str(local_t)} {local_t.name or '<anon>'} + "
                              f"{r.access or '<?>'} failed: {e}") from None
    if r.kind == K.TYPE_ID_LOCAL:
        return CoreResult(orig_val=local.root_type_id, new_val=local.root_type_id,
                          validate=False)
    if not local_t.name:
        raise _Fail("EOPNOTSUPP", f"relo #{relo.relo_index}: <{_KIND_STR.get(r.kind)}> "
                                  f"({r.kind}) relocation doesn't support anonymous types")
    assert cands is not None
    result: CoreResult | None = None
    targ_spec: _Spec | None = None
    kept = []
    for targ_btf, targ_id in cands:
        matched, cand = _spec_match(local, targ_btf, targ_id)
        if matched < 0:
            raise _Fail("EINVAL")
        if matched == 0:
            continue
        cand_res = _calc_relo(prog, r.kind, r.insn_off, local, cand)
        if result is None:
            result, targ_spec = cand_res, cand
        elif targ_spec is not None and cand.bit_offset != targ_spec.bit_offset:
            raise _Fail("EINVAL", f"relo #{relo.relo_index}: field offset ambiguity: "
                                  f"{cand.bit_offset // 8} != {targ_spec.bit_offset // 8}")
        elif cand_res.poison != result.poison or cand_res.new_val != result.new_val:
            raise _Fail("EINVAL", f"relo #{relo.relo_index}: relocation decision ambiguity")
        kept.append((targ_btf, targ_id))
    if kept:
        cands[:] = kept
    if result is None:
        result = _calc_relo(prog, r.kind, r.insn_off, local, None)
    return result


# ------------------------------------------------------------------ patching


def patch_insn(prog: str, insns: bytearray, insn_index: int, relo_index: int,
               res: CoreResult) -> None:
    """libbpf's bpf_core_patch_insn() on ``insns`` (raw bytes, 8 per instruction)."""
    pos = insn_index * 8
    if pos + 8 > len(insns):
        raise LoaderError(f"prog '{prog}': relo #{relo_index}: insn #{insn_index} is past "
                          f"the end of the program")
    code = insns[pos]
    cls = code & 7
    if res.poison:
        _poison(insns, pos, code == 0x18 and pos + 16 <= len(insns))
        return
    orig, new = res.orig_val, res.new_val
    imm = struct.unpack_from("<i", insns, pos + 4)[0]
    off = struct.unpack_from("<h", insns, pos + 2)[0]
    if cls in (4, 7):  # ALU, ALU64
        if code & 0x08:
            raise LoaderError(f"prog '{prog}': relo #{relo_index}: insn #{insn_index} "
                              f"(ALU/ALU64) uses a register source")
        if res.validate and (imm & _U64) != orig:
            raise LoaderError(f"prog '{prog}': relo #{relo_index}: unexpected insn "
                              f"#{insn_index} (ALU/ALU64) value: got {imm & 0xFFFFFFFF}, "
                              f"exp {orig} -> {new}")
        struct.pack_into("<I", insns, pos + 4, new & 0xFFFFFFFF)
    elif cls in (1, 2, 3):  # LDX, ST, STX
        if res.validate and (off & _U64) != orig:
            raise LoaderError(f"prog '{prog}': relo #{relo_index}: unexpected insn "
                              f"#{insn_index} (LDX/ST/STX) value: got {off & 0xFFFFFFFF}, "
                              f"exp {orig} -> {new}")
        if new > 0x7FFF:
            raise LoaderError(f"prog '{prog}': relo #{relo_index}: insn #{insn_index} "
                              f"(LDX/ST/STX) value too big: {new}")
        if res.fail_memsz_adjust:
            _poison(insns, pos, False)
            return
        struct.pack_into("<H", insns, pos + 2, new & 0xFFFF)
        if res.new_sz != res.orig_sz:
            sizes = {0x18: 8, 0x00: 4, 0x08: 2, 0x10: 1}
            if sizes.get(code & 0x18) != res.orig_sz:
                raise LoaderError(f"prog '{prog}': relo #{relo_index}: insn #{insn_index} "
                                  f"(LDX/ST/STX) unexpected mem size: got "
                                  f"{sizes.get(code & 0x18, -1)}, exp {res.orig_sz}")
            new_code = {8: 0x18, 4: 0x00, 2: 0x08, 1: 0x10}.get(res.new_sz)
            if new_code is None:
                raise LoaderError(f"prog '{prog}': relo #{relo_index}: insn #{insn_index} "
                                  f"(LDX/ST/STX) invalid new mem size: {res.new_sz}")
            insns[pos] = (code & 0xE0) | new_code | cls
    elif cls == 0:  # LD: only ld_imm64
        second = insns[pos + 8:pos + 16]
        if code != 0x18 or len(second) < 8 or insns[pos + 1] >> 4 != 0 or off != 0 or \
                second[0] != 0 or second[1] != 0 or second[2:4] != b"\0\0":
            raise LoaderError(f"prog '{prog}': relo #{relo_index}: insn #{insn_index} "
                              f"(LDIMM64) has unexpected form")
        imm64 = (imm & 0xFFFFFFFF) | (struct.unpack_from("<I", insns, pos + 12)[0] << 32)
        if res.validate and imm64 != orig:
            raise LoaderError(f"prog '{prog}': relo #{relo_index}: unexpected insn "
                              f"#{insn_index} (LDIMM64) value: got {imm64}, exp {orig} -> "
                              f"{new}")
        struct.pack_into("<I", insns, pos + 4, new & 0xFFFFFFFF)
        struct.pack_into("<I", insns, pos + 12, (new >> 32) & 0xFFFFFFFF)
    else:
        raise LoaderError(f"prog '{prog}': relo #{relo_index}: trying to relocate "
                          f"unrecognized insn #{insn_index}, code:{code:#x}")


def _poison(insns: bytearray, pos: int, both: bool) -> None:
    for p in ((pos, pos + 8) if both else (pos,)):
        insns[p:p + 8] = struct.pack("<BBhi", 0x85, 0, 0, POISON_IMM)


# ------------------------------------------------------------------ the object


class CandidateSource(Protocol):
    """Where candidates come from: a CoreTarget (one BTF), or the loader's KernelBtf
    (vmlinux, then module BTFs where vmlinux has none: bpf_core_find_cands())."""

    def candidates(self, local_btf: Btf, local_id: int) -> list[tuple[Btf, int]]: ...


def apply_core_relocations(obj: ObjectSpec, target: Btf | CandidateSource,
                           ) -> dict[tuple[int, int], bytes]:
    """Every program's instructions with its CO-RE relocations applied, keyed by
    (section index, instruction offset) — libbpf's bpf_object__relocate_core(), which
    runs once per object, record by record in .BTF.ext order, with one candidate cache
    (so a type's candidates are searched once, and module BTFs walked at the first type
    vmlinux has none for). Programs without CO-RE records (and programs not autoloaded)
    are left out."""
    if not obj.core_relos:
        return {}
    if obj.btf is None:
        raise LoaderError(f"object '{obj.name}': CO-RE relocations without BTF")
    if isinstance(target, Btf):
        target = core_target(target)
    programs = {p.name: p for p in obj.programs}
    out: dict[tuple[int, int], bytearray] = {}
    cache: dict[int, list[tuple[Btf, int]]] = {}
    for relo in obj.core_relos:
        prog = programs[relo.program]
        if not prog.autoload:
            continue
        key = (prog.section_index, prog.insn_offset)
        insns = out.setdefault(key, bytearray(prog.insns))
        if relo.insn_index >= prog.insn_count:
            raise LoaderError(f"prog '{prog.name}': relo #{relo.relo_index}: insn "
                              f"#{relo.insn_index} is past the end of the program")
        r = relo.relo
        cands = None
        if r.kind != K.TYPE_ID_LOCAL:
            cands = cache.get(r.type_id)
            if cands is None:
                local_t = obj.btf.type(r.type_id)
                if local_t is None or not local_t.name:
                    raise LoaderError(f"prog '{prog.name}': relo #{relo.relo_index}: target "
                                      f"candidate search failed for [{r.type_id}] "
                                      f"{btf_util.kind_str(local_t)} "
                                      f"{local_t.name if local_t else ''}: -EINVAL")
                cands = cache[r.type_id] = target.candidates(obj.btf, r.type_id)
        try:
            res = calc_relo(prog.name, relo, obj.btf, cands)
        except _Fail as e:
            raise LoaderError(f"prog '{prog.name}': relo #{relo.relo_index}: failed to "
                              f"relocate: {e} (-{e.errno_name})") from None
        patch_insn(prog.name, insns, relo.insn_index, relo.relo_index, res)
    return {k: bytes(v) for k, v in out.items()}
