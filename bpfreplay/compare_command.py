"""``bpfreplay compare A.mp B.mp``: the parity report of any two traces (two recordings,
two libbpf versions, a recording and a replay); A is the reference."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("reference", help="the reference trace (e.g. `bpfreplay record` of "
                        "the C program)")
    parser.add_argument("ours", help="the trace compared with it (e.g. `bpfreplay run "
                        "--save-trace`)")
    parser.add_argument("--object", metavar="OBJ",
                        help="the object both traces loaded: a reference attach of a "
                        "program libbpf's skeleton attach does not auto-attach (by its "
                        "section) is then the application's (docs/parity.md)")


def run(args: argparse.Namespace) -> int:
    """Exit 0 at full parity, 3 at parity of a failed load, 1 with differences."""
    from bpfreplay.compare import compare_trace_files
    from bpfreplay.parity_report import print_report

    report = compare_trace_files(args.reference, args.ours, object_path=args.object)
    print_report(report, args.reference, args.ours)
    return report.exit_code
