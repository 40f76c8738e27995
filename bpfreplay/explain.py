"""``bpfreplay explain``: the recorded calls, decoded.

Default: one strace-like line per call (fields that are zero left out; fds named
after their objects; pointers replaced by what they point at), the probe/phase of
each, and a summary. ``-v``: every field, the instructions with their source lines,
the BTF, logs, keys and values. ``--json``: one JSON object per call (the stable
interface; docs/trace-format.md). ``--extract DIR``: each payload as a file.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Any, TextIO

from bpfreplay.errors import BpfReplayError
from bpfreplay.uapi import BPF_COMMON_ATTRS, cmd_name


def errno_name(value: int | None) -> str | None:
    if value is None:
        return None
    from bpfreplay.uapi.errnos import errno_name as name

    return name(value)


def _hex(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dict):
        return {k: _hex(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_hex(v) for v in value]
    return value


def call_to_json(record: dict[str, Any], explained: Any = None) -> dict[str, Any]:
    """The JSON object of one call record: names where we know them, bytes in hex, and,
    with its explanation, the phase, the probe and every field decoded."""
    out: dict[str, Any] = {
        "index": record.get("index"),
        "pid": record.get("pid"),
        "tid": record.get("tid"),
        "syscall": record.get("syscall"),
    }
    cmd = record.get("cmd", 0)
    if record.get("syscall") == "bpf" and type(cmd) is int:
        out["cmd"] = cmd_name(cmd) or str(cmd & ~BPF_COMMON_ATTRS)
        out["common_attrs"] = bool(cmd & BPF_COMMON_ATTRS)
        out["size"] = record.get("size")
    else:
        out["cmd"] = None
        out["size"] = None
    out["ret"] = record.get("ret")
    errno = record.get("errno")
    out["errno"] = errno_name(errno) if type(errno) is int else None
    args = record.get("args", [])
    out["args"] = [f"{a:#x}" if type(a) is int else repr(a)
                   for a in (args if type(args) is list else [])]
    for key in ("attr", "attr_out", "common", "in", "out", "object", "faults", "replaced",
                "attr_fault", "tracepoint", "pmu", "stack", "ts", "dur"):
        if key in record:
            out[key] = _hex(record[key])
    if explained is not None and explained.line.startswith("<malformed record"):
        out["malformed"] = explained.line.strip("<>")
    elif explained is not None:
        label = explained.label
        out["phase"] = label.phase if label else None
        out["probe"] = label.probe if label else None
        out["text"] = explained.line
        out["fields"] = {name: text for name, text in explained.fields if name != "note"}
        notes = [text for name, text in explained.fields if name == "note"]
        if notes:
            out["notes"] = notes
        if explained.objects:
            out["objects"] = explained.objects
        if explained.info:
            out["info"] = explained.info
        if getattr(explained, "verifier", None) is not None:
            out["verifier"] = explained.verifier.as_json()
        if getattr(explained, "api", None) is not None:
            out["api"] = explained.api
    return out


# json.dumps(obj, separators=..., default=...) makes an encoder per call: one each.
_RAW_JSON = json.JSONEncoder(separators=(",", ":"))
_JSON = json.JSONEncoder(separators=(",", ":"), default=str)


def write_json_lines(records: Iterable[dict[str, Any]], stream: TextIO) -> int:
    count = 0
    for record in records:
        stream.write(_RAW_JSON.encode(call_to_json(record)))
        stream.write("\n")
        count += 1
    return count


def calls_only(records: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    return (r for r in records if r.get("type") == "call")


def _warn(message: str) -> None:
    """A record explain leaves out (``record #N at byte B: what``), said on stderr."""
    from bpfreplay.decode.terminal import escape_control

    print(f"bpfreplay: skipped {escape_control(message)}", file=sys.stderr)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("trace", help="trace file written by bpfreplay record or run")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="every field, instructions with source lines, BTF, logs, values")
    parser.add_argument("--json", action="store_true", help="one JSON object per call")
    parser.add_argument("--call", type=int, action="append", metavar="N",
                        help="only call N (may be repeated)")
    parser.add_argument("--cmd", action="append", metavar="NAME",
                        help="only this bpf command (PROG_LOAD, BPF_MAP_CREATE) or syscall "
                        "(perf_event_open, ioctl, close); may be repeated")
    probes = parser.add_mutually_exclusive_group()
    probes.add_argument("--probes", dest="probes", action="store_const", const=True,
                        help="only libbpf's feature probes")
    probes.add_argument("--no-probes", dest="probes", action="store_const", const=False,
                        help="leave libbpf's feature probes out")
    parser.add_argument("--extract", metavar="DIR",
                        help="write each payload to DIR (0034-prog_load.insns, ...)")
    parser.add_argument("--no-summary", action="store_true", help="leave the summary out")
    parser.add_argument("--raw-json", action="store_true",
                        help="with --json: only the recorded data, no decoding (faster)")


