"""PROG_LOAD's func_info and line_info: which function and which source line each
instruction comes from, read against the program's BTF.

``struct bpf_func_info`` is (insn_off, type_id): a FUNC type per (sub)program start.
``struct bpf_line_info`` is (insn_off, file_name_off, line_off, line_col): offsets into
the BTF string section, where the compiler stored the file name and the text of the
source line; ``line_col`` is ``line << 10 | column``. Records may be longer than these
fields (``*_rec_size`` in the attr); the extra bytes are skipped.

``annotate`` puts them between disassembly lines the way ``bpftool prog dump xlated
... linum`` does: a function's signature line (``int handle_tp(void * ctx):``) before
its first instruction, and ``; <source> [file:F line_num:N line_col:C]`` before the
instruction a line_info record points at.

Pure: bytes in, meaning out. Corrupt input raises ``DecodeError``, nothing else.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from bpfreplay.decode.btf import Btf, Kind, Type
from bpfreplay.errors import DecodeError

FUNC_INFO_MIN_SIZE = 8
LINE_INFO_MIN_SIZE = 16
# bpftool prints a signature into a 1024-byte buffer and prints nothing if it does not fit.
_SIGNATURE_LIMIT = 1024
_C_SPACE = " \t\n\v\f\r"


@dataclass(frozen=True, slots=True)
class FuncInfo:
    insn_off: int
    type_id: int
    name: str  # the FUNC's name
    signature: str  # as bpftool prints it ("int handle_tp(void * ctx)"), "" if it can't


@dataclass(frozen=True, slots=True)
class LineInfo:
    insn_off: int
    file_name_off: int
    line_off: int
    line_col: int
    file: str
    source: str  # the source line as the compiler stored it

    @property
    def line(self) -> int:
        return self.line_col >> 10

    @property
    def column(self) -> int:
        return self.line_col & 0x3FF

    def comment(self, linum: bool = True) -> str:
        """The line bpftool prints before the instruction."""
        text = self.source.lstrip(_C_SPACE)
        if not linum:
            return f"; {text}"
        return f"; {text} [file:{self.file} line_num:{self.line} line_col:{self.column}]"


def _records(data: bytes, rec_size: int, minimum: int, what: str) -> Iterable[bytes]:
    if not isinstance(rec_size, int) or rec_size < minimum:
        raise DecodeError(f"{what}: record size {rec_size!r} is smaller than the "
                          f"{minimum} bytes of a record")
    if len(data) % rec_size:
        raise DecodeError(f"{what}: {len(data)} bytes are not a whole number of "
                          f"{rec_size}-byte records")
    return (data[pos:pos + minimum] for pos in range(0, len(data), rec_size))


def decode_func_info(data: bytes, rec_size: int, btf: Btf) -> list[FuncInfo]:
    """The func_info records of a PROG_LOAD, each with its FUNC's name and signature."""
    data = bytes(data)
    infos = []
    for number, record in enumerate(_records(data, rec_size, FUNC_INFO_MIN_SIZE, "func_info")):
        insn_off, type_id = struct.unpack("<II", record)
        func = btf.type(type_id)
        if func is None or func.kind != Kind.FUNC:
            what = "no type" if func is None else f"a {func.kind_name}"
            raise DecodeError(f"func_info record {number} (insn {insn_off}): type {type_id} is "
                              f"{what}, not a FUNC")
        infos.append(FuncInfo(insn_off, type_id, func.name, function_signature(btf, type_id)))
    return infos


def decode_line_info(data: bytes, rec_size: int, btf: Btf) -> list[LineInfo]:
    """The line_info records of a PROG_LOAD, with their file names and source lines."""
    data = bytes(data)
    infos = []
    for number, record in enumerate(_records(data, rec_size, LINE_INFO_MIN_SIZE, "line_info")):
        insn_off, file_off, line_off, line_col = struct.unpack("<IIII", record)
        try:
            file = btf.string_at(file_off)
            source = btf.string_at(line_off)
        except DecodeError as e:
            raise DecodeError(f"line_info record {number} (insn {insn_off}): {e}") from None
        infos.append(LineInfo(insn_off, file_off, line_off, line_col, file, source))
    return infos


# ------------------------------------------------------------------ signatures


class _Unprintable(Exception):
    """A type bpftool's signature printer gives up on."""


def function_signature(btf: Btf, type_id: int) -> str:
    """The C declaration bpftool prints for a FUNC or FUNC_PROTO type (pointers as
    ``void *``, with bpftool's spacing), or "" where bpftool prints nothing."""
    try:
        text = _type_text(btf, type_id, 0)
    except _Unprintable:
        return ""
    return text if len(text) < _SIGNATURE_LIMIT else ""


