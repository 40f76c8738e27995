#!/usr/bin/env python3
"""Benchmark: what ``record --stack`` adds per recorded call, measured in one run.

Records tests/progs/build/bpf_heavy (N BPF_MAP_UPDATE_ELEM calls that main makes through
syscall()) with and without --stack, for two N, and the reference
minimal (56 calls, 13 frames deep). The cost per call is the slope between the two N
(so the one-time parsing of each file's ELF, CFI and DWARF is left out); the constant is
shown apart. With --write, replaces the record --stack section of bench/RESULTS.md.

    .venv/bin/python bench/record_stack.py --write
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROGS = ROOT / "tests" / "progs" / "build"
MINIMAL = ROOT / "reference" / "libbpf-bootstrap" / "minimal"
RESULTS = ROOT / "bench" / "RESULTS.md"
RECORD = [sys.executable, "-m", "bpfreplay.cli", "record", "-q"]
SECTION = "## Record --stack"
sys.path.insert(0, str(ROOT / "bench"))
from record_overhead import timed  # noqa: E402  (one timing helper for the record benches)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--small", type=int, default=1000)
    parser.add_argument("--large", type=int, default=10000)
    parser.add_argument("--write", action="store_true", help="update bench/RESULTS.md")
    args = parser.parse_args()
    subprocess.run(["make", "-s", "-C", str(ROOT / "tests" / "progs")], check=True)
    out = os.path.join(tempfile.mkdtemp(), "bench.mp")
    rows = []
    medians: dict[tuple[str, int], float] = {}
    for mode, extra in (("record", []), ("record --stack", ["--stack"])):
        for calls in (args.small, args.large):
            median = timed([*RECORD, *extra, "-o", out, "--", str(PROGS / "bpf_heavy"),
                            str(calls)], args.runs)
            medians[mode, calls] = median
            rows.append((f"bpf_heavy {calls}", mode, median))
            print(f"bpf_heavy {calls:6} {mode:16} {median * 1000:9.1f} ms", flush=True)
        median = timed([*RECORD, *extra, "-o", out, "--", str(MINIMAL), "0"], args.runs)
        rows.append(("minimal 0 (56 calls)", mode, median))
        print(f"minimal 0        {mode:16} {median * 1000:9.1f} ms", flush=True)
    span = args.large - args.small
    slope = {mode: (medians[mode, args.large] - medians[mode, args.small]) / span * 1e6
             for mode in ("record", "record --stack")}
    added = slope["record --stack"] - slope["record"]
    constant = (medians["record --stack", args.small] - medians["record", args.small]) \
        - added * args.small / 1e6
    summary = (f"per call: record {slope['record']:.1f} µs, record --stack "
               f"{slope['record --stack']:.1f} µs: --stack adds {added:.1f} µs per call "
               f"(a 5-frame chain: syscall <- main <- libc <- __libc_start_main <- _start) and "
               f"{constant * 1000:.0f} ms once (ELF, CFI and DWARF of the mapped files)")
    print(summary)
    if args.write:
        write_results(rows, summary, args)
    return 0


def write_results(rows: list[tuple[str, str, float]], summary: str,
                  args: argparse.Namespace) -> None:
    lines = [
        SECTION,
        "",
        f"Command: `.venv/bin/python bench/record_stack.py --runs {args.runs} --small "
        f"{args.small} --large {args.large} --write`  ",
        f"Machine: {os.uname().release}, {os.cpu_count()} CPUs shared with other jobs "
        "(absolute times inflated; the difference between the rows is what counts); "
        f"medians of {args.runs} runs of whole recordings. Measured {time.strftime('%Y-%m-%d')}.",
        "",
        "| program | recorder | median |",
        "|---|---|---|",
        *[f"| {program} | {mode} | {median * 1000:.1f} ms |" for program, mode, median in rows],
        "",
        summary + ".",
        "",
    ]
    text = RESULTS.read_text()
    start = text.find(SECTION)
    if start < 0:
        text = text.rstrip("\n") + "\n\n" + "\n".join(lines)
    else:
        end = text.find("\n## ", start + len(SECTION))
        text = text[:start] + "\n".join(lines) + (text[end + 1:] if end >= 0 else "")
    RESULTS.write_text(text)


if __name__ == "__main__":
    sys.exit(main())
