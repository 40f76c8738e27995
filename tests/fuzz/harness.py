"""The fuzz harnesses (issue 8, docs/robustness.md): mutated traces through the trace
reader, through ``bpfreplay explain`` in every mode and, in pairs, through ``compare``.
A ``BpfReplayError`` is a clean refusal; any other exception, or a case that takes
longer than ``HANG_SECONDS``, fails.

The seeds are real traces: traces/minimal.mp, libbpf's recordings in
tests/data/module_btf and, where the reference is built, a fresh recording. The
mutations: bytes flipped, set, inserted, deleted and the file cut (anywhere: inside a
payload this changes what the decoders see, elsewhere the msgpack framing), and
records changed as msgpack objects: a field set to any msgpack value (extreme
integers, floats, strings, bytes, lists, maps), deleted, a record duplicated,
dropped or swapped, or replaced by raw msgpack no Python object packs (a map whose key
is a map or a list, a string that is not UTF-8)."""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import resource
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack
from hypothesis import strategies as st

from bpfreplay.errors import BpfReplayError

ROOT = Path(__file__).resolve().parents[2]
HANG_SECONDS = 10.0

# Raw msgpack objects Python cannot pack: keys that are maps or lists, bad UTF-8,
# reserved bytes, ext types (the timestamp one with a bad length among them).
RAW_OBJECTS = [
    b"\x81\x81\xa1a\x01\x02",            # {{"a": 1}: 2}
    b"\x81\x92\x01\x02\x03",             # {[1, 2]: 3}
    b"\x82\xa4type\xa4call\x81\x90\x00",  # a call whose second key is a list
    b"\xa3\xff\xfe\xfd",                 # a str that is not UTF-8
    b"\x82\xa4type\xa4call\xa7syscall\xa3b\xffp",
    b"\xc1",                             # never used by msgpack
    b"\xd4\xff\x00",                     # timestamp ext of 1 byte
    b"\xc7\x03\x05abc",                  # ext 5
    b"\xdf\xff\xff\xff\xff",             # a map of 2**32-1 entries (cut)
    b"\xc6\x7f\xff\xff\xff",             # bin of 2 GiB (cut)
    b"\x91" * 200 + b"\x00",             # deep nesting
]

INTEGERS = st.one_of(
    st.integers(min_value=-(1 << 63), max_value=(1 << 64) - 1),
    st.sampled_from([0, 1, -1, 5, 0x7F, 0xFF, 1 << 31, (1 << 31) - 1, -(1 << 31), 1 << 32,
                     (1 << 32) - 1, (1 << 63) - 1, -(1 << 63), (1 << 64) - 1, 4096, 4097]))
SCALARS = st.one_of(st.none(), st.booleans(), INTEGERS,
                    st.floats(allow_nan=True, allow_infinity=True),
                    st.text(max_size=24), st.binary(max_size=96))
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=6),
    st.dictionaries(st.one_of(st.text(max_size=12), INTEGERS, st.binary(max_size=4)),
                    inner, max_size=5)), max_leaves=12)
FIELDS = ["type", "index", "pid", "tid", "syscall", "cmd", "size", "attr", "attr_out",
          "common", "args", "ret", "errno", "in", "out", "object", "faults", "replaced",
          "attr_fault", "ts", "dur", "exe", "cmdline", "libbpf", "self_exe", "code",
          "signal", "format", "version", "argv", "start_time", "possible_cpus", "kernel",
          "recorder", "machine", "comment"]


# ------------------------------------------------------------------ seeds


@dataclass
class Seed:
    name: str
    data: bytes = field(repr=False)
    objects: list[Any] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        self.objects = list(msgpack.Unpacker(io.BytesIO(self.data), raw=False,
                                             strict_map_key=False))


def seed_traces(extra: list[Path] = ()) -> list[Seed]:
    paths = [ROOT / "traces" / "minimal.mp",
             *sorted((ROOT / "tests" / "data" / "module_btf").glob("*.mp"))[:2], *extra]
    return [Seed(p.name, p.read_bytes()) for p in paths if p.exists()]


