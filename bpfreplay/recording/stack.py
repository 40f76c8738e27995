"""``record --stack``: the tracee's user-space call chain at a syscall-entry stop.

From the registers of the stop (rip, rsp, rbp and the other callee-saved ones) each
frame's caller is found through the CFI of the file mapped at its pc (recording/cfi.py)
and the words the rules name are read from the tracee's stack. The first frame is the
libc wrapper that made the syscall (``syscall()``, ``ioctl()``...); the walk ends where
the CFI says the return address is undefined (``_start``), at a pc no file maps, or
after MAX_FRAMES. A frame no FDE covers (code built without unwind tables) is left
through its frame pointer.

Each frame is named at record time, while the files are the ones the process mapped
(docs/trace-format.md, "stack"): the module's path, the pc as the file's virtual
address (what nm, readelf -s and addr2line use), its symbol and the functions DWARF
says were inlined there. Files are parsed once per (path, device, inode, mtime), and
each file address is named once.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from typing import Any

from bpfreplay.recording.cfi import FrameInfo, Rule
from bpfreplay.recording.memory import TraceeMemory

MAX_FRAMES = 64
# struct user_regs_struct offsets (x86_64) -> DWARF register numbers.
_REGS = struct.Struct("<6Q80xQ16xQ")  # r15 r14 r13 r12 rbp rbx ... rip ... rsp
_RBX, _RBP, _RSP, _RA = 3, 6, 7, 16
_WORD = struct.Struct("<Q")
_PAGE = os.sysconf("SC_PAGE_SIZE")

Frame = dict[str, Any]


@dataclass
class _Module:
    """One mapped file: its load segments, unwind rules and names."""

    path: str
    segments: list[tuple[int, int, int]]  # (file offset, file size, virtual address)
    frames: FrameInfo | None
    symbols: Any
    inlines: Any
    names: dict[int, tuple[Any, list[str]]] = field(default_factory=dict)

    def address_of(self, file_offset: int) -> int | None:
        for offset, size, vaddr in self.segments:
            if offset <= file_offset < offset + size:
                return file_offset - offset + vaddr
        return None


@dataclass
class _Mapping:
    start: int
    end: int
    offset: int
    path: str
    opened: bool = False  # the file is parsed when a pc first falls in it
    module: _Module | None = None


def _open_module(path: str) -> _Module | None:
    from elftools.common.exceptions import ELFError
    from elftools.elf.elffile import ELFFile

    from bpfreplay.recording.symbols import InlineInfo, SymbolTable
    try:
        stream = open(path, "rb")  # noqa: SIM115 - pyelftools reads it lazily, kept open
        elf = ELFFile(stream)
        segments = [(s["p_offset"], s["p_filesz"], s["p_vaddr"]) for s in elf.iter_segments()
                    if s["p_type"] == "PT_LOAD"]
        frames = FrameInfo(elf)
        return _Module(path, segments, frames, SymbolTable(elf), InlineInfo(elf))
    except (OSError, ELFError, ValueError):
        return None


class StackUnwinder:
    """Unwinds the stacks of the traced processes; one per recording."""

    def __init__(self) -> None:
        self._modules: dict[tuple[str, int, int, int], _Module | None] = {}
        self._maps: dict[int, list[_Mapping]] = {}  # pid -> its executable file mappings

    def forget(self, pid: int) -> None:
        """The process exec'd or ended: its mappings are read again when needed."""
        self._maps.pop(pid, None)

    def unwind(self, pid: int, registers: bytes, memory: TraceeMemory) -> list[Frame]:
        r15, r14, r13, r12, rbp, rbx, rip, rsp = _REGS.unpack_from(registers)
        regs = {_RBX: rbx, _RBP: rbp, _RSP: rsp, 12: r12, 13: r13, 14: r14, 15: r15}
        pages: dict[int, bytes | None] = {}
        frames: list[Frame] = []
        pc = rip
        by_frame_pointer = False
        while len(frames) < MAX_FRAMES:
            # The first pc is where the syscall returns to, in the wrapper; the others
            # are return addresses: the call is the instruction before them.
            lookup = pc if not frames else pc - 1
            mapping = self._mapping(pid, lookup)
            if mapping is not None and not mapping.opened:
                mapping.module = self._module(mapping.path)
                mapping.opened = True
            if mapping is None or mapping.module is None:
                if not by_frame_pointer:  # what rbp pointed at may be no return address
                    frames.append({"pc": pc})
                break
            module = mapping.module
            address = module.address_of(lookup - mapping.start + mapping.offset)
            if address is None:
                frames.append({"pc": pc, "module": module.path})
                break
            frame: Frame = {"pc": pc, "module": module.path}
            try:
                frame = self._frame(module, pc, address, lookup != pc)
                rule = module.frames.rule(address) if module.frames else None
            except Exception as e:  # noqa: BLE001 - a file pyelftools cannot read ends the walk, not the recording
                frame["error"] = f"reading {module.path}: {e}"
                frames.append(frame)
                break
            if by_frame_pointer:
                frame["frame_pointer"] = True
            frames.append(frame)
            read = lambda at: _read_word(memory, pages, at)  # noqa: E731
            if rule is not None:
                caller = _step(rule, regs, read)
            elif frames[1:]:  # no FDE here (code built without unwind tables): try rbp
                caller = _frame_pointer_step(regs, read)
            else:
                caller = None
            if caller is None or caller == 0:
                break
            pc = caller
            by_frame_pointer = rule is None
        return frames

    def _frame(self, module: _Module, pc: int, address: int, is_return: bool) -> Frame:
        named = module.names.get(address)
        if named is None:
            named = module.names[address] = (module.symbols.lookup(address),
                                              module.inlines.inlined_at(address))
        symbol, inlined = named
        frame: Frame = {"pc": pc, "module": module.path,
                        "offset": address + 1 if is_return else address}
        if symbol is not None:
            frame["symbol"] = symbol.name
            frame["symbol_offset"] = frame["offset"] - symbol.start
            if symbol.exported:
                frame["exported"] = True
        if inlined:
            frame["inlined"] = list(inlined)
        return frame

    def _mapping(self, pid: int, pc: int) -> _Mapping | None:
        maps = self._maps.get(pid)
        found = _find(maps, pc) if maps is not None else None
        if found is None:  # new process, or something mapped since: read the maps again
            maps = self._maps[pid] = self._read_maps(pid)
            found = _find(maps, pc)
        return found

    def _read_maps(self, pid: int) -> list[_Mapping]:
        mappings = []
        try:
            with open(f"/proc/{pid}/maps") as f:
                lines = f.read().splitlines()
        except OSError:
            return []
        for line in lines:
            parts = line.split(None, 5)
            if len(parts) < 6 or "x" not in parts[1] or not parts[5].startswith("/"):
                continue
            low, high = (int(x, 16) for x in parts[0].split("-"))
            mappings.append(_Mapping(low, high, int(parts[2], 16), parts[5]))
        return mappings

    def _module(self, path: str) -> _Module | None:
        try:
            st = os.stat(path)
        except OSError:
            return None
        key = (path, st.st_dev, st.st_ino, st.st_mtime_ns)
        if key not in self._modules:
            self._modules[key] = _open_module(path)
        return self._modules[key]


