"""Arguments of the non-bpf() calls the recorder keeps, named as strace names them:
fcntl commands, dup3 and memfd_create flags, setsockopt levels and the socket options
that attach BPF (asm-generic/socket.h, fcntl.h, uapi/linux/memfd.h).

Pure: numbers and bytes in, text out.
"""

from __future__ import annotations

from collections.abc import Callable

from bpfreplay.decode import cbpf

F_DUPFD, F_DUPFD_CLOEXEC = 0, 1030
_FCNTL = {0: "F_DUPFD", 1: "F_GETFD", 2: "F_SETFD", 3: "F_GETFL", 4: "F_SETFL",
          5: "F_GETLK", 6: "F_SETLK", 7: "F_SETLKW", 8: "F_SETOWN", 9: "F_GETOWN",
          10: "F_SETSIG", 11: "F_GETSIG", 15: "F_SETOWN_EX", 16: "F_GETOWN_EX",
          36: "F_OFD_GETLK", 37: "F_OFD_SETLK", 38: "F_OFD_SETLKW",
          1024: "F_SETLEASE", 1025: "F_GETLEASE", 1026: "F_NOTIFY", 1027: "F_DUPFD_QUERY",
          1030: "F_DUPFD_CLOEXEC", 1031: "F_SETPIPE_SZ", 1032: "F_GETPIPE_SZ",
          1033: "F_ADD_SEALS", 1034: "F_GET_SEALS"}

O_CLOEXEC = 0o2000000
_MFD_FLAGS = ((0x1, "MFD_CLOEXEC"), (0x2, "MFD_ALLOW_SEALING"), (0x4, "MFD_HUGETLB"),
              (0x8, "MFD_NOEXEC_SEAL"), (0x10, "MFD_EXEC"))
_MFD_HUGE_SHIFT, _MFD_HUGE_MASK = 26, 0x3F  # log2 of the huge page size, with MFD_HUGETLB

SOL_SOCKET = 1
SO_ATTACH_FILTER, SO_DETACH_FILTER, SO_LOCK_FILTER = 26, 27, 44
SO_ATTACH_BPF, SO_ATTACH_REUSEPORT_CBPF, SO_ATTACH_REUSEPORT_EBPF = 50, 51, 52
SO_DETACH_REUSEPORT_BPF = 68
# SO_DETACH_BPF is SO_DETACH_FILTER (27): strace prints the first name, so do we.
SOCKET_OPTIONS = {SO_ATTACH_FILTER: "SO_ATTACH_FILTER", SO_DETACH_FILTER: "SO_DETACH_FILTER",
                  SO_LOCK_FILTER: "SO_LOCK_FILTER", SO_ATTACH_BPF: "SO_ATTACH_BPF",
                  SO_ATTACH_REUSEPORT_CBPF: "SO_ATTACH_REUSEPORT_CBPF",
                  SO_ATTACH_REUSEPORT_EBPF: "SO_ATTACH_REUSEPORT_EBPF",
                  SO_DETACH_REUSEPORT_BPF: "SO_DETACH_REUSEPORT_BPF"}
FPROG_OPTIONS = (SO_ATTACH_FILTER, SO_ATTACH_REUSEPORT_CBPF)  # optval: struct sock_fprog
PROG_FD_OPTIONS = (SO_ATTACH_BPF, SO_ATTACH_REUSEPORT_EBPF)   # optval: int, a program fd
SHORT_FILTER = 16  # classic programs up to this long are shown whole on the one-line form


def fcntl_command(cmd: int) -> str:
    return _FCNTL.get(cmd, f"{cmd:#x} /* F_??? */")


def dup3_flags(flags: int) -> str:
    if not flags:
        return "0"
    rest = flags & ~O_CLOEXEC
    return "|".join((["O_CLOEXEC"] if flags & O_CLOEXEC else []) + ([f"{rest:#x}"] if rest
                                                                  else []))


