"""What BPF_OBJ_GET_INFO_BY_FD answered: ``bpf_prog_info``, ``bpf_map_info``,
``bpf_btf_info`` and ``bpf_link_info`` field by field, and the buffers their own
pointers reach (``map_ids``, a BTF's ``name``, ``xlated_prog_insns`` ...) as the
recorder kept them (``out["info.<pointer>"]``).

Which struct it is follows from the object the fd names (``INFO_STRUCTS``: the kernel's
bpf_obj_get_info_by_fd() dispatches on the fd's file operations); the layouts are the
kernel's (uapi, from BTF), a link's union member is chosen by its type as the kernel
fills it.

Pure: bytes in, text out.
"""

from __future__ import annotations

import struct
from typing import Any, NamedTuple

from bpfreplay.decode.attr_fields import (
    COUNT,
    ENUM,
    FLAGS,
    HEX_BYTES,
    ID,
    INT,
    POINTER,
    SIZE,
    DecodedAttr,
    Spec,
    ViewField,
    c_string,
    decode_view,
    default_spec,
)
from bpfreplay.decode.fds import attr_field, command
from bpfreplay.errors import DecodeError
from bpfreplay.uapi.pointers import INFO_BUFFERS, INFO_STRUCTS, info_fields_of

_S = Spec
_ATTACH = _S(ENUM, "enum:bpf_attach_type")

# Field -> how to print it, per info struct; fields not named get default_spec
# (char[] strings, numbers), pointer and length fields come from INFO_BUFFERS.
INFO_SPECS: dict[str, dict[str, Spec]] = {
    "bpf_prog_info": {
        "type": _S(ENUM, "enum:bpf_prog_type"), "id": _S(ID), "tag": _S(HEX_BYTES),
        "ifindex": _S(ID), "btf_id": _S(ID), "attach_btf_obj_id": _S(ID),
        "attach_btf_id": _S(ID), "func_info_rec_size": _S(SIZE),
        "line_info_rec_size": _S(SIZE), "jited_line_info_rec_size": _S(SIZE),
        "netns_dev": _S(INT, style="hex"),
    },
    "bpf_map_info": {
        "type": _S(ENUM, "enum:bpf_map_type"), "id": _S(ID), "key_size": _S(SIZE),
        "value_size": _S(SIZE), "max_entries": _S(COUNT),
        "map_flags": _S(FLAGS, "enum:bpf_map_flags"), "ifindex": _S(ID),
        "btf_vmlinux_value_type_id": _S(ID), "btf_id": _S(ID), "btf_key_type_id": _S(ID),
        "btf_value_type_id": _S(ID), "btf_vmlinux_id": _S(ID),
        "netns_dev": _S(INT, style="hex"),
    },
    "bpf_btf_info": {"id": _S(ID)},
    "bpf_link_info": {
        "type": _S(ENUM, "enum:bpf_link_type"), "id": _S(ID), "prog_id": _S(ID),
        "perf_event.type": _S(ENUM, "enum:bpf_perf_event_type"),
        "perf_event.event.type": _S(ENUM, "enum:perf_type_id"),
    },
}

# What the one-line form shows of each info (the rest is in -v).
_SHORT_FIELDS = {
    "bpf_prog_info": ("type", "id", "name", "tag"),
    "bpf_map_info": ("type", "id", "name", "key_size", "value_size", "max_entries"),
    "bpf_btf_info": ("id", "btf_size", "kernel_btf"),
    "bpf_link_info": ("type", "id", "prog_id"),
}


def info_struct_of(kind: str) -> str | None:
    """``bpf_prog_info`` for an fd naming a ``prog``; None for other objects."""
    return INFO_STRUCTS.get(kind)


def _spec(struct_name: str, name: str, field_default: Spec) -> Spec:
    spec = INFO_SPECS.get(struct_name, {}).get(name)
    if spec is not None:
        return spec
    last = name.rsplit(".", 1)[-1]
    for b in INFO_BUFFERS.get(struct_name, ()):
        if b.pointer == name:
            return _S(POINTER)
        if b.count == name:
            return _S(SIZE if b.text or b.element == 1 else COUNT)
    if last == "attach_type":
        return _ATTACH
    if last in ("ifindex", "map_id", "target_obj_id", "target_btf_id") or last.endswith("_id"):
        return _S(ID)
    return field_default


