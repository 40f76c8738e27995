"""What /proc says about a traced process's fds and libraries."""

from __future__ import annotations

import os
import re


def fd_target(pid: int, fd: int) -> str | None:
    """What the fd is (readlink of /proc/PID/fd/FD): 'anon_inode:bpf-map', '/memfd:x'..."""
    try:
        return os.readlink(f"/proc/{pid}/fd/{fd}")
    except OSError:
        return None


def fdinfo(pid: int, fd: int) -> dict[str, str]:
    """/proc/PID/fdinfo/FD as a dict ('map_type': '2', 'prog_id': '42', ...)."""
    try:
        with open(f"/proc/{pid}/fdinfo/{fd}") as f:
            text = f.read()
    except OSError:
        return {}
    info = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            info[key.strip()] = value.strip()
    return info


_KIND_BY_TARGET = {
    "anon_inode:bpf-map": "map",
    "anon_inode:bpf-prog": "prog",
    "anon_inode:bpf_link": "link",
    "anon_inode:btf": "btf",
    "anon_inode:bpf-token": "token",
    "anon_inode:[perf_event]": "perf_event",
}


def fd_kind(target: str | None) -> str:
    if target is None:
        return "closed"
    if target.startswith("/memfd:"):
        return "memfd"
    return _KIND_BY_TARGET.get(target, "other")


def object_facts(pid: int, fd: int) -> dict[str, object]:
    """Kind and kernel ids of the object behind an fd, as /proc tells them."""
    target = fd_target(pid, fd)
    facts: dict[str, object] = {"kind": fd_kind(target)}
    info = fdinfo(pid, fd)
    for key in ("map_type", "key_size", "value_size", "max_entries", "map_flags", "map_id",
                "prog_type", "prog_id", "link_type", "link_id", "btf_id"):
        if key in info:
            value = info[key]
            facts[key] = int(value, 16) if value.startswith("0x") else _int_or_str(value)
    if facts["kind"] == "memfd" and target:
        facts["name"] = target[len("/memfd:"):]
    return facts


def _int_or_str(value: str) -> int | str:
    try:
        return int(value)
    except ValueError:
        return value


def executable(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return None


def cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            raw = f.read()
    except OSError:
        return []
    return [a.decode(errors="replace") for a in raw.split(b"\0")[:-1]]


_LIBBPF = re.compile(r"\s(/\S*libbpf\.so[^\s]*)$")


def mapped_libbpf(pid: int) -> dict[str, str] | None:
    """The libbpf shared library the process has mapped, with its version if the
    file name carries one (libbpf.so.1.1.2 -> '1.1.2'); None if statically linked."""
    try:
        with open(f"/proc/{pid}/maps") as f:
            for line in f:
                m = _LIBBPF.search(line.rstrip("\n"))
                if m:
                    path = m.group(1)
                    real = os.path.realpath(path)
                    version = real.rsplit(".so.", 1)[1] if ".so." in real else None
                    return {"path": path, "realpath": real, "version": version or ""}
    except OSError:
        return None
    return None


def possible_cpus() -> int:
    """Number of possible CPUs: per-CPU map values hold one slot for each."""
    try:
        with open("/sys/devices/system/cpu/possible") as f:
            text = f.read().strip()
    except OSError:
        return os.cpu_count() or 1
    count = 0
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        count += (int(hi) if hi else int(lo)) - int(lo) + 1
    return count
