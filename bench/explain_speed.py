#!/usr/bin/env python3
"""Benchmark: how fast `bpfreplay explain` decodes, and how its memory grows with the
trace. Records tests/progs/build/bpf_heavy with N map updates for several N and
`bpftool feature probe` (thousands of probe loads), then times `explain` (default, -v,
--json) on each trace, with the peak RSS of each run, and `strace -f -e trace=bpf`
decoding the same program live as a peer. With --write, replaces the explain section
of bench/RESULTS.md.

    .venv/bin/python bench/explain_speed.py --write
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from record_overhead import replace_section  # noqa: E402

from bpfreplay.trace import read_trace  # noqa: E402

PROGS = ROOT / "tests" / "progs" / "build"
RESULTS = ROOT / "bench" / "RESULTS.md"
BPFREPLAY = [sys.executable, "-m", "bpfreplay.cli"]


def run_measured(argv: list[str]) -> tuple[float, int]:
    """(seconds, peak RSS in KiB) of one run, output discarded."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"failed: {' '.join(argv)}")
    return elapsed, usage.ru_maxrss


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    subprocess.run(["make", "-s", "-C", str(ROOT / "tests" / "progs")], check=True)
    work = Path(tempfile.mkdtemp(prefix="bpfreplay-bench-"))
    rows = []
    workloads: list[tuple[str, Path, int, list[str]]] = []
    for n in (int(s) for s in args.sizes.split(",")):
        trace = work / f"heavy-{n}.mp"
        program = [str(PROGS / "bpf_heavy"), str(n)]
        subprocess.run([*BPFREPLAY, "record", "-q", "-o", str(trace), "--", *program],
                       check=True)
        workloads.append((str(n), trace, n + 2, program))  # MAP_CREATE and close too
    if shutil.which("bpftool"):
        # Variety: ~5,800 calls, 5,400 of them probe loads the probe rules must label.
        trace = work / "feature-probe.mp"
        program = ["bpftool", "-j", "feature", "probe"]
        subprocess.run([*BPFREPLAY, "record", "-q", "-o", str(trace), "--", *program],
                       check=True, stdout=subprocess.DEVNULL)
        with read_trace(str(trace)) as recorded:
            calls = sum(1 for _ in recorded.calls())
        workloads.append((f"{calls} (bpftool feature probe)", trace, calls, program))
    for label, trace, calls, program in workloads:
        modes = {
            "explain": [*BPFREPLAY, "explain", str(trace)],
            "explain -v": [*BPFREPLAY, "explain", "-v", str(trace)],
            "explain --json": [*BPFREPLAY, "explain", "--json", str(trace)],
            "explain --json --raw-json": [*BPFREPLAY, "explain", "--json", "--raw-json",
                                          str(trace)],
            "strace -f -e trace=bpf (live, peer)": ["strace", "-f", "-qq", "-o", os.devnull,
                                                     "-e", "trace=bpf", *program],
        }
        for mode, argv in modes.items():
            samples = [run_measured(argv) for _ in range(args.runs)]
            seconds = statistics.median(s for s, _ in samples)
            rss = max(r for _, r in samples)
            rows.append((label, mode, seconds, calls / seconds, rss))
            print(f"{label:>8} {mode:<38} {seconds:8.2f} s {calls / seconds:10.0f} calls/s "
                  f"{rss / 1024:8.1f} MiB", flush=True)
    if args.write:
        lines = [
            "## Explain speed",
            "",
            f"Command: `.venv/bin/python bench/explain_speed.py --runs {args.runs} "
            f"--sizes {args.sizes} --write`  ",
            f"Machine: {os.uname().release}, {os.cpu_count()} CPUs; medians of {args.runs} "
            f"runs, output to /dev/null, peak RSS of the process. Measured "
            f"{time.strftime('%Y-%m-%d')}.",
            "Traces of tests/progs/bpf_heavy (N BPF_MAP_UPDATE_ELEM calls) and of `bpftool",
            "feature probe` (thousands of probe loads: the probe labelling's cost). strace",
            "decodes the same calls while tracing the program live: a peer, not a",
            "like-for-like.",
            "",
            "| calls | command | median | calls/s | peak RSS |",
            "|---|---|---|---|---|",
        ]
        for n, mode, seconds, rate, rss in rows:
            lines.append(f"| {n} | {mode} | {seconds:.2f} s | {rate:.0f} | "
                         f"{rss / 1024:.1f} MiB |")
        replace_section(RESULTS, "## Explain speed", "\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
