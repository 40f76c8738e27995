"""The ptrace requests made on every stop, bound once to libc.

python-ptrace's wrappers allocate a register struct and check errno through a
Python layer on each call; at tens of thousands of stops a second that is a third
of the recorder's time. These bindings reuse one struct and python-ptrace's own
register layout; the rare requests (TRACEME, SETOPTIONS, GETEVENTMSG) still go
through python-ptrace.

The three requests of every recorded call (``syscall_entry``, ``resume_to_exit``,
``syscall_result`` and ``resume``) go through a second binding without ``argtypes``:
converting each argument through ``argtypes`` costs ~0.2 µs a call. glibc's ptrace() is
variadic and reads its arguments as pid_t and pointers; small Python ints are passed as C
ints, which libffi sign-extends to the full register on x86_64, and the register buffer
as a pointer.
"""

from __future__ import annotations

import ctypes
import os
import struct

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

_fast = _libc["ptrace"]  # a binding of its own: no argtypes (see above), returns a C int
_fast_regs = ctypes.create_string_buffer(ctypes.sizeof(ptrace_registers_t))
# struct user_regs_struct: r10, r9, r8 at 56; rdx, rsi, rdi, orig_rax at 96; rax at 80.
_ENTRY_REGISTERS = struct.Struct("<56x3Q16x4Q")
_RESULT_REGISTER = struct.Struct("<80xq")


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


def syscall_entry(tid: int) -> tuple[int, tuple[int, int, int, int, int, int]]:
    """At a syscall's entry (seccomp) stop: its number and its six argument registers."""
    if _fast(PTRACE_GETREGS, tid, None, _fast_regs) == -1:
        _fail("GETREGS", tid)
    r10, r9, r8, rdx, rsi, rdi, nr = _ENTRY_REGISTERS.unpack_from(_fast_regs)
    return nr, (rdi, rsi, rdx, r10, r8, r9)


def syscall_result(tid: int) -> int:
    """At a syscall's exit stop: its return value as a signed number (-errno on failure)."""
    if _fast(PTRACE_GETREGS, tid, None, _fast_regs) == -1:
        _fail("GETREGS", tid)
    return _RESULT_REGISTER.unpack_from(_fast_regs)[0]


def resume(tid: int, sig: int = 0) -> None:
    """PTRACE_CONT; a task that is already gone is not an error."""
    if _fast(PTRACE_CONT, tid, None, sig) == -1 and ctypes.get_errno() != ESRCH:
        _fail("CONT", tid)


def resume_to_exit(tid: int) -> None:
    """PTRACE_SYSCALL from a seccomp stop: the next stop is this syscall's exit."""
    if _fast(PTRACE_SYSCALL, tid, None, 0) == -1:
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