def _selected(explained: Any, args: argparse.Namespace) -> bool:
    record = explained.record
    if args.call and explained.index not in args.call:
        return False
    if args.cmd:
        wanted = {c.upper().removeprefix("BPF_") for c in args.cmd}
        name = (cmd_name(record.get("cmd", -1)) or "").removeprefix("BPF_") \
            if record.get("syscall") == "bpf" else str(record.get("syscall")).upper()
        if name not in wanted:
            return False
    if args.probes is not None:
        is_probe = explained.label is not None and explained.label.probe is not None
        if is_probe != args.probes:
            return False
    return True


def run(args: argparse.Namespace) -> int:
    from bpfreplay.trace import read_trace

    # Records not of the format are left out with a warning (the first pass says it;
    # the decoding pass reads the same file again, silently).
    with read_trace(args.trace, skip_bad=True, on_problem=_warn) as trace:
        try:
            if args.json and args.raw_json:
                write_json_lines(calls_only(trace.records()), sys.stdout)
            else:
                _explain(trace, args)
            sys.stdout.flush()
        except BrokenPipeError:
            # The reader (head, less) is gone: not an error of ours.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            return 0
        if trace.zero_tail:
            print(f"bpfreplay: {args.trace} ends in {trace.trailing_bytes} bytes reserved "
                  f"but never written after its last complete record, which ends at byte "
                  f"{trace.complete_end}: the recorder was probably killed", file=sys.stderr)
        elif trace.truncated:
            print(f"bpfreplay: {args.trace} ends inside a record ({trace.trailing_bytes} "
                  f"bytes ignored after the last complete record, which ends at byte "
                  f"{trace.complete_end}): the recorder was probably killed",
                  file=sys.stderr)
    return 0


def decode_context(header: dict[str, Any]) -> dict[str, Any]:
    """Tracepoint and PMU names for the calls that do not carry them. A version-2 trace
    keeps the recording machine's names in each perf_event_open record (``tracepoint``,
    ``pmu``) and nothing else is asked: another machine's tracefs numbers its
    tracepoints its own way. A version-1 trace kept none: this machine's tracefs and
    sysfs name them (the explain header says so)."""
    kernel = {"kernel_btf_name": _kernel_btf_names() if header.get("kernel") ==
              os.uname().release else None}
    if header.get("version", 1) >= 2:
        return {"tracepoint_name": None, "pmu_name": None, **kernel}
    return {"tracepoint_name": _tracepoint_names(), "pmu_name": _pmu_names(), **kernel}


def _kernel_btf_names() -> Any:
    """id -> name in this machine's vmlinux BTF (kfunc calls), read on first use: asked
    only for a trace recorded on a kernel of this release, whose ids are this BTF's."""
    namer = None

    def lookup(type_id: int) -> str | None:
        nonlocal namer
        if namer is None:
            from bpfreplay.decode.btf_names import type_namer

            try:
                with open("/sys/kernel/btf/vmlinux", "rb") as f:
                    namer = type_namer(f.read())
            except OSError:
                namer = lambda _id: None  # noqa: E731
        return namer(type_id)

    return lookup


def _explain(trace: Any, args: argparse.Namespace) -> None:
    """Two passes over the file: ``trace`` (already open) for the labels, a second
    reader for the decoding (``ExplainStream``)."""
    from bpfreplay.decode.call import ExplainStream
    from bpfreplay.trace import read_trace

    readers = [trace]

    def open_calls() -> Iterator[dict[str, Any]]:
        if readers:
            yield from calls_only(readers.pop().records())
            return
        with read_trace(args.trace, skip_bad=True) as again:
            yield from calls_only(again.records())

    stream = ExplainStream(open_calls, sections=args.verbose and not args.json,
                           **decode_context(trace.header))
    write_explained(stream, trace.header, args, sys.stdout)
    if stream.malformed:
        print(f"bpfreplay: {stream.malformed} call record(s) malformed (shown as such)",
              file=sys.stderr)
    if args.extract:
        print(f"bpfreplay: payloads written to {args.extract}", file=sys.stderr)