def _type_text(btf: Btf, type_id: int, depth: int) -> str:
    if depth > 64:
        raise _Unprintable
    if type_id == 0:
        return "void "
    t = btf.type(type_id)
    if t is None:
        raise _Unprintable
    kind = t.kind
    deeper = depth + 1
    if kind in (Kind.INT, Kind.TYPEDEF, Kind.FLOAT):
        return f"{t.name} "
    if kind == Kind.STRUCT:
        return f"struct {t.name} "
    if kind == Kind.UNION:
        return f"union {t.name} "
    if kind in (Kind.ENUM, Kind.ENUM64):
        return f"enum {t.name} "
    if kind == Kind.ARRAY:
        return f"{_type_text(btf, t.elem_type, deeper)}[{_c_int(t.nelems)}]"
    if kind == Kind.PTR:
        return f"{_type_text(btf, t.ref, deeper)}* "
    if kind == Kind.FWD:
        return f"{'union' if t.kind_flag else 'struct'} {t.name} "
    if kind in (Kind.VOLATILE, Kind.CONST, Kind.RESTRICT):
        return f"{t.kind_name.lower()} {_type_text(btf, t.ref, deeper)}"
    if kind == Kind.FUNC_PROTO:
        return _function_text(btf, t, None, deeper)
    if kind == Kind.FUNC:
        proto = btf.type(t.ref)
        if proto is None or proto.kind != Kind.FUNC_PROTO:
            raise _Unprintable
        return _function_text(btf, proto, t, deeper)
    if kind == Kind.VAR:
        static = "static " if t.linkage == 0 else ""
        return f"{static}{_type_text(btf, t.ref, deeper)} {t.name}"
    if kind == Kind.DATASEC:
        return f'section ("{t.name}") '
    raise _Unprintable  # TYPE_TAG, DECL_TAG: bpftool 7.1 gives up too


def _c_int(value: int) -> int:
    """An unsigned 32-bit count printed with %d."""
    return value - (1 << 32) if value >= 1 << 31 else value


def _function_text(btf: Btf, proto: Type, func: Type | None, depth: int) -> str:
    text = _type_text(btf, proto.ref, depth) + (f"{func.name}(" if func is not None else "(")
    for i, param in enumerate(proto.members):
        if i:
            text += ", "
        if not param.type:
            text += "..."
        elif param.name:
            text += _type_text(btf, param.type, depth) + param.name
        else:
            text = (text + _type_text(btf, param.type, depth)).removesuffix(" ")
    return text + ")"


# ------------------------------------------------------------------ annotation

_INSN_INDEX = re.compile(r"\s*(\d+):")


def _line_for(line_info: Sequence[LineInfo], insn: int, skip: int) -> LineInfo | None:
    """Mirror of libbpf's bpf_prog_linfo__lfind(), which bpftool uses: starting at record
    ``skip``, the last record at or before ``insn``; None if record ``skip`` is after it."""
    if skip >= len(line_info) or insn < line_info[skip].insn_off:
        return None
    found = skip
    while found + 1 < len(line_info) and line_info[found + 1].insn_off <= insn:
        found += 1
    return line_info[found]


def annotate(disassembly: list[str], func_info: Sequence[FuncInfo],
             line_info: Sequence[LineInfo], *, linum: bool = True) -> list[str]:
    """Disassembly lines ("0: (85) call ...", any leading spaces) with the function
    signature and source line comments bpftool's ``prog dump xlated ... [linum]`` puts
    before them. Lines that do not start with an instruction index pass through."""
    out: list[str] = []
    next_func = 0
    printed_lines = 0
    for text in disassembly:
        m = _INSN_INDEX.match(text)
        if m is None:
            out.append(text)
            continue
        insn = int(m.group(1))
        if next_func < len(func_info) and func_info[next_func].insn_off == insn:
            if func_info[next_func].signature:
                out.append(f"{func_info[next_func].signature}:")
            next_func += 1
        line = _line_for(line_info, insn, printed_lines)
        if line is not None:
            out.append(line.comment(linum))
            printed_lines += 1
        out.append(text)
    return out


# ------------------------------------------------------------------ from call records


def _field(call: dict[str, Any], name: str) -> int:
    from bpfreplay.decode.fds import attr_field

    return attr_field(call, name)


def program_info(call: dict[str, Any], btf: Btf) -> tuple[list[FuncInfo], list[LineInfo]]:
    """func_info and line_info of a recorded BPF_PROG_LOAD call, decoded against ``btf``
    (the program's BTF: see ``program_btf``)."""
    inputs = call.get("in") if isinstance(call.get("in"), dict) else {}
    func_data = inputs.get("func_info", b"")
    line_data = inputs.get("line_info", b"")
    funcs = decode_func_info(func_data, _field(call, "func_info_rec_size"), btf) \
        if func_data else []
    lines = decode_line_info(line_data, _field(call, "line_info_rec_size"), btf) \
        if line_data else []
    return funcs, lines


def program_btf(calls: Iterable[dict[str, Any]], index: int) -> bytes | None:
    """The BTF blob of the BTF_LOAD whose fd the PROG_LOAD at ``index`` passed as
    ``prog_btf_fd`` (None if the program has none or the trace lacks its load)."""
    from bpfreplay.decode.fds import FdTracker, buffer

    tracker = FdTracker(calls)
    btf_call = tracker.creator(tracker.reference(index, "prog_btf_fd"))
    if btf_call is None:
        return None
    return buffer(btf_call, "btf") or None
