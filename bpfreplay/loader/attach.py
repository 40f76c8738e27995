"""Attaching loaded programs by their section, as a skeleton's attach does
(bpf_object__attach_skeleton → each sec_def's attach function in libbpf 1.1.2).

Supported: tracepoints (``tp/``, ``tracepoint/``: perf_event_open of the tracepoint,
then a BPF perf link or, on kernels without perf links, PERF_EVENT_IOC_SET_BPF; then
PERF_EVENT_IOC_ENABLE) and raw tracepoints (``raw_tp/``, ``raw_tracepoint/``).
Sections libbpf does not auto-attach (socket, xdp, tc, ...) stay loaded, unattached.
"""

from __future__ import annotations

import errno as errno_codes
import os
import struct

from bpfreplay import sys as bsys
from bpfreplay.errors import LoaderError
from bpfreplay.loader import bpfcalls
from bpfreplay.loader.kernel import (
    PERF_EVENT_IOC_ENABLE,
    PERF_EVENT_IOC_SET_BPF,
    Link,
    LoadedObject,
    LoadedProgram,
    _close_quietly,
)
from bpfreplay.uapi import enum_values

PERF_TYPE_TRACEPOINT = 2
PERF_FLAG_FD_CLOEXEC = 1 << 3
# sizeof(struct perf_event_attr) in the headers libbpf 1.1.2 was built with on Debian 12
# (PERF_ATTR_SIZE_VER7): libbpf passes that as attr.size.
PERF_ATTR_SIZE = 128
DEBUGFS_TRACING = "/sys/kernel/debug/tracing"
TRACEFS = "/sys/kernel/tracing"
BPF_PERF_EVENT = enum_values("bpf_attach_type")["BPF_PERF_EVENT"]


def tracefs_path() -> str:
    """libbpf's tracefs_path(): debugfs's tracing directory if it exists, else tracefs;
    ``BPFREPLAY_TRACEFS`` overrides both (empty: no tracefs, every look-up fails)."""
    from bpfreplay.tracefs import TRACEFS_ENV

    override = os.environ.get(TRACEFS_ENV)
    if override is not None:
        return override or "/nonexistent (BPFREPLAY_TRACEFS is empty)"
    return DEBUGFS_TRACING if os.path.exists(DEBUGFS_TRACING) else TRACEFS


def tracepoint_id(category: str, name: str) -> int:
    path = f"{tracefs_path()}/events/{category}/{name}/id"
    try:
        with open(path) as f:
            return int(f.read().strip())
    except FileNotFoundError:
        raise LoaderError(f"tracepoint '{category}/{name}' does not exist ({path})") from None
    except (OSError, ValueError) as e:
        raise LoaderError(f"reading the id of tracepoint '{category}/{name}' from {path}: "
                          f"{e}") from e


def attach_all(obj: LoadedObject) -> list[str]:
    """Attach every loaded program whose section libbpf auto-attaches; returns notes on
    the programs left unattached."""
    notes = []
    for prog in obj.programs:
        if prog.fd < 0:
            continue
        how = prog.spec.sec_def.attach if prog.spec.sec_def else None
        if how is None:
            notes.append(f"prog '{prog.spec.name}' ({prog.spec.section}): loaded; libbpf "
                         "does not auto-attach this kind of program")
            continue
        link = _ATTACHERS.get(how, _unsupported)(obj, prog)
        if link is None:
            notes.append(f"prog '{prog.spec.name}' ({prog.spec.section}): no attach target "
                         "in the section name; loaded, not attached")
            continue
        obj.links.append(link)
    return notes


