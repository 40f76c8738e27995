"""`bpfreplay run --tc/--xdp/--xdp-netlink/--socket/--perf-event` (issue 11 item 4):
in a network namespace of the test's own with a veth pair, the frames the test sends
over the pair are counted by the attached program (read with bpftool from the map the
run holds), and once run has exited, `tc`, `ip link` and bpftool show nothing left.
The perf_event program counts samples on every online CPU."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from bpfreplay.loader import attach_perf_event
from bpfreplay.uapi import struct_layout
from tests.conftest import ROOT, _built, require_kernel, require_tool
from tests.netns import (
    BPFREPLAY,
    Namespace,
    Running,
    array_values,
    bpf_ids,
    exists,
    map_id_by_name,
    send_frames,
    veth_namespace,
)

NET_DATA = ROOT / "tests" / "data" / "net"
FRAMES = 7
COUNT_TC, COUNT_XDP, COUNT_SOCKET = 0, 1, 2  # counters.bpf.c's counts keys
WAIT = 30.0  # seconds a count may take to show (a bound, never asserted on)


@pytest.fixture(scope="module")
def counters() -> Path:
    require_kernel()
    require_tool("bpftool")
    require_tool("tc")
    return _built(NET_DATA / "build" / "counters.bpf.o", NET_DATA)


def _wait_for(read, done) -> object:
    """Poll ``read()`` until ``done(value)`` or WAIT seconds; the last value."""
    deadline = time.monotonic() + WAIT
    value = read()
    while not done(value) and time.monotonic() < deadline:
        time.sleep(0.1)
        value = read()
    return value


def _gone(ids: dict[str, set[int]]) -> bool:
    """Whether every BPF object the run held is gone (the kernel frees maps and
    programs in deferred work after the last fd closes: polled)."""
    def left() -> list[tuple[str, int]]:
        return [(kind, i) for kind, found in ids.items() for i in found if exists(kind, i)]

    remaining = _wait_for(left, lambda v: not v)
    assert not remaining, remaining
    return True


def _left_on_device(ns: Namespace) -> dict[str, str]:
    dev = ns.receiver
    return {
        "qdisc": ns.run(["tc", "qdisc", "show", "dev", dev]),
        "ingress": ns.run(["tc", "filter", "show", "dev", dev, "ingress"]),
        "egress": ns.run(["tc", "filter", "show", "dev", dev, "egress"]),
        "link": ns.run(["ip", "-d", "link", "show", "dev", dev]),
    }


@pytest.mark.parametrize("option, key, shows", [
    (["--tc", "{dev}"], COUNT_TC, ("ingress", "count_tc:[")),
    (["--tc", "{dev}:ingress"], COUNT_TC, ("ingress", "direct-action")),
    (["--xdp", "{dev}"], COUNT_XDP, ("link", " xdp qdisc")),
    (["--xdp", "{dev}", "--xdp-mode", "skb"], COUNT_XDP, ("link", " xdpgeneric qdisc")),
    (["--xdp", "{dev}", "--xdp-mode", "drv"], COUNT_XDP, ("link", " xdp qdisc")),
    (["--xdp-netlink", "{dev}"], COUNT_XDP, ("link", " xdp qdisc")),
    (["--xdp-netlink", "{dev}", "--xdp-mode", "skb"], COUNT_XDP,
     ("link", " xdpgeneric qdisc")),
    (["--socket", "{dev}"], COUNT_SOCKET, None),
], ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_frames_over_the_veth_are_counted_and_nothing_is_left(counters, option, key, shows):
    with veth_namespace() as ns:
        before = _left_on_device(ns)
        run = Running([str(counters), *(o.format(dev=ns.receiver) for o in option)], ns)
        try:
            during = _left_on_device(ns)
            ids = bpf_ids(run.pid)
            counts = map_id_by_name(run.pid, "counts")
            send_frames(ns, FRAMES)
            seen = _wait_for(lambda: array_values(counts), lambda v: v[key] >= FRAMES)
        finally:
            status, _, err = run.stop()
        assert status == 0, err[-3000:]
        assert "Traceback" not in err
        expected = [0, 0, 0]
        expected[key] = FRAMES
        assert seen == expected, err[-2000:]
        if shows is not None:
            where, text = shows
            assert text in during[where] and text not in before[where], during
        after = _left_on_device(ns)
        assert after == before, (before, after)
        assert "clsact" not in after["qdisc"] and "xdp" not in after["link"]
        assert _gone(ids)


def test_a_qdisc_that_was_there_stays_and_only_our_filter_goes(counters):
    """bpf_tc_hook_create()'s EEXIST: the clsact qdisc someone else made is used, and
    left in place with the other filters on it; ours is removed."""
    with veth_namespace() as ns:
        dev = ns.receiver
        ns.run(["tc", "qdisc", "add", "dev", dev, "clsact"])
        # another filter on it (tc's own BPF loader: this kernel has no other classifier)
        ns.run(["tc", "filter", "add", "dev", dev, "ingress", "pref", "7", "bpf", "obj",
                str(counters), "sec", "tc", "da"])
        before = _left_on_device(ns)
        run = Running([str(counters), "--tc", f"{dev}:ingress"], ns)
        try:
            during = _left_on_device(ns)
        finally:
            status, _, err = run.stop()
        assert status == 0, err[-3000:]
        assert "count_tc:[" in during["ingress"] and "counters.bpf.o:[tc]" in during["ingress"]
        assert _left_on_device(ns) == before


def test_egress(counters):
    """--tc DEV:egress puts the filter on the clsact's egress: frames sent from the
    receiver end pass it; nothing on ingress."""
    with veth_namespace() as ns:
        run = Running([str(counters), "--tc", f"{ns.receiver}:egress"], ns)
        try:
            during = _left_on_device(ns)
            counts = map_id_by_name(run.pid, "counts")
            send_frames(Namespace(ns.name, ns.sender, ns.receiver), FRAMES)
            seen = _wait_for(lambda: array_values(counts), lambda v: v[COUNT_TC] >= FRAMES)
        finally:
            status, _, err = run.stop()
        assert status == 0, err[-3000:]
        assert seen[COUNT_TC] == FRAMES
        assert "count_tc:[" in during["egress"] and "count_tc" not in during["ingress"]
        assert "clsact" not in _left_on_device(ns)["qdisc"]


def test_perf_event_samples_on_every_cpu(counters):
    """--perf-event cpu-clock:200: one event per online CPU, each CPU's samples counted
    by the program; after exit the program and its maps are gone."""
    online = attach_perf_event.sampling_cpus()
    run = Running([str(counters), "--perf-event", "cpu-clock:200"])
    try:
        ids = bpf_ids(run.pid)
        samples = map_id_by_name(run.pid, "samples")
        seen = _wait_for(lambda: array_values(samples),
                         lambda v: all(v[cpu] > 0 for cpu in online))
    finally:
        status, _, err = run.stop()
    assert status == 0, err[-3000:]
    assert all(seen[cpu] > 0 for cpu in online), seen
    assert err.count("perf cpu-clock 200 Hz cpu") == len(online)
    assert _gone(ids)


@pytest.mark.parametrize("args, message", [
    (["--tc", "nosuchdev0"], "network device 'nosuchdev0' does not exist"),
    (["--tc", "lo:sideways"], "the direction is ingress or egress"),
    (["--xdp-mode", "skb"], "--xdp-mode: give --xdp DEV or --xdp-netlink DEV"),
    (["--perf-event", "cpu-clock:fast"], "the frequency is a positive integer"),
    (["--perf-event", "no-such-event"], "unknown event 'no-such-event'"),
    (["--perf-event", "cpu-cycles"], "perf_event_open() of cpu-cycles on CPU"),
])
def test_bad_options_are_clear_errors_and_leave_nothing(counters, args, message):
    out = subprocess.run([*BPFREPLAY, "run", str(counters), *args], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 1, out.stderr
    assert message in out.stderr and "Traceback" not in out.stderr, out.stderr
    assert "clsact" not in subprocess.run(["tc", "qdisc", "show", "dev", "lo"],
                                          capture_output=True, text=True).stdout


def test_an_error_after_an_attach_tears_it_down(counters):
    """--tc attached, then --socket on a device that does not exist: a clear error, and
    the filter and the qdisc the tc attach made are gone with the rest."""
    with veth_namespace() as ns:
        before = _left_on_device(ns)
        out = subprocess.run(ns.command([*BPFREPLAY, "run", str(counters), "--tc",
                                         ns.receiver, "--socket", "nosuchdev0"]),
                             cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert out.returncode == 1, out.stderr
        assert "network device 'nosuchdev0' does not exist" in out.stderr
        assert "Traceback" not in out.stderr
        assert _left_on_device(ns) == before


def test_object_without_such_program(counters):
    other = _built(ROOT / "tests" / "corpus" / "build" / "minimal.bpf.o",
                   ROOT / "tests" / "corpus")
    out = subprocess.run([*BPFREPLAY, "run", str(other), "--socket", "lo"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    assert "--socket: object 'minimal_bpf' has no loaded socket filter program" in out.stderr


def test_event_attr_is_the_kernels_layout():
    """The sampling attr our perf events carry, read through the kernel's own
    perf_event_attr layout (the uapi table made from its BTF): type, size, config,
    sample_freq and the freq bit, nothing else."""
    layout = struct_layout("perf_event_attr")
    assert layout is not None
    attr = attach_perf_event.event_attr(attach_perf_event.parse_event("cpu-clock:99"))
    fields = {f.name: f for f in layout.fields}
    read = {name: int.from_bytes(attr[f.offset:f.offset + f.size], "little")
            for name, f in fields.items() if f.name in ("type", "size", "config")}
    assert read == {"type": 1, "size": len(attr), "config": 0}
    freq_union = next(f for f in layout.fields if f.offset == 16)
    assert int.from_bytes(attr[16:16 + freq_union.size], "little") == 99
    flags = int.from_bytes(attr[40:48], "little")
    assert flags == 1 << 10  # the tenth bit after disabled: freq
    assert attach_perf_event.parse_event("cpu-clock").frequency == \
        attach_perf_event.DEFAULT_FREQUENCY


def test_cpu_lists():
    assert attach_perf_event.sampling_cpus()  # this machine's own files
    parse = attach_perf_event._cpu_list
    import tempfile

    with tempfile.NamedTemporaryFile("w", delete=False) as f:
        f.write("0-2,5,7-8\n")
    try:
        assert parse(f.name) == [0, 1, 2, 5, 7, 8]
    finally:
        Path(f.name).unlink()
