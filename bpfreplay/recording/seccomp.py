"""The seccomp filter that makes the kernel stop the tracee only on recorded syscalls.

Like ``strace --seccomp-bpf``: a classic BPF program returns SECCOMP_RET_TRACE for
the syscalls we record (narrowed by their arguments where that is cheap: mmap of a
real fd, ioctl of the perf '$' type, fcntl F_DUPFD*, setsockopt of the BPF socket options)
and SECCOMP_RET_ALLOW for everything else, which then runs at full speed.
"""

from __future__ import annotations

import struct

from bpfreplay.recording import syscalls as sc

AUDIT_ARCH_X86_64 = 0xC000003E
X32_SYSCALL_BIT = 0x40000000
SECCOMP_RET_ALLOW = 0x7FFF0000
SECCOMP_RET_TRACE = 0x7FF00000

# Classic BPF opcodes.
_LD_W_ABS = 0x20
_JEQ_K = 0x15
_JGE_K = 0x35
_AND_K = 0x54
_RET_K = 0x06

# struct seccomp_data offsets.
_NR, _ARCH = 0, 4


def _arg_low(n: int) -> int:
    return 16 + 8 * n  # low 32 bits of args[n] on little endian


class _Assembler:
    """A tiny classic-BPF assembler with labels (classic BPF jumps are 8-bit and forward)."""

    def __init__(self) -> None:
        self.code: list[tuple[int, object, object, int]] = []
        self.labels: dict[str, int] = {}

    def label(self, name: str) -> None:
        self.labels[name] = len(self.code)

    def load(self, offset: int) -> None:
        self.code.append((_LD_W_ABS, 0, 0, offset))

    def jump(self, op: int, k: int, if_true: str | int, if_false: str | int = 0) -> None:
        self.code.append((op, if_true, if_false, k))

    def alu_and(self, k: int) -> None:
        self.code.append((_AND_K, 0, 0, k))

    def ret(self, k: int) -> None:
        self.code.append((_RET_K, 0, 0, k))

    def assemble(self) -> bytes:
        out = bytearray()
        for pc, (op, jt, jf, k) in enumerate(self.code):
            out += struct.pack("<HBBI", op, self._target(pc, jt), self._target(pc, jf), k)
        return bytes(out)

    def _target(self, pc: int, where: object) -> int:
        if isinstance(where, int):
            return where
        offset = self.labels[str(where)] - pc - 1
        if not 0 <= offset <= 255:
            raise ValueError(f"seccomp filter jump to {where} out of range")
        return offset


def build_filter() -> bytes:
    """The filter's sock_filter array, ready for PR_SET_SECCOMP."""
    a = _Assembler()
    a.load(_ARCH)
    a.jump(_JEQ_K, AUDIT_ARCH_X86_64, 0, "allow")
    a.load(_NR)
    a.jump(_JGE_K, X32_SYSCALL_BIT, "allow")
    for nr in (sc.BPF, sc.PERF_EVENT_OPEN, sc.CLOSE, sc.MUNMAP, sc.DUP, sc.DUP2, sc.DUP3,
               sc.MEMFD_CREATE):
        a.jump(_JEQ_K, nr, "trace")
    a.jump(_JEQ_K, sc.MMAP, "mmap")
    a.jump(_JEQ_K, sc.IOCTL, "ioctl")
    a.jump(_JEQ_K, sc.FCNTL, "fcntl")
    a.jump(_JEQ_K, sc.SETSOCKOPT, "setsockopt", "allow")
    a.label("mmap")  # anonymous mappings pass fd -1
    a.load(_arg_low(4))
    a.jump(_JEQ_K, 0xFFFFFFFF, "allow", "trace")
    a.label("ioctl")
    a.load(_arg_low(1))
    a.alu_and(0xFF00)
    a.jump(_JEQ_K, sc.PERF_IOC_TYPE << 8, "trace", "allow")
    a.label("fcntl")
    a.load(_arg_low(1))
    a.jump(_JEQ_K, sc.F_DUPFD, "trace")
    a.jump(_JEQ_K, sc.F_DUPFD_CLOEXEC, "trace", "allow")
    a.label("setsockopt")
    a.load(_arg_low(1))
    a.jump(_JEQ_K, sc.SOL_SOCKET, 0, "allow")
    a.load(_arg_low(2))
    for option in sc.BPF_SOCKET_OPTIONS[:-1]:
        a.jump(_JEQ_K, option, "trace")
    a.jump(_JEQ_K, sc.BPF_SOCKET_OPTIONS[-1], "trace", "allow")
    a.label("allow")
    a.ret(SECCOMP_RET_ALLOW)
    a.label("trace")
    a.ret(SECCOMP_RET_TRACE)
    return a.assemble()
