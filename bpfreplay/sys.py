"""The one place where bpfreplay issues the syscalls that make and use BPF objects:
bpf(), perf_event_open(), ioctl(), mmap()/munmap(), close(), read() (of iterators) and
setsockopt() (SO_ATTACH_BPF).

Every call passes through ``syscall()``, which

- hands it to the tracer when one is set (``tracing(path)``), so that the loader's own
  calls become a trace in the same format as ``bpfreplay record`` writes, without
  ptrace;
- can be replaced by a fake (``override_syscall``), so that the loader's kernel stage is
  testable without a kernel (aya's ``override_syscall`` idea).

Failures raise ``OSError`` with the kernel's errno.

Not here, by design: epoll (the ring and perf buffer consumers use Python's
``select.epoll``: it makes and uses no BPF object, and ``record`` does not record it
either) and netlink (pyroute2).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
from collections.abc import Callable, Iterator
from typing import Protocol

from bpfreplay.recording import syscalls as nr

_libc = ctypes.CDLL(None, use_errno=True)
_raw = _libc.syscall
_raw.restype = ctypes.c_long
_raw.argtypes = [ctypes.c_long] * 7

RawSyscall = Callable[[int, tuple[int, ...]], tuple[int, int]]  # -> (ret, errno)


class Tracer(Protocol):
    def before(self, number: int, args: tuple[int, ...]) -> object | None: ...
    def after(self, token: object, ret: int, errno: int) -> None: ...


def _libc_syscall(number: int, args: tuple[int, ...]) -> tuple[int, int]:
    ret = _raw(number, *args)
    return (ret, ctypes.get_errno()) if ret == -1 else (ret, 0)


_syscall_impl: RawSyscall = _libc_syscall
_tracer: Tracer | None = None


_AS_U64 = (0xFFFFFFFFFFFFFFFF).__and__  # -1 -> 0xffff...: what the registers hold
_PADDING = tuple((0,) * n for n in range(7))


def syscall(number: int, *args: int) -> int:
    """Issue syscall ``number``; OSError(errno) if it fails."""
    padded = tuple(map(_AS_U64, args)) + _PADDING[6 - len(args)]
    tracer = _tracer
    token = tracer.before(number, padded) if tracer is not None else None
    ret, err = _syscall_impl(number, padded)
    if token is not None and tracer is not None:
        tracer.after(token, ret, err)
    if ret == -1 and err:
        raise OSError(err, os.strerror(err))
    return ret


@contextlib.contextmanager
def override_syscall(fake: RawSyscall) -> Iterator[None]:
    """Replace the kernel for the duration: ``fake(number, args) -> (ret, errno)``."""
    global _syscall_impl
    saved, _syscall_impl = _syscall_impl, fake
    try:
        yield
    finally:
        _syscall_impl = saved


@contextlib.contextmanager
def traced_by(tracer: Tracer) -> Iterator[Tracer]:
    """Let ``tracer`` see every call made through this module for the duration."""
    global _tracer
    saved, _tracer = _tracer, tracer
    try:
        yield tracer
    finally:
        _tracer = saved


# ------------------------------------------------------------------ memory


class Buffers:
    """Memory the kernel reads or writes through pointers in an attr: kept alive here
    until the owner drops this object."""

    def __init__(self) -> None:
        self._kept: list[ctypes.Array] = []

    def bytes_at(self, data: bytes | bytearray) -> int:
        """The address of a copy of ``data`` (0 for empty data, as libbpf passes NULL)."""
        if not data:
            return 0
        buf = ctypes.create_string_buffer(bytes(data), len(data))
        self._kept.append(buf)
        return ctypes.addressof(buf)

    def cstring_at(self, text: str | bytes) -> int:
        raw = text.encode() if isinstance(text, str) else text
        buf = ctypes.create_string_buffer(raw)  # with its NUL
        self._kept.append(buf)
        return ctypes.addressof(buf)

    def zeroed(self, size: int) -> tuple[int, ctypes.Array]:
        """A zero-filled output buffer of ``size`` bytes: (address, buffer)."""
        buf = ctypes.create_string_buffer(size)
        self._kept.append(buf)
        return ctypes.addressof(buf), buf

    def address_of(self, data: bytearray) -> int:
        """The address of ``data`` itself (writes by the kernel show in it)."""
        view = (ctypes.c_char * len(data)).from_buffer(data)
        self._kept.append(view)
        return ctypes.addressof(view)


# ---------------------------------------------------------------- syscalls


def bpf(cmd: int, attr: bytearray, size: int | None = None) -> int:
    """bpf(cmd, &attr, size); the kernel's writes into the attr show in ``attr``."""
    view = (ctypes.c_char * max(len(attr), 1)).from_buffer(attr) if attr else None
    address = ctypes.addressof(view) if view is not None else 0
    return syscall(nr.BPF, cmd, address, len(attr) if size is None else size)


