"""``extern`` variables and functions: libbpf's bpf_object__collect_externs() (open
time: find them, give .kconfig values their place, rewrite the .kconfig/.ksyms BTF)
and the filling of the .kconfig map (load time, from a Kconfig text the kernel stage
reads: /boot/config-$(uname -r) or /proc/config.gz).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import TYPE_CHECKING

from bpfreplay.decode.btf import Btf, Kind
from bpfreplay.errors import LoaderError
from bpfreplay.loader import btf_util
from bpfreplay.loader.btf_edit import BtfEditor
from bpfreplay.loader.elf import SHN_UNDEF, STB_GLOBAL, STB_WEAK, STT_NOTYPE, ElfObject
from bpfreplay.loader.spec import ExternKind, ExternSpec, KconfigType

if TYPE_CHECKING:
    from bpfreplay.decode.btf import Type
    from bpfreplay.loader.kernel_btf import KernelBtf, ModuleBtf
    from bpfreplay.loader.relocate import KsymValue

KCONFIG_SEC = ".kconfig"
KSYMS_SEC = ".ksyms"
BTF_VAR_STATIC, BTF_VAR_GLOBAL_ALLOCATED, BTF_VAR_GLOBAL_EXTERN = 0, 1, 2
BTF_FUNC_STATIC, BTF_FUNC_GLOBAL, BTF_FUNC_EXTERN = 0, 1, 2


def collect_externs(elf: ElfObject, btf: Btf | None, editor: BtfEditor | None) -> list[ExternSpec]:
    """The object's externs in libbpf's order, with the BTF edits libbpf makes applied
    to ``editor`` (``btf`` is the parse of the blob before those edits)."""
    dummy_var_id = _add_dummy_ksym_var(btf, editor)
    found: list[ExternSpec] = []
    kcfg_sec = ksym_sec = 0
    for sym in elf.symbols:
        if not (sym.shndx == SHN_UNDEF and sym.bind in (STB_GLOBAL, STB_WEAK)
                and sym.type == STT_NOTYPE) or not sym.name:
            continue
        btf_id = _find_extern_btf_id(btf, sym.name)
        if btf_id <= 0:
            raise LoaderError(f"failed to find BTF for extern '{sym.name}': {btf_id}")
        assert btf is not None
        t = btf.type(btf_id)
        assert t is not None
        sec_id = _find_extern_sec_btf_id(btf, btf_id)
        if sec_id <= 0:
            raise LoaderError(f"failed to find BTF for extern '{sym.name}' [{btf_id}] "
                              f"section: {sec_id}")
        sec_name = btf.name(sec_id)
        is_weak = sym.bind == STB_WEAK
        if sec_name == KCONFIG_SEC:
            if t.kind == Kind.FUNC:
                raise LoaderError(f"extern function {t.name} is unsupported under "
                                  f"{KCONFIG_SEC} section")
            kcfg_sec = sec_id
            size = btf_util.resolve_size(btf, t.ref)
            if size <= 0:
                raise LoaderError(f"failed to resolve size of extern (kcfg) '{sym.name}'")
            align = btf_util.align_of(btf, t.ref)
            if align <= 0:
                raise LoaderError(f"failed to determine alignment of extern (kcfg) "
                                  f"'{sym.name}'")
            kcfg_type, signed = _kcfg_type(btf, t.ref)
            if kcfg_type == KconfigType.UNKNOWN:
                raise LoaderError(f"extern (kcfg) '{sym.name}': type is unsupported")
            found.append(ExternSpec(t.name, ExternKind.KCONFIG, btf_id, sec_id, sym.index,
                                    is_weak, kcfg_type=kcfg_type, kcfg_size=size,
                                    kcfg_align=align, kcfg_signed=signed))
        elif sec_name == KSYMS_SEC:
            ksym_sec = sec_id
            _, local_id = btf_util.skip_mods_and_typedefs(btf, t.ref)
            found.append(ExternSpec(t.name, ExternKind.KSYM, btf_id, sec_id, sym.index,
                                    is_weak, is_func=t.kind == Kind.FUNC,
                                    ksym_type_id=local_id))
        else:
            raise LoaderError(f"unrecognized extern section '{sec_name}'")
    if not found:
        return []
    found.sort(key=_extern_order)
    assert btf is not None and editor is not None
    if ksym_sec:
        _fixup_ksyms(btf, editor, ksym_sec, found, dummy_var_id)
    if kcfg_sec:
        found = _place_kconfig(btf, editor, kcfg_sec, found)
    return found


def _extern_order(e: ExternSpec) -> tuple:
    # libbpf's cmp_externs: kconfig before ksyms; kconfig by alignment (largest first)
    # then size (smallest first); ties by name (strcmp: bytes order).
    if e.kind == ExternKind.KCONFIG:
        return (e.kind, -e.kcfg_align, e.kcfg_size, e.name.encode())
    return (e.kind, 0, 0, e.name.encode())


def _find_extern_btf_id(btf: Btf | None, name: str) -> int:
    if btf is None:
        return -3  # -ESRCH
    for t in btf.types:
        if t.kind not in (Kind.VAR, Kind.FUNC) or t.name != name:
            continue
        if t.kind == Kind.VAR and t.linkage != BTF_VAR_GLOBAL_EXTERN:
            return -22  # -EINVAL
        if t.kind == Kind.FUNC and t.linkage != BTF_FUNC_EXTERN:
            return -22
        return t.id
    return -2  # -ENOENT


def _find_extern_sec_btf_id(btf: Btf, ext_id: int) -> int:
    for t in btf.types:
        if t.kind == Kind.DATASEC and any(s.type == ext_id for s in t.secinfos):
            return t.id
    return -2


def _kcfg_type(btf: Btf, type_id: int) -> tuple[KconfigType, bool]:
    """libbpf's find_kcfg_type(): (type, signed)."""
    t, _ = btf_util.skip_mods_and_typedefs(btf, type_id)
    if t is None:
        return KconfigType.UNKNOWN, False
    if t.kind == Kind.INT:
        if t.encoding & 4:  # BTF_INT_BOOL
            return (KconfigType.BOOL if t.size == 1 else KconfigType.UNKNOWN), False
        signed = bool(t.encoding & 1)
        if t.size == 1:
            return KconfigType.CHAR, signed
        if t.size < 1 or t.size > 8 or t.size & (t.size - 1):
            return KconfigType.UNKNOWN, signed
        return KconfigType.INT, signed
    if t.kind == Kind.ENUM:
        if t.size != 4 or t.name != "libbpf_tristate":
            return KconfigType.UNKNOWN, False
        return KconfigType.TRISTATE, False
    if t.kind == Kind.ENUM64:
        if t.name != "libbpf_tristate":
            return KconfigType.UNKNOWN, False
        return KconfigType.TRISTATE, False
    if t.kind == Kind.ARRAY:
        if t.nelems == 0 or _kcfg_type(btf, t.elem_type)[0] != KconfigType.CHAR:
            return KconfigType.UNKNOWN, False
        return KconfigType.CHAR_ARR, False
    return KconfigType.UNKNOWN, False


