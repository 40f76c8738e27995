"""USDT probes of an ELF file, read as libbpf 1.1.2's USDT manager reads them (its
src/usdt.c): the ``.note.stapsdt`` notes (parse_usdt_note()), their call sites turned
into file offsets through the PT_LOAD segments with the ``.stapsdt.base`` prelink
adjustment (collect_usdt_targets()), the semaphore's file offset, and each site's
argument string parsed into the ``struct __bpf_usdt_spec`` that <bpf/usdt.bpf.h> reads
(parse_usdt_spec(), x86-64 parse_usdt_arg()).

Pure: bytes and files in, targets out; no syscalls. A failure is a LoaderError that
says what libbpf's warning says, and which errno libbpf returns (``.errno``).
"""

from __future__ import annotations

import errno as errno_codes
import os
import re
import struct
from dataclasses import dataclass
from typing import BinaryIO

from bpfreplay.errors import LoaderError

NOTE_SECTION = ".note.stapsdt"
BASE_SECTION = ".stapsdt.base"
NOTE_NAME = b"stapsdt"
NOTE_TYPE = 3

MAX_ARGS = 12  # BPF_USDT_MAX_ARG_CNT
ARG_CONST, ARG_REG, ARG_REG_DEREF = 0, 1, 2  # enum __bpf_usdt_arg_type
# struct __bpf_usdt_arg_spec {u64 val_off; enum arg_type; short reg_off; bool arg_signed;
# char arg_bitshift}; struct __bpf_usdt_spec {args[12]; u64 usdt_cookie; short arg_cnt},
# 208 bytes with its tail padding.
_ARG = struct.Struct("<QIhBb")
SPEC_SIZE = 208

# offsetof(struct pt_regs, REG) on x86-64, for each name an argument may use.
_PT_REGS_X86_64 = {
    128: ("rip", "eip"),
    80: ("rax", "eax", "ax", "al"),
    40: ("rbx", "ebx", "bx", "bl"),
    88: ("rcx", "ecx", "cx", "cl"),
    96: ("rdx", "edx", "dx", "dl"),
    104: ("rsi", "esi", "si", "sil"),
    112: ("rdi", "edi", "di", "dil"),
    32: ("rbp", "ebp", "bp", "bpl"),
    152: ("rsp", "esp", "sp", "spl"),
    72: ("r8", "r8d", "r8w", "r8b"),
    64: ("r9", "r9d", "r9w", "r9b"),
    56: ("r10", "r10d", "r10w", "r10b"),
    48: ("r11", "r11d", "r11w", "r11b"),
    24: ("r12", "r12d", "r12w", "r12b"),
    16: ("r13", "r13d", "r13w", "r13b"),
    8: ("r14", "r14d", "r14w", "r14b"),
    0: ("r15", "r15d", "r15w", "r15b"),
}
PT_REGS_OFFSET = {name: offset for offset, names in _PT_REGS_X86_64.items()
                  for name in names}

# The four sscanf() formats of x86 parse_usdt_arg(), tried in its order. scanf's white
# space (a blank in the format, or before %d/%ld) matches any run of isspace()
# characters, including none.
_WS = r"[ \t\n\v\f\r]*"
_INT = _WS + r"([+-]?[0-9]+)"
_ARG_FORMS = (
    (ARG_REG_DEREF, re.compile(_INT + _WS + "@" + _INT + _WS + r"\(" + _WS
                               + r"%([^)]{1,15})" + _WS + r"\)" + _WS)),
    (ARG_REG_DEREF, re.compile(_INT + _WS + "@" + _WS + r"\(" + _WS + r"%([^)]{1,15})"
                               + _WS + r"\)" + _WS)),
    (ARG_REG, re.compile(_INT + _WS + "@" + _WS + r"%([^ \t\n\v\f\r]{1,15})" + _WS)),
    (ARG_CONST, re.compile(_INT + _WS + "@" + _WS + r"\$" + _INT + _WS)),
)


def _fail(errno: int, message: str) -> LoaderError:
    error = LoaderError(message)
    error.errno = errno  # type: ignore[attr-defined]
    return error


@dataclass(frozen=True)
class UsdtNote:
    provider: str
    name: str
    args: str  # "" when the note has none (or starts with ':')
    loc_addr: int
    base_addr: int
    sema_addr: int


@dataclass(frozen=True)
class UsdtArg:
    arg_type: int
    val_off: int
    reg_off: int
    signed: bool
    bitshift: int


