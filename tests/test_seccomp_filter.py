"""The seccomp filter's decisions, run through a small classic-BPF interpreter (the
kernel's semantics for the opcodes the filter uses): every x86-64 syscall number, and
the argument cases that decide mmap, ioctl, fcntl and setsockopt. The kernel's own
judgement of the same filter is in tests/test_record.py (what gets recorded)."""

from __future__ import annotations

import struct

import pytest

from bpfreplay.recording import syscalls as sc
from bpfreplay.recording.seccomp import (
    AUDIT_ARCH_X86_64,
    SECCOMP_RET_ALLOW,
    SECCOMP_RET_TRACE,
    build_filter,
)

_LD_W_ABS, _ALU_AND_K, _JEQ_K, _JGE_K, _RET_K = 0x20, 0x54, 0x15, 0x35, 0x06


def run(program: bytes, nr: int, arch: int = AUDIT_ARCH_X86_64,
        args: tuple[int, ...] = (0,) * 6) -> tuple[int, int]:
    """(return value, instructions executed) of the filter on a struct seccomp_data."""
    data = struct.pack("<iIQ", nr, arch, 0) + b"".join(
        struct.pack("<Q", a & (2**64 - 1)) for a in args)
    insns = [struct.unpack_from("<HBBI", program, i) for i in range(0, len(program), 8)]
    pc = accumulator = steps = 0
    while True:
        code, jt, jf, k = insns[pc]
        steps += 1
        if code == _LD_W_ABS:
            accumulator = struct.unpack_from("<I", data, k)[0]
            pc += 1
        elif code == _ALU_AND_K:
            accumulator &= k
            pc += 1
        elif code == _JEQ_K:
            pc += 1 + (jt if accumulator == k else jf)
        elif code == _JGE_K:
            pc += 1 + (jt if accumulator >= k else jf)
        elif code == _RET_K:
            return k, steps
        else:
            raise AssertionError(f"opcode {code:#x} not interpreted")


ALWAYS = {sc.BPF, sc.PERF_EVENT_OPEN, sc.CLOSE, sc.MUNMAP, sc.DUP, sc.DUP2, sc.DUP3,
          sc.MEMFD_CREATE}
BY_ARGS = {sc.MMAP, sc.IOCTL, sc.FCNTL, sc.SETSOCKOPT}


@pytest.fixture(scope="module")
def program() -> bytes:
    return build_filter()


def test_every_syscall_number(program):
    for nr in range(0, 460):
        verdict, _ = run(program, nr, args=(0, 0, 0, 0, 0xFFFFFFFF, 0))
        if nr in ALWAYS:
            assert verdict == SECCOMP_RET_TRACE, nr
        elif nr not in BY_ARGS:
            assert verdict == SECCOMP_RET_ALLOW, nr


def test_argument_cases(program):
    trace, allow = SECCOMP_RET_TRACE, SECCOMP_RET_ALLOW
    cases = [
        (sc.MMAP, (0, 4096, 3, 1, 5, 0), trace),  # a real fd: maybe a BPF map
        (sc.MMAP, (0, 4096, 3, 0x22, 0xFFFFFFFF, 0), allow),  # anonymous
        (sc.IOCTL, (7, 0x2400, 0, 0, 0, 0), trace),  # PERF_EVENT_IOC_ENABLE
        (sc.IOCTL, (7, 0x40042408, 6, 0, 0, 0), trace),  # PERF_EVENT_IOC_SET_BPF
        (sc.IOCTL, (1, 0x5401, 0, 0, 0, 0), allow),  # TCGETS
        (sc.FCNTL, (4, sc.F_DUPFD_CLOEXEC, 3, 0, 0, 0), trace),
        (sc.FCNTL, (4, sc.F_DUPFD, 3, 0, 0, 0), trace),
        (sc.FCNTL, (4, 1, 0, 0, 0, 0), allow),  # F_GETFD
        (sc.SETSOCKOPT, (3, sc.SOL_SOCKET, sc.SO_ATTACH_BPF, 0, 4, 0), trace),
        (sc.SETSOCKOPT, (3, sc.SOL_SOCKET, sc.SO_DETACH_BPF, 0, 4, 0), trace),
        (sc.SETSOCKOPT, (3, sc.SOL_SOCKET, sc.SO_ATTACH_FILTER, 0, 16, 0), trace),
        (sc.SETSOCKOPT, (3, sc.SOL_SOCKET, sc.SO_ATTACH_REUSEPORT_CBPF, 0, 16, 0), trace),
        (sc.SETSOCKOPT, (3, sc.SOL_SOCKET, sc.SO_ATTACH_REUSEPORT_EBPF, 0, 4, 0), trace),
        (sc.SETSOCKOPT, (3, sc.SOL_SOCKET, sc.SO_DETACH_REUSEPORT_BPF, 0, 0, 0), trace),
        (sc.SETSOCKOPT, (3, sc.SOL_SOCKET, 44, 0, 4, 0), allow),  # SO_LOCK_FILTER
        (sc.SETSOCKOPT, (3, sc.SOL_SOCKET, 2, 0, 4, 0), allow),  # SO_REUSEADDR
        (sc.SETSOCKOPT, (3, 6, sc.SO_ATTACH_BPF, 0, 4, 0), allow),  # IPPROTO_TCP level
    ]
    for nr, args, expected in cases:
        assert run(program, nr, args=args)[0] == expected, (nr, args)


def test_other_abis_pass(program):
    assert run(program, sc.BPF, arch=0x40000003)[0] == SECCOMP_RET_ALLOW  # i386
    assert run(program, sc.BPF | 0x40000000)[0] == SECCOMP_RET_ALLOW  # x32
