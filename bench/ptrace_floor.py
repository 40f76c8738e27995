#!/usr/bin/env python3
"""The floor of a ptrace recorder written in Python: what `bpfreplay record` would cost if
it copied and wrote nothing.

Runs PROGRAM as the recorder does (pinned to one CPU with its tracer, under the same
seccomp filter) and, at every stop, only makes the requests that no recorder can skip:
at a seccomp stop GETREGS then PTRACE_SYSCALL, at the exit stop PEEKUSER (the result)
then PTRACE_CONT; one blocking waitpid(-1, __WALL) loop. No memory is read, no record
is built or written.

    .venv/bin/python bench/ptrace_floor.py -- tests/progs/build/bpf_heavy 20000
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ptrace.binding import ptrace_setoptions  # noqa: E402

from bpfreplay.recording.ptrace_calls import (  # noqa: E402
    PTRACE_CONT,
    PTRACE_GETREGS,
    PTRACE_PEEKUSER,
    PTRACE_SYSCALL,
    RAX_OFFSET,
    raw_ptrace,
    registers,
)
from bpfreplay.recording.spawn import spawn_traced  # noqa: E402

WALL = 0x40000000
SECCOMP_STOP = (7 << 16) | (signal.SIGTRAP << 8) | 0x7F
SYSCALL_STOP = ((signal.SIGTRAP | 0x80) << 8) | 0x7F
# TRACESYSGOOD, TRACESECCOMP, TRACEEXEC, EXITKILL (no forks: the benchmark's programs make none)
OPTIONS = 0x01 | 0x80 | 0x10 | 0x100000


def trace(argv: list[str]) -> int:
    path = argv[0] if "/" in argv[0] else shutil.which(argv[0]) or argv[0]
    cpu = max(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    pid, error_fd = spawn_traced(path, argv, cpu)
    os.close(error_fd)
    os.waitpid(pid, WALL)
    ptrace_setoptions(pid, OPTIONS)
    raw_ptrace(PTRACE_CONT, pid, None, 0)
    while True:
        tid, status = os.waitpid(-1, WALL)
        if status == SECCOMP_STOP:
            raw_ptrace(PTRACE_GETREGS, tid, None, registers)
            raw_ptrace(PTRACE_SYSCALL, tid, None, 0)
        elif status == SYSCALL_STOP:
            raw_ptrace(PTRACE_PEEKUSER, tid, RAX_OFFSET, None)
            raw_ptrace(PTRACE_CONT, tid, None, 0)
        elif os.WIFEXITED(status):
            return os.WEXITSTATUS(status)
        elif os.WIFSIGNALED(status):
            return 128 + os.WTERMSIG(status)
        else:  # exec, the initial stop, a signal: deliver real signals only
            sig = os.WSTOPSIG(status)
            raw_ptrace(PTRACE_CONT, tid, None, 0 if status >> 16 or sig == signal.SIGTRAP
                       else sig)


if __name__ == "__main__":
    args = sys.argv[1:]
    if args[:1] == ["--"]:
        args = args[1:]
    if not args:
        sys.exit(__doc__)
    sys.exit(trace(args))
