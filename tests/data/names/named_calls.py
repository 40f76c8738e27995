"""Calls whose arguments strace names: run under ``strace -v`` and under ``bpfreplay
record``, tests/test_explain_names.py compares the two renderings.

BPF objects made here (a map, two programs) are this process's own and go when it exits.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import socket
import struct

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
NR_BPF, NR_PERF_EVENT_OPEN = 321, 298
BPF_MAP_CREATE, BPF_PROG_LOAD, BPF_PROG_TEST_RUN = 0, 5, 10
SO_ATTACH_FILTER, SO_DETACH_FILTER, SO_ATTACH_BPF = 26, 27, 50
SO_ATTACH_REUSEPORT_CBPF, SO_ATTACH_REUSEPORT_EBPF = 51, 52
keep = []  # buffers whose addresses the kernel reads


def address(data: bytes) -> int:
    buf = ctypes.create_string_buffer(data, len(data))
    keep.append(buf)
    return ctypes.addressof(buf)


def bpf(cmd: int, attr: bytes) -> int:
    buf = ctypes.create_string_buffer(attr, len(attr))
    return libc.syscall(NR_BPF, cmd, buf, len(attr))


def prog_load(prog_type: int) -> int:
    insns = struct.pack("<BBhi", 0xB7, 0, 0, 0) + struct.pack("<BBhi", 0x95, 0, 0, 0)
    attr = struct.pack("<IIQQIIQ", prog_type, 2, address(insns), address(b"GPL\0"), 0, 0, 0)
    return bpf(BPF_PROG_LOAD, attr.ljust(72, b"\0"))


def classic(code: int, jt: int, jf: int, k: int) -> bytes:
    return struct.pack("<HBBI", code, jt, jf, k)


def sock_fprog(filters: list[bytes]) -> bytes:
    return struct.pack("<H6xQ", len(filters), address(b"".join(filters)))


def main() -> None:
    map_fd = bpf(BPF_MAP_CREATE, struct.pack("<IIII", 2, 4, 8, 1).ljust(72, b"\0"))
    dup_fd = fcntl.fcntl(map_fd, fcntl.F_DUPFD_CLOEXEC, 0)
    os.close(dup_fd)
    memfd = os.memfd_create("named", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    os.close(memfd)

    socket_prog = prog_load(1)   # BPF_PROG_TYPE_SOCKET_FILTER
    tp_prog = prog_load(5)       # BPF_PROG_TYPE_TRACEPOINT: no test_run, ENOTSUPP
    bpf(BPF_PROG_TEST_RUN, struct.pack("<I", tp_prog).ljust(80, b"\0"))

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    filters = [
        classic(0x28, 0, 0, 12),          # ldh [12]
        classic(0x15, 0, 3, 0x800),       # jeq #0x800, +0, +3
        classic(0x30, 0, 0, 23),          # ldb [23]
        classic(0xB1, 0, 0, 14),          # ldxb 4*([14]&0xf)
        classic(0x87, 0, 0, 0),           # txa
        classic(0x04, 0, 0, 1),           # add #1
        classic(0x02, 0, 0, 0),           # st M[0]
        classic(0x60, 0, 0, 0),           # ld M[0]
        classic(0x16, 0, 0, 0),           # ret a
        classic(0x06, 0, 0, 0xFFFFFFFF),  # ret #-1
    ]
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, sock_fprog(filters))
    # Every opcode part and load-absolute extension, some the kernel refuses (EINVAL).
    edges = [(0x05, 0, 0, 2), (0x25, 1, 2, 5), (0x2D, 0, 1, 0), (0x3D, 0, 0, 0),
             (0x45, 0, 0, 1), (0x00, 0, 0, 7), (0x80, 0, 0, 0), (0x81, 0, 0, 0),
             (0x01, 0, 0, 4), (0x61, 0, 0, 3), (0x84, 0, 0, 0), (0x0C, 0, 0, 0),
             (0x14, 0, 0, 3), (0x24, 0, 0, 3), (0x34, 0, 0, 3), (0x44, 0, 0, 3),
             (0x54, 0, 0, 3), (0x64, 0, 0, 3), (0x74, 0, 0, 3), (0x94, 0, 0, 3),
             (0xA4, 0, 0, 3), (0x20, 0, 0, 0xFFFFF000), (0x20, 0, 0, 0xFFFFF004),
             (0x20, 0, 0, 0xFFFFF030), (0x20, 0, 0, 0xFFE00000), (0x40, 0, 0, 2),
             (0x50, 0, 0, 2), (0x03, 0, 0, 1), (0x0E, 0, 0, 0), (0x07, 0, 0, 0),
             (0xFF, 0, 0, 0), (0x1E, 0, 0, 0), (0x35, 1, 1, 1), (0x15, 0, 0, 0),
             (0x40, 0, 0, 0xFFFFF000), (0x28, 0, 0, 0xFFF0000E), (0xB1, 0, 0, 0xFFFFF000),
             (0x04, 0, 0, 0xFFFFF000), (0x20, 0, 0, 0xFFFFF044), (0x20, 0, 0, 0xFFFFF03C),
             (0x20, 0, 0, 0xFFFFF040), (0x38, 0, 0, 0), (0x21, 0, 0, 0xFFFFF000),
             (0x22, 0, 0, 0), (0x12, 0, 0, 0), (0x0B, 0, 0, 0), (0xF4, 0, 0, 0),
             (0x1D, 0, 0, 0), (0xE5, 0, 0, 0), (0x68, 0, 0, 1), (0x20, 0, 0, 0xFFF00000),
             (0x20, 0, 0, 0xFFEFFFFF), (0x20, 0, 0, 0xFFDFFFFF), (0x6, 0, 0, 0x7FFFFFFF)]
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER,
                        sock_fprog([classic(*e) for e in edges]))
    except OSError:
        pass
    sock.setsockopt(socket.SOL_SOCKET, SO_DETACH_FILTER, 0)
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_BPF, socket_prog)
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF,
                    sock_fprog([classic(0x06, 0, 0, 0)]))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_REUSEPORT_EBPF, socket_prog)
    sock.close()

    # A software event with config 0 (PERF_COUNT_SW_CPU_CLOCK) on this process.
    attr = struct.pack("<IIQQQQQ", 1, 128, 0, 0, 0, 0, 1).ljust(128, b"\0")  # disabled
    fd = libc.syscall(NR_PERF_EVENT_OPEN, ctypes.create_string_buffer(attr, 128), 0, -1,
                      -1, 8)  # PERF_FLAG_FD_CLOEXEC
    if fd >= 0:
        os.close(fd)
    for fd in (socket_prog, tp_prog, map_fd):
        os.close(fd)


if __name__ == "__main__":
    main()
