"""errno values by name, as strace names them: the user-visible ones
(include/uapi/asm-generic/errno-base.h and errno.h) and the kernel-internal ones
(include/linux/errno.h) that a system call can still return to user space, such as
ENOTSUPP (524) from BPF_PROG_TEST_RUN of a program type without a test runner, or
that ptrace sees at a syscall's exit (ERESTARTSYS).

Python's ``errno.errorcode`` knows the user-visible numbers, but where two names share
one it keeps the alias (ENOTSUP for 95, EDEADLOCK for 35): strace, the kernel's
headers and this module name them EOPNOTSUPP and EDEADLK.
"""

from __future__ import annotations

import errno as _errno
import os

# include/linux/errno.h: "should never be seen by user programs", but some are.
KERNEL_INTERNAL = {
    512: "ERESTARTSYS",
    513: "ERESTARTNOINTR",
    514: "ERESTARTNOHAND",
    515: "ENOIOCTLCMD",
    516: "ERESTART_RESTARTBLOCK",
    517: "EPROBE_DEFER",
    518: "EOPENSTALE",
    519: "ENOPARAM",
    521: "EBADHANDLE",      # 521..530: NFSv3 protocol errors, ENOTSUPP among them
    522: "ENOTSYNC",
    523: "EBADCOOKIE",
    524: "ENOTSUPP",
    525: "ETOOSMALL",
    526: "ESERVERFAULT",
    527: "EBADTYPE",
    528: "EJUKEBOX",
    529: "EIOCBQUEUED",
    530: "ERECALLCONFLICT",
    531: "ENOGRACE",
}

# The first name of a number the uapi headers give two (the second is an alias).
_CANONICAL = {35: "EDEADLK", 95: "EOPNOTSUPP", 11: "EAGAIN", 133: "EHWPOISON"}

NAMES: dict[int, str] = {**_errno.errorcode, **_CANONICAL, **KERNEL_INTERNAL}


def errno_name(value: int) -> str:
    """``ENOTSUPP`` for 524, ``EPERM`` for 1; the number as text when it has no name."""
    return NAMES.get(value, str(value))


def errno_text(value: int) -> str:
    """``-1 ENOTSUPP (Unknown error 524)``'s part after the name: the C library's
    message, which for the kernel-internal numbers is "Unknown error N" (as strace
    prints it)."""
    return os.strerror(value)
