"""A classic program attached to a socket and detached (SO_ATTACH_FILTER,
SO_DETACH_FILTER), for tests/test_explain_names.py to record and replay."""

import ctypes
import socket
import struct

program = b"".join(struct.pack("<HBBI", *insn) for insn in (
    (0x28, 0, 0, 12), (0x15, 0, 1, 0x800), (0x06, 0, 0, 0xFFFFFFFF), (0x06, 0, 0, 0)))
buf = ctypes.create_string_buffer(program, len(program))
with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
    sock.setsockopt(socket.SOL_SOCKET, 26, struct.pack("<H6xQ", 4, ctypes.addressof(buf)))
    sock.setsockopt(socket.SOL_SOCKET, 27, 0)