def memfd_flags(flags: int) -> str:
    """``MFD_CLOEXEC|MFD_ALLOW_SEALING`` for 3; a huge page size as ``MFD_HUGE_2MB``."""
    names = [name for bit, name in _MFD_FLAGS if flags & bit]
    rest = flags & ~0x1F
    if flags & 0x4 and rest >> _MFD_HUGE_SHIFT:
        shift = (rest >> _MFD_HUGE_SHIFT) & _MFD_HUGE_MASK
        names.append(f"MFD_HUGE_{_size(1 << shift)}")
        rest &= ~(_MFD_HUGE_MASK << _MFD_HUGE_SHIFT)
    if rest:
        names.append(f"{rest:#x}")
    return "|".join(names) or "0"


def _size(value: int) -> str:
    for unit, scale in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if value >= scale and value % scale == 0:
            return f"{value // scale}{unit}"
    return str(value)


def socket_level(level: int) -> str:
    return "SOL_SOCKET" if level == SOL_SOCKET else str(level)


def socket_option(level: int, option: int) -> str:
    if level == SOL_SOCKET and option in SOCKET_OPTIONS:
        return SOCKET_OPTIONS[option]
    return str(option)


def quoted(data: bytes) -> str:
    """Bytes as a C string the way strace quotes a buffer: printable ASCII as is,
    the usual backslash escapes, other bytes in octal."""
    out = []
    for i, byte in enumerate(data):
        ch = chr(byte)
        if ch in '"\\':
            out.append("\\" + ch)
        elif 0x20 <= byte < 0x7F:
            out.append(ch)
        elif ch in "\t\n\v\f\r":
            out.append({"\t": "\\t", "\n": "\\n", "\v": "\\v", "\f": "\\f", "\r": "\\r"}[ch])
        else:
            after = data[i + 1:i + 2]
            digit_next = bool(after) and 0x30 <= after[0] <= 0x37
            out.append(f"\\{byte:03o}" if digit_next else f"\\{byte:o}")
    return '"' + "".join(out) + '"'


def optval_text(level: int, option: int, address: int, optlen: int, optval: bytes | None,
                filter_data: bytes | None, fd_text: Callable[[int], str], *,
                whole: bool = True) -> str:
    """setsockopt's optval as strace prints it: ``[5]`` for an int (a program fd named
    through ``fd_text``), ``{len=N, filter=[BPF_STMT(...), ...]}`` for a sock_fprog,
    NULL, an address when nothing was read, else the bytes quoted. ``whole=False``
    summarises a classic program longer than ``SHORT_FILTER``."""
    if not address:
        return "NULL"
    if optval is None or not optlen:
        return f"{address:#x}"
    bpf_option = level == SOL_SOCKET
    if bpf_option and option in FPROG_OPTIONS and optlen == cbpf.SOCK_FPROG_SIZE:
        parsed = cbpf.parse_sock_fprog(optval)
        if parsed is not None:
            length, filter_address = parsed
            shown = _filter_text(length, filter_address, filter_data, whole)
            return f"{{len={length}, filter={shown}}}"
    if optlen == 4 and len(optval) >= 4:
        value = int.from_bytes(optval[:4], "little", signed=True)
        return f"[{fd_text(value) if bpf_option and option in PROG_FD_OPTIONS else value}]"
    return quoted(optval[:optlen])


def _filter_text(length: int, address: int, data: bytes | None, whole: bool) -> str:
    if not address:
        return "NULL"
    if data is None or len(data) < length * cbpf.SOCK_FILTER_SIZE:
        return f"{address:#x}"
    insns = cbpf.filter_insns(data[:length * cbpf.SOCK_FILTER_SIZE])
    if not whole and len(insns) > SHORT_FILTER:
        return f"[{', '.join(insns[:4])}, ... {len(insns) - 4} more]"
    return "[" + ", ".join(insns) + "]"
