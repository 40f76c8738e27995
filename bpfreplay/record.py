"""``bpfreplay record``: run a program under ptrace and capture its bpf() calls.

The tracee runs under a seccomp filter (see recording/seccomp.py) so the kernel stops
it only on the syscalls we record. At the seccomp stop we copy the arguments, the
attr and every buffer it points to; calls whose result matters are resumed with
PTRACE_SYSCALL so that we stop once more at their exit and copy the result and the
output buffers. One blocking ``waitpid(-1, __WALL)`` loop serves every traced task.

python-ptrace gives us the ptrace requests; its PtraceDebugger is not used: it does
not know PTRACE_EVENT_SECCOMP and polls when several processes are traced.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ptrace.binding import ptrace_geteventmsg, ptrace_setoptions
from ptrace.error import PtraceError

from bpfreplay.errors import RecordError
from bpfreplay.recording import procfs
from bpfreplay.recording import syscalls as sc
from bpfreplay.recording.capture import CallCapture, Process
from bpfreplay.recording.ptrace_calls import (
    ENTRY_REGISTERS,
    PTRACE_CONT,
    PTRACE_GETREGS,
    PTRACE_SYSCALL,
    TaskGone,
    detach,
    interrupt,
    raw_ptrace,
    registers,
    resume,
    resume_syscall,
    resume_to_exit,
    seize,
    syscall_entry,
    syscall_result,
)
from bpfreplay.recording.spawn import spawn_traced
from bpfreplay.trace.writer import TraceWriter, trace_header

if TYPE_CHECKING:
    from bpfreplay.recording.stack import StackUnwinder

PTRACE_O_TRACESYSGOOD = 0x01
PTRACE_O_TRACEFORK = 0x02
PTRACE_O_TRACEVFORK = 0x04
PTRACE_O_TRACECLONE = 0x08
PTRACE_O_TRACEEXEC = 0x10
PTRACE_O_TRACESECCOMP = 0x80
PTRACE_O_EXITKILL = 0x100000
PTRACE_EVENT_FORK, PTRACE_EVENT_VFORK, PTRACE_EVENT_CLONE = 1, 2, 3
PTRACE_EVENT_EXEC = 4
PTRACE_EVENT_SECCOMP = 7
PTRACE_EVENT_STOP = 128
WALL = 0x40000000  # __WALL: wait for threads and for children of any kind
# The two wait statuses of nearly every stop, tested first: a seccomp stop (SIGTRAP with
# PTRACE_EVENT_SECCOMP) and a syscall stop (SIGTRAP | 0x80, PTRACE_O_TRACESYSGOOD).
SECCOMP_STOP = (PTRACE_EVENT_SECCOMP << 16) | (signal.SIGTRAP << 8) | 0x7F
SYSCALL_STOP = ((signal.SIGTRAP | 0x80) << 8) | 0x7F

# A call seen at entry, waiting for its exit stop: its record and its process.
PendingCall = tuple[dict[str, Any], Process]


@dataclass
class RecordOptions:
    argv: list[str]
    output: str
    duration: float | None = None
    follow_forks: bool = False
    pin_cpu: bool = True
    grace: float = 2.0
    quiet: bool = False
    comment: str | None = None
    attach_pid: int | None = None  # record -p: trace a running process instead
    stack: bool = False  # record --stack: each call's user-space call chain


@dataclass
class RecordResult:
    exit_code: int
    calls: int
    path: str
    stops: int  # ptrace stops handled: what the tracee paid for being recorded


class Recorder:
    """One recording session: spawn, trace until every tracee is gone, write the file."""

    def __init__(self, options: RecordOptions):
        self.options = options
        self.tasks: dict[int, Process] = {}  # tid -> its thread group
        self.pending: dict[int, PendingCall] = {}  # tid -> call awaiting exit
        self.expect_initial_stop: set[int] = set()
        self.index = 0
        self.stops = 0
        self.main_pid = 0
        self.exit_code: int | None = None
        self.stop_phase = 0  # 0 running, 1 asked to stop, 2 killed
        self.ncpus = procfs.possible_cpus()
        self.capture = CallCapture(self.ncpus, learn_unknown_fds=options.attach_pid is not None)
        self.writer: TraceWriter | None = None
        self.t0 = 0
        self.attach_mode = options.attach_pid is not None
        self.in_syscall: set[int] = set()  # attach mode: tasks between entry and exit stop
        self.detaching = False
        self.unwinder: StackUnwinder | None = None
        if options.stack:
            from bpfreplay.recording.stack import StackUnwinder
            self.unwinder = StackUnwinder()

    # ---------------------------------------------------------------- set-up

    def run(self) -> RecordResult:
        if self.attach_mode:
            return self._run_attached()
        path = _resolve_program(self.options.argv[0])
        self.writer = TraceWriter(self.options.output, trace_header(
            "ptrace", self.options.argv, self.ncpus, self.options.comment))
        cpu = _pick_cpu() if self.options.pin_cpu else None
        if cpu is not None:
            os.sched_setaffinity(0, {cpu})
        old_handlers = self._install_signal_handlers()
        self.t0 = time.monotonic_ns()
        failed_exec = False
        try:
            pid, error_fd = spawn_traced(path, self.options.argv, cpu)
            self.main_pid = pid
            try:
                self._attach_first(pid)
                if self.options.duration is not None:
                    signal.setitimer(signal.ITIMER_REAL, max(self.options.duration, 0.001))
                self._loop()
            except BaseException:
                self._kill_all()
                raise
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
            setup_error = _read_all(error_fd)
            if setup_error and self.exit_code == 127:
                failed_exec = True
                raise RecordError(f"starting {self.options.argv[0]}: "
                                  f"{_exec_failure(path, setup_error)}; no trace written")
        finally:
            if failed_exec:
                self.writer.discard()
            self._end_session(old_handlers)
        return self._result()

    def _run_attached(self) -> RecordResult:
        pid = self.options.attach_pid
        assert pid is not None
        if not os.path.exists(f"/proc/{pid}"):
            raise RecordError(f"attaching to pid {pid}: no such process")
        self.options.argv = procfs.cmdline(pid) or [str(pid)]
        self.writer = TraceWriter(self.options.output, trace_header(
            "ptrace", self.options.argv, self.ncpus, self.options.comment, attached_pid=pid))
        old_handlers = self._install_signal_handlers()
        self.t0 = time.monotonic_ns()
        self.main_pid = pid
        try:
            process = Process(pid, recording=True)
            options = PTRACE_O_TRACESYSGOOD | PTRACE_O_TRACEEXEC | PTRACE_O_TRACECLONE
            if self.options.follow_forks:
                options |= PTRACE_O_TRACEFORK | PTRACE_O_TRACEVFORK
            for task in sorted(int(t) for t in os.listdir(f"/proc/{pid}/task")):
                try:
                    seize(task, options)
                except TaskGone:
                    continue
                except OSError as e:
                    if not self.tasks:  # nothing recorded: no header-only trace left
                        self.writer.discard()
                    raise RecordError(f"attaching to pid {pid}: {e.strerror} (ptrace needs "
                                      "root or CAP_SYS_PTRACE, and Yama may forbid it)") from e
                self.tasks[task] = process
                interrupt(task)
            if self.options.duration is not None:
                signal.setitimer(signal.ITIMER_REAL, max(self.options.duration, 0.001))
            try:
                self._loop()
            except BaseException:
                self._detach_all()
                raise
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
        finally:
            self._end_session(old_handlers)
        return self._result()

    def _end_session(self, old_handlers: dict[int, Any]) -> None:
        self._restore_signal_handlers(old_handlers)
        for process in {id(p): p for p in self.tasks.values()}.values():
            process.forget_memory()
        assert self.writer is not None
        self.writer.close()

    def _result(self) -> RecordResult:
        return RecordResult(self.exit_code if self.exit_code is not None else 0, self.index,
                            self.options.output, self.stops)

    def _detach_all(self) -> None:
        """Leave an attached process running as it was: interrupt every task so that its
        next stop detaches it (a running task cannot be detached)."""
        self.detaching = True
        for tid in list(self.tasks):
            try:
                interrupt(tid)
            except (TaskGone, OSError):
                self.tasks.pop(tid, None)

    def _attach_first(self, pid: int) -> None:
        _, status = os.waitpid(pid, WALL)
        if not os.WIFSTOPPED(status):
            raise RecordError(f"starting {self.options.argv[0]}: child ended before tracing "
                              f"began (status {status:#x})")
        options = (PTRACE_O_TRACESYSGOOD | PTRACE_O_TRACESECCOMP | PTRACE_O_TRACEEXEC
                   | PTRACE_O_EXITKILL | PTRACE_O_TRACEFORK | PTRACE_O_TRACEVFORK
                   | PTRACE_O_TRACECLONE)
        try:
            ptrace_setoptions(pid, options)
        except PtraceError as e:
            os.kill(pid, signal.SIGKILL)
            raise RecordError(f"setting ptrace options on {self.options.argv[0]}: {e}") from e
        # Calls made before exec are our own child's Python, not the program: not recorded.
        self.tasks[pid] = Process(pid, recording=False)
        resume(pid, 0)

    # ------------------------------------------------------------- signals

    def _install_signal_handlers(self) -> dict[int, Any]:
        old = {}
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            old[sig] = signal.signal(sig, self._on_stop_signal)
        old[signal.SIGALRM] = signal.signal(signal.SIGALRM, self._on_alarm)
        return old

    @staticmethod
    def _restore_signal_handlers(old: dict[int, Any]) -> None:
        for sig, handler in old.items():
            signal.signal(sig, handler)

    def _on_stop_signal(self, signum: int, frame: object) -> None:
        if self.stop_phase == 0:
            self._request_stop(signal.SIGINT if signum == signal.SIGINT else signal.SIGTERM)
        else:  # asked twice: no more grace
            self._kill_all()

    def _on_alarm(self, signum: int, frame: object) -> None:
        if self.stop_phase == 0:  # --duration is over
            self._request_stop(signal.SIGINT)
        else:  # grace period over
            self._kill_all()

    def _request_stop(self, sig: int) -> None:
        self.stop_phase = 1
        if self.attach_mode:  # never signal a process we only attached to
            if not self.options.quiet:
                print(f"bpfreplay: detaching from pid {self.main_pid}", file=sys.stderr)
            self._detach_all()
            return
        if not self.options.quiet:
            print(f"bpfreplay: stopping {self.options.argv[0]} (pid {self.main_pid})",
                  file=sys.stderr)
        try:
            os.kill(self.main_pid, sig)
        except ProcessLookupError:
            pass
        signal.setitimer(signal.ITIMER_REAL, self.options.grace)

    def _kill_all(self) -> None:
        if self.attach_mode:
            self._detach_all()
            return
        self.stop_phase = 2
        for tid in list(self.tasks):
            try:
                os.kill(tid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    # ---------------------------------------------------------- main loop

    def _loop(self) -> None:
        waitpid, tasks = os.waitpid, self.tasks
        # Outside attach mode every seccomp stop is a syscall entry and every syscall stop
        # an exit: those skip _on_stop's sorting of the stop.
        seccomp_stop = SECCOMP_STOP if not self.attach_mode else -1
        syscall_stop = SYSCALL_STOP if not self.attach_mode else -1
        while tasks:
            try:
                tid, status = waitpid(-1, WALL)
            except ChildProcessError:
                break
            if status == seccomp_stop or status == syscall_stop:
                process = tasks.get(tid)
                if process is not None and not self.detaching:
                    self.stops += 1
                    try:
                        if status == seccomp_stop:
                            self._on_entry(tid, process)
                        else:
                            self._on_exit(tid)
                    except TaskGone:
                        pass  # killed under us (SIGKILL): its exit status follows
                    except (PtraceError, OSError) as e:
                        if getattr(e, "errno", None) != 3:  # ESRCH, as above
                            raise RecordError(f"tracing pid {tid}: {e}") from e
                    continue
            if os.WIFSTOPPED(status):
                self._on_stop(tid, status)
            elif os.WIFEXITED(status) or os.WIFSIGNALED(status):
                self._on_task_end(tid, status)

    def _on_stop(self, tid: int, status: int) -> None:
        self.stops += 1
        sig = os.WSTOPSIG(status)
        event = status >> 16
        process = self.tasks.get(tid)
        if self.detaching:
            self._detach_task(tid, sig, event)
            return
        if process is None:  # a new task reporting before its parent's event
            process = self._adopt(tid)
            if sig == signal.SIGSTOP or event == PTRACE_EVENT_STOP:
                self._resume(tid, 0)
                return
        try:
            if sig == signal.SIGTRAP and event == PTRACE_EVENT_SECCOMP:
                self._on_entry(tid, process)
            elif sig == signal.SIGTRAP | 0x80:
                if self.attach_mode and tid not in self.in_syscall:
                    self.in_syscall.add(tid)
                    self._on_entry(tid, process)
                else:
                    self.in_syscall.discard(tid)
                    self._on_exit(tid)
            elif sig == signal.SIGTRAP and event in (PTRACE_EVENT_FORK, PTRACE_EVENT_VFORK,
                                                     PTRACE_EVENT_CLONE):
                self._on_new_task(tid, event, process)
                self._resume(tid, 0)
            elif sig == signal.SIGTRAP and event == PTRACE_EVENT_EXEC:
                self._on_exec(tid, process)
                self._resume(tid, 0)
            elif sig == signal.SIGSTOP and tid in self.expect_initial_stop:
                self.expect_initial_stop.discard(tid)
                self._resume(tid, 0)
            elif event:
                self._resume(tid, 0)
            else:  # a signal on its way to the tracee: deliver it
                self._resume(tid, sig)
        except TaskGone:
            pass  # killed under us (SIGKILL): its exit status follows
        except (PtraceError, OSError) as e:
            if getattr(e, "errno", None) != 3:  # ESRCH, as above
                raise RecordError(f"tracing pid {tid}: {e}") from e

    def _resume(self, tid: int, sig: int = 0) -> None:
        if self.attach_mode:
            resume_syscall(tid, sig)
        else:
            resume(tid, sig)

    def _detach_task(self, tid: int, sig: int, event: int) -> None:
        pending = self.pending.pop(tid, None)
        if pending is not None:  # its exit will not be seen: keep what the entry had
            self._write(pending[0])
        deliver = sig if not event and sig not in (signal.SIGTRAP | 0x80, signal.SIGSTOP) else 0
        try:
            detach(tid, deliver)
        except (TaskGone, OSError):
            pass
        self.tasks.pop(tid, None)

    def _adopt(self, tid: int) -> Process:
        tgid = _tgid_of(tid)
        process = self.tasks.get(tgid)
        if process is None:
            process = Process(tgid, recording=self.options.follow_forks)
        self.tasks[tid] = process
        return process

    def _on_new_task(self, tid: int, event: int, process: Process) -> None:
        child = ptrace_geteventmsg(tid)
        if child in self.tasks:  # it stopped before we saw this event
            self.expect_initial_stop.discard(child)
            return
        if event == PTRACE_EVENT_CLONE and _tgid_of(child) == process.pid:
            self.tasks[child] = process
        else:
            new = Process(child, recording=self.options.follow_forks)
            new.fds = dict(process.fds)
            new.mmaps = dict(process.mmaps)
            self.tasks[child] = new
        self.expect_initial_stop.add(child)

    def _on_exec(self, tid: int, process: Process) -> None:
        # After exec the thread group has a new address space; the leader keeps its pid.
        former = ptrace_geteventmsg(tid)
        if former != tid:
            self.tasks.pop(former, None)
        process.forget_memory()
        process.mmaps.clear()
        if self.unwinder is not None:
            self.unwinder.forget(process.pid)
        if process.pid == self.main_pid and not process.recording:
            process.recording = True
        process.announced = False
        self.tasks[tid] = process

    def _on_task_end(self, tid: int, status: int) -> None:
        process = self.tasks.pop(tid, None)
        self.expect_initial_stop.discard(tid)
        pending = self.pending.pop(tid, None)
        if pending is not None:
            self._write(pending[0])
        if process is None or tid != process.pid:
            return
        if os.WIFEXITED(status):
            code, signame = os.WEXITSTATUS(status), None
        else:
            code, signame = 128 + os.WTERMSIG(status), signal.Signals(os.WTERMSIG(status)).name
        if tid == self.main_pid:
            self.exit_code = code
        if process.recording and self.writer:
            self.writer.write({"type": "exit", "pid": tid, "code": code, "signal": signame,
                               "ts": time.monotonic_ns() - self.t0})
        process.forget_memory()
        if self.unwinder is not None:
            self.unwinder.forget(tid)

    # ------------------------------------------------------------ syscalls

    # The two methods below run for every recorded call: the ptrace requests are made
    # through the raw binding inline (a failed one is repeated through its checked
    # wrapper, which raises TaskGone or OSError).

    def _on_entry(self, tid: int, process: Process) -> None:
        if not process.recording:
            self._resume(tid, 0)
            return
        if raw_ptrace(PTRACE_GETREGS, tid, None, registers) == -1:
            syscall_entry(tid)
        r10, r9, r8, rdx, rsi, rdi, nr = ENTRY_REGISTERS.unpack_from(registers)
        args = (rdi, rsi, rdx, r10, r8, r9)
        record = self.capture.entry(process, nr, args)
        if record is None:  # not a call about BPF objects
            self._resume(tid, 0)
            return
        if not process.announced:
            self._announce(process)
        # After the capture's keys, in this order (stores: cheaper than update(**kwargs)).
        record["type"] = "call"
        record["index"] = self.index
        record["pid"] = process.pid
        record["tid"] = tid
        record["syscall"] = sc.NAMES[nr]
        record["args"] = list(args)
        record["ts"] = time.monotonic_ns() - self.t0
        self.index += 1
        if self.unwinder is not None:  # the registers are still this stop's
            record["stack"] = self.unwinder.unwind(process.pid, registers, process.mem())
        if nr == sc.CLOSE:  # nothing to learn at exit: the fd is gone whatever happens
            record["ret"] = None
            record["errno"] = None
            self._write(record)
            self._resume(tid, 0)
            return
        self.pending[tid] = (record, process)
        if raw_ptrace(PTRACE_SYSCALL, tid, None, 0) == -1:
            resume_to_exit(tid)

    def _on_exit(self, tid: int) -> None:
        pending = self.pending.pop(tid, None)
        if pending is None:
            self._resume(tid, 0)
            return
        record, process = pending
        ret = syscall_result(tid)
        if -4096 < ret < 0:
            record["ret"], record["errno"] = -1, -ret
        else:
            record["ret"], record["errno"] = ret, None
        record["dur"] = time.monotonic_ns() - self.t0 - record["ts"]
        self.capture.exit(process, record)
        # The record is in the file before the task runs on (see TraceWriter).
        self.writer.write(record)  # type: ignore[union-attr] - open while tracing
        if self.attach_mode:
            resume_syscall(tid, 0)
        elif raw_ptrace(PTRACE_CONT, tid, None, 0) == -1:
            resume(tid, 0)

    def _write(self, record: dict[str, Any]) -> None:
        assert self.writer is not None
        self.writer.write(record)

    def _announce(self, process: Process) -> None:
        process.announced = True
        assert self.writer is not None
        self.writer.write({
            "type": "process",
            "pid": process.pid,
            "exe": procfs.executable(process.pid),
            "cmdline": procfs.cmdline(process.pid),
            "libbpf": procfs.mapped_libbpf(process.pid),
        })


def _tgid_of(tid: int) -> int:
    try:
        with open(f"/proc/{tid}/status") as f:
            for line in f:
                if line.startswith("Tgid:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return tid


def _pick_cpu() -> int | None:
    """The CPU to share with the tracee: cross-CPU ptrace wake-ups cost ~6x a same-CPU one."""
    allowed = os.sched_getaffinity(0)
    return max(allowed) if allowed else None


def _read_all(fd: int) -> str:
    chunks = []
    try:
        while chunk := os.read(fd, 4096):
            chunks.append(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks).decode(errors="replace")


def _exec_failure(path: str, error: str) -> str:
    """Why execve() failed, naming a missing ``#!`` interpreter (execve says ENOENT
    for it, as if the program itself were missing)."""
    try:
        with open(path, "rb") as f:
            first = f.readline(256)
    except OSError:
        return error
    if first.startswith(b"#!"):
        words = first[2:].split()
        interpreter = words[0].decode(errors="replace") if words else ""
        if not interpreter or not os.path.exists(interpreter):
            return f"{error} (its #! interpreter {interpreter!r} was not found)"
    return error


def _resolve_program(program: str) -> str:
    path = program if "/" in program else shutil.which(program)
    if path is None or not os.path.exists(path):
        raise RecordError(f"starting {program}: program not found")
    if os.path.isdir(path) or not os.stat(path).st_mode & 0o111:
        raise RecordError(f"starting {program}: not an executable file")
    return path


def record(argv: Sequence[str], output: str, *, duration: float | None = None,
           follow_forks: bool = False, pin_cpu: bool = True, quiet: bool = False,
           comment: str | None = None, attach_pid: int | None = None,
           stack: bool = False) -> RecordResult:
    """Record ``argv`` into ``output``; returns the program's exit code (128+N for a
    signal) and the number of calls recorded."""
    if not argv and attach_pid is None:
        raise RecordError("record: no program given")
    options = RecordOptions(list(argv), output, duration, follow_forks, pin_cpu, quiet=quiet,
                            comment=comment, attach_pid=attach_pid, stack=stack)
    return Recorder(options).run()