@dataclass(frozen=True)
class UsdtTarget:
    """One call site of a USDT: its address, the file offset the uprobe takes
    (``rel_ip``), the semaphore's file offset (0: none) and its spec."""

    abs_ip: int
    rel_ip: int
    sema_off: int
    spec_str: str
    args: tuple[UsdtArg, ...]
    cookie: int = 0

    def encode_spec(self) -> bytes:
        """struct __bpf_usdt_spec as libbpf passes it to the spec map (zero padding)."""
        out = bytearray(SPEC_SIZE)
        for i, arg in enumerate(self.args):
            _ARG.pack_into(out, i * _ARG.size, arg.val_off & (2**64 - 1), arg.arg_type,
                           arg.reg_off, int(arg.signed), arg.bitshift)
        struct.pack_into("<Qh", out, MAX_ARGS * _ARG.size, self.cookie & (2**64 - 1),
                         len(self.args))
        return bytes(out)


# ------------------------------------------------------------------ arguments


def parse_arg(text: str, number: int) -> tuple[UsdtArg, int]:
    """x86-64 parse_usdt_arg(): the argument at the start of ``text`` and how many
    characters it took (trailing blanks included)."""
    for kind, form in _ARG_FORMS:
        m = form.match(text)
        if m is None:
            continue
        groups = m.groups()
        size = int(groups[0])
        if kind == ARG_CONST:
            val_off, reg_off = int(groups[1]), 0
        else:
            val_off = int(groups[1]) if len(groups) == 3 else 0
            register = groups[-1]
            reg_off = PT_REGS_OFFSET.get(register, -1)
            if reg_off < 0:
                raise _fail(errno_codes.ENOENT, f"usdt: unrecognized register '{register}'")
        signed = size < 0
        size = abs(size)
        if size not in (1, 2, 4, 8):
            raise _fail(errno_codes.EINVAL, f"usdt: unsupported arg #{number} (spec "
                        f"'{text}') size: {size}")
        return UsdtArg(kind, val_off, reg_off, signed, 64 - size * 8), m.end()
    raise _fail(errno_codes.EINVAL, f"usdt: unrecognized arg #{number} spec '{text}'")


def parse_args(note: UsdtNote) -> tuple[UsdtArg, ...]:
    """parse_usdt_spec(): every argument of the note's argument string."""
    args: list[UsdtArg] = []
    rest = note.args
    while rest:
        if len(args) >= MAX_ARGS:
            raise _fail(errno_codes.E2BIG, f"usdt: too many USDT arguments (> {MAX_ARGS}) "
                        f"for '{note.provider}:{note.name}' with args spec '{note.args}'")
        arg, used = parse_arg(rest, len(args))
        args.append(arg)
        rest = rest[used:]
    return tuple(args)


# ---------------------------------------------------------------------- notes


def _cstring(data: bytes, start: int, end: int) -> tuple[bytes, int] | None:
    """The NUL-terminated string at data[start:end] and the index past its NUL."""
    nul = data.find(b"\0", start, end)
    return None if nul < 0 else (data[start:nul], nul + 1)


def iter_note_records(data: bytes, align: int) -> list[tuple[bytes, int, bytes]]:
    """gelf_getnote() over a note section: (name bytes, type, desc) of each whole note;
    the walk ends at the first note that does not fit."""
    notes = []
    off = 0
    while off + 12 <= len(data):
        namesz, descsz, ntype = struct.unpack_from("<III", data, off)
        name_off = off + 12
        desc_off = name_off + ((namesz + 3) & ~3 if align != 8 else (namesz + 7) & ~7)
        end = desc_off + ((descsz + 3) & ~3 if align != 8 else (descsz + 7) & ~7)
        if desc_off + descsz > len(data) or name_off + namesz > len(data):
            break
        notes.append((data[name_off:name_off + namesz], ntype,
                      data[desc_off:desc_off + descsz]))
        off = end
    return notes


def parse_note(name: bytes, ntype: int, desc: bytes, path: str) -> UsdtNote:
    """parse_usdt_note(): the three addresses, then provider, name and argument
    strings. A note of another name or type, or a malformed one, fails (EINVAL)."""
    def invalid(why: str) -> LoaderError:
        return _fail(errno_codes.EINVAL, f"usdt: invalid USDT note in '{path}': {why}")

    # strncmp(name, "stapsdt", n_namesz) == 0
    if name.split(b"\0", 1)[0] != (NOTE_NAME + b"\0")[:len(name)].split(b"\0", 1)[0]:
        raise invalid(f"note name {name!r} is not 'stapsdt'")
    if ntype != NOTE_TYPE:
        raise invalid(f"note type {ntype} is not {NOTE_TYPE}")
    if len(desc) < 3 * 8 + 3:
        raise invalid(f"{len(desc)} bytes of description")
    loc_addr, base_addr, sema_addr = struct.unpack_from("<qqq", desc, 0)
    provider = _cstring(desc, 24, len(desc))
    if provider is None:
        raise invalid("provider not NUL-terminated")
    if provider[1] >= len(desc) or desc[provider[1]] == 0:
        raise invalid("missing or empty name")
    probe = _cstring(desc, provider[1], len(desc))
    if probe is None:
        raise invalid("name not NUL-terminated")
    if probe[1] >= len(desc):
        raise invalid("missing argument spec")
    nul = desc.find(b"\0", probe[1])
    args = desc[probe[1]:nul if nul >= 0 else len(desc)].decode("latin-1")
    if args.startswith(":"):
        args = ""
    return UsdtNote(provider[0].decode("latin-1"), probe[0].decode("latin-1"), args,
                    loc_addr, base_addr, sema_addr)


