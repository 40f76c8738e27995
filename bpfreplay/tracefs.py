"""Where this machine's names of tracepoints and PMUs are read: tracefs and sysfs.

A tracepoint perf event holds only an id (``events/<category>/<name>/id``) and a
dynamic PMU only a type number (``/sys/bus/event_source/devices/<pmu>/type``); both
are numbered by the kernel that made them. The recorder reads the names here at record
time and keeps them in the trace (format 2); explain falls back to them only for a
version-1 trace, and replay resolves recorded names to this machine's ids.

``BPFREPLAY_TRACEFS`` points the tracefs look-ups elsewhere (a directory holding
``events/``); set to the empty string it disables them (tests of a trace explained on
"another machine", replays that must not depend on the local tracefs).
"""

from __future__ import annotations

import os

TRACEFS_ENV = "BPFREPLAY_TRACEFS"
DEBUGFS_TRACING = "/sys/kernel/debug/tracing"
TRACEFS = "/sys/kernel/tracing"
PMU_DEVICES = "/sys/bus/event_source/devices"


def tracefs_roots() -> list[str]:
    """The tracefs directories to read, in order: ``BPFREPLAY_TRACEFS`` alone when it is
    set (none when empty), else libbpf's order (tracefs_path(): debugfs's tracing
    directory first when it exists, then tracefs)."""
    override = os.environ.get(TRACEFS_ENV)
    if override is not None:
        return [override] if override else []
    return [DEBUGFS_TRACING, TRACEFS]


def tracepoint_ids() -> dict[int, str]:
    """Every tracepoint of the first tracefs that has events: id -> "category:name"."""
    names: dict[int, str] = {}
    for root in tracefs_roots():
        events = os.path.join(root, "events")
        try:
            categories = os.listdir(events)
        except OSError:
            continue
        for category in categories:
            directory = os.path.join(events, category)
            try:
                entries = os.listdir(directory)
            except OSError:  # a file such as events/enable, or gone
                continue
            for name in entries:
                try:
                    with open(os.path.join(directory, name, "id")) as f:
                        names[int(f.read())] = f"{category}:{name}"
                except (OSError, ValueError):
                    continue
        return names
    return names


class TracepointNames:
    """id -> name, read on first use; an id not known is looked for again once (libbpf's
    legacy kprobe/uprobe events are made in tracefs just before their perf_event_open)."""

    def __init__(self) -> None:
        self._names: dict[int, str] | None = None
        self._missed: set[int] = set()

    def __call__(self, tp_id: int) -> str | None:
        if self._names is None:
            self._names = tracepoint_ids()
        name = self._names.get(tp_id)
        if name is None and tp_id not in self._missed:
            self._missed.add(tp_id)
            self._names = tracepoint_ids()
            name = self._names.get(tp_id)
        return name


def pmu_types() -> dict[int, str]:
    """The PMUs sysfs lists: type number -> name (``uprobe``, ``kprobe``, ``software`` ...)."""
    names: dict[int, str] = {}
    try:
        pmus = os.listdir(PMU_DEVICES)
    except OSError:
        return names
    for pmu in sorted(pmus):
        try:
            with open(os.path.join(PMU_DEVICES, pmu, "type")) as f:
                names.setdefault(int(f.read()), pmu)
        except (OSError, ValueError):
            continue
    return names
