"""Attaching SEC("perf_event") programs to a sampling perf event on every CPU, as
libbpf-bootstrap's profile application does (libbpf 1.1.2 never auto-attaches them).

Per CPU that is online, in CPU order (libbpf_num_possible_cpus() bounds the walk,
/sys/devices/system/cpu/online says which to skip): perf_event_open(attr, pid -1 (every
process), cpu, no group, PERF_FLAG_FD_CLOEXEC) of a frequency-sampling event
(attr.freq = 1, attr.sample_freq = FREQ, attr.size = 128: sizeof(struct perf_event_attr)
in Debian 12's headers), then ``bpf_program__attach_perf_event()``: a BPF perf link when
the kernel has them (FEAT_PERF_LINK, probed when first needed), else
PERF_EVENT_IOC_SET_BPF; then PERF_EVENT_IOC_ENABLE (loader/attach.py's
_attach_perf_event). Teardown is bpf_link__destroy()'s: DISABLE, close the event, close
the link.

Events are named as perf(1) names them; this machine has no hardware PMU, so only the
software ones open here (a hardware event fails with the kernel's ENOENT).
"""

from __future__ import annotations

from dataclasses import dataclass

from bpfreplay import sys as bsys
from bpfreplay.errors import LoaderError
from bpfreplay.loader.attach import PERF_ATTR_SIZE, PERF_FLAG_FD_CLOEXEC, _attach_perf_event
from bpfreplay.loader.kernel import Link, LoadedObject, LoadedProgram, _close_quietly

PERF_TYPE_HARDWARE, PERF_TYPE_SOFTWARE = 0, 1
# perf(1)'s event names: (type, config) of include/uapi/linux/perf_event.h
EVENTS = {
    "cpu-clock": (PERF_TYPE_SOFTWARE, 0), "task-clock": (PERF_TYPE_SOFTWARE, 1),
    "page-faults": (PERF_TYPE_SOFTWARE, 2), "faults": (PERF_TYPE_SOFTWARE, 2),
    "context-switches": (PERF_TYPE_SOFTWARE, 3), "cs": (PERF_TYPE_SOFTWARE, 3),
    "cpu-migrations": (PERF_TYPE_SOFTWARE, 4), "migrations": (PERF_TYPE_SOFTWARE, 4),
    "minor-faults": (PERF_TYPE_SOFTWARE, 5), "major-faults": (PERF_TYPE_SOFTWARE, 6),
    "alignment-faults": (PERF_TYPE_SOFTWARE, 7), "emulation-faults": (PERF_TYPE_SOFTWARE, 8),
    "cpu-cycles": (PERF_TYPE_HARDWARE, 0), "cycles": (PERF_TYPE_HARDWARE, 0),
    "instructions": (PERF_TYPE_HARDWARE, 1), "cache-references": (PERF_TYPE_HARDWARE, 2),
    "cache-misses": (PERF_TYPE_HARDWARE, 3), "branches": (PERF_TYPE_HARDWARE, 4),
    "branch-misses": (PERF_TYPE_HARDWARE, 5),
}
DEFAULT_FREQUENCY = 50  # samples per second per CPU when EVENT names none
_FREQ_BIT = 1 << 10  # perf_event_attr's bit field: disabled, inherit, ..., comm, freq
_FLAGS_OFFSET = 40
POSSIBLE = "/sys/devices/system/cpu/possible"
ONLINE = "/sys/devices/system/cpu/online"


@dataclass(frozen=True)
class PerfEventChoice:
    name: str
    type: int
    config: int
    frequency: int


def parse_event(text: str) -> PerfEventChoice:
    """EVENT[:FREQ] -> the event, e.g. ``cpu-clock:99``."""
    name, _, freq = text.partition(":")
    if name not in EVENTS:
        raise LoaderError(f"--perf-event {text}: unknown event '{name}' (known: "
                          f"{', '.join(sorted(EVENTS))})")
    frequency = DEFAULT_FREQUENCY
    if freq:
        try:
            frequency = int(freq)
        except ValueError:
            frequency = 0
        if frequency <= 0:
            raise LoaderError(f"--perf-event {text}: the frequency is a positive integer "
                              "(samples per second)")
    return PerfEventChoice(name, *EVENTS[name], frequency)


def _cpu_list(path: str) -> list[int]:
    """A kernel CPU list file ("0-3,5") as CPU numbers (parse_cpu_mask_file())."""
    try:
        with open(path) as f:
            text = f.read().strip()
    except OSError as e:
        raise LoaderError(f"reading {path}: {e.strerror}") from e
    cpus: list[int] = []
    for part in filter(None, text.split(",")):
        first, _, last = part.partition("-")
        try:
            cpus.extend(range(int(first), int(last or first) + 1))
        except ValueError:
            raise LoaderError(f"{path}: not a CPU list: {text!r}") from None
    return cpus


def sampling_cpus() -> list[int]:
    """The possible CPUs that are online, in order."""
    online = set(_cpu_list(ONLINE))
    return [cpu for cpu in range(len(_cpu_list(POSSIBLE))) if cpu in online]


def event_attr(choice: PerfEventChoice) -> bytearray:
    attr = bytearray(PERF_ATTR_SIZE)
    attr[0:16] = (choice.type.to_bytes(4, "little") + PERF_ATTR_SIZE.to_bytes(4, "little")
                  + choice.config.to_bytes(8, "little"))
    attr[16:24] = choice.frequency.to_bytes(8, "little")  # sample_freq (with freq = 1)
    attr[_FLAGS_OFFSET:_FLAGS_OFFSET + 8] = _FREQ_BIT.to_bytes(8, "little")
    return attr


def attach_perf_event_every_cpu(obj: LoadedObject, prog: LoadedProgram,
                                choice: PerfEventChoice) -> list[Link]:
    """One sampling event per online CPU with ``prog`` attached to each; the links made
    so far are torn down if one fails."""
    links: list[Link] = []
    try:
        for cpu in sampling_cpus():
            attr = event_attr(choice)
            try:
                pfd = bsys.perf_event_open(attr, -1, cpu, -1, PERF_FLAG_FD_CLOEXEC)
            except OSError as e:
                hint = " (no hardware PMU on this machine?)" \
                    if choice.type == PERF_TYPE_HARDWARE else ""
                raise LoaderError(f"prog '{prog.spec.name}': perf_event_open() of "
                                  f"{choice.name} on CPU {cpu} failed: {e.strerror}{hint}") \
                    from e
            try:
                link = _attach_perf_event(obj, prog, pfd,
                                          f"{choice.name} {choice.frequency} Hz cpu {cpu}")
            except BaseException:
                _close_quietly(pfd)
                raise
            links.append(link)
    except BaseException:
        from bpfreplay.loader.kernel import _destroy_link

        for link in links:
            _destroy_link(link)
        raise
    return links
