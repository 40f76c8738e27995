"""The ptrace requests made on every stop, bound once to libc.

python-ptrace's wrappers allocate a register struct and check errno through a Python
layer on each call; at tens of thousands of stops a second that is a third of the
recorder's time. The rare requests (TRACEME, SETOPTIONS, GETEVENTMSG) still go through
python-ptrace.

The binding has no ``argtypes``: converting each argument through them costs ~0.2 µs a
call, and a recorded bpf() call makes four requests. glibc's ptrace() is variadic and
reads its arguments as pid_t and pointers; small Python ints go as C ints, which libffi
sign-extends to the full register on x86_64, None as NULL and the register buffer as a
pointer. ``raw_ptrace`` is that binding for the recorder's hot path, which checks for
-1 itself and then repeats the request through the checked function below (a request
that failed fails again the same way, and the checked function says how).
"""

from __future__ import annotations

import ctypes
import os
import struct

from ptrace.binding import ptrace_registers_t

PTRACE_PEEKUSER = 3
PTRACE_CONT = 7
PTRACE_GETREGS = 12
PTRACE_DETACH = 17
PTRACE_SYSCALL = 24
PTRACE_SEIZE = 0x4206
PTRACE_INTERRUPT = 0x4207
ESRCH = 3

_libc = ctypes.CDLL(None, use_errno=True)
raw_ptrace = _libc["ptrace"]  # returns a C int: 0 or -1 for the requests it is used for
_peek = _libc["ptrace"]  # a binding of its own for PEEKUSER, whose answer is a long
_peek.restype = ctypes.c_long

# One struct user_regs_struct for every GETREGS; the recorder's hot path reads it too.
registers = ctypes.create_string_buffer(ctypes.sizeof(ptrace_registers_t))
# r10, r9, r8 at offset 56; rdx, rsi, rdi, orig_rax at 96 (rax, rcx between).
ENTRY_REGISTERS = struct.Struct("<56x3Q16x4Q")
_RESULT_REGISTER = struct.Struct("<80xq")
RAX_OFFSET = 80


class TaskGone(Exception):
    """The task died under us (ESRCH): its exit status is on its way to waitpid."""


def _fail(request: str, tid: int) -> None:
    err = ctypes.get_errno()
    if err == ESRCH:
        raise TaskGone(tid)
    raise OSError(err, f"ptrace({request}, {tid}): {os.strerror(err)}")


def syscall_entry(tid: int) -> tuple[int, tuple[int, int, int, int, int, int]]:
    """At a syscall's entry (seccomp) stop: its number and its six argument registers."""
    if raw_ptrace(PTRACE_GETREGS, tid, None, registers) == -1:
        _fail("GETREGS", tid)
    r10, r9, r8, rdx, rsi, rdi, nr = ENTRY_REGISTERS.unpack_from(registers)
    return nr, (rdi, rsi, rdx, r10, r8, r9)


def syscall_result(tid: int) -> int:
    """At a syscall's exit stop: its return value as a signed number (-errno on failure)."""
    value = _peek(PTRACE_PEEKUSER, tid, RAX_OFFSET, None)
    if value != -1:
        return value
    # -EPERM, or a failed request: GETREGS says which without an errno to reset first.
    if raw_ptrace(PTRACE_GETREGS, tid, None, registers) == -1:
        _fail("GETREGS", tid)
    return _RESULT_REGISTER.unpack_from(registers)[0]


def resume(tid: int, sig: int = 0) -> None:
    """PTRACE_CONT; a task that is already gone is not an error."""
    if raw_ptrace(PTRACE_CONT, tid, None, sig) == -1 and ctypes.get_errno() != ESRCH:
        _fail("CONT", tid)


def resume_to_exit(tid: int) -> None:
    """PTRACE_SYSCALL from a seccomp stop: the next stop is this syscall's exit."""
    if raw_ptrace(PTRACE_SYSCALL, tid, None, 0) == -1:
        _fail("SYSCALL", tid)


# Attaching to a running process (record -p): no seccomp filter can be added to it
# safely (it would outlive us and turn the traced calls into ENOSYS), so every
# syscall stops and PTRACE_SYSCALL drives it.


def seize(tid: int, options: int) -> None:
    if raw_ptrace(PTRACE_SEIZE, tid, None, options) == -1:
        _fail("SEIZE", tid)


def interrupt(tid: int) -> None:
    if raw_ptrace(PTRACE_INTERRUPT, tid, None, None) == -1 and ctypes.get_errno() != ESRCH:
        _fail("INTERRUPT", tid)


def resume_syscall(tid: int, sig: int = 0) -> None:
    """PTRACE_SYSCALL: run to the next syscall entry or exit (attach mode)."""
    if raw_ptrace(PTRACE_SYSCALL, tid, None, sig) == -1 and ctypes.get_errno() != ESRCH:
        _fail("SYSCALL", tid)


def detach(tid: int, sig: int = 0) -> None:
    if raw_ptrace(PTRACE_DETACH, tid, None, sig) == -1 and ctypes.get_errno() != ESRCH:
        _fail("DETACH", tid)