def _find(maps: list[_Mapping], pc: int) -> _Mapping | None:
    for mapping in maps:
        if mapping.start <= pc < mapping.end:
            return mapping
    return None


def _read_word(memory: TraceeMemory, pages: dict[int, bytes | None], address: int) -> int | None:
    """A stack word, through a copy of its page (a walk reads a few pages many times)."""
    page = address & -_PAGE
    if page not in pages:
        read = memory.read_pages(page, _PAGE)
        pages[page] = read[1] if read else None
    data = pages[page]
    at = address - page
    if data is None or at + 8 > len(data):
        return None
    return _WORD.unpack_from(data, at)[0]


# A frame-pointer walk stops at an rbp that does not point into the stack above rsp.
_STACK_SPAN = 1 << 23


def _frame_pointer_step(regs: dict[int, int], read: Any) -> int | None:
    """The caller of a function with the classic prologue (push rbp; mov rbp, rsp):
    its return address at rbp+8, its rbp at rbp, its rsp rbp+16."""
    rbp, rsp = regs.get(_RBP), regs.get(_RSP)
    if rbp is None or rsp is None or not rsp <= rbp < rsp + _STACK_SPAN or rbp % 8:
        return None
    saved, return_address = read(rbp), read(rbp + 8)
    if saved is None or return_address is None:
        return None
    regs.clear()  # the other callee-saved registers are not known past this frame
    regs[_RBP], regs[_RSP] = saved, rbp + 16
    return return_address


def _step(rule: Rule, regs: dict[int, int], read: Any) -> int | None:
    """Apply one CFI row: ``regs`` become the caller's; its pc is returned (None: the
    rules cannot be followed, or the return address is undefined: the outermost frame)."""
    if rule.cfa_register is None or rule.cfa_register not in regs:
        return None
    cfa = (regs[rule.cfa_register] + rule.cfa_offset) & 0xFFFFFFFFFFFFFFFF
    caller = dict(regs)
    return_address = None
    for number, (kind, arg) in rule.registers.items():
        if kind == "OFFSET":
            value = read(cfa + arg)
        elif kind == "VAL_OFFSET":
            value = cfa + arg
        elif kind == "REGISTER":
            value = regs.get(arg)
        elif kind == "SAME_VALUE":
            value = regs.get(number)
        elif kind == "UNDEFINED":
            if number == _RA:
                return None
            value = None
        else:  # expressions: not evaluated
            value = None
        if number == _RA:
            return_address = value
        elif value is None:
            caller.pop(number, None)
        else:
            caller[number] = value
    caller[_RSP] = cfa
    regs.clear()
    regs.update(caller)
    return return_address
