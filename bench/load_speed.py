#!/usr/bin/env python3
"""Benchmark: the Python loader against libbpf loading the reference minimal.

In one run, and interleaved round by round:
- in-process phases: libbpf through the skeleton (bench/progs/load_timing.c:
  open, load, attach, destroy timed in C) vs. bpfreplay's loader in this process
  (load_spec = open, open_object + load = load, attach_all = attach, close = destroy);
- whole processes, exec to attached: the C reference `minimal` vs. `bpfreplay run`
  (time until each says it is attached), and `bpfreplay run` start-up alone.
With --write, replaces the load speed section of bench/RESULTS.md.

    sudo .venv/bin/python bench/load_speed.py --write
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
from record_overhead import replace_section  # noqa: E402

REF = ROOT / "reference" / "libbpf-bootstrap"
OBJECT = REF / "minimal.bpf.o"
RESULTS = ROOT / "bench" / "RESULTS.md"
PHASES = ("open", "load", "attach", "destroy")


def python_round(path: Path = OBJECT, *, skeleton: bool = True,
                 assignment: str | None = "my_pid=self") -> dict[str, float]:
    """bpfreplay's loader in this process, timed phase by phase: open (load_spec, under
    the skeleton's object name when ``skeleton``), load (open_object, the global
    ``assignment``, load), attach, destroy."""
    from bpfreplay.loader.attach import attach_all
    from bpfreplay.loader.globals import set_global
    from bpfreplay.loader.kernel import load, open_object
    from bpfreplay.loader.spec import load_spec, skeleton_name

    t0 = time.perf_counter()
    spec = load_spec(path, name=skeleton_name(path)) if skeleton else load_spec(path)
    t1 = time.perf_counter()
    obj = open_object(spec)
    if assignment:
        set_global(obj, assignment)
    load(obj)
    t2 = time.perf_counter()
    attach_all(obj)
    t3 = time.perf_counter()
    obj.close()
    t4 = time.perf_counter()
    return dict(zip(PHASES, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True))


def c_round(binary: Path) -> dict[str, float]:
    out = subprocess.run([str(binary), "1"], check=True, capture_output=True, text=True).stdout
    return dict(zip(PHASES, (int(x) / 1e9 for x in out.split()), strict=True))


def until_attached(argv: list[str], marker: str) -> float:
    """Seconds from exec until the process writes ``marker`` to stderr."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    elapsed = None
    for line in proc.stderr:
        if marker in line and elapsed is None:
            elapsed = time.perf_counter() - start
    proc.wait()
    if elapsed is None or proc.returncode != 0:
        raise SystemExit(f"{argv[0]} did not report '{marker}' (exit {proc.returncode})")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    subprocess.run(["make", "-s", "-C", str(REF)], check=True)
    subprocess.run(["make", "-s", "-C", str(ROOT / "bench" / "progs")], check=True)
    timing = ROOT / "bench" / "progs" / "build" / "load_timing"
    python_round()  # warm the imports: we compare loading, not Python start-up
    c_rounds, py_rounds = [], []
    for _ in range(args.rounds):
        c_rounds.append(c_round(timing))
        py_rounds.append(python_round())
    rows = []
    for phase in (*PHASES, "open+load+attach"):
        def value(r: dict[str, float], p: str = phase) -> float:
            return sum(r[x] for x in PHASES[:3]) if p == "open+load+attach" else r[p]
        c = statistics.median(value(r) for r in c_rounds)
        py = statistics.median(value(r) for r in py_rounds)
        rows.append((f"in-process: {phase}", c, py))
        print(f"{phase:>18}: libbpf {c * 1e3:8.2f} ms  python {py * 1e3:8.2f} ms  "
              f"x{py / c:5.2f}", flush=True)
    runs = max(3, args.rounds // 4)
    bpfreplay = [sys.executable, "-m", "bpfreplay.cli"]
    c_exec, py_exec, startup, bare, version = [], [], [], [], []
    venv_python = ROOT / ".venv" / "bin" / "python"
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([str(venv_python), "-c", "pass"], check=True)
        bare.append(time.perf_counter() - start)
        start = time.perf_counter()
        subprocess.run([str(ROOT / ".venv" / "bin" / "bpfreplay"), "--version"], check=True,
                       stdout=subprocess.DEVNULL)
        version.append(time.perf_counter() - start)
        c_exec.append(until_attached([str(REF / "minimal"), "0"], "attached"))
        py_exec.append(until_attached([*bpfreplay, "run", str(OBJECT), "--set", "my_pid=self",
                                       "--duration", "0"], "running"))
        start = time.perf_counter()
        subprocess.run([*bpfreplay, "run", "--help"], check=True, stdout=subprocess.DEVNULL)
        startup.append(time.perf_counter() - start)
    c, py, s = (statistics.median(x) for x in (c_exec, py_exec, startup))
    rows.append(("whole process: exec to attached", c, py))
    rows.append(("whole process: `bpfreplay run --help` (start-up alone)", 0.0, s))
    b, v = statistics.median(bare), statistics.median(version)
    rows.append(("`.venv/bin/bpfreplay --version` vs `.venv/bin/python -c pass`", b, v))
    print(f"start-up: python -c pass {b * 1e3:.1f} ms, bpfreplay --version {v * 1e3:.1f} ms "
          f"(x{v / b:.2f})")
    print(f"exec to attached: C minimal {c * 1e3:.1f} ms, bpfreplay run {py * 1e3:.1f} ms "
          f"(x{py / c:.2f}); bpfreplay start-up alone {s * 1e3:.1f} ms")
    if args.write:
        lines = [
            "## Load speed",
            "",
            f"Command: `.venv/bin/python bench/load_speed.py --rounds {args.rounds} --write`  ",
            f"Machine: {os.uname().release}, {os.cpu_count()} CPUs; libbpf "
            f"{_libbpf_version()}. Measured {time.strftime('%Y-%m-%d')}. Medians of "
            f"{args.rounds} interleaved rounds in-process (the skeleton timed in C vs. "
            f"bpfreplay's loader in one Python process, imports warm) and of {runs} whole "
            "processes (exec until the program reports it is attached).",
            "",
            "| what | libbpf (C) | bpfreplay (Python) | ratio |",
            "|---|---|---|---|",
        ]
        for what, c_value, py_value in rows:
            ratio = f"{py_value / c_value:.2f}" if c_value else "-"
            c_text = f"{c_value * 1e3:.2f} ms" if c_value else "-"
            lines.append(f"| {what} | {c_text} | {py_value * 1e3:.2f} ms | {ratio} |")
        replace_section(RESULTS, "## Load speed", "\n".join(lines))
    return 0


def _libbpf_version() -> str:
    try:
        return subprocess.run(["dpkg-query", "-W", "-f=${Version}", "libbpf1"],
                              capture_output=True, text=True).stdout or "?"
    except OSError:
        return "?"


if __name__ == "__main__":
    sys.exit(main())
