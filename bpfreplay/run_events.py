"""`bpfreplay run --event [TYPE] [--header FILE]`: read the object's ring buffers and
perf buffers while it runs, as bootstrap's and bootstrap_legacy's applications do
(ring_buffer__new() + ring_buffer__poll(), perf_buffer__new() + perf_buffer__poll()
with 8 pages per CPU and a 100 ms timeout), and print each record: decoded through
TYPE (a struct of the object's BTF, or of the C header FILE), else as a hex dump."""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from bpfreplay.errors import BpfReplayError

RINGBUF, PERF_EVENT_ARRAY = 27, 4  # BPF_MAP_TYPE_*
POLL_TIMEOUT_MS = 100  # upstream bootstrap's ring_buffer__poll(rb, 100 /* timeout, ms */)
PERF_BUFFER_PAGES = 8  # upstream bootstrap_legacy's perf_buffer__new(fd, 8, ...)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--event", nargs="?", const="", metavar="TYPE",
                        help="read the object's ring buffers and perf buffers and print "
                        "each record decoded through TYPE (e.g. 'struct event', from the "
                        "object's BTF or --header's); without TYPE, a hex dump")
    parser.add_argument("--header", metavar="FILE",
                        help="the C header declaring --event's TYPE (compiled to BTF with "
                        "clang -g -target bpf)")


@dataclass
class EventReading:
    event_type: Any = None  # runtime.events.EventType, None for hex dumps
    readers: list[Any] = field(default_factory=list)  # (map name, RingBuffer|PerfBuffer)


def event_reading(spec: Any, args: argparse.Namespace) -> EventReading | None:
    """What --event/--header ask for, checked before anything is loaded."""
    name, header = getattr(args, "event", None), getattr(args, "header", None)
    if name is None:
        if header:
            raise BpfReplayError("--header: give the type to read from it with --event TYPE")
        return None
    if not any(m.type in (RINGBUF, PERF_EVENT_ARRAY) for m in spec.maps):
        raise BpfReplayError(f"--event: object '{spec.name}' has no ring buffer or perf "
                             "event array map")
    if not name:
        if header:
            raise BpfReplayError("--header: give the type to read from it with --event TYPE")
        return EventReading()
    from bpfreplay.runtime.events import find_event_type

    if header:
        from bpfreplay.runtime.header_btf import header_btf

        try:
            return EventReading(find_event_type(header_btf(header, name), name))
        except BpfReplayError as e:
            raise BpfReplayError(f"{e} of --header {header}") from None
    if spec.btf is None:
        raise BpfReplayError(f"--event {name!r}: object '{spec.name}' has no BTF; give the "
                             "header declaring it with --header FILE")
    try:
        return EventReading(find_event_type(spec.btf, name))
    except BpfReplayError as e:
        raise BpfReplayError(f"{e} of object '{spec.name}' (a type only a header declares "
                             "needs --header FILE)") from None


def open_readers(obj: Any, reading: EventReading) -> None:
    """ring_buffer__new() / perf_buffer__new() of each such map, in the object's order."""
    from bpfreplay.runtime.perfbuf import PerfBuffer
    from bpfreplay.runtime.ringbuf import RingBuffer

    for m in obj.maps:
        if m.spec.type == RINGBUF:
            reading.readers.append((m.spec.name, RingBuffer(m.fd, name=m.spec.name)))
        elif m.spec.type == PERF_EVENT_ARRAY:
            reading.readers.append((m.spec.name, PerfBuffer(m.fd, PERF_BUFFER_PAGES,
                                                            name=m.spec.name)))


def close_readers(reading: EventReading) -> None:
    """ring_buffer__free() / perf_buffer__free(), before the object is destroyed."""
    while reading.readers:
        reading.readers.pop()[1].close()


def stream_events(reading: EventReading, duration: float | None) -> None:
    """Poll every reader (100 ms each) until the duration passes or Ctrl-C, printing
    each record as it comes; a dot to stderr each second as the plain stream does."""
    from bpfreplay.runtime.events import format_event
    from bpfreplay.runtime.perfbuf import PerfBuffer

    print("bpfreplay: running, reading " + ", ".join(n for n, _ in reading.readers) +
          (f" for {duration:g} s" if duration is not None else "; Ctrl-C to stop"),
          file=sys.stderr)
    start = last_dot = time.monotonic()
    lost = {name: 0 for name, _ in reading.readers}
    while duration is None or time.monotonic() - start < duration:
        for name, reader in reading.readers:
            if isinstance(reader, PerfBuffer):
                for cpu, data in reader.poll(POLL_TIMEOUT_MS):
                    _print(f"{name} cpu {cpu}", format_event(reading.event_type, data))
                if reader.lost != lost[name]:
                    print(f"bpfreplay: {name}: {reader.lost - lost[name]} sample(s) lost",
                          file=sys.stderr)
                    lost[name] = reader.lost
            else:
                for data in reader.poll(POLL_TIMEOUT_MS):
                    _print(name, format_event(reading.event_type, data))
        if time.monotonic() - last_dot >= 1:
            last_dot = time.monotonic()
            sys.stderr.write(".")
            sys.stderr.flush()
    sys.stderr.write("\n")


def _print(where: str, text: str) -> None:
    if "\n" in text or text.startswith("00000000  "):  # a hex dump, under its line
        print(f"{where}:\n" + "\n".join("  " + line for line in text.splitlines()),
              flush=True)
    else:
        print(f"{where}: {text}", flush=True)