def _attach_tracepoint(obj: LoadedObject, prog: LoadedProgram) -> Link | None:
    section = prog.spec.section
    if section in ("tp", "tracepoint"):
        return None  # libbpf: no auto-attach for a bare SEC("tp")
    target = section.split("/", 1)[1] if "/" in section else ""
    category, _, name = target.partition("/")
    if not name:
        raise LoaderError(f"prog '{prog.spec.name}': invalid section '{section}', expected "
                          "tp/<category>/<name>")
    attr = bytearray(PERF_ATTR_SIZE)
    struct.pack_into("<IIQ", attr, 0, PERF_TYPE_TRACEPOINT, PERF_ATTR_SIZE,
                     tracepoint_id(category, name))
    return _attach_new_perf_event(obj, prog, attr, f"tracepoint '{target}'", target)


def _attach_new_perf_event(obj: LoadedObject, prog: LoadedProgram, attr: bytearray,
                           what: str, target: str, *, bpf_cookie: int = 0) -> Link:
    """perf_event_open(attr, pid -1, cpu 0, no group, CLOEXEC) as libbpf opens tracepoint
    and probe events, then the program attached to it; the event is closed on failure."""
    try:
        pfd = bsys.perf_event_open(attr, -1, 0, -1, PERF_FLAG_FD_CLOEXEC)
    except OSError as e:
        raise LoaderError(f"prog '{prog.spec.name}': perf_event_open() of {what} failed: "
                          f"{e.strerror}") from e
    try:
        return _attach_perf_event(obj, prog, pfd, target, bpf_cookie=bpf_cookie)
    except BaseException:
        _close_quietly(pfd)
        raise


def _attach_perf_event(obj: LoadedObject, prog: LoadedProgram, pfd: int, target: str, *,
                       bpf_cookie: int = 0) -> Link:
    """bpf_program__attach_perf_event_opts() (its opts: the bpf_cookie)."""
    if obj.features.supports("perf_link"):
        try:
            link_fd = bpfcalls.link_create(prog.fd, pfd, BPF_PERF_EVENT,
                                           bpf_cookie=bpf_cookie)
        except OSError as e:
            raise LoaderError(f"prog '{prog.spec.name}': failed to create BPF link for "
                              f"perf_event: {e.strerror}") from e
        link = Link(prog.spec.name, "perf", link_fd, pfd, target)
    else:
        if bpf_cookie:
            raise LoaderError(f"prog '{prog.spec.name}': user context value is not "
                              "supported (no BPF perf links on this kernel)")
        try:
            bsys.ioctl(pfd, PERF_EVENT_IOC_SET_BPF, prog.fd)
        except OSError as e:
            raise LoaderError(f"prog '{prog.spec.name}': failed to attach to perf_event: "
                              f"{e.strerror}") from e
        link = Link(prog.spec.name, "perf", pfd, pfd, target)
    try:
        bsys.ioctl(pfd, PERF_EVENT_IOC_ENABLE, 0)
    except OSError as e:
        if link.fd != pfd:
            _close_quietly(link.fd)
        raise LoaderError(f"prog '{prog.spec.name}': failed to enable perf_event: "
                          f"{e.strerror}") from e
    return link


def _attach_raw_tracepoint(obj: LoadedObject, prog: LoadedProgram) -> Link | None:
    section = prog.spec.section
    if "/" not in section:
        return None
    name = section.split("/", 1)[1]
    try:
        fd = bpfcalls.raw_tracepoint_open(name, prog.fd)
    except OSError as e:
        raise LoaderError(f"prog '{prog.spec.name}': raw tracepoint '{name}' failed: "
                          f"{e.strerror}") from e
    return Link(prog.spec.name, "raw_tp", fd, target=name)


def _attach_trace(obj: LoadedObject, prog: LoadedProgram) -> Link | None:
    """bpf_program__attach_btf_id(): a BPF link to the program's BTF target (tp_btf,
    fentry/fexit/fmod_ret), falling back to RAW_TRACEPOINT_OPEN where LINK_CREATE does
    not know the program kind (EINVAL)."""
    try:
        fd = bpfcalls.link_create(prog.fd, 0, prog.spec.expected_attach_type)
    except OSError as e:
        if e.errno != errno_codes.EINVAL:
            raise LoaderError(f"prog '{prog.spec.name}': failed to attach: {e.strerror}") \
                from e
        try:
            fd = bpfcalls.raw_tracepoint_open(None, prog.fd)
        except OSError as e2:
            raise LoaderError(f"prog '{prog.spec.name}': failed to attach: {e2.strerror}") \
                from e2
    return Link(prog.spec.name, "link", fd, target=prog.spec.section.split("/", 1)[-1])


