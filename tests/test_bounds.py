"""Bounds of the spec stage: objects with one field made hostile are read as libbpf 1.1.2
reads them or refused with a LoaderError naming what is wrong, never an IndexError,
struct.error, OverflowError or MemoryError (issue 8; tests/fuzz/test_spec_fuzz.py
searches for more)."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from bpfreplay.errors import LoaderError
from bpfreplay.loader.spec import load_spec
from tests.conftest import _built

ROOT = Path(__file__).resolve().parent.parent
UPROBE = ROOT / "tests/data/run/build/uprobe.bpf.o"
MINIMAL_NOBTF = ROOT / "tests/data/run/build/minimal_nobtf.bpf.o"
SHT_SYMTAB, SHT_NOBITS = 2, 8
STT_OBJECT = 1


def _need(path: Path) -> bytes:
    return _built(path, path.parent.parent).read_bytes()  # its folder's Makefile


def _section_headers(data: bytes) -> list[tuple[int, int, str, int, int]]:
    """(header offset, type, name, data offset, size) of each section, read with the
    ELF64 layout of elf.h (independently of bpfreplay.loader.elf)."""
    shoff, = struct.unpack_from("<Q", data, 40)
    shnum, shstrndx = struct.unpack_from("<HH", data, 60)
    heads = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * 64) for i in range(shnum)]
    names = data[heads[shstrndx][4]:heads[shstrndx][4] + heads[shstrndx][5]]
    return [(shoff + i * 64, h[1], names[h[0]:names.index(b"\0", h[0])].decode(), h[4], h[5])
            for i, h in enumerate(heads)]


def _global_objects(data: bytes) -> list[int]:
    """File offsets of the st_value of every global STT_OBJECT symbol (a VAR of a
    DATASEC, whose offset libbpf's btf_fixup_datasec() takes from st_value)."""
    sections = _section_headers(data)
    _h, _t, _n, off, size = next(s for s in sections if s[1] == SHT_SYMTAB)
    out = []
    for i in range(size // 24):
        _name, info, _other, shndx, _value, _size = struct.unpack_from("<IBBHQQ", data,
                                                                        off + 24 * i)
        if info >> 4 == 1 and info & 0xF == STT_OBJECT and 0 < shndx < len(sections):
            out.append(off + 24 * i + 8)
    return out


def test_symbol_value_over_32_bits_is_truncated_as_libbpf_does() -> None:
    """One byte of uprobe.bpf.o changed: a global variable's st_value >= 2**32 crashed
    the DATASEC fix-up with struct.error. libbpf stores st_value into the __u32
    btf_var_secinfo.offset, so the fixed-up BTF is the one of the intact object."""
    data = _need(UPROBE)
    symbols = _global_objects(data)
    assert symbols, "uprobe.bpf.o has a global variable"
    intact = load_spec(data, name="uprobe")
    for value_at in symbols:
        changed = bytearray(data)
        changed[value_at + 4] = 1  # bit 32 of st_value
        spec = load_spec(bytes(changed), name="uprobe")
        assert spec.btf_bytes == intact.btf_bytes


@pytest.mark.parametrize("size", [2**40, 2**64 - 1, 0x7FFFFFFFFFFF])
def test_huge_bss_is_refused_naming_the_section(size: int) -> None:
    """A .bss (SHT_NOBITS) whose size field says terabytes: bytes(size) raised
    MemoryError or OverflowError."""
    data = _need(MINIMAL_NOBTF)
    bss = [s for s in _section_headers(data) if s[1] == SHT_NOBITS and s[2] == ".bss"]
    if not bss:
        pytest.skip("minimal_nobtf.bpf.o has no .bss")
    changed = bytearray(data)
    struct.pack_into("<Q", changed, bss[0][0] + 32, size)
    with pytest.raises(LoaderError, match=r"\.bss.*bytes"):
        load_spec(bytes(changed), name="minimal_nobtf")


HAND_UPROBE = ROOT / "tests/data/compare/build/hand_uprobe.bpf.o"
SHT_REL, STT_FUNC, LD_IMM64 = 9, 2, 0x18


def test_ld_imm64_cut_by_a_shrunk_function_symbol_is_refused() -> None:
    """A function symbol's st_size made to end in the middle of an ld_imm64 that has a
    relocation: relocating wrote past the program (struct.error in _set_imm)."""
    data = _need(HAND_UPROBE)
    sections = _section_headers(data)
    _h, _t, _n, symoff, symsize = next(s for s in sections if s[1] == SHT_SYMTAB)
    symbols = [struct.unpack_from("<IBBHQQ", data, symoff + 24 * i) for i in range(symsize // 24)]
    shoff, = struct.unpack_from("<Q", data, 40)
    for index, (_hoff, kind, _name, off, size) in enumerate(sections):
        if kind != SHT_REL:
            continue
        target = struct.unpack_from("<I", data, shoff + index * 64 + 44)[0]  # sh_info
        code_at = sections[target][3]
        for rel in range(size // 16):
            r_offset, = struct.unpack_from("<Q", data, off + 16 * rel)
            if data[code_at + r_offset] != LD_IMM64:
                continue
            for s, (_nm, info, _o, shndx, value, _sz) in enumerate(symbols):
                if info & 0xF == STT_FUNC and shndx == target and value <= r_offset:
                    changed = bytearray(data)
                    struct.pack_into("<Q", changed, symoff + 24 * s + 16, r_offset - value + 8)
                    with pytest.raises(LoaderError, match=r"ld_imm64 cut by the end"):
                        load_spec(bytes(changed), name="hand_uprobe")
                    return
    pytest.skip("no relocated ld_imm64 in a function of hand_uprobe.bpf.o")