def decode_info(kind: str, data: bytes) -> DecodedAttr:
    """An info struct of a ``kind`` object (``prog``, ``map``, ``btf``, ``link``) field by
    field, as far as the bytes go (the kernel writes at most the caller's info_len).
    DecodeError for a kind without an info struct."""
    struct_name = info_struct_of(kind)
    if struct_name is None:
        raise DecodeError(f"decoding an info struct: a {kind or 'unknown'} fd has none")
    view = [ViewField(f, _spec(struct_name, f.name, default_spec(f)))
            for f in info_fields_of(struct_name, data)]
    return decode_view(struct_name, len(data), data, view)


def short_info(kind: str, decoded: DecodedAttr, outputs: dict[str, bytes]) -> str:
    """``{type=BPF_PROG_TYPE_TRACEPOINT, id=42, name="handle_tp", tag=...}``: the fields
    that say which object it is."""
    struct_name = info_struct_of(kind) or ""
    parts = [f"{f.name}={f.text}" for f in decoded.fields
             if f.name in _SHORT_FIELDS.get(struct_name, ())]
    name = outputs.get("info.name")
    if struct_name == "bpf_btf_info" and name is not None:
        parts.insert(1, "name=" + c_string(name + b"\0"))
    return "{" + ", ".join(parts) + "}"


class InfoIdentity(NamedTuple):
    kind: str
    id: int
    name: str  # "" when the info has none


def info_identity(kind: str, info: bytes, outputs: dict[str, bytes]) -> InfoIdentity | None:
    """Which object an info describes: its kind, id and name (a BTF's from the name
    buffer the caller asked for), or None when the bytes do not reach its id."""
    try:
        decoded = decode_info(kind, info)
    except DecodeError:
        return None
    if decoded.field("id") is None:
        return None
    name = ""
    f = decoded.field("name")
    if f is not None and isinstance(f.raw, bytes):
        name = f.raw.split(b"\0", 1)[0].decode("utf-8", "replace")
    elif kind == "btf" and outputs.get("info.name"):
        name = outputs["info.name"].split(b"\0", 1)[0].decode("utf-8", "replace")
    elif kind == "link":  # links have no name: their type says what they are
        name = decoded.field("type").text.removeprefix("BPF_LINK_TYPE_").lower() \
            if decoded.field("type") is not None else ""
    return InfoIdentity(kind, decoded.value("id"), name)


def object_text(identity: InfoIdentity) -> str:
    """``prog handle_tp id 42``, ``btf vmlinux id 1``, ``link id 7``."""
    name = f" {identity.name}" if identity.name else ""
    return f"{identity.kind}{name} id {identity.id}"


# ------------------------------------------------------------------ followed pointers


