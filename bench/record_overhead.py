#!/usr/bin/env python3
"""Benchmark: what recording costs, against strace measured in the same run.

Runs (a) a bpf()-heavy program (N BPF_MAP_UPDATE_ELEM calls) and (b) a write()-heavy
program (N write() calls and one bpf() call) untraced, under `strace -f -e trace=bpf`
(on any CPU and pinned to one CPU), under `strace -f --seccomp-bpf -e trace=bpf`, under
`bpfreplay record` (default: pinned; and --no-pin) and under bench/ptrace_floor.py (the
bare ptrace loop every Python recorder pays: the floor). Prints medians and ratios and,
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
FLOOR = [sys.executable, str(ROOT / "bench" / "ptrace_floor.py"), "--"]


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
        "bare ptrace loop in Python (floor)": FLOOR,
    }
    # The constant start-up of the Python tracers (interpreter, imports) is no cost per call.
    startups = {"bpfreplay": timed([*BPFREPLAY, "-o", out, "--", "/bin/true"], args.runs),
                "bare": timed([*FLOOR, "/bin/true"], args.runs)}
    rows = [("start-up", "bpfreplay record -- /bin/true", startups["bpfreplay"], 1.0, 1.0, 0.0),
            ("start-up", "bare ptrace loop -- /bin/true", startups["bare"], 1.0, 1.0, 0.0)]
    for name, startup in startups.items():
        print(f"{'start-up':18} {name:34} {startup * 1000:9.1f} ms", flush=True)
    per_call: dict[tuple[str, str], float] = {}
    for workload, (program, calls) in workloads.items():
        base = None
        for tracer, prefix in tracers.items():
            median = timed(prefix + program, args.runs)
            base = median if base is None else base
            own = median - startups.get(tracer.split()[0], 0.0)
            cost = (own - base) / calls * 1e6 if prefix else 0.0
            per_call[workload, tracer] = cost
            rows.append((workload, tracer, median, median / base, own / base, cost))
            print(f"{workload:18} {tracer:34} {median * 1000:9.1f} ms  x{median / base:6.2f}"
                  f"  x{own / base:6.2f} w/o start-up  {cost:8.1f} us/call", flush=True)
    ratios = per_call_ratios(per_call, "a: bpf()-heavy")
    for line in ratios:
        print(line)
    if args.write:
        write_results(rows, ratios, args)
    return 0


def per_call_ratios(per_call: dict[tuple[str, str], float], workload: str) -> list[str]:
    """bpfreplay's and the floor's cost per call over strace's, measured in the same run."""
    ours = per_call[workload, "bpfreplay record"]
    floor = per_call[workload, "bare ptrace loop in Python (floor)"]
    lines = []
    for strace in ("strace -f -e trace=bpf", "strace, pinned to one CPU"):
        theirs = per_call[workload, strace]
        lines.append(f"{workload}: bpfreplay record {ours:.1f} µs/call = "
                     f"{ours / theirs:.2f} × `{strace}` ({theirs:.1f} µs); the bare ptrace "
                     f"loop {floor:.1f} µs = {floor / theirs:.2f} ×")
    return lines


def write_results(rows: list[tuple], ratios: list[str], args: argparse.Namespace) -> None:
    lines = [
        "## Record overhead",
        "",
        f"Command: `.venv/bin/python bench/record_overhead.py --runs {args.runs} "
        f"--bpf-calls {args.bpf_calls} --writes {args.writes} --write`  ",
        f"Machine: {os.uname().release}, {os.cpu_count()} CPUs; medians of {args.runs} runs "
        f"of whole processes (exec to exit). Measured {time.strftime('%Y-%m-%d')}.",
        "The Python tracers' constant start-up (interpreter and imports, measured on",
        "`/bin/true`) is in the first rows; '× untraced w/o start-up' subtracts it from their",
        "rows. 'added per call' is (time w/o start-up - untraced) / bpf() calls; for the",
        "write()-heavy program (one bpf() call) it is the whole added time. The bare ptrace",
        "loop (bench/ptrace_floor.py) makes only the requests every recorded call needs",
        "(waitpid, GETREGS, PTRACE_SYSCALL, waitpid, PEEKUSER, PTRACE_CONT) and copies and",
        "writes nothing: the floor of a recorder in Python. Rows not pinned to one CPU",
        "(`strace -f`, `--no-pin`) vary up to tenfold between runs, with whether the scheduler",
        "wakes tracer and tracee on the same CPU or not; the pinned rows are steady.",
        "",
        "| workload | tracer | median | × untraced | × untraced w/o start-up | added per call |",
        "|---|---|---|---|---|---|",
    ]
    for workload, tracer, median, ratio, own_ratio, per_call in rows:
        lines.append(f"| {workload} | {tracer} | {median * 1000:.1f} ms | {ratio:.2f} | "
                     f"{own_ratio:.2f} | {per_call:.1f} µs |")
    lines.append("")
    lines += [f"- {line}" for line in ratios]
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
