"""Streaming trace writer: every record reaches the file as one write() of its own."""

from __future__ import annotations

import os
import platform
import time
from typing import Any

import msgpack

from bpfreplay.errors import BpfReplayError
from bpfreplay.trace.schema import FORMAT_NAME, FORMAT_VERSION


class TraceWriteError(BpfReplayError):
    """The trace file could not be created or written (a full disk, EIO, a path that
    cannot hold a file)."""


def create_private(path: str, what: str = "trace file") -> int:
    """A write fd on a new file at ``path``, mode 0600 (it holds tracee memory: keys,
    values, buffers of a root process), never through a symlink.

    A symlink at ``path`` is refused (following it let root overwrite the file a
    planted link names; replacing it would replace links such as /dev/stdout). A
    device or FIFO already there is written as it is (``-o /dev/null``). Otherwise the
    file is made under a temporary name in the same directory (``O_CREAT|O_EXCL|
    O_NOFOLLOW``) and renamed over ``path`` at once, before any record: a recorder
    killed later still leaves its complete records at ``path``."""
    import stat

    try:
        st: os.stat_result | None = os.lstat(path)
    except FileNotFoundError:
        st = None
    except OSError as e:
        raise TraceWriteError(f"opening {what} {path} for writing: {e.strerror}") from e
    if st is not None and stat.S_ISLNK(st.st_mode):
        raise TraceWriteError(f"opening {what} {path} for writing: it is a symbolic link, "
                              "which bpfreplay does not follow (remove it, or give the path "
                              "it points to)")
    if st is not None and stat.S_ISDIR(st.st_mode):
        raise TraceWriteError(f"opening {what} {path} for writing: it is a directory")
    if st is not None and not stat.S_ISREG(st.st_mode):
        try:
            return os.open(path, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as e:
            raise TraceWriteError(f"opening {what} {path} for writing: {e.strerror}") from e
    directory, name = os.path.split(os.path.abspath(path))
    for attempt in range(100):
        temporary = os.path.join(directory, f".{name[:200]}.{os.getpid()}.{attempt}.tmp")
        try:
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                         | os.O_CLOEXEC, 0o600)
            break
        except FileExistsError:
            continue
        except OSError as e:
            raise TraceWriteError(f"opening {what} {path} for writing: {e.strerror}") from e
    else:
        raise TraceWriteError(f"opening {what} {path} for writing: no free temporary name "
                              f"in {directory}")
    try:
        os.rename(temporary, path)
    except OSError as e:
        os.close(fd)
        _unlink_quietly(temporary)
        raise TraceWriteError(f"opening {what} {path} for writing: {e.strerror}") from e
    return fd


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


class TraceWriter:
    """Writes a header then records; each is flushed at once so that a recorder
    killed mid-run leaves a file whose complete records all read back. The file is
    created 0600 and never through a symlink (``create_private``)."""

    def __init__(self, path: str, header: dict[str, Any]):
        self._fd = create_private(path)
        self.path = path
        self._packer = msgpack.Packer(use_bin_type=True)
        try:
            self.write({"format": FORMAT_NAME, "version": FORMAT_VERSION, **header})
        except BaseException:
            self.discard()
            raise

    def write(self, record: dict[str, Any]) -> None:
        data = self._packer.pack(record)
        try:
            written = os.write(self._fd, data)
            if written < len(data):  # a regular file takes all at once but for a full disk
                view = memoryview(data)[written:]
                while view:
                    view = view[os.write(self._fd, view):]
        except OSError as e:
            raise TraceWriteError(f"writing trace file {self.path}: {e.strerror}") from e

    def discard(self) -> None:
        """Close and remove the file (a run that recorded nothing worth keeping, such as
        a program that could not be executed), if ``path`` is still the file we made."""
        if self._fd < 0:
            return
        try:
            ours = os.fstat(self._fd)
            there = os.lstat(self.path)
            if (ours.st_dev, ours.st_ino) == (there.st_dev, there.st_ino) and \
                    os.path.isfile(self.path):
                os.unlink(self.path)
        except OSError:
            pass
        self.close()

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