# --------------------------------------------------------------------- targets


@dataclass(frozen=True)
class _Segment:
    start: int
    end: int
    offset: int
    is_exec: bool


def _find_segment(segments: list[_Segment], address: int) -> _Segment | None:
    for seg in segments:
        if seg.start <= address < seg.end:
            return seg
    return None


def _first_section(elf: object, name: str):  # noqa: ANN202 - a pyelftools Section
    """find_elf_sec_by_name(): the first section of that name (pyelftools' own look-up
    answers the last)."""
    for section in elf.iter_sections():  # type: ignore[attr-defined]
        if section.name == name:
            return section
    return None


# fscanf(f, "%zx-%zx %s %zx %*s %*d%[^\n]\n", ...) over /proc/PID/maps: a line without
# a path fails the last conversion, and ends the walk as it ends libbpf's loop.
_MAPS_LINE = re.compile(r"[ \t\n\v\f\r]*(?:0[xX])?([0-9a-fA-F]+)-[ \t\n\v\f\r]*(?:0[xX])?"
                        r"([0-9a-fA-F]+)[ \t\n\v\f\r]*([^ \t\n\v\f\r]+)"
                        r"[ \t\n\v\f\r]*(?:0[xX])?([0-9a-fA-F]+)[ \t\n\v\f\r]*"
                        r"[^ \t\n\v\f\r]+[ \t\n\v\f\r]*[+-]?[0-9]+([^\n]+)"
                        r"[ \t\n\v\f\r]*")
_PROC_ROOT = re.compile(r"/proc/([+-]?[0-9]+)/root([^ \t\n\v\f\r]+)")


def vma_segments(pid: int, lib_path: str, maps: str | None = None) -> list[_Segment]:
    """parse_vma_segs(): the executable mappings of ``lib_path`` in process ``pid``
    (a /proc/PID/root/PATH path is looked up as PATH), sorted by address."""
    m = _PROC_ROOT.match(lib_path)
    if m is not None and int(m.group(1)) == pid:
        path = m.group(2)
    else:
        path = os.path.realpath(lib_path)
    if maps is None:
        try:
            with open(f"/proc/{pid}/maps") as f:
                maps = f.read()
        except OSError as e:
            raise _fail(e.errno or errno_codes.EIO, f"usdt: failed to open "
                        f"'/proc/{pid}/maps' to get base addr of '{lib_path}': "
                        f"{e.strerror}") from e
    segments = []
    pos = 0
    while (line := _MAPS_LINE.match(maps, pos)) is not None:
        pos = line.end()
        start, end, mode, offset, rest = line.groups()
        if rest.lstrip(" \t") != path or len(mode) < 3 or mode[2] != "x":
            continue
        segments.append(_Segment(int(start, 16), int(end, 16), int(offset, 16), True))
    if not segments:
        raise _fail(errno_codes.ESRCH, f"usdt: failed to find '{lib_path}' (resolved to "
                    f"'{path}') within PID {pid} memory mappings")
    return sorted(segments, key=lambda s: s.start)


def collect_targets(path: str, provider: str, name: str, *, pid: int = -1, cookie: int = 0,
                    has_bpf_cookie: bool = True, has_sema_refcnt: bool = True,
                    file: BinaryIO | None = None) -> list[UsdtTarget]:
    """sanity_check_usdt_elf() then collect_usdt_targets(): every call site of
    PROVIDER:NAME, in note order (``pid`` -1: any process, as auto-attach asks)."""
    from elftools.common.exceptions import ELFError
    from elftools.elf.elffile import ELFFile

    try:
        f = file if file is not None else open(path, "rb")  # noqa: SIM115
    except OSError as e:
        raise _fail(e.errno or errno_codes.EIO,
                    f"usdt: failed to open ELF binary '{path}': {e.strerror}") from e
    try:
        try:
            elf = ELFFile(f)
        except ELFError as e:
            raise _fail(errno_codes.EBADF, f"usdt: failed to parse ELF binary '{path}': "
                        f"{e}") from e
        return _collect(elf, path, provider, name, pid, cookie, has_bpf_cookie,
                        has_sema_refcnt)
    finally:
        if file is None:
            f.close()