def write_explained(explained_calls: Iterable[Any], header: dict[str, Any],
                    args: argparse.Namespace, out: TextIO) -> Summary:
    """The output of ``explain`` for these explained calls (as ``ExplainStream`` or
    ``explain_calls`` give them): text or JSON lines, the summary, payloads extracted."""
    from bpfreplay.explain_output import Printer

    printer = None if args.json else Printer(out, verbose=args.verbose)
    if printer is not None:
        printer.header(header, args.trace)
    stats = Summary()
    extractor = Extractor(args.extract) if args.extract else None
    for explained in explained_calls:
        stats.add(explained)
        if not _selected(explained, args):
            continue
        if extractor is not None:
            extractor.extract(explained)
        if args.json:
            out.write(_JSON.encode(call_to_json(explained.record, explained)))
            out.write("\n")
        else:
            assert printer is not None
            printer.call(explained)
    if extractor is not None:
        extractor.close()
    if printer is not None and not args.no_summary:
        printer.summary(stats)
    return stats


class Summary:
    """Calls by command and phase, and the failures."""

    def __init__(self) -> None:
        self.by_command: Counter[str] = Counter()
        self.by_phase: Counter[str] = Counter()
        self.probes: Counter[str] = Counter()
        self.failures: list[tuple[int, str, str]] = []  # the first FIRST_FAILURES
        self.failed = 0
        self.failed_kinds: Counter[tuple[str, str]] = Counter()  # (command, errno) -> count
        # (index, program, verdict, VerifierStats) of the first loads with statistics
        # that are not probes; all are counted by verdict
        self.verified: list[tuple[int, str, str, Any]] = []
        self.verdicts: Counter[str] = Counter()
        self.verified_probes = 0
        self.total = 0

    FIRST_FAILURES = 64  # enough for any summary line; the rest are counted
    FIRST_PROGRAMS = 10  # programs whose verifier statistics the summary lists

    def add(self, explained: Any) -> None:
        record = explained.record
        self.total += 1
        name = _command(record)
        self.by_command[name] += 1
        label = explained.label
        self.by_phase[label.phase if label else "?"] += 1
        if label and label.probe and record.get("syscall") == "bpf":
            # One entry per probe, per probing function of the public API (whose labels
            # carry their arguments: thousands on bpftool feature probe), and one for
            # all of bpftool's own.
            family = label.probe.split("(", 1)[0]
            self.probes["bpftool" if family.startswith("bpftool:") else family] += 1
        if explained.failed:
            errno = record.get("errno")
            err = (errno_name(errno) if type(errno) is int else None) or "?"
            expected = " (expected: a probe)" if label and label.probe else ""
            self.failed += 1
            self.failed_kinds[(name, err + expected)] += 1
            if len(self.failures) < self.FIRST_FAILURES:
                self.failures.append((explained.index, name, err + expected))
        stats = getattr(explained, "verifier", None)
        if stats is not None:
            errno = record.get("errno")
            verdict = (errno_name(errno) or "?") if explained.failed and type(errno) is int \
                else "loaded"
            self.verdicts[verdict] += 1
            if label and label.probe:
                self.verified_probes += 1
            elif len(self.verified) < self.FIRST_PROGRAMS:
                program = dict(explained.fields).get("prog_name", "").strip('"')
                self.verified.append((explained.index, program or "(no name)", verdict, stats))


def _command(record: dict[str, Any]) -> str:
    """The command name of a bpf() call (``BPF_PROG_LOAD``), else the syscall's name."""
    cmd = record.get("cmd")
    if record.get("syscall") == "bpf" and type(cmd) is int:
        return cmd_name(cmd) or "bpf"
    return str(record.get("syscall"))


_PAYLOAD_EXTENSIONS = {"insns": "insns", "btf": "btf", "log_buf": "log",
                       "btf_log_buf": "log", "common.log_buf": "log", "func_info": "func_info",
                       "line_info": "line_info", "license": "txt", "pathname": "txt"}


_NAME_MAX = 120  # a file name's length, well under NAME_MAX (255)
_UNSAFE_NAME = None  # compiled on first use