def _add_dummy_ksym_var(btf: Btf | None, editor: BtfEditor | None) -> int:
    """libbpf adds a VAR "dummy_ksym" when .ksyms declares a function: kfunc entries
    of the DATASEC are pointed at it (the kernel accepts only VARs there)."""
    if btf is None or editor is None:
        return 0
    sec = btf.by_name(KSYMS_SEC, Kind.DATASEC)
    if sec is None:
        return 0
    if not any((v := btf.type(s.type)) is not None and v.kind == Kind.FUNC
               for s in sec.secinfos):
        return 0
    return editor.add_var("dummy_ksym", BTF_VAR_GLOBAL_ALLOCATED, _find_int_btf_id(btf))


def _find_int_btf_id(btf: Btf) -> int:
    for t in btf.types:
        if t.kind == Kind.INT and t.nr_bits == 32:
            return t.id
    return 0


def _fixup_ksyms(btf: Btf, editor: BtfEditor, sec_id: int, externs: list[ExternSpec],
                 dummy_var_id: int) -> None:
    # Every .ksyms entry becomes a 4-byte allocated int VAR at offset 4*i.
    int_id = _find_int_btf_id(btf)
    by_name = {e.name: e for e in externs}
    entries = []
    sec = btf.type(sec_id)
    assert sec is not None
    dummy_name_off = editor.name_off(dummy_var_id) if dummy_var_id else 0
    for i, info in enumerate(sec.secinfos):
        vt = btf.type(info.type)
        name = vt.name if vt is not None else ""
        if name not in by_name or vt is None:
            raise LoaderError(f"failed to find extern definition for BTF "
                              f"{btf_util.kind_str(vt)} '{name}'")
        var_type = info.type
        if vt.kind == Kind.FUNC:
            # unnamed parameters borrow the dummy var's name; the entry points at it
            for j, (name_off, ptype) in enumerate(editor.params(vt.ref)):
                if ptype and not name_off:
                    editor.set_param_name_off(vt.ref, j, dummy_name_off)
            var_type = dummy_var_id
            editor.set_info(vt.id, Kind.FUNC, BTF_FUNC_GLOBAL, vt.kind_flag)
        else:
            editor.set_var_linkage(vt.id, BTF_VAR_GLOBAL_ALLOCATED)
            editor.set_type(vt.id, int_id)
        entries.append((var_type, 4 * i, 4))
    editor.set_secinfos(sec_id, entries)
    editor.set_size(sec_id, 4 * len(entries))


