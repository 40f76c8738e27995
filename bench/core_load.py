#!/usr/bin/env python3
"""Benchmark: a CO-RE object with a ring buffer (tests/corpus bootstrap: two tracepoint
programs reading task_struct through CO-RE) loaded by libbpf and by bpfreplay.

In one run, interleaved:
- whole processes, exec to exit (open, load, attach, teardown), with peak RSS: libbpf's
  generic API (bench/progs/object_load.c) vs. `bpfreplay run OBJ --duration 0`, and the
  time until each says it is attached;
- in-process phases: object_load's rounds timed in C vs. bpfreplay's loader in this
  process (load_spec = open, open_object + load = load, attach_all = attach, close).
With --write, replaces the CO-RE load section of bench/RESULTS.md.

    sudo .venv/bin/python bench/core_load.py --write
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
import load_speed  # noqa: E402
from record_overhead import replace_section  # noqa: E402

OBJECT = ROOT / "tests" / "corpus" / "build" / "bootstrap.bpf.o"
LOADER = ROOT / "bench" / "progs" / "build" / "object_load"
RESULTS = ROOT / "bench" / "RESULTS.md"
PHASES = load_speed.PHASES


def whole_process(argv: list[str], marker: str, cache: str | None = None,
                  ) -> tuple[float, float, float]:
    """(seconds until ``marker`` on stderr, seconds until exit, peak RSS in MiB);
    ``cache``: BPFREPLAY_CACHE for the process ("" turns the BTF index cache off)."""
    env = dict(os.environ) if cache is None else dict(os.environ, BPFREPLAY_CACHE=cache)
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, env=env)
    assert proc.stderr is not None
    marked = None
    for line in proc.stderr:
        if marker in line and marked is None:
            marked = time.perf_counter() - start
    _, status, usage = os.wait4(proc.pid, 0)
    ended = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if marked is None or proc.returncode != 0:
        raise SystemExit(f"{argv[0]} did not report '{marker}' (exit {proc.returncode})")
    return marked, ended, usage.ru_maxrss / 1024


def c_rounds(rounds: int) -> list[dict[str, float]]:
    out = subprocess.run([str(LOADER), str(OBJECT), str(rounds)], check=True,
                         capture_output=True, text=True).stdout
    return [dict(zip(PHASES, (int(x) / 1e9 for x in line.split()), strict=True))
            for line in out.splitlines()]


def python_round() -> dict[str, float]:
    return load_speed.python_round(OBJECT, skeleton=False, assignment=None)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    subprocess.run(["make", "-s", "-C", str(ROOT / "bench" / "progs")], check=True)
    if not OBJECT.exists():
        subprocess.run(["make", "-s", "-C", str(ROOT / "tests" / "corpus")], check=True)
    bpfreplay = [sys.executable, "-m", "bpfreplay.cli", "run", str(OBJECT), "--duration",
                 "0"]
    import tempfile

    warm_cache = tempfile.mkdtemp(prefix="bpfreplay-bench-cache-")
    whole_process(bpfreplay, "running", warm_cache)  # fills it
    c_whole, py_whole, py_warm = [], [], []
    for _ in range(args.rounds):
        c_whole.append(whole_process([str(LOADER), str(OBJECT)], "attached"))
        py_whole.append(whole_process(bpfreplay, "running", ""))
        py_warm.append(whole_process(bpfreplay, "running", warm_cache))
    os.environ["BPFREPLAY_CACHE"] = ""  # in-process: the index built each round
    python_round()  # warm the imports: in-process compares loading, not start-up
    c_in, py_in = [], []
    for _ in range(args.rounds):
        c_in.extend(c_rounds(1))
        py_in.append(python_round())

    rows = []
    for runs, cache_name in ((py_whole, "no cache"), (py_warm, "warm BTF index cache")):
        for index, what in ((0, "exec to attached"), (1, "exec to exit (teardown included)")):
            c = statistics.median(r[index] for r in c_whole)
            py = statistics.median(r[index] for r in runs)
            rows.append((f"whole process, {cache_name}: {what}", f"{c * 1e3:.1f} ms",
                         f"{py * 1e3:.1f} ms", py / c))
        c_rss = statistics.median(r[2] for r in c_whole)
        py_rss = statistics.median(r[2] for r in runs)
        rows.append((f"whole process, {cache_name}: peak RSS", f"{c_rss:.1f} MiB",
                     f"{py_rss:.1f} MiB", py_rss / c_rss))
    for phase in (*PHASES, "open+load+attach"):
        def value(r: dict[str, float], p: str = phase) -> float:
            return sum(r[x] for x in PHASES[:3]) if p == "open+load+attach" else r[p]
        c = statistics.median(value(r) for r in c_in)
        py = statistics.median(value(r) for r in py_in)
        rows.append((f"in-process: {phase}", f"{c * 1e3:.2f} ms", f"{py * 1e3:.2f} ms",
                     py / c))
    for what, c_text, py_text, ratio in rows:
        print(f"{what:>62}: libbpf {c_text:>10}  bpfreplay {py_text:>10}  x{ratio:5.2f}",
              flush=True)
    if args.write:
        lines = [
            "## CO-RE load",
            "",
            f"Command: `.venv/bin/python bench/core_load.py --rounds {args.rounds} --write`  ",
            f"Machine: {os.uname().release}, {os.cpu_count()} CPUs. Measured "
            f"{time.strftime('%Y-%m-%d')}. tests/corpus/bootstrap.bpf.o (ring buffer, two "
            "tracepoint programs, CO-RE reads of task_struct against this kernel's vmlinux "
            f"BTF). Medians of {args.rounds} interleaved whole processes (libbpf: "
            "bench/progs/object_load.c, open_file + load + attach + close; bpfreplay: "
            "`bpfreplay run OBJ --duration 0`) and of as many in-process rounds (imports "
            "warm).",
            "",
            "| what | libbpf (C) | bpfreplay (Python) | ratio |",
            "|---|---|---|---|",
        ]
        lines += [f"| {w} | {c} | {p} | {r:.2f} |" for w, c, p, r in rows]
        replace_section(RESULTS, "## CO-RE load", "\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
