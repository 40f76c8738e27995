"""``bpfreplay replay TRACE``: issue a recorded load again on this kernel, from the
recorded bytes alone (no ELF, no libbpf, no application), and report call by call
whether the kernel answered as it did in the recording.

The calls are issued in the bpfreplay process, in their recorded order, with the
recording's fds, ids, pid, pin paths and pointers made ours (bpfreplay/replaying/).
The replay's own calls are traced as `run --save-trace` traces the loader's, and the
report is compare's normalisation and diff of each recorded call with ours. Exit
status: 0 every call had its recorded outcome, 1 some did not (or could not be made
here), 2 a trace that cannot be replayed, 130 interrupted (everything made is torn
down first).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import struct
import sys
import tempfile
import time
from typing import Any

from bpfreplay.errors import BpfReplayError, TraceFormatError

CANNOT_REPLAY, INTERRUPTED = 2, 130
# Calls the recorded program makes when it ends (libbpf's destroy): with --duration they
# wait until the programs have run.
_TEARDOWN_CALLS = ("close", "munmap")
_PERF_EVENT_IOC_DISABLE = 0x2401


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("trace", help="a trace file (bpfreplay record, or run --save-trace)")
    parser.add_argument("--duration", type=float, metavar="SECONDS",
                        help="after the calls that load and attach, let the programs run "
                        "this long (writing a dot to stderr each second) before the "
                        "recorded teardown")
    parser.add_argument("--exact", action="store_true",
                        help="pass the recording process's pid as recorded (in map values "
                        "and perf_event_open) instead of ours")
    parser.add_argument("--save-trace", metavar="FILE", help="keep the replay's own trace")
    parser.add_argument("--pin-root", metavar="DIR", default="/sys/fs/bpf",
                        help="the bpffs under which the replay's private pin directory is "
                        "made (default /sys/fs/bpf)")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="list every call, the same ones too, with its notes")
    parser.add_argument("--json", action="store_true", help="the report as one JSON object")


def run(args: argparse.Namespace) -> int:
    from bpfreplay.decode.terminal import escape_lines

    try:
        trace = load_trace(args.trace)
    except TraceFormatError as e:
        print(f"bpfreplay: error: cannot replay: {escape_lines(str(e))}", file=sys.stderr)
        return CANNOT_REPLAY
    if args.duration is not None and args.duration < 0:
        raise BpfReplayError("replay: --duration must not be negative")
    print(f"bpfreplay: {escape_lines(describe(trace))}", file=sys.stderr)
    our_trace = args.save_trace or os.path.join(tempfile.mkdtemp(prefix="bpfreplay-"),
                                                "replay.mp")
    try:
        try:
            outcome = _replay(trace, args, our_trace)
        except TraceFormatError as e:  # a record the report cannot read: exit 2 too
            print(f"bpfreplay: error: cannot replay: {escape_lines(str(e))}",
                  file=sys.stderr)
            return CANNOT_REPLAY
        if outcome is None:
            return INTERRUPTED
        report = outcome
        if args.json:
            from bpfreplay.replaying.report import as_json

            print(json.dumps(as_json(report, args.save_trace), default=str))
        else:
            from bpfreplay.replaying.report import print_report

            print_report(report, sys.stdout, verbose=args.verbose)
        return report.exit_code
    finally:
        if args.save_trace is None:
            with contextlib.suppress(OSError):
                os.unlink(our_trace)
                os.rmdir(os.path.dirname(our_trace))


def _replay(trace: Any, args: argparse.Namespace, our_trace: str) -> Any:
    """Issue the calls (then wait, then the teardown calls), tear down what is left,
    build the report; None when interrupted."""
    from bpfreplay import sys as bsys
    from bpfreplay.recording.self_trace import SelfTracer
    from bpfreplay.replaying.engine import Replayer, ReplayOptions
    from bpfreplay.replaying.objects import teardown
    from bpfreplay.replaying.report import build_report
    from bpfreplay.run import signals_held, sigterm_as_interrupt
    from bpfreplay.trace import read_trace

    tracer = SelfTracer(our_trace, comment=f"bpfreplay replay {trace.path}")
    replayer = Replayer(trace, ReplayOptions(exact=args.exact, pin_root=args.pin_root),
                        tracer)
    calls = len(trace.calls)
    split = teardown_start(trace.calls) if args.duration is not None else calls
    interrupted = False
    try:
        with sigterm_as_interrupt(), bsys.traced_by(tracer):
            try:
                replayer.replay(0, split)
                if args.duration is not None:
                    _wait(args.duration)
                    replayer.replay(split, calls)
            except KeyboardInterrupt:
                interrupted = True
            finally:
                with signals_held():
                    left = teardown(replayer.state, bsys.close, bsys.munmap)
    finally:
        tracer.close(INTERRUPTED if interrupted else 0)
    if interrupted:
        print(f"\nbpfreplay: interrupted after {len(replayer.results)} of {calls} calls; "
              f"torn down ({len(left)} objects of ours were left)", file=sys.stderr)
        return None
    with read_trace(our_trace) as ours:
        records = list(ours.records())
    try:
        report = build_report(trace, replayer.results, records, exact=args.exact)
    except (KeyError, TypeError, ValueError, IndexError, AttributeError, struct.error) as e:
        raise TraceFormatError(f"comparing the replay of {trace.path} with the recording: "
                               f"a record that is not a call as bpfreplay writes them "
                               f"({type(e).__name__}: {e})") from e
    report.teardown = left
    return report


def _wait(seconds: float) -> None:
    """Let the attached programs run; a dot each second (each write() fires a program
    on sys_enter_write, as the reference's loop does). Ctrl-C ends the wait early, as
    it ends `bpfreplay run`: the teardown is replayed then."""
    print(f"bpfreplay: attached; running for {seconds:g} s", file=sys.stderr)
    start = time.monotonic()
    try:
        while (left := seconds - (time.monotonic() - start)) > 0:
            sys.stderr.write(".")
            sys.stderr.flush()
            time.sleep(min(1.0, left))
    except KeyboardInterrupt:
        pass
    sys.stderr.write("\n")


def teardown_start(calls: list[dict[str, Any]]) -> int:
    """Where the recorded teardown begins: the closes, munmaps and perf disables after
    the last call that is none of these."""
    position = len(calls)
    while position > 0:
        call = calls[position - 1]
        syscall = call.get("syscall")
        args = call.get("args") or [0, 0]
        if syscall in _TEARDOWN_CALLS or (
                syscall == "ioctl" and len(args) > 1 and args[1] == _PERF_EVENT_IOC_DISABLE):
            position -= 1
            continue
        break
    return position


def load_trace(path: str) -> Any:
    """The trace's header, processes and calls, read strictly (a record that is not of
    the format refuses the trace: a call left out would break the fd bookkeeping)."""
    from bpfreplay.replaying.engine import RecordedTrace
    from bpfreplay.trace import read_trace

    with read_trace(path) as trace:
        header = trace.header
        records = list(trace.records())
        truncated = trace.truncated
    machine = header.get("machine")
    here = os.uname().machine
    if machine and machine != here:
        raise TraceFormatError(f"{path} was recorded on {machine}: its syscall numbers and "
                               f"layouts are not this {here} machine's")
    if truncated:
        print(f"bpfreplay: warning: {path} ends inside a record; the calls before it are "
              "replayed", file=sys.stderr)
    processes: dict[int, dict[str, Any]] = {}
    for r in records:
        if r["type"] == "process" and isinstance(r.get("pid"), int):
            processes.setdefault(r["pid"], r)
    calls = [r for r in records if r["type"] == "call"]
    if not processes and calls and isinstance(calls[0].get("pid"), int):
        processes[calls[0]["pid"]] = {"pid": calls[0]["pid"]}
    return RecordedTrace(path, header, calls, processes)


def describe(trace: Any) -> str:
    """What the replay is about to make: before it starts, in one line."""
    from bpfreplay.decode.fds import attr_string, command

    maps, progs, btfs, events, links, pins = [], [], 0, 0, 0, 0
    for call in trace.calls:
        name = command(call)
        if name == "BPF_MAP_CREATE":
            maps.append(attr_string(call, "map_name") or "(no name)")
        elif name == "BPF_PROG_LOAD":
            progs.append(attr_string(call, "prog_name") or "(no name)")
        elif name == "BPF_BTF_LOAD":
            btfs += 1
        elif name in ("BPF_LINK_CREATE", "BPF_RAW_TRACEPOINT_OPEN", "BPF_PROG_ATTACH"):
            links += 1
        elif name == "BPF_OBJ_PIN":
            pins += 1
        elif call.get("syscall") == "perf_event_open":
            events += 1
    header = trace.header
    argv = " ".join(str(a) for a in header.get("argv") or []) or "?"
    parts = [f"{len(maps)} map(s) ({_names(maps)})", f"{len(progs)} program(s) "
             f"({_names(progs)})", f"{btfs} BTF object(s)", f"{events} perf event(s)",
             f"{links} attach(es)"]
    if pins:
        parts.append(f"{pins} pin(s) under a private directory of --pin-root")
    return (f"replaying {len(trace.calls)} calls of {trace.path} ({header.get('recorder')} "
            f"trace of '{argv}' on Linux {header.get('kernel')}; here "
            f"{os.uname().release}): it will make {', '.join(parts)}")


def _names(names: list[str], limit: int = 8) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", and {len(names) - limit} more" if len(names) > limit else "")