def _u32s(data: bytes) -> list[int]:
    return [v for (v,) in struct.iter_unpack("<I", data[: len(data) // 4 * 4])]


def _u64s(data: bytes) -> list[int]:
    return [v for (v,) in struct.iter_unpack("<Q", data[: len(data) // 8 * 8])]


def _listing(values: list[str], per_line: int = 8) -> list[str]:
    return [", ".join(values[i:i + per_line]) for i in range(0, len(values), per_line)] \
        or ["(empty)"]


def _records(data: bytes, size: int) -> list[bytes]:
    return [data[i:i + size] for i in range(0, len(data) - size + 1, size)] if size else []


def info_buffer_lines(kind: str, field_name: str, data: bytes, info: DecodedAttr,
                      ) -> list[str] | None:
    """The lines of one buffer an info's pointer reached (``field_name`` as in the
    struct: ``map_ids``, ``xlated_prog_insns``); None for a field to show in hex."""
    if field_name in ("map_ids", "jited_func_lens"):
        return _listing([str(v) for v in _u32s(data)])
    if field_name == "prog_tags":
        return _listing([tag.hex() for tag in _records(data, 8)], 4)
    if field_name in ("jited_ksyms", "kprobe_multi.addrs", "uprobe_multi.offsets",
                      "uprobe_multi.ref_ctr_offsets", "jited_line_info"):
        return _listing([hex(v) for v in _u64s(data)], 4)
    if field_name in ("kprobe_multi.cookies", "uprobe_multi.cookies"):
        return _listing([str(v) for v in _u64s(data)])
    if field_name in ("name", "raw_tracepoint.tp_name", "iter.target_name",
                      "perf_event.uprobe.file_name", "perf_event.kprobe.func_name",
                      "perf_event.tracepoint.tp_name", "uprobe_multi.path"):
        return [c_string(data + b"\0")]
    if field_name == "func_info":
        size = info.value("func_info_rec_size") or 8
        return [f"insn {off}: type_id {type_id}"
                for off, type_id in (struct.unpack_from("<II", r) for r in _records(data, size)
                                     if len(r) >= 8)] or ["(empty)"]
    if field_name == "line_info":
        size = info.value("line_info_rec_size") or 16
        out = []
        for r in _records(data, size):
            if len(r) < 16:
                break
            off, file_off, line_off, line_col = struct.unpack_from("<IIII", r)
            out.append(f"insn {off}: file_name_off {file_off}, line_off {line_off}, "
                       f"line {line_col >> 10} col {line_col & 0x3FF}")
        return out or ["(empty)"]
    if field_name == "xlated_prog_insns":
        from bpfreplay.decode.insn import disassemble

        try:
            lines = disassemble(data, resolver=_xlated_resolver())
        except DecodeError as e:
            return [f"<{e}>"]
        return ["(as the verifier rewrote them: maps by id, helper calls by their address "
                "from __bpf_call_base, bpf-to-bpf calls by offset)"] + lines
    if field_name == "btf":
        from bpfreplay.decode.btf import parse_btf

        try:
            btf = parse_btf(data)
        except DecodeError as e:
            return [f"<{len(data)} bytes, not a BTF blob: {e}>"]
        return [f"<BTF {len(data)} bytes, {len(btf.types)} types>"]
    return None


def _xlated_resolver() -> Any:
    """How bpftool's ``prog dump xlated`` prints what the kernel gave back, without its
    kallsyms: map[id:N] (the kernel's bpf_insn_prepare_dump() puts map ids in the
    ld_imm64), helper calls hold the helper's address less __bpf_call_base (not a helper
    id: no name from the helper table), bpf-to-bpf calls the pc-relative offset."""
    from bpfreplay.decode.insn import Resolver, xlated_imm64_text

    def call_target(insn: Any) -> str | None:
        if insn.src == 0:
            return f"__bpf_call_base{insn.imm:+#x}"
        if insn.src == 1:
            return f"{insn.off:+d}"
        return None

    return Resolver(helper_name=lambda _: None, call_target=call_target,
                    imm64_text=xlated_imm64_text)


def changed_fields(asked: DecodedAttr | None, answered: DecodedAttr,
                   outputs: dict[str, bytes]) -> list[str]:
    """``name = text`` for each field of the answer, ``asked => answered`` where the
    kernel changed what the caller passed (strace's form); a pointer followed is shown
    by what it reached."""
    before = {f.name: f.text for f in asked.fields} if asked is not None else {}
    texts = info_texts(answered, outputs)
    out = []
    for f in answered.fields:
        was = before.get(f.name)
        text = f"{was} => {f.text}" if was is not None and was != f.text else f.text
        if texts[f.name] != f.text:
            text += f" -> {texts[f.name]}"
        out.append(f"{f.name} = {text}")
    return out


# ------------------------------------------------------------------ fds named by their info

# The object each command's fd names.
KIND_OF_COMMAND = {
    "BPF_MAP_CREATE": "map", "BPF_MAP_GET_FD_BY_ID": "map", "BPF_PROG_LOAD": "prog",
    "BPF_PROG_GET_FD_BY_ID": "prog", "BPF_BTF_LOAD": "btf", "BPF_BTF_GET_FD_BY_ID": "btf",
    "BPF_LINK_CREATE": "link", "BPF_RAW_TRACEPOINT_OPEN": "link",
    "BPF_LINK_GET_FD_BY_ID": "link",
}
BY_ID_COMMANDS = frozenset({"BPF_MAP_GET_FD_BY_ID", "BPF_PROG_GET_FD_BY_ID",
                            "BPF_BTF_GET_FD_BY_ID", "BPF_LINK_GET_FD_BY_ID"})


def kind_of_creator(creator: dict | None) -> str:
    """``prog``, ``map``, ``btf``, ``link`` for the call that made an fd (an OBJ_GET: what
    the recorder saw the fd to be); "" when unknown."""
    if creator is None:
        return ""
    kind = KIND_OF_COMMAND.get(command(creator) or "")
    if kind:
        return kind
    facts = creator.get("object")
    value = facts.get("kind") if isinstance(facts, dict) else None
    return value if isinstance(value, str) else ""


class InfoNames:
    """What the first OBJ_GET_INFO_BY_FD of each fd a ``*_GET_FD_BY_ID`` made says the
    object is (``prog handle_tp id 42``), by the index of the call that made the fd: so
    that the GET_FD_BY_ID line can name it before the info call comes. ``see`` each call
    in order; holds one entry per such fd open and one string per named one."""

    def __init__(self) -> None:
        self.names: dict[int, str] = {}
        self._open: dict[tuple[int, int], tuple[int, str]] = {}  # (pid, fd) -> (index, kind)

    def see(self, record: dict) -> None:
        syscall = record.get("syscall")
        pid = record.get("pid", 0)
        if syscall == "close":
            args = record.get("args") or [0]
            self._open.pop((pid, args[0] & 0xFFFFFFFF), None)
            return
        if syscall != "bpf":
            return
        name = command(record)
        ret = record.get("ret")
        if name in BY_ID_COMMANDS and isinstance(ret, int) and ret >= 0:
            self._open[(pid, ret)] = (record.get("index", -1), KIND_OF_COMMAND[name])
        elif name == "BPF_OBJ_GET_INFO_BY_FD" and record.get("ret") == 0:
            key = (pid, attr_field(record, "bpf_fd") & 0xFFFFFFFF)
            made = self._open.get(key)
            outputs = record.get("out") or {}
            info = outputs.get("info") if isinstance(outputs, dict) else None
            if made is None or not isinstance(info, bytes):
                return
            identity = info_identity(made[1], info, outputs)
            if identity is not None:
                self.names[made[0]] = object_text(identity)
                if identity.name or made[1] != "btf":  # a BTF's name may come next time
                    del self._open[key]


def followed_text(field_name: str, data: bytes) -> str:
    """A pointer field of an info by what the kernel wrote behind it, as strace shows
    short arrays (``map_ids=[33, 34]``); longer buffers by their size (-v decodes them)."""
    if field_name in ("map_ids", "jited_func_lens"):
        values = [str(v) for v in _u32s(data)]
    elif field_name == "prog_tags":
        values = [tag.hex() for tag in _records(data, 8)]
    elif field_name in ("jited_ksyms", "kprobe_multi.addrs", "kprobe_multi.cookies",
                        "uprobe_multi.offsets", "uprobe_multi.ref_ctr_offsets",
                        "uprobe_multi.cookies"):
        values = [hex(v) for v in _u64s(data)]
    elif any(b.pointer == field_name and b.text for bs in INFO_BUFFERS.values() for b in bs):
        return c_string(data + b"\0")
    else:
        return f"<{len(data)} bytes>"
    if len(values) > 8:
        return f"[{', '.join(values[:8])}, ... {len(values) - 8} more]"
    return "[" + ", ".join(values) + "]"


def info_texts(decoded: DecodedAttr, outputs: dict[str, bytes]) -> dict[str, str]:
    """Field name -> text of an info, its pointers replaced by what they reached."""
    texts = {}
    for f in decoded.fields:
        data = outputs.get("info." + f.name) if f.role == POINTER else None
        texts[f.name] = f.text if data is None else followed_text(f.name, data)
    return texts