def seed_pairs(seeds: list[Seed]) -> list[tuple[Seed, Seed]]:
    """Traces of the same program: minimal.mp and a fresh recording of minimal (or
    itself), a module_btf recording here and on Debian 6.12."""
    by_name = {s.name: s for s in seeds}
    minimal = by_name["minimal.mp"]
    pairs = [(minimal, by_name.get("fresh-minimal.mp", minimal))]
    for seed in seeds:
        other = ROOT / "tests" / "data" / "module_btf" / "6.12" / seed.name
        if seed.name != "minimal.mp" and other.exists():
            pairs.append((seed, Seed(seed.name, other.read_bytes())))
    return pairs


# ------------------------------------------------------------------ mutations


def _pack(obj: Any) -> bytes:
    try:
        return msgpack.packb(obj, use_bin_type=True)
    except (TypeError, ValueError, OverflowError):
        return msgpack.packb(None)


@st.composite
def _structural(draw: st.DrawFn, seed: Seed) -> bytes:
    objects = [obj if not isinstance(obj, dict) else dict(obj) for obj in seed.objects]
    packed: list[bytes | None] = [None] * len(objects)
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(objects) - 1))
        action = draw(st.sampled_from(["set", "set", "set", "delete", "flip-payload",
                                       "duplicate", "drop", "swap", "raw", "replace"]))
        target = objects[i]
        if action == "set" and isinstance(target, dict):
            keys = sorted(target, key=str)
            key = draw(st.sampled_from(FIELDS) | st.sampled_from(keys) if keys
                       else st.sampled_from(FIELDS))
            target[key] = draw(VALUES)
            packed[i] = None
        elif action == "delete" and isinstance(target, dict) and target:
            target.pop(draw(st.sampled_from(sorted(target, key=str))))
            packed[i] = None
        elif action == "flip-payload" and isinstance(target, dict):
            payloads = [(k, None) for k in ("attr", "attr_out", "common")
                        if isinstance(target.get(k), bytes) and target[k]]
            payloads += [(d, k) for d in ("in", "out") if isinstance(target.get(d), dict)
                         for k, v in target[d].items() if isinstance(v, bytes) and v]
            if payloads:
                outer, inner = draw(st.sampled_from(payloads))
                holder = target if inner is None else dict(target[outer])
                name = outer if inner is None else inner
                data = bytearray(holder[name])
                for _ in range(draw(st.integers(1, 8))):
                    data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
                if draw(st.booleans()):
                    data = data[:draw(st.integers(0, len(data)))]
                holder[name] = bytes(data)
                if inner is not None:
                    target[outer] = holder
                packed[i] = None
        elif action == "duplicate":
            objects.insert(i, objects[i])
            packed.insert(i, packed[i])
        elif action == "drop" and len(objects) > 1:
            del objects[i], packed[i]
        elif action == "swap":
            j = draw(st.integers(0, len(objects) - 1))
            objects[i], objects[j] = objects[j], objects[i]
            packed[i], packed[j] = packed[j], packed[i]
        elif action == "raw":
            packed[i] = draw(st.sampled_from(RAW_OBJECTS))
        elif action == "replace":
            objects[i] = draw(VALUES)
            packed[i] = None
    return b"".join(p if p is not None else _pack(o) for p, o in zip(packed, objects, strict=True))


