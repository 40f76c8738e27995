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
                    attach_pid=args.pid, stack=args.stack)
    if args.pid is not None:
        argv = [f"pid {args.pid}"]
    if not args.quiet:
        print(f"bpfreplay: recorded {result.calls} calls of {argv[0]} into {result.path} "
              f"({result.stops} ptrace stops); exit status {result.exit_code}", file=sys.stderr)
    return result.exit_code


# The commands, in the order --help lists them: (name, module, help, description).
# A command's module is imported only when that command runs (or its own --help is
# asked for): `bpfreplay --version` and the top-level --help import none of them.
_COMMANDS: tuple[tuple[str, str, str, str], ...] = (
    ("record", "",  # its arguments are below: record.py is imported only to record
     "run a program under ptrace and record its bpf() calls",
     "Run PROGRAM under ptrace and record every bpf() call it makes (and the "
     "perf_event_open/ioctl/mmap/close/dup calls on BPF objects) into a trace file."),
    ("explain", "bpfreplay.explain", "decode a trace file",
     "Decode the calls of a trace file."),
    ("run", "bpfreplay.run",
     "load and attach an eBPF object with the Python loader",
     "Load OBJECT with bpfreplay's pure-Python loader (libbpf 1.1.2's "
     "behaviour), attach its programs, print what they bpf_printk, and tear everything "
     "down on Ctrl-C or after --duration. With --compare, check that the loader made "
     "the same calls as the C reference built on libbpf."),
    ("compare", "bpfreplay.compare_command", "the parity report of two trace files",
     "Compare two trace files call by call after the normalisation of "
     "docs/parity.md (the first is the reference): exit 0 at full parity, 3 when both "
     "loads failed at the same call with the same errno and log, 1 with differences."),
    ("replay", "bpfreplay.replay",
     "issue a recorded load again on this kernel and report the answers",
     "Issue the recorded bpf(), perf_event_open, perf ioctl, mmap/munmap, "
     "dup/close and SO_ATTACH_BPF calls of TRACE again, in order, with fds, ids, pids "
     "and pin paths made ours; report per call whether the kernel answered as "
     "recorded. Exit 0 all the same, 1 some differ, 2 a trace it cannot replay, 130 "
     "interrupted."),
)


def add_record_arguments(rec: argparse.ArgumentParser) -> None:
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
    rec.add_argument("--stack", action="store_true",
                     help="keep each call's user-space call chain (unwound through the "
                     "mapped files' CFI, named from their symbols and DWARF)")
    rec.add_argument("program", nargs=argparse.REMAINDER, metavar="-- PROGRAM [ARGS...]")


def _chosen_command(argv: Sequence[str]) -> str | None:
    """The command named on the command line: the first argument that is not one of the
    top-level options (which take no values)."""
    for arg in argv:
        if not arg.startswith("-"):
            return arg
        if arg == "--":
            return None
    return None


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser, with the arguments of the command ``argv`` names filled in (all of
    them when ``argv`` is None)."""
    import importlib

    parser = argparse.ArgumentParser(
        prog="bpfreplay",
        description="Record, explain and reproduce the bpf() calls that load an eBPF program.",
    )
    parser.add_argument("--version", action="version", version=f"bpfreplay {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    chosen = None if argv is None else _chosen_command(argv)
    for name, module_name, help_text, description in _COMMANDS:
        sub = commands.add_parser(name, help=help_text, description=description)
        if argv is not None and name != chosen:
            continue
        if name == "record":
            add_record_arguments(sub)
            sub.set_defaults(handler=_record)
            continue
        module = importlib.import_module(module_name)
        module.add_arguments(sub)
        sub.set_defaults(handler=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    parser = build_parser(argv)
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