def perf_event_open(attr: bytearray, pid: int, cpu: int, group_fd: int, flags: int) -> int:
    view = (ctypes.c_char * len(attr)).from_buffer(attr)
    return syscall(nr.PERF_EVENT_OPEN, ctypes.addressof(view), pid, cpu, group_fd, flags)


def ioctl(fd: int, request: int, arg: int = 0) -> int:
    return syscall(nr.IOCTL, fd, request, arg)


PROT_READ, PROT_WRITE = 1, 2
MAP_SHARED = 1


def mmap(fd: int, length: int, prot: int, flags: int = MAP_SHARED, offset: int = 0, *,
         address: int = 0) -> int:
    """The address of a new mapping of ``fd`` (-1 with MAP_ANONYMOUS: memory)."""
    return syscall(nr.MMAP, address, length, prot, flags, fd, offset) & 0xFFFFFFFFFFFFFFFF


def munmap(address: int, length: int) -> None:
    syscall(nr.MUNMAP, address, length)


def close(fd: int) -> None:
    syscall(nr.CLOSE, fd)


def setsockopt(fd: int, level: int, optname: int, value: bytes) -> None:
    """setsockopt(fd, level, optname, &value, len(value)): SO_ATTACH_BPF of a socket
    filter is one (``bpfreplay record`` records it, so our own trace holds it too)."""
    buf = ctypes.create_string_buffer(value, len(value))
    syscall(nr.SETSOCKOPT, fd, level, optname, ctypes.addressof(buf), len(value))


_NR_READ = 0  # x86_64; not in recording.syscalls: the recorder does not stop on read()


def read(fd: int, size: int) -> bytes:
    """read(fd, buf, size): the bytes it returned (b"" at the end of the file). Not shown
    to the tracer: ``bpfreplay record`` does not record read() (of an iterator fd or
    any other), so the loader's own trace leaves it out too. A fake set with
    ``override_syscall`` still answers it."""
    buf = ctypes.create_string_buffer(size)
    ret, err = _syscall_impl(_NR_READ, (fd, ctypes.addressof(buf), size, 0, 0, 0))
    if ret == -1 and err:
        raise OSError(err, os.strerror(err))
    return buf.raw[:ret]


_STATFS_SIZE = 120  # sizeof(struct statfs) on 64-bit Linux; f_type is its first word


def statfs_type(path: str) -> int:
    """statfs(path)'s f_type: which file system ``path`` is on (libbpf's check that a
    pin path is on bpffs). Not a BPF call: not shown to the tracer."""
    buf = ctypes.create_string_buffer(_STATFS_SIZE)
    if _libc.statfs(os.fsencode(path), buf) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return int.from_bytes(buf.raw[:8], "little")


class FileMapping:
    """A whole file mapped read-only and private, its fd already closed (as after
    libbpf's read of the same file, no fd stays open: fd numbers of what follows are
    libbpf's). ``view`` is valid until ``close()``, which the garbage collector also
    calls. Not a BPF call: not shown to the tracer nor to a fake."""

    def __init__(self, address: int, size: int) -> None:
        self.size = size
        self._address = address
        self.view = memoryview((ctypes.c_char * size).from_address(address)).cast("B")

    def close(self) -> None:
        if self._address:
            try:
                self.view.release()
            except BufferError:  # a slice of it is still alive: keep the mapping
                return
            _libc.munmap(ctypes.c_void_p(self._address), ctypes.c_size_t(self.size))
            self._address = 0

    def __del__(self) -> None:
        self.close()


_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                       ctypes.c_int, ctypes.c_long]
_MAP_PRIVATE, _MAP_FAILED = 2, ctypes.c_void_p(-1).value


def map_file(path: str) -> FileMapping | None:
    """``path`` mapped read-only (PROT_READ, MAP_PRIVATE: what sysfs allows for vmlinux
    BTF since 6.16); None where the file cannot be mapped (older kernels, empty or
    special files): read it instead. OSError if it cannot be opened."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        size = os.fstat(fd).st_size
        if size <= 0:
            return None
        address = _libc.mmap(None, size, PROT_READ, _MAP_PRIVATE, fd, 0)
    finally:
        os.close(fd)
    if address is None or address == _MAP_FAILED:
        return None
    return FileMapping(address, size)
