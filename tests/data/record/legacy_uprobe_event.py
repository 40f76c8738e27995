"""A tracee for tests/test_trace_names.py: two PERF_TYPE_TRACEPOINT perf events, the
second on a uprobe event it makes in tracefs (uprobe_events, as libbpf's legacy uprobe
attach does) after the first was opened, and removes before it ends.
Usage: legacy_uprobe_event.py TRACEFS_ROOT. Prints the event's name."""

import ctypes
import os
import struct
import sys

PERF_EVENT_OPEN = 298  # x86_64
PERF_TYPE_TRACEPOINT = 2
PERF_FLAG_FD_CLOEXEC = 8

libc = ctypes.CDLL(None, use_errno=True)


def tracepoint_open(root: str, event: str) -> None:
    with open(f"{root}/events/{event}/id") as f:
        tp_id = int(f.read())
    attr = ctypes.create_string_buffer(
        struct.pack("<IIQ", PERF_TYPE_TRACEPOINT, 128, tp_id).ljust(128, b"\0"), 128)
    fd = libc.syscall(PERF_EVENT_OPEN, attr, -1, 0, -1, PERF_FLAG_FD_CLOEXEC)
    if fd < 0:
        raise OSError(ctypes.get_errno(), f"perf_event_open of {event}")
    os.close(fd)


def uprobe_events(root: str, line: str) -> None:
    # No buffered append: tracefs refuses the seek Python's "a" mode makes.
    fd = os.open(f"{root}/uprobe_events", os.O_WRONLY | os.O_APPEND)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def main() -> None:
    root = sys.argv[1]
    name = f"h9trace_{os.getpid()}"
    tracepoint_open(root, "syscalls/sys_enter_getpid")
    uprobe_events(root, f"p:uprobes/{name} /bin/true:0x0\n")
    try:
        tracepoint_open(root, f"uprobes/{name}")
    finally:
        uprobe_events(root, f"-:uprobes/{name}\n")
    print(name)


if __name__ == "__main__":
    main()