def _place_kconfig(btf: Btf, editor: BtfEditor, sec_id: int,
                   externs: list[ExternSpec]) -> list[ExternSpec]:
    # Values packed in extern order, each at its alignment; the DATASEC says so.
    placed = []
    off = 0
    for e in externs:
        if e.kind == ExternKind.KCONFIG:
            data_off = -(-off // e.kcfg_align) * e.kcfg_align
            off = data_off + e.kcfg_size
            e = _replace(e, kcfg_offset=data_off)
        placed.append(e)
    editor.set_size(sec_id, off)
    by_name = {e.name: e for e in placed}
    sec = btf.type(sec_id)
    assert sec is not None
    entries = []
    for info in sec.secinfos:
        t = btf.type(info.type)
        name = t.name if t is not None else ""
        ext = by_name.get(name)
        if ext is None or t is None:
            raise LoaderError(f"failed to find extern definition for BTF var '{name}'")
        editor.set_var_linkage(t.id, BTF_VAR_GLOBAL_ALLOCATED)
        entries.append((info.type, ext.kcfg_offset, info.size))
    editor.set_secinfos(sec_id, entries)
    return placed


def _replace(e: ExternSpec, **changes: object) -> ExternSpec:
    from dataclasses import replace

    return replace(e, **changes)  # type: ignore[arg-type]


# ------------------------------------------------------------------ .kconfig values


def kconfig_value(externs: tuple[ExternSpec, ...] | list[ExternSpec], size: int, *,
                  config: str | None, kernel_version: int, bpf_cookie: bool = True,
                  syscall_wrapper: bool = True,
                  warn: Callable[[str], None] | None = None) -> bytes:
    """The bytes libbpf writes into the .kconfig map (its bpf_object__resolve_externs()
    for .kconfig externs): virtual LINUX_* values, then CONFIG_* values parsed from
    ``config`` (the kernel's Kconfig text; None when none could be read). Unset weak
    externs stay zero; an unset strong one is a LoaderError, as in libbpf.
    ``kernel_version`` is the running kernel's version code, ``bpf_cookie`` and
    ``syscall_wrapper`` the answers of libbpf's feature probes of those names."""
    data = bytearray(size)
    is_set: dict[str, bool] = {}
    need_config = False
    kcfg = [e for e in externs if e.kind == ExternKind.KCONFIG]
    for e in kcfg:
        if e.name.startswith("CONFIG_"):
            need_config = True
            continue
        if e.name == "LINUX_KERNEL_VERSION":
            if not kernel_version:
                raise LoaderError(f"extern (kcfg) '{e.name}': failed to get kernel version")
            value = kernel_version
        elif e.name == "LINUX_HAS_BPF_COOKIE":
            value = int(bpf_cookie)
        elif e.name == "LINUX_HAS_SYSCALL_WRAPPER":
            value = int(syscall_wrapper)
        elif not e.name.startswith("LINUX_") or not e.is_weak:
            raise LoaderError(f"extern (kcfg) '{e.name}': unrecognized virtual extern")
        else:
            value = 0
        _set_num(e, data, value)
        is_set[e.name] = True
    if need_config:
        if config is None:
            raise LoaderError("failed to open system Kconfig")
        by_name = {e.name: e for e in kcfg}
        for line in config.splitlines():
            _kconfig_line(line, by_name, data, is_set)
    for e in externs:
        if e.kind == ExternKind.KCONFIG and not is_set.get(e.name) and not e.is_weak:
            raise LoaderError(f"extern '{e.name}' (strong): not resolved")
    return bytes(data)


def _kconfig_line(line: str, by_name: dict[str, ExternSpec], data: bytearray,
                  is_set: dict[str, bool]) -> None:
    if not line.startswith("CONFIG_"):
        return
    name, sep, value = line.partition("=")
    if not sep:
        raise LoaderError(f"failed to parse '{line}': no separator")
    if not value:
        raise LoaderError(f"failed to parse '{line}': no value")
    e = by_name.get(name)
    if e is None or is_set.get(name):
        return
    if value[0] in "ynm":
        _set_tristate(e, data, value[0])
    elif value[0] == '"':
        _set_str(e, data, value)
    else:
        try:
            number = int(value, 0) if not value.startswith("0") or value == "0" or \
                value.lower().startswith("0x") else int(value, 8)
        except ValueError:
            raise LoaderError(f"extern (kcfg) '{e.name}': value '{value}' isn't a valid "
                              f"integer") from None
        if e.kcfg_type not in (KconfigType.INT, KconfigType.CHAR):
            raise LoaderError(f"extern (kcfg) '{e.name}': value '{value}' implies integer "
                              f"type")
        _set_num(e, data, number & 0xFFFFFFFFFFFFFFFF)
    is_set[name] = True


def _set_tristate(e: ExternSpec, data: bytearray, value: str) -> None:
    off = e.kcfg_offset
    if e.kcfg_type == KconfigType.BOOL:
        if value == "m":
            raise LoaderError(f"extern (kcfg) '{e.name}': value '{value}' implies tristate "
                              f"or char type")
        data[off] = 1 if value == "y" else 0
    elif e.kcfg_type == KconfigType.TRISTATE:
        struct.pack_into("<I", data, off, {"n": 0, "y": 1, "m": 2}[value])
    elif e.kcfg_type == KconfigType.CHAR:
        data[off] = ord(value)
    else:
        raise LoaderError(f"extern (kcfg) '{e.name}': value '{value}' implies bool, "
                          f"tristate, or char type")


def _set_str(e: ExternSpec, data: bytearray, value: str) -> None:
    if e.kcfg_type != KconfigType.CHAR_ARR:
        raise LoaderError(f"extern (kcfg) '{e.name}': value '{value}' implies char array "
                          f"type")
    if not value.endswith('"'):
        raise LoaderError(f"extern (kcfg) '{e.name}': invalid string config '{value}'")
    raw = value.encode()[1:-1]
    raw = raw[:e.kcfg_size - 1]
    data[e.kcfg_offset:e.kcfg_offset + len(raw) + 1] = raw + b"\0"


def _set_num(e: ExternSpec, data: bytearray, value: int) -> None:
    if e.kcfg_type not in (KconfigType.INT, KconfigType.CHAR, KconfigType.BOOL):
        raise LoaderError(f"extern (kcfg) '{e.name}': value '{value}' implies integer, "
                          f"char, or boolean type")
    if e.kcfg_type == KconfigType.BOOL and value > 1:
        raise LoaderError(f"extern (kcfg) '{e.name}': value '{value}' isn't boolean "
                          f"compatible")
    bits = e.kcfg_size * 8
    if e.kcfg_size != 8:
        fits = ((value + (1 << (bits - 1))) & ((1 << 64) - 1)) < (1 << bits) \
            if e.kcfg_signed else (value >> bits) == 0
        if not fits:
            raise LoaderError(f"extern (kcfg) '{e.name}': value '{value}' doesn't fit in "
                              f"{e.kcfg_size} bytes")
    fmt = {1: "<B", 2: "<H", 4: "<I", 8: "<Q"}.get(e.kcfg_size)
    if fmt is None:
        raise LoaderError(f"extern (kcfg) '{e.name}': size {e.kcfg_size} is not 1, 2, 4 "
                          f"or 8")
    struct.pack_into(fmt, data, e.kcfg_offset, value & ((1 << bits) - 1))


# ------------------------------------------------------------------ __ksym values


def resolve_ksyms(externs: tuple[ExternSpec, ...] | list[ExternSpec], local_btf: Btf | None,
                  kernel: KernelBtf | Btf | None, kallsyms: str | None) -> dict[str, KsymValue]:
    """libbpf 1.1.2's resolution of __ksym externs (bpf_object__resolve_externs): typeless
    variables by name in ``kallsyms`` (/proc/kallsyms text) first; then typed variables
    and kfuncs in extern order (bpf_object__resolve_ksyms_btf_id), each by name in
    vmlinux BTF and, only if vmlinux lacks it, in module BTFs (find_ksym_btf_id, which
    walks them then), checked compatible with the local declaration. A variable found in
    a module carries that module's BTF fd; a kfunc, the index of that fd in fd_array.
    Unresolved weak externs are left out (relocated as zero); unresolved strong ones
    are a LoaderError, as in libbpf. ``kernel`` may be a bare Btf (vmlinux, no modules)."""
    from bpfreplay.loader.core import types_are_compat
    from bpfreplay.loader.relocate import KsymValue

    out: dict[str, KsymValue] = {}
    ksyms = [e for e in externs if e.kind == ExternKind.KSYM]
    typeless = {e.name for e in ksyms if not e.ksym_type_id and not e.is_func}
    if typeless:
        if kallsyms is None:
            raise LoaderError("typeless __ksym externs need /proc/kallsyms")
        for line in kallsyms.splitlines():
            parts = line.split()
            if len(parts) < 3 or parts[2] not in typeless:
                continue
            address = int(parts[0], 16)
            seen = out.get(parts[2])
            if seen is not None and seen.address != address:
                raise LoaderError(f"extern (ksym) '{parts[2]}': resolution is ambiguous: "
                                  f"{seen.address:#x} or {address:#x}")
            out[parts[2]] = KsymValue(address=address)
    for e in ksyms:
        if not e.ksym_type_id:
            continue
        what = "func" if e.is_func else "var"
        found = _find_ksym(kernel, e.name, Kind.FUNC if e.is_func else Kind.VAR)
        if found is None:
            if e.is_weak:
                continue
            where = "kernel or module BTFs" if e.is_func else "kernel BTF"
            raise LoaderError(f"extern ({what} ksym) '{e.name}': not found in {where}")
        assert local_btf is not None
        target_btf, target, module = found
        target_type = target.ref
        if not e.is_func:
            _, target_type = btf_util.skip_mods_and_typedefs(target_btf, target.ref)
        try:
            compatible = types_are_compat(local_btf, e.ksym_type_id, target_btf, target_type)
        except Exception:  # noqa: BLE001 - core's _Fail: libbpf treats errors as "no"
            compatible = 0
        if compatible <= 0:
            raise LoaderError(f"extern ({what} ksym) '{e.name}': incompatible types with "
                              f"kernel [{target.id}]")
        if module is None:
            out[e.name] = KsymValue(btf_id=target.id)
        elif e.is_func:
            assert not isinstance(kernel, Btf) and kernel is not None
            out[e.name] = KsymValue(btf_id=target.id, btf_fd_idx=kernel.kfunc_fd_index(module))
        else:
            out[e.name] = KsymValue(btf_id=target.id, btf_obj_fd=module.fd)
    for e in ksyms:
        if e.name not in out and not e.is_weak and not e.ksym_type_id and not e.is_func:
            raise LoaderError(f"extern '{e.name}' (strong): not resolved")
    return out


def _find_ksym(kernel: KernelBtf | Btf | None, name: str,
               kind: int) -> tuple[Btf, Type, ModuleBtf | None] | None:
    if kernel is None:
        return None
    if isinstance(kernel, Btf):
        found = kernel.by_name(name, kind)
        return (kernel, found, None) if found is not None else None
    return kernel.find_ksym(name, kind)
