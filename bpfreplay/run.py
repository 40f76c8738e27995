"""``bpfreplay run OBJ.bpf.o``: load and attach an object with the Python loader, show
what its programs print, tear everything down; with ``--compare``, prove that the
loader made the same calls as the C reference built on libbpf.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bpfreplay.errors import BpfReplayError, LoaderError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("object", help="the eBPF object file (clang -target bpf output)")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="set a global variable before load (VALUE: an integer or "
                        "'self' for our pid); may be repeated")
    parser.add_argument("--duration", type=float, metavar="SECONDS",
                        help="tear down after this many seconds (default: until Ctrl-C); "
                        "with --compare a command reference runs as long (default 3 s)")
    parser.add_argument("--name", help="object name (default: as bpftool gen skeleton "
                        "names it, e.g. minimal_bpf, which prefixes data map names)")
    parser.add_argument("--pin-root", metavar="DIR",
                        help="where maps pinned by name are looked for and pinned "
                        "(libbpf's pin_root_path; default /sys/fs/bpf)")
    parser.add_argument("--compare", nargs="?", const="", metavar="REFERENCE",
                        help="compare our calls with REFERENCE: a trace file, or a command "
                        "recorded first (default: the C program next to the object, e.g. "
                        "./minimal for minimal.bpf.o); without --set, the globals it "
                        "wrote are taken. Exit 0 full parity, 3 parity of a failed load, "
                        "1 differences, 130 interrupted")
    parser.add_argument("--save-trace", metavar="FILE", help="keep the loader's own trace")
    parser.add_argument("--self-exe", metavar="PATH",
                        help="the program /proc/self/exe stands for in uprobe targets "
                        "(SEC(\"uprobe//proc/self/exe:FUNC\")); default with --compare: "
                        "the reference's program")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="print the whole verifier log on failure")
    parser.add_argument("--dump-maps", action="store_true",
                        help="print every map's contents at exit, as `bpftool map dump` "
                        "prints them (through the map's BTF, else in hex)")
    parser.add_argument("--interval", type=float, metavar="SECONDS",
                        help="with --dump-maps, also print them every SECONDS while running")
    from bpfreplay import run_attach, run_events

    run_attach.add_arguments(parser)
    run_events.add_arguments(parser)


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def run(args: argparse.Namespace) -> int:
    from bpfreplay import sys as bsys
    from bpfreplay.loader.spec import load_spec, skeleton_name

    path = args.object
    interval = getattr(args, "interval", None)
    if interval is not None and (not interval > 0 or not args.dump_maps):
        raise BpfReplayError(f"--interval {interval:g}: needs --dump-maps and a number of "
                             "seconds above 0")
    if not os.path.exists(path):
        raise LoaderError(f"opening {path}: no such file")
    try:
        spec = load_spec(path, name=args.name or skeleton_name(path))
    except LoaderError as e:
        if args.compare is None:
            raise
        return _compare_failed_open(path, args, e)
    reference = None
    if args.compare is not None:
        # Before our load: the reference's globals are ours to take (no --set), and a
        # reference that runs beside our attached programs could fire them.
        reference = _reference(path, args)
        if reference is None:
            return 130
    self_exe = _self_exe(args, reference)
    trace_path = args.save_trace
    if reference is not None and not trace_path:
        import tempfile

        trace_path = os.path.join(tempfile.mkdtemp(prefix="bpfreplay-"), "python.mp")
    from bpfreplay.loader.spec import MapKind
    from bpfreplay.trace_pipe import (
        calls_trace_printk,
        format_patterns,
        start_printer,
        stop_printer,
    )

    # The trace pipe has one reader: take it only if a program prints there (the
    # BPF_SEQ_PRINTF formats of an iterator's .rodata are no reason to).
    formats = format_patterns(m.initial_value or b"" for m in spec.maps
                              if m.kind == MapKind.RODATA) \
        if any(calls_trace_printk(p.insns) for p in spec.programs) else []
    printer = start_printer(formats)
    if formats and not printer:
        print("bpfreplay: no trace pipe (mount tracefs to see bpf_printk output)",
              file=sys.stderr)
    tracer = None
    if trace_path:
        from bpfreplay.recording.self_trace import SelfTracer

        tracer = SelfTracer(trace_path, comment=f"bpfreplay run {path}", self_exe=self_exe)
    from bpfreplay.loader.uprobe import self_exe_standing_for

    try:
        with sigterm_as_interrupt(), self_exe_standing_for(self_exe), (
                bsys.traced_by(tracer) if tracer else contextlib.nullcontext()):
            ended = _load_attach_stream(spec, args, reference)
    finally:
        if tracer is not None:
            tracer.close()
        stop_printer(printer)
    if ended == INTERRUPTED:
        print("bpfreplay: interrupted before the programs were attached: not a completed "
              "run" + ("; no comparison" if reference is not None else ""), file=sys.stderr)
        if reference is not None and args.save_trace is None:
            _remove(trace_path)
        return 130
    if reference is None:
        return 0
    assert trace_path is not None
    return _compare(reference, args, trace_path, failed=ended == FAILED)


# How _load_attach_stream ended.
RAN = "ran"  # the duration passed, or Ctrl-C ended the stream: a normal end
INTERRUPTED = "interrupted"  # Ctrl-C before the programs were attached
FAILED = "failed"  # our load or attach failed (with --compare: compared, not raised)


def _load_attach_stream(spec: Any, args: argparse.Namespace,
                        reference: _Reference | None = None) -> str:
    """Load, attach, stream; everything is torn down however it ends. Returns RAN,
    INTERRUPTED or FAILED; a failed load or attach is raised without --compare, and
    with it printed and left for the comparison (the self trace holds the failing
    call). The object's stages are the Python API's (bpfreplay.api.Object)."""
    from bpfreplay.api import Object
    from bpfreplay.loader.kernel import ProgramLoadError
    from bpfreplay.run_events import close_readers, event_reading, open_readers, stream_events

    reading = event_reading(spec, args)  # --event: checked before anything is loaded
    api_object = Object.from_spec(spec, pin_root=args.pin_root)
    obj = api_object.loaded
    attached = False
    try:
        for assignment in args.set:
            var = api_object.set_global(assignment)
            value = obj.map(var.map_name).read(var.offset, var.size)
            print(f"bpfreplay: {var.section} {var.name} = "
                  f"{int.from_bytes(value, 'little', signed=var.signed)}", file=sys.stderr)
        if reference is not None and reference.images:
            from bpfreplay.reference_globals import carry_values

            for carried in carry_values(obj, reference.images):
                print(f"bpfreplay: from the reference: {carried.describe()}", file=sys.stderr)
        step = "load"
        try:
            api_object.load()
            step = "attach"
            notes = api_object.attach()
            from bpfreplay.run_attach import attach_requested

            attach_requested(obj, args)
        except LoaderError as e:
            if isinstance(e, ProgramLoadError):
                _print_verifier_failure(e, args.verbose)
            if reference is None:
                raise
            print(f"bpfreplay: error: {e}", file=sys.stderr)
            print(f"bpfreplay: our {step} failed; comparing it with the reference",
                  file=sys.stderr)
            return FAILED
        attached = True
        _print_loaded(obj, notes)
        from bpfreplay.loader.iterator import print_iterators  # after attach, as task_iter

        print_iterators(obj, sys.stdout, sys.stderr)
        dumper = _map_dumper(obj, args)
        try:
            if reading is None:
                _stream(obj, args.duration, dumper, getattr(args, "interval", None))
            else:  # (--interval's periodic dumps are not interleaved with the records)
                open_readers(obj, reading)
                stream_events(reading, args.duration)
        except KeyboardInterrupt:
            if dumper is None:
                raise
            print("\nbpfreplay: interrupted; tearing down", file=sys.stderr)
        if dumper is not None:
            dumper.dump("at exit")
        return RAN
    except KeyboardInterrupt:
        print("\nbpfreplay: interrupted; tearing down", file=sys.stderr)
        return RAN if attached else INTERRUPTED
    finally:
        with signals_held():
            try:
                if reading is not None:
                    close_readers(reading)
            finally:
                api_object.close()


def _print_loaded(obj: Any, notes: list[str]) -> None:
    out = sys.stderr
    for warning in obj.warnings:
        print(f"bpfreplay: warning: {warning}", file=out)
    for m in obj.maps:
        print(f"bpfreplay: map  {m.spec.name:<16} fd {m.fd:<3} type {m.spec.type} "
              f"key {m.spec.key_size} value {m.spec.value_size} entries {m.spec.max_entries}",
              file=out)
    for p in obj.programs:
        print(f"bpfreplay: prog {p.spec.name:<16} fd {p.fd:<3} section {p.spec.section}",
              file=out)
    for link in obj.links:
        print(f"bpfreplay: link {link.program:<16} fd {link.fd:<3} {link.kind} {link.target}",
              file=out)
    for note in notes:
        print(f"bpfreplay: {note}", file=out)


def _map_dumper(obj: Any, args: argparse.Namespace) -> Any:
    """A MapDumper of every map for --dump-maps (None without it)."""
    if not getattr(args, "dump_maps", False):
        return None
    from bpfreplay.map_contents import MapDumper

    return MapDumper([(m.spec.name, m.fd) for m in obj.maps], sys.stdout, sys.stderr)


def _stream(obj: Any, duration: float | None, dumper: Any = None,
            interval: float | None = None) -> bool:
    """Wait for Ctrl-C or the duration, writing a dot to stderr each second as the
    reference does (each write fires its sys_enter_write program); the printer process
    shows what the programs print. With a dumper and an interval, the maps are printed
    every ``interval`` seconds."""
    print("bpfreplay: running" + (f" for {duration:g} s" if duration is not None else
                                  "; Ctrl-C to stop"), file=sys.stderr)
    start = time.monotonic()
    next_dot = next_dump = start
    if dumper is not None and interval:
        next_dump = start + interval
    while True:
        now = time.monotonic()
        left = 1.0 if duration is None else duration - (now - start)
        if left <= 0:
            break
        if now >= next_dot:
            sys.stderr.write(".")
            sys.stderr.flush()
            next_dot += 1.0
        if dumper is not None and interval and now >= next_dump:
            dumper.dump(f"after {now - start:.1f} s")
            next_dump += interval
        wake = min(next_dot, next_dump) if dumper is not None and interval else next_dot
        time.sleep(max(0.0, min(wake - time.monotonic(), left)))
    sys.stderr.write("\n")
    return False


def _print_verifier_failure(error: Any, verbose: bool) -> None:
    if verbose and error.log:
        print(f"bpfreplay: verifier log of prog '{error.program}':\n{error.log.rstrip()}",
              file=sys.stderr)


# ------------------------------------------------------------------ compare

# How long a command reference runs when --duration is absent (then stopped as
# `bpfreplay record --duration` stops a program: SIGINT, SIGKILL 2 s later).
REFERENCE_DURATION = 3.0


@dataclass
class _Reference:
    trace: str  # the reference's trace file
    exit_code: int | None = None  # of its process (None: not in the trace)
    images: dict[str, Any] = field(default_factory=dict)  # reference_globals.ReferenceImage
    program: str | None = None  # a command reference's program, as an absolute path


def _self_exe(args: argparse.Namespace, reference: _Reference | None) -> str | None:
    """The program /proc/self/exe stands for in our uprobe targets: --self-exe, else the
    reference's program (a command's, or the ``exe`` a trace file recorded, if it is on
    this machine): what /proc/self/exe is in the reference's process; resolved as
    /proc/PID/exe shows a program (absolute, symlinks resolved)."""
    given = getattr(args, "self_exe", None)
    if given:
        if not os.path.isfile(given):
            raise BpfReplayError(f"--self-exe {given}: no such file")
        return os.path.realpath(given)
    return reference.program if reference is not None else None


def _program_path(program: str) -> str | None:
    import shutil

    found = program if "/" in program else shutil.which(program)
    return os.path.realpath(found) if found and os.path.isfile(found) else None


def _default_reference(object_path: str) -> list[str]:
    """The C program built from the same object: minimal.bpf.o -> ./minimal, run without
    arguments (until it is stopped, as a user's Ctrl-C stops it)."""
    obj = Path(object_path)
    stem = obj.name.split(".", 1)[0]
    candidate = obj.with_name(stem)
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return [str(candidate)]
    raise BpfReplayError(f"--compare: no reference program next to {object_path} (looked "
                         f"for {candidate}); give a trace file or a command: "
                         "--compare 'PROGRAM ARGS'")


def _reference(object_path: str, args: argparse.Namespace) -> _Reference | None:
    """The reference's trace: the file given, or the command (default: the program next
    to the object) recorded now. None when Ctrl-C interrupted the recording. Without
    --set, the global-data images the reference wrote come along."""
    import shlex

    given: str = args.compare
    if given and os.path.isfile(given) and not os.access(given, os.X_OK):
        reference = _Reference(given, _trace_exit_code(given), program=_trace_program(given))
    else:
        argv = shlex.split(given) if given else _default_reference(object_path)
        recorded = _record_reference(argv, args.duration)
        if recorded is None:
            return None
        reference = _Reference(*recorded, program=_program_path(argv[0]))
    if not args.set:
        from bpfreplay.reference_globals import reference_images

        reference.images = reference_images(reference.trace)
    return reference


def _record_reference(argv: list[str], duration: float | None) -> tuple[str, int] | None:
    """Record ``argv`` for ``duration`` seconds (REFERENCE_DURATION without one), stopped
    the way `bpfreplay record --duration` stops a program. Its exit status is shown and
    never a reason to refuse it: a reference that fails on this kernel is still a
    reference. Child processes are followed (a reference may be a script). Returns the
    trace and the exit status, or None if Ctrl-C (or SIGTERM) interrupted the recording:
    the recorder then stopped the reference the same way, and it is gone."""
    import shlex
    import tempfile

    from bpfreplay.record import Recorder, RecordOptions

    class ReferenceRecorder(Recorder):
        interrupted = False

        def _on_stop_signal(self, signum: int, frame: object) -> None:
            self.interrupted = True
            super()._on_stop_signal(signum, frame)

    seconds = REFERENCE_DURATION if duration is None else duration
    out = os.path.join(tempfile.mkdtemp(prefix="bpfreplay-"), "reference.mp")
    print(f"bpfreplay: recording the reference for {seconds:g} s: {shlex.join(argv)}",
          file=sys.stderr)
    recorder = ReferenceRecorder(RecordOptions(argv, out, seconds, follow_forks=True,
                                               quiet=True))
    affinity = os.sched_getaffinity(0)
    try:
        result = recorder.run()
    finally:
        os.sched_setaffinity(0, affinity)  # the recorder pinned us to the tracee's CPU
    print(f"bpfreplay: reference {argv[0]} exited with status {result.exit_code} "
          f"({result.calls} calls recorded)", file=sys.stderr)
    if recorder.interrupted:
        print("bpfreplay: interrupted while recording the reference (stopped); nothing "
              "of ours was loaded", file=sys.stderr)
        return None
    return out, result.exit_code


def _trace_exit_code(path: str) -> int | None:
    """The exit status a trace file recorded for its first process."""
    from bpfreplay.trace import read_trace

    pid, code = None, None
    with read_trace(path) as trace:
        for record in trace.records():
            if record["type"] == "process" and pid is None:
                pid = record.get("pid")
            elif record["type"] == "exit" and (record.get("pid") == pid or pid is None):
                # (a program that made no call has no process record: its exit is first)
                code = record.get("code")
                pid = record.get("pid") if pid is None else pid
    return code if isinstance(code, int) else None


def _trace_program(path: str) -> str | None:
    """The program of a trace's first process (its ``exe``), if that file is here."""
    from bpfreplay.compare import self_exes
    from bpfreplay.trace import read_trace

    with read_trace(path) as trace:
        exe = next(iter(self_exes(r for r in trace.records() if r["type"] == "process").values()),
                   None)
    return exe if exe and os.path.isfile(exe) else None


def _compare_failed_open(path: str, args: argparse.Namespace, error: LoaderError) -> int:
    """Our open of the object failed (bpf_object__open's work: no syscall made): the
    reference may fail the same way, so it is recorded and compared all the same, with
    an empty trace of ours."""
    print(f"bpfreplay: error: {error}", file=sys.stderr)
    print("bpfreplay: our open failed; comparing it with the reference", file=sys.stderr)
    reference = _reference(path, args)
    if reference is None:
        return 130
    import tempfile

    from bpfreplay.recording.self_trace import SelfTracer

    ours = args.save_trace or os.path.join(tempfile.mkdtemp(prefix="bpfreplay-"),
                                           "python.mp")
    SelfTracer(ours, comment=f"bpfreplay run {path} (open failed: {error})").close()
    return _compare(reference, args, ours, failed=True, object_path=None)


def _compare(reference: _Reference, args: argparse.Namespace, ours: str, *,
             failed: bool, object_path: str | None = "") -> int:
    """Print the parity report; exit status 0 (full parity of a working load), 3 (parity
    of a failed load: both failed at the same call, same errno and log) or 1."""
    from bpfreplay.compare import compare_traces
    from bpfreplay.parity_report import print_report

    if object_path == "":
        object_path = args.object
    report = compare_traces(reference.trace, ours, object_path=object_path)
    print_report(report, reference.trace, ours)
    if args.save_trace is None:
        _remove(ours)
    outcome = getattr(report, "outcome", None)
    if outcome is None:  # a compare without outcomes: parity of a working load only
        outcome = "differences" if not report.at_parity else (
            "failed_parity" if failed else "parity")
    if outcome == "parity" and failed:
        # Our load or attach failed before asking the kernel (kprobes missing, say), so
        # neither trace holds a failing call: a failure at parity when the reference,
        # having made the same calls, failed too.
        if reference.exit_code:
            print("parity: but both failed without a failing kernel call (ours: the "
                  f"error above; the reference exited with status {reference.exit_code})"
                  ": PARITY OF A FAILED LOAD")
            return 3
        print("bpfreplay: every call matched, but our load failed where the reference's "
              "did not", file=sys.stderr)
        return 1
    return {"parity": 0, "failed_parity": 3}.get(outcome, 1)


def _remove(path: str | None) -> None:
    if path:
        with contextlib.suppress(OSError):
            os.unlink(path)


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Ctrl-C and SIGTERM wait while the block runs (teardown is not cut short); one
    that came meanwhile is raised after it."""
    held = {signal.SIGINT, signal.SIGTERM}
    old = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
