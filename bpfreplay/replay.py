"""``bpfreplay run OBJ.bpf.o``: load and attach an object with the Python loader, show
what its programs print, tear everything down; with ``--compare``, prove that the
loader made the same calls as the C reference built on libbpf.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bpfreplay.errors import BpfReplayError, LoaderError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("object", help="the eBPF object file (clang -target bpf output)")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="set a global variable before load (VALUE: an integer or "
                        "'self' for our pid); may be repeated")
    parser.add_argument("--duration", type=float, metavar="SECONDS",
                        help="tear down after this many seconds (default: until Ctrl-C)")
    parser.add_argument("--name", help="object name (default: as bpftool gen skeleton "
                        "names it, e.g. minimal_bpf, which prefixes data map names)")
    parser.add_argument("--compare", nargs="?", const="", metavar="REFERENCE",
                        help="compare our calls with REFERENCE: a trace file, or a command "
                        "to record (default: the C program next to the object, e.g. "
                        "./minimal for minimal.bpf.o)")
    parser.add_argument("--save-trace", metavar="FILE", help="keep the loader's own trace")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="print the whole verifier log on failure")


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
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
    if not os.path.exists(path):
        raise LoaderError(f"opening {path}: no such file")
    spec = load_spec(path, name=args.name or skeleton_name(path))
    trace_path = args.save_trace
    if args.compare is not None and not trace_path:
        trace_path = os.path.join(tempfile.mkdtemp(prefix="bpfreplay-"), "python.mp")
    from bpfreplay.loader.spec import MapKind
    from bpfreplay.trace_pipe import format_patterns, start_printer, stop_printer

    formats = format_patterns(m.initial_value or b"" for m in spec.maps
                              if m.kind == MapKind.RODATA)
    printer = start_printer(formats)
    if formats and not printer:
        print("bpfreplay: no trace pipe (mount tracefs to see bpf_printk output)",
              file=sys.stderr)
    tracer = None
    if trace_path:
        from bpfreplay.recording.self_trace import SelfTracer

        tracer = SelfTracer(trace_path, comment=f"bpfreplay run {path}")
    try:
        with _sigterm_as_interrupt(), (bsys.traced_by(tracer) if tracer
                                       else contextlib.nullcontext()):
            _load_attach_stream(spec, args)
    finally:
        if tracer is not None:
            tracer.close()
        stop_printer(printer)
    if args.compare is None:
        return 0
    assert trace_path is not None
    return _compare(path, args, trace_path)


def _load_attach_stream(spec: Any, args: argparse.Namespace) -> bool:
    """Load, attach, stream; returns whether Ctrl-C ended the run (which, as for the
    reference program, is a normal end: everything is torn down)."""
    from bpfreplay.loader.attach import attach_all
    from bpfreplay.loader.globals import set_global
    from bpfreplay.loader.kernel import LoadOptions, ProgramLoadError, load, open_object

    obj = open_object(spec)
    try:
        for assignment in args.set:
            var = set_global(obj, assignment)
            value = obj.map(var.map_name).read(var.offset, var.size)
            print(f"bpfreplay: {var.section} {var.name} = "
                  f"{int.from_bytes(value, 'little', signed=var.signed)}", file=sys.stderr)
        try:
            load(obj, LoadOptions())
        except ProgramLoadError as e:
            _print_verifier_failure(e, args.verbose)
            raise
        notes = attach_all(obj)
        _print_loaded(obj, notes)
        return _stream(obj, args.duration)
    except KeyboardInterrupt:
        print("\nbpfreplay: interrupted; tearing down", file=sys.stderr)
        return True
    finally:
        obj.close()


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


def _stream(obj: Any, duration: float | None) -> bool:
    """Wait for Ctrl-C or the duration, writing a dot to stderr each second as the
    reference does (each write fires its sys_enter_write program); the printer process
    shows what the programs print."""
    print("bpfreplay: running" + (f" for {duration:g} s" if duration is not None else
                                  "; Ctrl-C to stop"), file=sys.stderr)
    start = time.monotonic()
    while True:
        left = 1.0 if duration is None else duration - (time.monotonic() - start)
        if left <= 0:
            break
        sys.stderr.write(".")
        sys.stderr.flush()
        time.sleep(min(1.0, left))
    sys.stderr.write("\n")
    return False


def _print_verifier_failure(error: Any, verbose: bool) -> None:
    if verbose and error.log:
        print(f"bpfreplay: verifier log of prog '{error.program}':\n{error.log.rstrip()}",
              file=sys.stderr)


# ------------------------------------------------------------------ compare


def _default_reference(object_path: str) -> list[str]:
    """The C program built from the same object: minimal.bpf.o -> ./minimal."""
    obj = Path(object_path)
    stem = obj.name.split(".", 1)[0]
    candidate = obj.with_name(stem)
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return [str(candidate), "0.5"]
    raise BpfReplayError(f"--compare: no reference program next to {object_path} (looked "
                         f"for {candidate}); give a trace file or a command: "
                         "--compare 'PROGRAM ARGS'")


def _reference_trace(object_path: str, reference: str) -> str:
    if reference and os.path.isfile(reference) and not os.access(reference, os.X_OK):
        return reference  # a trace file
    argv = shlex.split(reference) if reference else _default_reference(object_path)
    from bpfreplay.record import record

    out = os.path.join(tempfile.mkdtemp(prefix="bpfreplay-"), "reference.mp")
    print(f"bpfreplay: recording the reference: {shlex.join(argv)}", file=sys.stderr)
    result = record(argv, out, quiet=True, duration=10)
    if result.exit_code != 0:
        raise BpfReplayError(f"--compare: the reference {argv[0]} exited with status "
                             f"{result.exit_code}")
    return out


def _compare(object_path: str, args: argparse.Namespace, ours: str) -> int:
    from bpfreplay.compare import compare_traces
    from bpfreplay.parity_report import print_report

    reference = _reference_trace(object_path, args.compare)
    report = compare_traces(reference, ours)
    print_report(report, reference, ours)
    if args.save_trace is None:
        with contextlib.suppress(OSError):
            os.unlink(ours)
    return 0 if report.at_parity else 1
