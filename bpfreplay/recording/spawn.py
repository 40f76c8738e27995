"""Starting the program to record: fork, PTRACE_TRACEME, seccomp filter, exec.

python-ptrace's createChild has no pre-exec hook, so we fork ourselves. The child
stops itself with SIGSTOP after PTRACE_TRACEME so that the parent can set the ptrace
options (PTRACE_O_TRACESECCOMP above all) before the filter exists; a setup or exec
failure travels back to the parent through a close-on-exec pipe.
"""

from __future__ import annotations

import ctypes
import errno
import os
import signal
from collections.abc import Sequence

from ptrace.binding import ptrace_traceme

from bpfreplay.recording.seccomp import build_filter

PR_SET_NO_NEW_PRIVS = 38
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def _install_filter(program: bytes) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    prctl = libc.prctl
    # Without argtypes the pointer would go as a 32-bit int (EFAULT).
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p, ctypes.c_ulong,
                      ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    buf = ctypes.create_string_buffer(program, len(program))
    fprog = _SockFprog(len(program) // 8, ctypes.addressof(buf))
    if prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(fprog), 0, 0) == 0:
        return
    err = ctypes.get_errno()
    if err == errno.EACCES:
        # Without CAP_SYS_ADMIN a filter needs no_new_privs (then setuid programs run
        # without their privileges, as under strace --seccomp-bpf as a user).
        if prctl(PR_SET_NO_NEW_PRIVS, 1, None, 0, 0) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setting no_new_privs: {os.strerror(err)}")
        if prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(fprog), 0, 0) == 0:
            return
        err = ctypes.get_errno()
    raise OSError(err, f"installing the seccomp filter: {os.strerror(err)}")


def spawn_traced(path: str, argv: Sequence[str], cpu: int | None) -> tuple[int, int]:
    """Fork a child that will exec ``path`` under our ptrace and seccomp filter.

    Returns (pid, error_pipe_fd). The child is left in its initial SIGSTOP: the caller
    waits for it, sets the ptrace options and continues it. If the child fails before
    exec it writes the reason to the pipe and exits 127."""
    program = build_filter()
    read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:  # child
        try:
            os.close(read_fd)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            signal.signal(signal.SIGPIPE, signal.SIG_DFL)
            if cpu is not None:
                os.sched_setaffinity(0, {cpu})
            ptrace_traceme()
            os.kill(os.getpid(), signal.SIGSTOP)
            _install_filter(program)
            os.execv(path, list(argv))
        except BaseException as e:  # noqa: BLE001 - everything must reach the parent
            try:
                reason = e.strerror if isinstance(e, OSError) and e.strerror else repr(e)
                os.write(write_fd, reason.encode())
            finally:
                os._exit(127)
    os.close(write_fd)
    return pid, read_fd