def _collect(elf: object, path: str, provider: str, name: str, pid: int, cookie: int,
             has_bpf_cookie: bool, has_sema_refcnt: bool) -> list[UsdtTarget]:
    header = elf.header  # type: ignore[attr-defined]
    if elf.elfclass != 64:  # type: ignore[attr-defined]
        raise _fail(errno_codes.EBADF, f"usdt: attaching to 32-bit ELF binary '{path}' is "
                    "not supported")
    e_type = header["e_type"]
    if e_type not in ("ET_EXEC", "ET_DYN"):
        raise _fail(errno_codes.EBADF, f"usdt: unsupported type of ELF binary '{path}' "
                    f"({e_type}), only ET_EXEC and ET_DYN are supported")
    if not elf.little_endian:  # type: ignore[attr-defined]
        raise _fail(errno_codes.EBADF, f"usdt: ELF endianness mismatch for '{path}'")

    notes_section = _first_section(elf, NOTE_SECTION)
    if notes_section is None:
        raise _fail(errno_codes.ENOENT, f"usdt: no USDT notes section ({NOTE_SECTION}) "
                    f"found in '{path}'")
    if notes_section["sh_type"] != "SHT_NOTE":
        raise _fail(errno_codes.EINVAL, f"usdt: invalid USDT notes section ({NOTE_SECTION}) "
                    f"in '{path}'")
    segments = sorted((_Segment(p["p_vaddr"], p["p_vaddr"] + p["p_memsz"], p["p_offset"],
                                bool(p["p_flags"] & 1))
                       for p in elf.iter_segments()  # type: ignore[attr-defined]
                       if p["p_type"] == "PT_LOAD"), key=lambda s: s.start)
    if not segments:
        raise _fail(errno_codes.ESRCH, f"usdt: failed to find PT_LOAD program headers in "
                    f"'{path}'")
    base_section = _first_section(elf, BASE_SECTION)
    base_addr = base_section["sh_addr"] if base_section is not None else 0
    what = f"'{provider}:{name}' in '{path}'"

    targets = []
    vma_segs: list[_Segment] = []
    for note_name, ntype, desc in iter_note_records(notes_section.data(),
                                                    notes_section["sh_addralign"]):
        note = parse_note(note_name, ntype, desc, path)
        if note.provider != provider or note.name != name:
            continue
        abs_ip = note.loc_addr
        if base_addr:
            abs_ip += base_addr - note.base_addr  # prelink compensation
        seg = _find_segment(segments, abs_ip)
        if seg is None:
            raise _fail(errno_codes.ESRCH, f"usdt: failed to find ELF program segment for "
                        f"{what} at IP {abs_ip:#x}")
        if not seg.is_exec:
            raise _fail(errno_codes.ESRCH, f"usdt: matched ELF binary '{path}' segment "
                        f"[{seg.start:#x}, {seg.end:#x}) for '{provider}:{name}' at IP "
                        f"{abs_ip:#x} is not executable")
        rel_ip = abs_ip - seg.start + seg.offset
        if e_type == "ET_DYN" and not has_bpf_cookie:
            # the spec is found by absolute ip: only known in one process
            if pid < 0:
                raise _fail(errno_codes.ENOTSUP, "usdt: attaching to shared libraries "
                            "without specific PID is not supported on current kernel")
            if not vma_segs:
                vma_segs = vma_segments(pid, path)
            vma = next((v for v in vma_segs
                        if v.offset <= rel_ip < v.offset + (v.end - v.start)), None)
            if vma is None:
                raise _fail(errno_codes.ESRCH, f"usdt: failed to find shared lib memory "
                            f"segment for {what} at relative IP {rel_ip:#x}")
            abs_ip = vma.start - vma.offset + rel_ip
        sema_off = 0
        if note.sema_addr:
            if not has_sema_refcnt:
                raise _fail(errno_codes.ENOTSUP, "usdt: kernel doesn't support USDT "
                            f"semaphore refcounting for {what}")
            seg = _find_segment(segments, note.sema_addr)
            if seg is None:
                raise _fail(errno_codes.ESRCH, "usdt: failed to find ELF loadable segment "
                            f"with semaphore of {what} at {note.sema_addr:#x}")
            if seg.is_exec:
                raise _fail(errno_codes.ESRCH, f"usdt: matched ELF binary '{path}' segment "
                            f"[{seg.start:#x}, {seg.end:#x}] for semaphore of "
                            f"'{provider}:{name}' at {note.sema_addr:#x} is executable")
            sema_off = note.sema_addr - seg.start + seg.offset
        targets.append(UsdtTarget(abs_ip, rel_ip, sema_off, note.args, parse_args(note),
                                  cookie))
    return targets
