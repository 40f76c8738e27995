"""The kernel's trace pipe, where bpf_printk() writes, filtered to lines our programs
could have printed: a line counts as ours when its message matches one of the format
strings in the object's read-only data (the machine may run other BPF programs, and
the pipe does not say which program printed)."""

from __future__ import annotations

import os
import re
import select
import signal
import sys
import time
from collections.abc import Iterable

TRACE_PIPES = ("/sys/kernel/debug/tracing/trace_pipe", "/sys/kernel/tracing/trace_pipe")
_CONVERSION = re.compile(r"%[-+ #0]*\d*(?:\.\d+)?(?:hh|h|ll|l|z)?([diuxXpscK%])")
_PRINTK_LINE = re.compile(r"^\s*(?P<task>.+?)-(?P<pid>\d+)\s+\[\d+\].*?: bpf_trace_printk: "
                          r"(?P<message>.*)$")


# bpf_trace_printk and bpf_trace_vprintk: the helpers whose output the trace pipe shows
# (bpf_seq_printf, bpf_snprintf ... write elsewhere).
_PRINTK_HELPERS = frozenset({6, 177})


def calls_trace_printk(insns: bytes) -> bool:
    """Whether instructions call a helper that writes to the trace pipe."""
    for i in range(0, len(insns) - 7, 8):
        if insns[i] == 0x85 and insns[i + 1] >> 4 == 0 and \
                int.from_bytes(insns[i + 4:i + 8], "little", signed=True) in _PRINTK_HELPERS:
            return True
    return False


def format_patterns(data_sections: Iterable[bytes]) -> list[re.Pattern[str]]:
    """Regexes for the printf-style format strings found in ``data_sections``."""
    patterns = []
    for data in data_sections:
        for raw in data.split(b"\0"):
            if b"%" not in raw and not raw.endswith(b"\n"):
                continue
            try:
                text = raw.decode().rstrip("\n")
            except UnicodeDecodeError:
                continue
            if not text:
                continue
            regex, pos = "", 0
            for m in _CONVERSION.finditer(text):
                regex += re.escape(text[pos:m.start()])
                regex += "%" if m.group(1) == "%" else ".*?"
                pos = m.end()
            regex += re.escape(text[pos:])
            patterns.append(re.compile("^" + regex + "$"))
    return patterns


def ours(line: str, patterns: list[re.Pattern[str]], printer_pid: int = -1) -> str | None:
    """The line if it is a bpf_trace_printk line matching one of our formats, and was
    not printed in the printer's own context (printing it would fire a program
    attached to every syscall once more, and so on for ever)."""
    m = _PRINTK_LINE.match(line)
    if m is None or int(m.group("pid")) == printer_pid:
        return None
    message = m.group("message").rstrip()
    if not any(p.match(message) for p in patterns):
        return None
    return line.rstrip("\n")


class TracePipe:
    """Non-blocking lines from the trace pipe."""

    def __init__(self) -> None:
        self.fd = -1
        self.path = ""
        for path in TRACE_PIPES:
            try:
                self.fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
                self.path = path
                break
            except OSError:
                continue
        self._partial = b""

    @property
    def available(self) -> bool:
        return self.fd >= 0

    def drain(self) -> None:
        """Drop what the pipe holds already: printed before us, so not by our programs."""
        if self.fd < 0:
            return
        while True:
            try:
                if not os.read(self.fd, 65536):
                    return
            except BlockingIOError:
                return

    def lines(self, timeout: float) -> list[str]:
        if self.fd < 0:
            return []
        ready, _, _ = select.select([self.fd], [], [], max(timeout, 0))
        if not ready:
            return []
        try:
            chunk = os.read(self.fd, 65536)
        except BlockingIOError:
            return []
        data = self._partial + chunk
        *complete, self._partial = data.split(b"\n")
        return [c.decode(errors="replace") for c in complete]

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def start_printer(patterns: list[re.Pattern[str]]) -> int:
    """Fork a process that prints our lines from the trace pipe until it is stopped.

    The printing must not happen in the loading process: each write() of that process
    may fire a program attached to write() (the reference's is), whose output would be
    printed by another write(), and so on. Fork before any BPF object exists, so that
    the printer holds none of their fds. Returns the printer's pid (0: no trace pipe).
    """
    if not patterns:
        return 0  # no format string in the object: its programs print nothing
    pipe = TracePipe()
    if not pipe.available:
        return 0
    pipe.drain()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid:
        pipe.close()
        return pid
    code = 0
    finishing = []
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the loader decides when to stop
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGUSR1, lambda signum, frame: finishing.append(True))
        parent, me = os.getppid(), os.getpid()
        while os.getppid() == parent:
            last_round = bool(finishing)
            for line in pipe.lines(0 if last_round else 0.5):
                shown = ours(line, patterns, me)
                if shown is not None:
                    os.write(1, (shown + "\n").encode())
            if last_round:
                break
    except BaseException:  # noqa: BLE001 - a forked child must never return
        code = 1
    finally:
        os._exit(code)


def stop_printer(pid: int, grace: float = 1.0) -> None:
    """Let the printer show what the pipe still holds (SIGUSR1), then make sure it is
    gone (SIGTERM after ``grace`` seconds)."""
    if pid <= 0:
        return
    try:
        os.kill(pid, signal.SIGUSR1)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            done, _ = os.waitpid(pid, os.WNOHANG)
            if done:
                return
            time.sleep(0.01)
        os.kill(pid, signal.SIGTERM)
        os.waitpid(pid, 0)
    except (ProcessLookupError, ChildProcessError):
        pass