@st.composite
def _bytes_changed(draw: st.DrawFn, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        if not out:
            break
        action = draw(st.sampled_from(["flip", "set", "insert", "delete", "cut"]))
        at = draw(st.integers(0, len(out) - 1))
        if action == "flip":
            out[at] ^= 1 << draw(st.integers(0, 7))
        elif action == "set":
            out[at] = draw(st.sampled_from([0x00, 0xFF, 0xC1, 0x7F, 0x80, 0xDF, 0xC6]))
        elif action == "insert":
            out[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif action == "delete":
            del out[at:at + draw(st.integers(1, 64))]
        else:
            del out[at:]
    return bytes(out)


@st.composite
def mutated(draw: st.DrawFn, seeds: list[Seed]) -> bytes:
    """One seed, changed by structure, by bytes, or both."""
    seed = draw(st.sampled_from(seeds))
    how = draw(st.sampled_from(["structure", "bytes", "both"]))
    data = seed.data
    if how != "bytes":
        data = draw(_structural(seed))
    if how != "structure":
        data = draw(_bytes_changed(data))
    return data


# ------------------------------------------------------------------ running a case


class Hang(BaseException):
    """A case that took longer than HANG_SECONDS (BaseException: nothing swallows it)."""


@dataclass
class Stats:
    cases: int = 0
    refused: int = 0  # a BpfReplayError: a clean message
    max_seconds: float = 0.0
    slowest: str = ""

    def figures(self) -> dict[str, Any]:
        return {"cases": self.cases, "clean_errors": self.refused,
                "max_seconds_per_case": round(self.max_seconds, 3),
                "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                                     / 1024, 1)}


STATS: dict[str, Stats] = {}


def _on_alarm(signum: int, frame: Any) -> None:
    raise Hang(f"a case took more than {HANG_SECONDS} s")


@contextlib.contextmanager
def case(harness: str, what: str = ""):
    """Run one case: a BpfReplayError counts as refused, anything else propagates."""
    stats = STATS.setdefault(harness, Stats())
    old = signal.signal(signal.SIGALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_REAL, HANG_SECONDS)
    start = time.perf_counter()
    try:
        yield
    except BpfReplayError:
        stats.refused += 1
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
        elapsed = time.perf_counter() - start
        stats.cases += 1
        if elapsed > stats.max_seconds:
            stats.max_seconds, stats.slowest = elapsed, what
        if stats.cases % 500 == 0:
            dump_figures()


def dump_figures(exitstatus: int | None = None) -> None:
    """The figures so far into BPFREPLAY_FUZZ_REPORT (every 500 cases and at the end)."""
    import json

    report = os.environ.get("BPFREPLAY_FUZZ_REPORT")
    if not report or not STATS:
        return
    figures: dict[str, Any] = {name: s.figures() for name, s in STATS.items()}
    if exitstatus is not None:
        figures["_exitstatus"] = exitstatus
    Path(report).write_text(json.dumps(figures, indent=2) + "\n")


def write(directory: Path, name: str, data: bytes) -> Path:
    path = directory / name
    path.write_bytes(data)
    return path


def read_all(path: Path) -> None:
    """The reader, strict then skipping; its offsets must add up to the file."""
    from bpfreplay.trace import read_trace

    size = path.stat().st_size
    for skip in (False, True):
        try:
            with read_trace(str(path), skip_bad=skip) as trace:
                for _ in trace.records():
                    pass
                assert trace.complete_end + trace.trailing_bytes == size, \
                    (trace.complete_end, trace.trailing_bytes, size)
                assert trace.truncated == (trace.trailing_bytes > 0)
        except BpfReplayError:
            if skip:
                raise
            continue


EXPLAIN_MODES = [(), ("-v",), ("--json",), ("--json", "--raw-json"), ("-v", "--extract"),
                 ("--json", "--extract"), ("--probes",), ("--no-probes", "-v"),
                 ("--cmd", "PROG_LOAD", "-v"), ("--call", "3", "--json")]


def explain(path: Path, mode: tuple[str, ...], extract_dir: Path) -> None:
    """``bpfreplay explain`` in this process, output to memory."""
    from bpfreplay import explain as command

    options: list[str] = []
    for option in mode:
        options += ["--extract", str(extract_dir)] if option == "--extract" else [option]
    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    args = parser.parse_args([str(path), *options])
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        command.run(args)
    if extract_dir.exists():
        for entry in extract_dir.iterdir():
            assert entry.is_file() and not entry.is_symlink(), entry
            os.unlink(entry)


def compare(reference: Path, ours: Path) -> None:
    """``bpfreplay compare``: the engine and its report, output to memory."""
    from bpfreplay.compare import compare_trace_files
    from bpfreplay.parity_report import print_report

    report = compare_trace_files(str(reference), str(ours))
    print_report(report, str(reference), str(ours), out=io.StringIO())
