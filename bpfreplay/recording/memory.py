"""Reading a tracee's memory through /proc/PID/mem (one pread per buffer)."""

from __future__ import annotations

import os

_CHUNK = 256
_PAGE = os.sysconf("SC_PAGE_SIZE")


class TraceeMemory:
    """The address space of one traced process. Reopen after exec: the old file
    keeps pointing at the old address space."""

    def __init__(self, pid: int):
        self.pid = pid
        self._fd = os.open(f"/proc/{pid}/mem", os.O_RDONLY | os.O_CLOEXEC)

    def read(self, address: int, length: int) -> bytes:
        """Exactly ``length`` bytes, or fewer if the range runs into unmapped memory;
        OSError if nothing at ``address`` is readable."""
        if length <= 0:
            return b""
        data = os.pread(self._fd, length, address)
        while len(data) < length:
            try:
                more = os.pread(self._fd, length - len(data), address + len(data))
            except OSError:
                break
            if not more:
                break
            data += more
        return data

    def read_pages(self, address: int, length: int) -> tuple[int, bytes] | None:
        """The whole pages holding ``length`` bytes at ``address``, as (start, bytes), or
        None if any of them is unreadable. Copying a page costs little more than copying
        a few bytes, and the buffers an attr points to are often on its own page (stack
        variables): those then need no read of their own. Reading the rest of the pages
        the attr is read from touches no page the attr read would not."""
        start = address & -_PAGE
        size = ((address + length + _PAGE - 1) & -_PAGE) - start
        try:
            data = os.pread(self._fd, size, start)
        except OSError:
            return None
        return (start, data) if len(data) == size else None

    def read_span(self, low: int, high: int) -> bytes | None:
        """The bytes in [low, high), or None if not all of them are readable."""
        try:
            data = os.pread(self._fd, high - low, low)
        except OSError:
            return None
        return data if len(data) == high - low else None

    def read_cstring(self, address: int, limit: int) -> bytes:
        """A NUL-terminated string (without the NUL), at most ``limit`` bytes."""
        out = b""
        while len(out) < limit:
            try:
                chunk = os.pread(self._fd, min(_CHUNK, limit - len(out)), address + len(out))
            except OSError:
                if out:
                    break
                raise
            if not chunk:
                break
            nul = chunk.find(b"\0")
            if nul >= 0:
                return out + chunk[:nul]
            out += chunk
        return out

    def read_until_nul(self, address: int, length: int) -> bytes:
        """An output text buffer of ``length`` bytes, cut at the first NUL."""
        out = b""
        step = 65536
        while len(out) < length:
            chunk = self.read(address + len(out), min(step, length - len(out)))
            nul = chunk.find(b"\0")
            if nul >= 0:
                return out + chunk[:nul]
            out += chunk
            if len(chunk) < min(step, length - len(out) + len(chunk)):
                break
        return out

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
