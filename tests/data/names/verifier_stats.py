"""Programs loaded with a verifier log: one accepted with branches (states to count),
asked with log_level 1 and again with BPF_LOG_STATS (4), and one the verifier refuses.
Prints each log the kernel wrote, between ``--- log N`` lines, for
tests/test_explain_names.py to compare with what explain shows.
"""

from __future__ import annotations

import ctypes
import os
import struct

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
keep = []


def address(data: bytes) -> int:
    buf = ctypes.create_string_buffer(data, len(data))
    keep.append(buf)
    return ctypes.addressof(buf)


def insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    return struct.pack("<BBhi", code, src << 4 | dst, off, imm)


BRANCHY = b"".join([
    insn(0x85, imm=7),             # call bpf_get_prandom_u32
    insn(0xB7, 1, imm=0),          # r1 = 0
    insn(0x25, 0, off=1, imm=10),  # if r0 > 10 goto +1
    insn(0xB7, 1, imm=1),          # r1 = 1
    insn(0x25, 0, off=1, imm=20),  # if r0 > 20 goto +1
    insn(0x07, 1, imm=2),          # r1 += 2
    insn(0xBF, 0, 1),              # r0 = r1
    insn(0x95),                    # exit
])
REFUSED = insn(0x79, 0, 2) + insn(0x95)  # r0 = *(u64 *)(r2 + 0): r2 is not initialised


def load(name: bytes, insns: bytes, log_level: int) -> None:
    log = ctypes.create_string_buffer(65536)
    attr = struct.pack("<IIQQIIQII16s", 5, len(insns) // 8, address(insns), address(b"GPL\0"),
                       log_level, 65536, ctypes.addressof(log), 0, 0, name)
    buf = ctypes.create_string_buffer(attr.ljust(128, b"\0"), 128)
    fd = libc.syscall(321, 5, buf, 128)  # BPF_PROG_LOAD of a BPF_PROG_TYPE_TRACEPOINT
    print(f"--- log {name.decode()} {fd}")
    print(log.value.decode(), end="", flush=True)
    if fd >= 0:
        os.close(fd)


load(b"branchy", BRANCHY, 1)
load(b"branchy_stats", BRANCHY, 1 | 4)
load(b"refused", REFUSED, 1)