KPROBE_PMU = "/sys/bus/event_source/devices/kprobe"


def _attach_kprobe(obj: LoadedObject, prog: LoadedProgram) -> Link | None:
    where = f"prog '{prog.spec.name}' ({prog.spec.section})"
    if not os.path.exists(KPROBE_PMU) and not os.path.exists(
            f"{tracefs_path()}/kprobe_events"):
        raise LoaderError(f"{where}: kprobes are not available on this kernel (no kprobe "
                          "PMU and no kprobe_events: CONFIG_KPROBES is off)")
    raise LoaderError(f"{where}: attaching kprobes is not supported yet")


def _attach_uprobe(obj: LoadedObject, prog: LoadedProgram) -> Link | None:
    """bpf_program__attach_uprobe_opts() for uprobe/BINARY:FUNCTION[+OFFSET] (a bare
    SEC("uprobe") names no target: libbpf skips it)."""
    from bpfreplay.loader import uprobe

    where = f"prog '{prog.spec.name}' ({prog.spec.section})"
    try:
        found = uprobe.target(prog.spec.section)
        if found is None:
            return None
        perf_type, retprobe_bit = uprobe.pmu_type()
    except LoaderError as e:
        raise LoaderError(f"{where}: {e}") from e
    keep = bsys.Buffers()
    attr = bytearray(PERF_ATTR_SIZE)
    config = 1 << retprobe_bit if found.retprobe else 0
    struct.pack_into("<IIQ", attr, 0, perf_type, PERF_ATTR_SIZE, config)
    struct.pack_into("<QQ", attr, 56, keep.cstring_at(found.path), found.offset)
    kind = "uretprobe" if found.retprobe else "uprobe"
    text = f"{found.path}:{found.offset:#x}"
    return _attach_new_perf_event(obj, prog, attr, f"{kind} '{text}'", f"{kind} {text}")


def _usdt_attach(obj: LoadedObject, prog: LoadedProgram) -> Link | None:
    """attach_usdt(): loader/usdt.py."""
    from bpfreplay.loader import usdt

    return usdt.attach(obj, prog)


def _kprobe_multi_attach(obj: LoadedObject, prog: LoadedProgram) -> Link | None:
    """attach_kprobe_multi(): loader/kprobe_multi.py."""
    from bpfreplay.loader import kprobe_multi

    return kprobe_multi.attach(obj, prog)


def _attach_iter(obj: LoadedObject, prog: LoadedProgram) -> Link:
    from bpfreplay.loader.iterator import attach_iter  # (only objects with iterators)

    return attach_iter(obj, prog)


def _unsupported(obj: LoadedObject, prog: LoadedProgram) -> Link | None:
    how = prog.spec.sec_def.attach if prog.spec.sec_def else None
    raise LoaderError(f"prog '{prog.spec.name}' ({prog.spec.section}): attaching '{how}' "
                      "programs is not supported yet")


_ATTACHERS = {
    "tp": _attach_tracepoint,
    "raw_tp": _attach_raw_tracepoint,
    "trace": _attach_trace,
    "kprobe": _attach_kprobe,
    "ksyscall": _attach_kprobe,
    "kprobe_multi": lambda obj, prog: _kprobe_multi_attach(obj, prog),
    "uprobe": lambda obj, prog: _attach_uprobe(obj, prog),
    "iter": _attach_iter,
    "usdt": lambda obj, prog: _usdt_attach(obj, prog),
}
