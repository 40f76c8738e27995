"""Tracing our own calls: the loader's bpf()/perf_event_open()/ioctl()/mmap()/close()
become a trace file in the format ``bpfreplay record`` writes, with the same records
(built by the same ``CallCapture``, reading /proc/self/mem), without ptrace."""

from __future__ import annotations

import os
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

from bpfreplay.recording import procfs
from bpfreplay.recording import syscalls as sc
from bpfreplay.recording.capture import CallCapture, Process
from bpfreplay.trace.writer import TraceWriter, trace_header


@dataclass
class _Pending:
    record: dict[str, Any]


class SelfTracer:
    """A ``bpfreplay.sys`` tracer writing each recorded call to ``path`` as it completes.
    Use as a context manager: the trace ends with an ``exit`` record on close."""

    def __init__(self, path: str, *, argv: list[str] | None = None,
                 comment: str | None = None, self_exe: str | None = None):
        """``self_exe``: the program /proc/self/exe stands for in our uprobe targets
        (`run --self-exe`), kept in the process record (docs/trace-format.md)."""
        self.capture = CallCapture()
        self.self_exe = self_exe
        self.process = Process(os.getpid(), recording=True)
        self.writer = TraceWriter(path, trace_header(
            "loader", argv if argv is not None else sys.argv, self.capture.ncpus, comment))
        self.path = path
        self.index = 0
        self.t0 = time.monotonic_ns()
        self._announced = False
        self._lock = threading.Lock()

    def before(self, number: int, args: tuple[int, ...]) -> _Pending | None:
        record = self.capture.entry(self.process, number, args)
        if record is None:
            return None
        with self._lock:
            if not self._announced:
                self._announced = True
                process: dict[str, Any] = {
                    "type": "process", "pid": self.process.pid,
                    "exe": procfs.executable(self.process.pid),
                    "cmdline": procfs.cmdline(self.process.pid), "libbpf": None}
                if self.self_exe is not None:
                    process["self_exe"] = self.self_exe
                self.writer.write(process)
            record.update(type="call", index=self.index, pid=self.process.pid,
                          tid=threading.get_native_id(), syscall=sc.NAMES[number],
                          args=list(args), ts=time.monotonic_ns() - self.t0)
            self.index += 1
        if number == sc.CLOSE:  # as the recorder: no exit stop for close
            record["ret"] = record["errno"] = None
            self.writer.write(record)
            return None
        return _Pending(record)

    def after(self, token: object, ret: int, errno: int) -> None:
        assert isinstance(token, _Pending)
        record = token.record
        if ret == -1 and errno:
            record["ret"], record["errno"] = -1, errno
        else:
            record["ret"], record["errno"] = ret, None
        record["dur"] = time.monotonic_ns() - self.t0 - record["ts"]
        self.capture.exit(self.process, record)
        self.writer.write(record)

    def close(self, exit_code: int = 0) -> None:
        if self.writer is not None:
            self.writer.write({"type": "exit", "pid": self.process.pid, "code": exit_code,
                               "signal": None, "ts": time.monotonic_ns() - self.t0})
            self.writer.close()
            self.process.forget_memory()

    def __enter__(self) -> SelfTracer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close(0 if exc[0] is None else 1)
