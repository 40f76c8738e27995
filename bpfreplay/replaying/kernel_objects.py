"""Objects the trace did not make but found in the recording kernel: BPF_*_GET_FD_BY_ID
of an id no call of the trace made. Kernel BTF objects are found here by what the trace
says they were (vmlinux: id 1, the first BTF object any kernel makes, or the name
``vmlinux``; a module's BTF: its name, when the trace kept it); anything else (another
process's program, map, link or BTF) is not reproducible here."""

from __future__ import annotations

import contextlib
import errno as errno_codes
import struct
from typing import Any

from bpfreplay import sys as bsys
from bpfreplay.decode.fds import command
from bpfreplay.replaying.errors import NotReproducible

_NAME_MAX = 64  # MODULE_NAME_LEN


def recorded_btf_name(users: list[dict[str, Any]], recorded_id: int) -> str | None:
    """What the trace says the BTF object ``recorded_id`` was: "vmlinux" for id 1, else
    the name an OBJ_GET_INFO_BY_FD of its fd kept (a payload ``info.name``), if any.
    ``users``: the recorded calls that used the fd its GET_FD_BY_ID made."""
    if recorded_id == 1:
        return "vmlinux"
    for call in users:
        if command(call) != "BPF_OBJ_GET_INFO_BY_FD":
            continue
        out = call.get("out") or {}
        name = out.get("info.name")
        if isinstance(name, bytes) and name:
            return name.split(b"\0", 1)[0].decode("utf-8", "replace")
        info = out.get("info")
        if isinstance(info, bytes) and len(info) >= 32:
            kernel_btf = struct.unpack_from("<I", info, 28)[0]
            if not kernel_btf:
                return None  # another process's BTF
    return None


class KernelBtfs:
    """This kernel's BTF objects by name, walked once, on first need (the caller keeps
    the walk out of the replay's own trace)."""

    def __init__(self) -> None:
        self._by_name: dict[str, int] | None = None

    def id_of(self, name: str) -> int:
        if self._by_name is None:
            self._by_name = _walk()
        found = self._by_name.get(name)
        if found is None:
            raise NotReproducible(f"no kernel BTF named {name!r} on this kernel")
        return found


def _walk() -> dict[str, int]:
    from bpfreplay.loader.bpfcalls import btf_get_fd_by_id, btf_get_next_id, btf_info

    found: dict[str, int] = {}
    current = 0
    for _ in range(1 << 16):
        try:
            current = btf_get_next_id(current)
        except OSError as e:
            if e.errno == errno_codes.ENOENT:
                break
            raise NotReproducible(f"walking this kernel's BTF objects: {e.strerror}") from e
        try:
            fd = btf_get_fd_by_id(current)
        except OSError:
            continue  # gone meanwhile
        try:
            info, name = btf_info(fd, _NAME_MAX)
            if len(info) >= 32 and struct.unpack_from("<I", info, 28)[0] and name:
                found.setdefault(name, current)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                bsys.close(fd)
    return found
