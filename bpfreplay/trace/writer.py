"""Streaming trace writer: every record reaches the file as one write() of its own."""

from __future__ import annotations

import os
import platform
import time
from typing import Any

import msgpack

from bpfreplay.errors import TraceFormatError
from bpfreplay.trace.schema import FORMAT_NAME, FORMAT_VERSION


class TraceWriter:
    """Writes a header then records; each is flushed at once so that a recorder
    killed mid-run leaves a file whose complete records all read back."""

    def __init__(self, path: str, header: dict[str, Any]):
        try:
            self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        except OSError as e:
            raise TraceFormatError(f"opening trace file {path} for writing: {e.strerror}") from e
        self.path = path
        self._packer = msgpack.Packer(use_bin_type=True)
        self.write({"format": FORMAT_NAME, "version": FORMAT_VERSION, **header})

    def write(self, record: dict[str, Any]) -> None:
        data = self._packer.pack(record)
        written = os.write(self._fd, data)
        if written < len(data):  # a regular file takes all at once but for a full disk
            view = memoryview(data)[written:]
            while view:
                view = view[os.write(self._fd, view):]

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> TraceWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def trace_header(recorder: str, argv: list[str], possible_cpus: int,
                 comment: str | None = None, **extra: Any) -> dict[str, Any]:
    """The header fields every writer of the format fills (docs/trace-format.md)."""
    from bpfreplay import __version__

    header: dict[str, Any] = {
        "bpfreplay": __version__,
        "recorder": recorder,
        "kernel": platform.release(),
        "machine": platform.machine(),
        "argv": list(argv),
        **extra,
        "start_time": time.time(),
        "possible_cpus": possible_cpus,
    }
    if comment:
        header["comment"] = comment
    return header
