#!/usr/bin/env python3
"""Benchmark: what recording costs, against strace measured in the same run.

Runs (a) a bpf()-heavy program (N BPF_MAP_UPDATE_ELEM calls) and (b) a write()-heavy
program (N write() calls and one bpf() call) untraced, under `strace -f -e trace=bpf`
(on any CPU and pinned to one CPU), under `strace -f --seccomp-bpf -e trace=bpf`, and
under `bpfreplay record` (default: pinned; and --no-pin). Prints medians and ratios and,
with --write, replaces the record-overhead section of bench/RESULTS.md.

    .venv/bin/python bench/record_overhead.py --write
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROGS = ROOT / "tests" / "progs" / "build"
RESULTS = ROOT / "bench" / "RESULTS.md"
BPFREPLAY = [sys.executable, "-m", "bpfreplay.cli", "record", "-q"]


def timed(argv: list[str], runs: int) -> float:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--bpf-calls", type=int, default=20000)
    parser.add_argument("--writes", type=int, default=1000000)
    parser.add_argument("--write", action="store_true", help="update bench/RESULTS.md")
    args = parser.parse_args()
    if (ROOT / "tests" / "progs" / "Makefile").exists():
        subprocess.run(["make", "-s", "-C", str(ROOT / "tests" / "progs")], check=True)
    cpu = str(max(os.sched_getaffinity(0)))
    out = os.path.join(tempfile.mkdtemp(), "bench.mp")
    workloads = {
        "a: bpf()-heavy": ([str(PROGS / "bpf_heavy"), str(args.bpf_calls)], args.bpf_calls),
        "b: write()-heavy": ([str(PROGS / "write_heavy"), str(args.writes)], 1),
    }
    tracers = {
        "untraced": [],
        "strace -f -e trace=bpf": ["strace", "-f", "-qq", "-o", "/dev/null", "-e", "trace=bpf"],
        "strace, pinned to one CPU": ["taskset", "-c", cpu, "strace", "-f", "-qq", "-o",
                                      "/dev/null", "-e", "trace=bpf"],
        "strace -f --seccomp-bpf": ["strace", "-f", "-qq", "--seccomp-bpf", "-o", "/dev/null",
                                    "-e", "trace=bpf"],
        "bpfreplay record": [*BPFREPLAY, "-o", out, "--"],
        "bpfreplay record --no-pin": [*BPFREPLAY, "--no-pin", "-o", out, "--"],
    }
    rows = []
    startup = timed([*BPFREPLAY, "-o", out, "--", "/bin/true"], args.runs)
    rows.append(("start-up", "bpfreplay record -- /bin/true", startup, 1.0, 1.0, 0.0))
    print(f"{'start-up':18} {'bpfreplay record -- true':28} {startup * 1000:9.1f} ms", flush=True)
    for workload, (program, calls) in workloads.items():
        base = None
        for tracer, prefix in tracers.items():
            median = timed(prefix + program, args.runs)
            base = median if base is None else base
            # bpfreplay's constant start-up (Python, imports) is not a cost per call.
            own = median - startup if tracer.startswith("bpfreplay") else median
            per_call = (own - base) / calls * 1e6 if prefix else 0.0
            rows.append((workload, tracer, median, median / base, own / base, per_call))
            print(f"{workload:18} {tracer:28} {median * 1000:9.1f} ms  x{median / base:6.2f}"
                  f"  x{own / base:6.2f} w/o start-up  {per_call:8.1f} us/call", flush=True)
    if args.write:
        write_results(rows, args)
    return 0


def write_results(rows: list[tuple], args: argparse.Namespace) -> None:
    lines = [
        "## Record overhead",
        "",
        f"Command: `.venv/bin/python bench/record_overhead.py --runs {args.runs} "
        f"--bpf-calls {args.bpf_calls} --writes {args.writes} --write`  ",
        f"Machine: {os.uname().release}, {os.cpu_count()} CPUs; medians of {args.runs} runs "
        f"of whole processes (exec to exit). Measured {time.strftime('%Y-%m-%d')}.",
        "bpfreplay's constant start-up (Python and imports, measured as `bpfreplay record --",
        "/bin/true`) is the first row; '× untraced w/o start-up' subtracts it from bpfreplay's",
        "rows. 'added per traced call' is (time w/o start-up - untraced) / bpf() calls; for",
        "the write()-heavy program (one bpf() call) it is the whole added time.",
        "",
        "| workload | tracer | median | × untraced | × untraced w/o start-up | added per call |",
        "|---|---|---|---|---|---|",
    ]
    for workload, tracer, median, ratio, own_ratio, per_call in rows:
        lines.append(f"| {workload} | {tracer} | {median * 1000:.1f} ms | {ratio:.2f} | "
                     f"{own_ratio:.2f} | {per_call:.1f} µs |")
    lines.append("")
    replace_section(RESULTS, "## Record overhead", "\n".join(lines))


def replace_section(path: Path, heading: str, text: str) -> None:
    """Replace one '## ' section of RESULTS.md, keeping the others."""
    old = path.read_text() if path.exists() else "# Benchmark results\n\n"
    parts = old.split("\n## ")
    kept = [p for p in parts[1:] if not ("## " + p).startswith(heading)]
    new = parts[0].rstrip("\n") + "\n\n" + "\n\n".join("## " + p.strip("\n") for p in kept)
    new = new.rstrip("\n") + "\n\n" + text.strip("\n") + "\n"
    path.write_text(new)


if __name__ == "__main__":
    sys.exit(main())