def safe_file_name(name: str) -> str:
    """A file name made from names inside a trace: only letters, digits, ``.``, ``_``,
    ``-`` and ``+`` (anything else, ``/`` and NUL among them, becomes ``_``), not ``.``
    or ``..`` nor hidden, at most ``_NAME_MAX`` characters."""
    import re

    global _UNSAFE_NAME
    if _UNSAFE_NAME is None:
        _UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._+-]")
    clean = _UNSAFE_NAME.sub("_", name)[:_NAME_MAX]
    if clean.startswith("."):
        clean = "_" + clean[1:]
    return clean or "_"


class Extractor:
    """``--extract DIR``: each payload as ``DIR/NNNN-command[.in.field].ext``.

    Files go into DIR and nowhere else: names are ``safe_file_name``s opened relative
    to DIR's fd with ``O_NOFOLLOW|O_EXCL`` (a symlink or anything else already at a
    name is removed first, never followed; what cannot be removed, or a name this run
    already wrote, gets the next free ``~N`` suffix). Mode 0600: payloads are tracee
    memory (map keys and values, buffers of a root process), as private as the trace."""

    def __init__(self, directory: str):
        self.directory = directory
        self.used: set[str] = set()
        self._dir_fd = -1

    def _dir(self) -> int:
        if self._dir_fd < 0:
            try:
                os.makedirs(self.directory, exist_ok=True)
                self._dir_fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY
                                       | os.O_CLOEXEC)
            except OSError as e:
                raise BpfReplayError(f"extracting payloads into {self.directory}: "
                                     f"{e.strerror}") from e
        return self._dir_fd

    def _write(self, name: str, data: bytes) -> str:
        dir_fd = self._dir()
        stem, dot, ext = name.rpartition(".") if "." in name else (name, "", "")
        candidate, n = name, 0
        while True:
            if candidate not in self.used:
                try:
                    os.unlink(candidate, dir_fd=dir_fd)
                except FileNotFoundError:
                    pass
                except OSError:
                    pass  # a directory, say: O_EXCL below fails and the next name is tried
                try:
                    fd = os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL
                                 | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dir_fd)
                    break
                except FileExistsError:
                    pass
                except OSError as e:
                    raise BpfReplayError(f"extracting payload {candidate} into "
                                         f"{self.directory}: {e.strerror}") from e
            n += 1
            candidate = f"{stem}~{n}{dot}{ext}"
        self.used.add(candidate)
        path = os.path.join(self.directory, candidate)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        except OSError as e:
            raise BpfReplayError(f"writing payload {path}: {e.strerror}") from e
        finally:
            os.close(fd)
        return path

    def extract(self, explained: Any) -> list[str]:
        """Write each payload of one call; the paths written."""
        record = explained.record
        what = safe_file_name(_command(record).removeprefix("BPF_").lower())
        stem = f"{explained.index:04d}-{what}"
        written = []
        for direction in ("in", "out"):
            buffers = record.get(direction)
            for name, data in (buffers.items() if isinstance(buffers, dict) else ()):
                if not isinstance(data, bytes) or not isinstance(name, str):
                    continue
                ext = _PAYLOAD_EXTENSIONS.get(name, "bin")
                file_name = f"{stem}.{ext}" if ext in ("insns", "btf", "log") \
                    else f"{stem}.{direction}.{name}.{ext}"
                written.append(self._write(safe_file_name(file_name), data))
        if isinstance(record.get("attr"), bytes):
            written.append(self._write(safe_file_name(f"{stem}.attr"), record["attr"]))
        return written

    def close(self) -> None:
        if self._dir_fd >= 0:
            os.close(self._dir_fd)
            self._dir_fd = -1


def extract(explained: Any, directory: str) -> list[str]:
    """Write each payload of a call to ``DIR/NNNN-command.field.ext`` (``Extractor``)."""
    extractor = Extractor(directory)
    try:
        return extractor.extract(explained)
    finally:
        extractor.close()


def _tracepoint_names() -> Any:
    """id -> "category:name" from this machine's tracefs (BPFREPLAY_TRACEFS), read on
    first use."""
    from bpfreplay.tracefs import TracepointNames

    return TracepointNames()


def _pmu_names() -> Any:
    from bpfreplay.tracefs import pmu_types

    return pmu_types().get


__all__ = ["BpfReplayError", "add_arguments", "call_to_json", "run", "write_json_lines"]
