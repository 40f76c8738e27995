"""The ptrace requests made on every stop, bound once to libc.

python-ptrace's wrappers allocate a register struct and check errno through a
Python layer on each call; at tens of thousands of stops a second that is a third
of the recorder's time. These bindings reuse one struct and python-ptrace's own
register layout; the rare requests (TRACEME, SETOPTIONS, GETEVENTMSG) still go
through python-ptrace.
"""

from __future__ import annotations

import ctypes
import os

from ptrace.binding import ptrace_registers_t

PTRACE_PEEKUSER = 3
PTRACE_CONT = 7
PTRACE_GETREGS = 12
PTRACE_SYSCALL = 24
ESRCH = 3

_libc = ctypes.CDLL(None, use_errno=True)
_ptrace = _libc.ptrace
_ptrace.argtypes = [ctypes.c_long, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
_ptrace.restype = ctypes.c_long

_regs = ptrace_registers_t()
_regs_address = ctypes.addressof(_regs)


class TaskGone(Exception):
    """The task died under us (ESRCH): its exit status is on its way to waitpid."""


def _fail(request: str, tid: int) -> None:
    err = ctypes.get_errno()
    if err == ESRCH:
        raise TaskGone(tid)
    raise OSError(err, f"ptrace({request}, {tid}): {os.strerror(err)}")


def get_regs(tid: int) -> ptrace_registers_t:
    """The task's registers, in a struct that the next call overwrites."""
    if _ptrace(PTRACE_GETREGS, tid, None, _regs_address) == -1:
        _fail("GETREGS", tid)
    return _regs


def peek_user(tid: int, offset: int) -> int:
    ctypes.set_errno(0)
    value = _ptrace(PTRACE_PEEKUSER, tid, offset, None)
    if value == -1 and ctypes.get_errno():
        _fail("PEEKUSER", tid)
    return value & 0xFFFFFFFFFFFFFFFF


def resume(tid: int, sig: int = 0) -> None:
    """PTRACE_CONT; a task that is already gone is not an error."""
    if _ptrace(PTRACE_CONT, tid, None, sig) == -1 and ctypes.get_errno() != ESRCH:
        _fail("CONT", tid)


def resume_to_exit(tid: int) -> None:
    """PTRACE_SYSCALL from a seccomp stop: the next stop is this syscall's exit."""
    if _ptrace(PTRACE_SYSCALL, tid, None, 0) == -1:
        _fail("SYSCALL", tid)


# Attaching to a running process (record -p): no seccomp filter can be added to it
# safely (it would outlive us and turn the traced calls into ENOSYS), so every
# syscall stops and PTRACE_SYSCALL drives it.
PTRACE_DETACH = 17
PTRACE_SEIZE = 0x4206
PTRACE_INTERRUPT = 0x4207


def seize(tid: int, options: int) -> None:
    if _ptrace(PTRACE_SEIZE, tid, None, options) == -1:
        _fail("SEIZE", tid)


def interrupt(tid: int) -> None:
    if _ptrace(PTRACE_INTERRUPT, tid, None, None) == -1 and ctypes.get_errno() != ESRCH:
        _fail("INTERRUPT", tid)


def resume_syscall(tid: int, sig: int = 0) -> None:
    """PTRACE_SYSCALL: run to the next syscall entry or exit (attach mode)."""
    if _ptrace(PTRACE_SYSCALL, tid, None, sig) == -1 and ctypes.get_errno() != ESRCH:
        _fail("SYSCALL", tid)


def detach(tid: int, sig: int = 0) -> None:
    if _ptrace(PTRACE_DETACH, tid, None, sig) == -1 and ctypes.get_errno() != ESRCH:
        _fail("DETACH", tid)
