"""Command line: argument parsing and presentation only. Each command imports what it
needs when it runs, so that start-up stays small."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from bpfreplay import __version__
from bpfreplay.errors import BpfReplayError


def _record(args: argparse.Namespace) -> int:
    from bpfreplay.record import record

    argv = list(args.program)
    if argv and argv[0] == "--":
        argv = argv[1:]
    if bool(argv) == (args.pid is not None):
        raise BpfReplayError("record: give either a program (bpfreplay record -- PROGRAM ...) "
                             "or -p PID")
    result = record(argv, args.output, duration=args.duration, follow_forks=args.follow_forks,
                    pin_cpu=not args.no_pin, quiet=args.quiet, comment=args.comment,
                    attach_pid=args.pid)
    if args.pid is not None:
        argv = [f"pid {args.pid}"]
    if not args.quiet:
        print(f"bpfreplay: recorded {result.calls} calls of {argv[0]} into {result.path} "
              f"({result.stops} ptrace stops); exit status {result.exit_code}", file=sys.stderr)
    return result.exit_code


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bpfreplay",
        description="Record, explain and reproduce the bpf() calls that load an eBPF program.",
    )
    parser.add_argument("--version", action="version", version=f"bpfreplay {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    rec = commands.add_parser(
        "record", help="run a program under ptrace and record its bpf() calls",
        description="Run PROGRAM under ptrace and record every bpf() call it makes (and the "
        "perf_event_open/ioctl/mmap/close/dup calls on BPF objects) into a trace file.",
    )
    rec.add_argument("-o", "--output", default="trace.mp", help="trace file (default: trace.mp)")
    rec.add_argument("--duration", type=float, metavar="SECONDS",
                     help="stop the program (SIGINT, then SIGKILL) after this many seconds")
    rec.add_argument("-f", "--follow-forks", action="store_true",
                     help="also record the program's child processes")
    rec.add_argument("--no-pin", action="store_true",
                     help="do not run the recorder and the program on the same CPU")
    rec.add_argument("-q", "--quiet", action="store_true", help="print nothing of our own")
    rec.add_argument("--comment", help="a note kept in the trace header")
    rec.add_argument("-p", "--pid", type=int,
                     help="attach to a running process instead (every syscall then stops it; "
                     "Ctrl-C or --duration detaches and leaves it running)")
    rec.add_argument("program", nargs=argparse.REMAINDER, metavar="-- PROGRAM [ARGS...]")
    rec.set_defaults(handler=_record)

    from bpfreplay import explain

    exp = commands.add_parser("explain", help="decode a trace file",
                              description="Decode the calls of a trace file.")
    explain.add_arguments(exp)
    exp.set_defaults(handler=explain.run)

    from bpfreplay import run as run_command

    run = commands.add_parser(
        "run", help="load and attach an eBPF object with the Python loader",
        description="Load OBJECT with bpfreplay's pure-Python loader (libbpf 1.1.2's "
        "behaviour), attach its programs, print what they bpf_printk, and tear everything "
        "down on Ctrl-C or after --duration. With --compare, check that the loader made "
        "the same calls as the C reference built on libbpf.",
    )
    run_command.add_arguments(run)
    run.set_defaults(handler=run_command.run)

    from bpfreplay import compare_command

    cmp = commands.add_parser(
        "compare", help="the parity report of two trace files",
        description="Compare two trace files call by call after the normalisation of "
        "docs/parity.md (the first is the reference): exit 0 at full parity, 3 when both "
        "loads failed at the same call with the same errno and log, 1 with differences.",
    )
    compare_command.add_arguments(cmp)
    cmp.set_defaults(handler=compare_command.run)

    from bpfreplay import replay

    rep = commands.add_parser(
        "replay", help="issue a recorded load again on this kernel and report the answers",
        description="Issue the recorded bpf(), perf_event_open, perf ioctl, mmap/munmap, "
        "dup/close and SO_ATTACH_BPF calls of TRACE again, in order, with fds, ids, pids "
        "and pin paths made ours; report per call whether the kernel answered as "
        "recorded. Exit 0 all the same, 1 some differ, 2 a trace it cannot replay, 130 "
        "interrupted.",
    )
    replay.add_arguments(rep)
    rep.set_defaults(handler=replay.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except BpfReplayError as e:
        if args.debug:
            raise
        from bpfreplay.decode.terminal import escape_lines

        print(f"bpfreplay: error: {escape_lines(str(e))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nbpfreplay: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
