"""The replay's promise, as a property (issue 10's acceptance): replay of any trace,
mutated ones included, issues only the syscalls it may, only on fds it made, undoes
everything it made, and ends with a report (exit 0/1), exit 2 for a trace it cannot
replay, or a clean error; never a traceback.

The traces are real: traces/minimal.mp, libbpf's module-BTF recordings in
tests/data/module_btf, and recordings made now by ``bpfreplay record`` of the
reference's minimal, of refload loading tests/data/replay/counter (the pid in .bss),
tests/corpus's inner_maps (map-in-map values: fds written into maps), pin_load (pins),
sockfilter_app (SO_ATTACH_BPF on a packet socket) and tests/data/names/classic_filter.py
(SO_ATTACH_FILTER). They are mutated as the replay
reads them (attr bytes, fds in attrs and arguments, commands, payloads, instruction
immediates, recorded return values, truncated files, dropped, duplicated and moved
calls, closes in particular) or as the other fuzz harnesses mutate any trace, and
replayed by ``bpfreplay replay``'s own entry point in this process with
``bpfreplay.sys`` answered by tests/fuzz/fake_kernel.py, which fails some calls at
random and writes down every call outside the replay's promise.

Outside bpfreplay.sys, and accounted for here: the private pin directory the replay
makes under --pin-root (a directory of the test, which must be empty afterwards) and
the replay's own trace file; reads of /proc and /sys files (facts about its own fds,
tracepoint ids, PMU types, the loopback's ifindex) are plain reads, no syscall on a BPF
object. The socket() and bind() of the packet socket do pass through bpfreplay.sys: the
fake allows exactly the packet socket, and bind/setsockopt only on it.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import random
import signal
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bpfreplay import sys as bsys
from tests.conftest import kernel_required
from tests.fuzz import harness
from tests.fuzz.conftest import EXAMPLES
from tests.fuzz.fake_kernel import FakeKernel

# Inside `make test` the same examples every run (a case found slow or failing by a long
# random run must not turn CI red by chance; `make fuzz` sets the count and draws anew).
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None,
                derandomize="BPFREPLAY_FUZZ_EXAMPLES" not in os.environ,
                suppress_health_check=list(HealthCheck), print_blob=True)
BPFREPLAY = [sys.executable, "-m", "bpfreplay.cli"]
CORPUS = harness.ROOT / "tests" / "corpus" / "build"


def _record(out: Path, argv: list[str], *, duration: float | None = None) -> Path | None:
    extra = ["--duration", str(duration)] if duration is not None else []
    done = subprocess.run([*BPFREPLAY, "record", "-q", *extra, "-o", str(out), "--", *argv],
                          capture_output=True, timeout=120)
    if out.exists() and out.stat().st_size:
        return out
    if kernel_required():
        pytest.fail(f"recording {argv} failed: {done.stderr[-2000:]!r}")
    return None


@pytest.fixture(scope="session")
def replay_seeds(tmp_path_factory) -> list[harness.Seed]:
    """The kept traces and fresh recordings (those this machine can make)."""
    tmp = tmp_path_factory.mktemp("replay-seeds")
    ref = harness.ROOT / "reference" / "libbpf-bootstrap" / "minimal"
    refload = CORPUS / "refload"
    pin_data = harness.ROOT / "tests" / "data" / "pin" / "build"
    counter = harness.ROOT / "tests" / "data" / "replay" / "build" / "counter.bpf.o"
    classic = harness.ROOT / "tests" / "data" / "names" / "classic_filter.py"
    wanted: list[tuple[str, list[str], float | None, list[Path]]] = [
        ("minimal", [str(ref), "0.2"], None, [ref]),
        ("counter", [str(refload), "-s", "my_pid=pid", str(counter), "0.2"], None,
         [refload, counter]),
        ("inner_maps", [str(refload), str(CORPUS / "inner_maps.bpf.o"), "0.2"], None,
         [refload, CORPUS / "inner_maps.bpf.o"]),
        ("pinned", [str(pin_data / "pin_load"), str(pin_data / "pinned.bpf.o"),
                    f"/sys/fs/bpf/bpfreplay-replay-fuzz-{os.getpid()}"], None,
         [pin_data / "pin_load"]),
        ("sockfilter", [str(CORPUS / "sockfilter_app"), "lo"], 1.0,
         [CORPUS / "sockfilter_app"]),
        ("classic_filter", [sys.executable, str(classic)], None, [classic]),
    ]
    extra = []
    for name, argv, duration, needs in wanted:
        if not all(p.exists() for p in needs):
            if kernel_required():
                pytest.fail(f"{needs} not built (make reference testprogs)")
            continue
        try:
            recorded = _record(tmp / f"fresh-{name}.mp", argv, duration=duration)
        finally:
            if name == "pinned":
                subprocess.run(["rm", "-rf", argv[-1]], check=False)
        if recorded is not None:
            extra.append(recorded)
    return harness.seed_traces(extra)


# ------------------------------------------------------------------ mutations

FOREIGN_FDS = st.sampled_from([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 16, 20, 31, 64,
                               255, 1023, -1, -100, 0x7FFFFFFF, -0x80000000])


def _calls(objects: list[Any]) -> list[int]:
    return [i for i, o in enumerate(objects) if isinstance(o, dict) and o.get("type") == "call"]


@st.composite
def _replay_mutation(draw: st.DrawFn, seed: harness.Seed) -> bytes:
    """The seed changed where the replay looks: fds, commands, attrs, payloads,
    recorded answers, the order and number of calls (closes above all)."""
    objects = [dict(o) if isinstance(o, dict) else o for o in seed.objects]
    for _ in range(draw(st.integers(1, 5))):
        calls = _calls(objects)
        if not calls:
            break
        i = draw(st.sampled_from(calls))
        call = objects[i]
        action = draw(st.sampled_from([
            "attr-fd", "attr-bytes", "arg-fd", "cmd", "payload", "insn-fd", "ret",
            "duplicate-close", "move-close", "drop", "duplicate", "swap", "size",
            "syscall"]))
        attr = call.get("attr")
        if action == "attr-fd" and isinstance(attr, bytes) and len(attr) >= 4:
            data = bytearray(attr)
            at = draw(st.integers(0, len(data) // 4 - 1)) * 4
            data[at:at + 4] = struct.pack("<i", draw(FOREIGN_FDS))
            call["attr"] = bytes(data)
        elif action == "attr-bytes" and isinstance(attr, bytes) and attr:
            data = bytearray(attr)
            for _ in range(draw(st.integers(1, 8))):
                data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
            if draw(st.booleans()):
                data = data[:draw(st.integers(0, len(data)))]
            call["attr"] = bytes(data)
        elif action == "arg-fd" and isinstance(call.get("args"), list) and call["args"]:
            args = list(call["args"])
            args[draw(st.integers(0, len(args) - 1))] = draw(FOREIGN_FDS) & 0xFFFFFFFF \
                if draw(st.booleans()) else draw(FOREIGN_FDS)
            call["args"] = args
        elif action == "cmd":
            call["cmd"] = draw(st.one_of(st.integers(0, 45), st.sampled_from(
                [1 << 16, (1 << 16) | 5, -1, 1 << 32, 255])))
        elif action == "payload":
            holders = [(d, k) for d in ("in", "out") if isinstance(call.get(d), dict)
                       for k, v in call[d].items() if isinstance(v, bytes) and v]
            if holders:
                outer, key = draw(st.sampled_from(holders))
                data = bytearray(call[outer][key])
                for _ in range(draw(st.integers(1, 8))):
                    data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
                if draw(st.booleans()):
                    data = data[:draw(st.integers(0, len(data)))]
                call[outer] = dict(call[outer], **{key: bytes(data)})
        elif action == "insn-fd" and isinstance((call.get("in") or {}).get("insns"), bytes):
            insns = bytearray(call["in"]["insns"])
            if len(insns) >= 16:
                at = draw(st.integers(0, len(insns) // 8 - 2)) * 8
                insns[at] = 0x18  # ld_imm64
                insns[at + 1] = draw(st.sampled_from([1, 2, 3, 4, 5, 6])) << 4
                struct.pack_into("<i", insns, at + 4, draw(FOREIGN_FDS))
                struct.pack_into("<i", insns, at + 12, draw(FOREIGN_FDS))
                call["in"] = dict(call["in"], insns=bytes(insns))
        elif action == "ret":
            call["ret"] = draw(st.one_of(FOREIGN_FDS, st.sampled_from(
                [c.get("ret") for c in (objects[j] for j in calls)
                 if isinstance(c.get("ret"), int)] or [0])))
            if draw(st.booleans()):
                call["errno"] = draw(st.sampled_from([0, 1, 9, 22]))
        elif action in ("duplicate-close", "move-close"):
            closes = [j for j in calls if objects[j].get("syscall") == "close"]
            if closes:
                j = draw(st.sampled_from(closes))
                where = draw(st.integers(0, len(objects)))
                close = objects[j]
                if action == "move-close":
                    del objects[j]
                    where = min(where, len(objects))
                objects.insert(max(where, 1), dict(close))
        elif action == "drop":
            del objects[i]
        elif action == "duplicate":
            objects.insert(i, dict(call))
        elif action == "swap":
            j = draw(st.sampled_from(calls))
            objects[i], objects[j] = objects[j], objects[i]
        elif action == "size":
            call["size"] = draw(st.sampled_from([0, 1, 4, 7, 8, 64, 128, 4096, 4097,
                                                 1 << 20, -1]))
        elif action == "syscall":
            call["syscall"] = draw(st.sampled_from([
                "bpf", "close", "ioctl", "mmap", "munmap", "dup", "dup2", "dup3", "fcntl",
                "setsockopt", "perf_event_open", "memfd_create", "read", "execve"]))
    data = b"".join(msgpack.packb(o, use_bin_type=True) for o in objects)
    if draw(st.integers(0, 9)) == 0:  # a truncated file
        data = data[:draw(st.integers(0, len(data)))]
    return data


@st.composite
def replay_traces(draw: st.DrawFn, seeds: list[harness.Seed]) -> tuple[str, bytes]:
    seed = draw(st.sampled_from(seeds))
    how = draw(st.sampled_from(["as recorded", "replay", "replay", "replay", "any"]))
    if how == "as recorded":
        return seed.name, seed.data
    if how == "replay":
        return seed.name, draw(_replay_mutation(seed))
    return seed.name, draw(harness.mutated([seed]))


# ------------------------------------------------------------------ one replay


# A mutated size may ask for buffers of up to 64 MiB (replaying/buffers.py's limit),
# which the replay's own trace then copies and writes: more time than a decode.
HANG_SECONDS = 3 * harness.HANG_SECONDS


class _Hang(BaseException):
    pass


def _on_alarm(signum: int, frame: Any) -> None:
    raise _Hang(f"a replay took more than {HANG_SECONDS} s")


def replay_with(fake: FakeKernel, trace: Path, pin_root: Path, options: list[str],
                ) -> tuple[int | None, str, str]:
    """``bpfreplay replay`` as the CLI runs it, in this process, against ``fake``: (its
    exit status or None for a clean BpfReplayError, stdout, stderr)."""
    from bpfreplay import replay
    from bpfreplay.errors import BpfReplayError, TraceFormatError

    parser = argparse.ArgumentParser()
    replay.add_arguments(parser)
    args = parser.parse_args([str(trace), "--pin-root", str(pin_root), *options])
    out, err = io.StringIO(), io.StringIO()
    old = signal.signal(signal.SIGALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_REAL, HANG_SECONDS)
    try:
        with bsys.override_syscall(fake), contextlib.redirect_stdout(out), \
                contextlib.redirect_stderr(err):
            try:
                code: int | None = replay.run(args)
            except TraceFormatError as e:  # a trace it cannot replay is exit 2
                raise AssertionError(f"exit 2 expected, not an error: {e}") from e
            except BpfReplayError as e:
                code = None
                FIGURES[f"error: {type(e).__name__}: {str(e)[:60]}"] = \
                    FIGURES.get(f"error: {type(e).__name__}: {str(e)[:60]}", 0) + 1
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    return code, out.getvalue(), err.getvalue()


def check_promise(fake: FakeKernel, pin_root: Path, code: int | None, what: str) -> None:
    assert not fake.violations, f"{what}: {fake.violations}"
    assert not fake.open_fds, f"{what}: left open: {fake.open_fds}"
    assert not fake.mappings, f"{what}: left mapped: {fake.mappings}"
    assert not any(pin_root.iterdir()), f"{what}: left in --pin-root: " \
        f"{list(pin_root.iterdir())}"
    assert code in (0, 1, 2, None), f"{what}: exit {code}"


FIGURES: dict[str, int] = {}
FAILURE = Path(tempfile.gettempdir()) / "bpfreplay-replay-fuzz-failure.mp"


def test_seeds_replay_within_the_promise_and_the_same(replay_seeds):
    """Unmutated, against a fake that answers everything: every call issued, the
    promise kept, and the report's outcome 'same' for every call the recording saw
    succeed the same way (what a fake can answer: fds and 0)."""
    names = {s.name for s in replay_seeds}
    if kernel_required():
        assert {"fresh-minimal.mp", "fresh-counter.mp", "fresh-inner_maps.mp",
                "fresh-pinned.mp", "fresh-sockfilter.mp", "fresh-classic_filter.mp"} <= names, \
            names
    with tempfile.TemporaryDirectory(prefix="bpfreplay-fuzz-") as tmp:
        for seed in replay_seeds:
            path = harness.write(Path(tmp), "t.mp", seed.data)
            pin_root = Path(tmp) / "pins"
            pin_root.mkdir(exist_ok=True)
            fake = FakeKernel(random.Random(0))
            code, out, err = replay_with(fake, path, pin_root, ["-v"])
            check_promise(fake, pin_root, code, seed.name)
            assert code in (0, 1), (seed.name, code, err[-2000:])
            assert "Traceback" not in out + err
            assert fake.calls, seed.name


def test_replay_of_mutated_traces_keeps_its_promise(replay_seeds):
    with tempfile.TemporaryDirectory(prefix="bpfreplay-fuzz-") as tmp:
        pin_root = Path(tmp) / "pins"
        pin_root.mkdir()
        stats = harness.STATS.setdefault("replay (fake kernel)", harness.Stats())

        @FUZZ
        @given(trace=replay_traces(replay_seeds), failure_rate=st.sampled_from(
            [0.0, 0.0, 0.05, 0.2, 0.5, 1.0]), seed=st.integers(0, 1 << 32),
            options=st.sampled_from([[], ["--json"], ["-v"], ["--exact", "--json"],
                                     ["--duration", "0"], ["--duration", "0", "--exact"]]))
        def run(trace: tuple[str, bytes], failure_rate: float, seed: int,
                options: list[str]) -> None:
            name, data = trace
            path = harness.write(Path(tmp), "t.mp", data)
            fake = FakeKernel(random.Random(seed), failure_rate)
            start = time.perf_counter()
            code, out, err = replay_with(fake, path, pin_root, options)
            elapsed = time.perf_counter() - start
            stats.cases += 1
            stats.refused += code is None or code == 2
            if elapsed > stats.max_seconds:
                stats.max_seconds, stats.slowest = elapsed, name
            FIGURES[str(code)] = FIGURES.get(str(code), 0) + 1
            FIGURES["calls"] = FIGURES.get("calls", 0) + len(fake.calls)
            try:
                check_promise(fake, pin_root, code, name)
                if code in (0, 1) and "--json" not in options:
                    assert "replay:" in out and " same, " in out, out[-2000:]
            except AssertionError as e:
                FAILURE.write_bytes(data)  # the last one written is the shrunk case
                raise AssertionError(f"{e} (the trace: {FAILURE}; options {options}, "
                                     f"failure rate {failure_rate}, seed {seed})") from None
            if stats.cases % 500 == 0:
                harness.dump_figures()

        run()
        print(f"\nreplay fuzz: {FIGURES}")


def test_a_perf_event_attr_longer_than_recorded_is_not_reproducible(tmp_path):
    """perf_event_open reads as many bytes as the attr's size field says (0: 64): an
    attr that says more than the recording kept is not issued (the kernel would read
    past the replay's copy), and the replay says why."""
    seed = harness.Seed("minimal.mp", (harness.ROOT / "traces" / "minimal.mp").read_bytes())
    objects = list(seed.objects)
    for i, record in enumerate(objects):
        if isinstance(record, dict) and record.get("syscall") == "perf_event_open":
            attr = bytearray(record["attr"])
            attr[4:8] = struct.pack("<I", len(attr) + 8)
            objects[i] = dict(record, attr=bytes(attr))
    path = harness.write(tmp_path, "t.mp", b"".join(msgpack.packb(o, use_bin_type=True)
                                                    for o in objects))
    pin_root = tmp_path / "pins"
    pin_root.mkdir()
    fake = FakeKernel(random.Random(0))
    code, out, err = replay_with(fake, path, pin_root, ["-v"])
    check_promise(fake, pin_root, code, "minimal.mp")
    from bpfreplay.recording import syscalls as nr

    assert not [c for c in fake.calls if c[0] == nr.PERF_EVENT_OPEN]
    line = next(x for x in out.splitlines() if "perf_event_open" in x)
    assert "skipped: not reproducible here: the perf_event_attr says" in line, out
