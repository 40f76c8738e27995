"""BTF sanitisation: what libbpf 1.1.2's bpf_object__sanitize_btf() rewrites in a copy
of the object's BTF before loading it into a kernel that lacks some BTF kinds, driven
by the answers of the BTF feature probes. Pure: blob and answers in, blob out.

The rewrites keep every type's id and record size, so the instructions' and the
.BTF.ext's references stay valid: VAR and DECL_TAG become a one-byte INT, DATASEC a
STRUCT of its variables, FUNC_PROTO an ENUM and FUNC a TYPEDEF (no BTF functions), a
global FUNC a static one, FLOAT an empty anonymous STRUCT, TYPE_TAG an anonymous
CONST, an ENUM loses its signedness flag and an ENUM64 becomes a UNION of one-byte INT
members (the one type added, ``enum64_placeholder``).
"""

from __future__ import annotations

from collections.abc import Mapping

from bpfreplay.decode.btf import Kind
from bpfreplay.loader.btf_edit import BtfEditor

FUNC_STATIC = 0


def sanitize_btf(blob: bytes, supported: Mapping[str, bool]) -> bytes:
    """``blob`` rewritten for a kernel whose BTF feature probes answered ``supported``
    (keys: btf_func, btf_global_func, btf_datasec, btf_float, btf_decl_tag, btf_type_tag,
    btf_enum64)."""
    has = {name: supported.get(name, True) for name in (
        "btf_func", "btf_global_func", "btf_datasec", "btf_float", "btf_decl_tag",
        "btf_type_tag", "btf_enum64")}
    editor = BtfEditor(blob)
    placeholder = 0
    for type_id in range(1, editor.type_count):
        kind, vlen = editor.kind(type_id), editor.vlen(type_id)
        if (not has["btf_datasec"] and kind == Kind.VAR) or \
                (not has["btf_decl_tag"] and kind == Kind.DECL_TAG):
            # size 1: 4 could be bigger than the variable and fail the kernel's checks
            editor.set_info(type_id, Kind.INT, 0)
            editor.set_size(type_id, 1)
            editor.set_word(type_id, 12, 8)  # BTF_INT_ENC(0, 0, 8)
        elif not has["btf_datasec"] and kind == Kind.DATASEC:
            name = editor.name(type_id)
            editor.set_string_in_place(editor.name_off(type_id), name.replace(".", "_"))
            secinfos = editor.secinfos(type_id)
            editor.set_info(type_id, Kind.STRUCT, vlen)
            # struct btf_member {name_off, type, offset in bits} over btf_var_secinfo
            # {type, offset, size}: the variable's name, its type, its offset * 8
            editor.set_secinfos(type_id, [
                (editor.name_off(var_type), var_type, offset * 8)
                for var_type, offset, _size in secinfos])
        elif not has["btf_func"] and kind == Kind.FUNC_PROTO:
            editor.set_info(type_id, Kind.ENUM, vlen)
            editor.set_size(type_id, 4)  # the kernel wants an enum's size to be 4
        elif not has["btf_func"] and kind == Kind.FUNC:
            editor.set_info(type_id, Kind.TYPEDEF, 0)
        elif not has["btf_global_func"] and kind == Kind.FUNC:
            editor.set_info(type_id, Kind.FUNC, FUNC_STATIC)
        elif not has["btf_float"] and kind == Kind.FLOAT:
            editor.set_name_off(type_id, 0)
            editor.set_info(type_id, Kind.STRUCT, 0)
        elif not has["btf_type_tag"] and kind == Kind.TYPE_TAG:
            editor.set_name_off(type_id, 0)
            editor.set_info(type_id, Kind.CONST, 0)
        elif not has["btf_enum64"] and kind == Kind.ENUM:
            editor.set_info(type_id, Kind.ENUM, vlen)  # kind_flag cleared
        elif not has["btf_enum64"] and kind == Kind.ENUM64:
            if placeholder == 0:
                placeholder = editor.add_int("enum64_placeholder", 1, 0)
            members = editor.secinfos(type_id)  # 12-byte entries, read as words
            editor.set_info(type_id, Kind.UNION, vlen)
            editor.set_secinfos(type_id, [(name_off, placeholder, 0)
                                          for name_off, _lo, _hi in members])
    return editor.raw()
