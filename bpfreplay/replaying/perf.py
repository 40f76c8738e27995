"""perf_event_open of a recorded call, made for this machine.

- ``PERF_TYPE_TRACEPOINT``: the config is a tracepoint id, which each kernel numbers
  its own way; the recorded name (trace format 2: the call's ``tracepoint``) is looked
  up in this machine's tracefs (``BPFREPLAY_TRACEFS``). A version-1 trace has no name:
  the recorded id is used, and said.
- the kprobe/uprobe PMUs have dynamic type numbers (sysfs): the recorded path or
  function (``in.config1``) says which of the two it was; ``/proc/self/exe`` is the
  recording process's program (parity.md's rule 5), not ours.
- the recording process's pid becomes ours (``--exact``: as recorded); an event for a
  CPU this machine does not have is not made.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from bpfreplay.replaying.errors import NotReproducible
from bpfreplay.replaying.remap import s32

PERF_TYPE_TRACEPOINT = 2
PERF_ATTR_SIZE_VER0 = 64
PAGE_SIZE = 4096  # perf_copy_attr refuses larger sizes before reading
PERF_FLAG_PID_CGROUP = 1 << 2
_CONFIG = slice(8, 16)
_CONFIG1 = 56
SELF_EXE = "/proc/self/exe"


@dataclass
class PerfOpen:
    """What we pass to perf_event_open, and the notes on what was changed."""

    attr: bytearray
    path: bytes | None  # the string config1 points to (kprobe/uprobe PMUs)
    pid: int
    notes: list[str] = field(default_factory=list)
    adjusted: list[tuple[str, ...]] = field(default_factory=list)  # normalised paths


def recorded_tracepoint(call: dict[str, Any]) -> str | None:
    """The "category:name" the recording's tracefs gave the event's id (trace format 2:
    the call's ``tracepoint``); None for a version-1 trace, which kept no name."""
    value = call.get("tracepoint")
    return value if isinstance(value, str) and value else None


def recorded_pmu(call: dict[str, Any]) -> str | None:
    """The recording's name of the event's dynamic PMU type (format 2: ``pmu``)."""
    value = call.get("pmu")
    return value if isinstance(value, str) and value else None


def tracepoint_id_here(name: str) -> int | None:
    from bpfreplay.errors import LoaderError
    from bpfreplay.loader.attach import tracepoint_id

    category, _, event = name.replace("/", ":").partition(":")
    if not category or not event or ".." in name:
        return None
    try:
        return tracepoint_id(category, event)
    except LoaderError:
        return None


def dynamic_pmu(name: str) -> int | None:
    try:
        with open(f"/sys/bus/event_source/devices/{name}/type") as f:
            return int(f.read())
    except (OSError, ValueError):
        return None


def prepare(call: dict[str, Any], recorded_pid: int, our_pid: int, exact: bool,
            ncpus: int, self_exe: str | None) -> PerfOpen:
    attr = call.get("attr")
    if not isinstance(attr, bytes) or len(attr) < 16:
        raise NotReproducible("the recording could not read the perf_event_attr")
    # The kernel reads as many bytes as the attr's own size field says (0: the first
    # layout's 64; perf_copy_attr), unless that is more than a page (E2BIG, unread):
    # never more than our copy of the recorded bytes holds.
    size = int.from_bytes(attr[4:8], "little") or PERF_ATTR_SIZE_VER0
    if len(attr) < size <= PAGE_SIZE:
        raise NotReproducible(f"the perf_event_attr says {size} bytes, the recording "
                              f"kept {len(attr)}")
    args = list(call.get("args") or []) + [0] * 6
    pid = s32(args[1])
    cpu = s32(args[2])
    flags = args[4]
    if flags & PERF_FLAG_PID_CGROUP:
        raise NotReproducible("pid is a cgroup fd of the recording process")
    if cpu >= ncpus:
        raise NotReproducible(f"CPU {cpu}: this machine has {ncpus} possible CPUs")
    out = PerfOpen(bytearray(attr), None, pid)
    if pid == recorded_pid and pid > 0 and not exact:
        out.pid = our_pid
        out.notes.append(f"pid {pid} (the recording process) -> ours {our_pid}")
    perf_type = int.from_bytes(attr[0:4], "little")
    if perf_type == PERF_TYPE_TRACEPOINT:
        _tracepoint(call, out)
    path = (call.get("in") or {}).get("config1")
    if isinstance(path, bytes):
        _probe_pmu(call, out, path, perf_type, self_exe)
    elif len(attr) >= _CONFIG1 + 8 and perf_type not in (0, 1, 2, 3, 4, 5) \
            and any(attr[_CONFIG1:_CONFIG1 + 8]):
        # a dynamic PMU's config1 pointer whose string the recording did not keep
        raise NotReproducible("config1 of a dynamic PMU points to a string the "
                              "recording did not keep")
    return out


def _tracepoint(call: dict[str, Any], out: PerfOpen) -> None:
    recorded_id = int.from_bytes(out.attr[_CONFIG], "little")
    name = recorded_tracepoint(call)
    if name is None:
        out.notes.append(f"tracepoint id {recorded_id} as recorded (the recording kept no "
                         "name: a version-1 trace, or no tracefs of the recorder had the id)")
        return
    here = tracepoint_id_here(name)
    if here is None:
        raise NotReproducible(f"no tracepoint {name} on this kernel")
    if here != recorded_id:
        out.attr[_CONFIG] = here.to_bytes(8, "little")
        out.notes.append(f"tracepoint {name}: id {recorded_id} recorded, {here} here")
    else:
        out.notes.append(f"tracepoint {name}: id {here} (resolved by name)")
    out.adjusted.append(("fields", "config"))


def _probe_pmu(call: dict[str, Any], out: PerfOpen, path: bytes, perf_type: int,
               self_exe: str | None) -> None:
    """A kprobe/uprobe PMU event: its type here, and its target."""
    recorded = recorded_pmu(call)
    # A version-1 trace kept no PMU name: a path is a uprobe's, a function a kprobe's.
    is_uprobe = recorded == "uprobe" if recorded in ("kprobe", "uprobe") \
        else path.startswith(b"/")
    kind = "uprobe" if is_uprobe else "kprobe"
    here = dynamic_pmu(kind)
    if here is None:
        raise NotReproducible(f"no {kind} PMU on this kernel")
    if here != perf_type:
        out.attr[0:4] = here.to_bytes(4, "little")
        out.notes.append(f"{kind} PMU type {perf_type} recorded, {here} here")
        out.adjusted.append(("fields", "type"))
    if path == SELF_EXE.encode() and self_exe:
        path = os.fsencode(self_exe)
        out.notes.append(f"{SELF_EXE} of the recording process is {self_exe}")
    if is_uprobe and not os.path.exists(path):
        out.notes.append(f"{os.fsdecode(path)} does not exist here")
    out.path = path

