#!/usr/bin/env python3
"""The parity table of the differential corpus (`make parity` -> docs/parity-table.md).

For each object of tests/corpus/manifest.py: record the C reference loader refload
(system libbpf, a bpftool skeleton's calls) with `bpfreplay record --duration D`, load
the object with `bpfreplay run OBJ --duration D --compare REF.mp`, and read the parity
report it prints (calls on both sides, calls identical, differences, outcome from the
exit status: 0 parity, 3 parity of a failed load, 1 differences). Each object's
full report is kept in tests/corpus/build/parity/NAME.txt.

    usage: tools/parity_table.py [--duration S] [--output FILE] [--only NAME]...
"""

from __future__ import annotations

import argparse
import datetime
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.corpus.manifest import CORPUS, REFLOAD, CorpusObject, clean_pins  # noqa: E402

LOG_DIR = ROOT / "tests" / "corpus" / "build" / "parity"
OUTCOME_BY_EXIT = {0: "parity", 3: "failed_parity", 1: "differences"}
_SIZES = re.compile(r"^parity: reference .* \((\d+) calls\) vs\. ours .* \((\d+) calls\)",
                    re.M)
_IDENTICAL = re.compile(r"^parity: (\d+) calls identical", re.M)
_DIFFERENCES = re.compile(r"^parity: (\d+) difference\(s\)", re.M)
# a call of the application section both traces made, but not identically: refload is
# a bare skeleton application, so every call of its trace is libbpf's
_APP_NOT_IDENTICAL = re.compile(r"^\s+\[reference #\d+, ours #\d+\] .*\(both, not identical\)",
                                re.M)


def bpfreplay_command() -> list[str]:
    """The bpfreplay of this interpreter's environment (the repo's venv)."""
    beside = Path(sys.executable).parent / "bpfreplay"
    if beside.exists():
        return [str(beside)]
    found = shutil.which("bpfreplay")
    if found is None:
        raise SystemExit("parity_table: bpfreplay is not installed (make venv)")
    return [found]


@dataclass
class Row:
    obj: CorpusObject
    reference_calls: int | None = None
    our_calls: int | None = None
    identical: int | None = None
    differences: int | None = None
    outcome: str = "error"
    reference_status: int | None = None
    seconds: float = 0.0
    report: str = ""


def reference_command(obj: CorpusObject) -> list[str]:
    """refload loading the object, waiting until the recorder's SIGINT."""
    command = [str(REFLOAD)]
    for name in obj.globals:
        command += ["-s", f"{name}=pid"]
    return command + [str(obj.path)]


def record_reference(obj: CorpusObject, trace: Path, duration: float
                     ) -> subprocess.CompletedProcess[str]:
    """`bpfreplay record --duration` of refload on the object (its exit status is the
    reference's: 3 load failed, 4 attach failed)."""
    clean_pins(obj)
    try:
        return subprocess.run(bpfreplay_command() + ["record", "-q", "-f", "--duration",
                                                      str(duration), "-o", str(trace), "--"]
                              + reference_command(obj), capture_output=True, text=True,
                              timeout=60)
    finally:
        clean_pins(obj)


def run_ours(obj: CorpusObject, reference: Path, duration: float, save: Path | None = None,
             prefix: list[str] | None = None) -> subprocess.CompletedProcess[str]:
    """`bpfreplay run OBJ --duration D --compare REFERENCE` (under PREFIX, e.g. strace;
    the comparison itself makes no syscall a tracer would see)."""
    command = (prefix or []) + bpfreplay_command() + [
        "run", str(obj.path), "--duration", str(duration), "--compare", str(reference)]
    for name in obj.globals:
        command += ["--set", f"{name}=self"]
    if save is not None:
        command += ["--save-trace", str(save)]
    clean_pins(obj)
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=60,
                              stdin=subprocess.DEVNULL)
    finally:
        clean_pins(obj)


def parse_report(stdout: str, returncode: int) -> dict[str, int | str | None]:
    """What `bpfreplay run --compare` printed: calls on both sides, identical calls,
    the number of differences, and the outcome its exit status says."""
    sizes = _SIZES.search(stdout)
    identical = _IDENTICAL.search(stdout)
    differences = _DIFFERENCES.search(stdout)
    outcome = OUTCOME_BY_EXIT.get(returncode, f"error (exit {returncode})")
    if sizes is None:
        outcome = f"no report (exit {returncode})"
    app_not_identical = len(_APP_NOT_IDENTICAL.findall(stdout))
    if app_not_identical:
        outcome += f" but {app_not_identical} application call(s) not identical"
    return {
        "reference_calls": int(sizes.group(1)) if sizes else None,
        "our_calls": int(sizes.group(2)) if sizes else None,
        "identical": int(identical.group(1)) if identical else None,
        "differences": int(differences.group(1)) if differences else (0 if sizes else None),
        "application_not_identical": app_not_identical,
        "outcome": outcome,
    }


def measure(obj: CorpusObject, work: Path, duration: float) -> Row:
    row = Row(obj)
    started = time.monotonic()
    safe = obj.name.replace("/", "_")
    trace = work / f"{safe}.ref.mp"
    if not obj.path.exists():
        row.outcome = "not built"
        return row
    recorded = record_reference(obj, trace, duration)
    row.reference_status = recorded.returncode
    text = [f"$ {' '.join(reference_command(obj))}  (recorded: exit {recorded.returncode})",
            recorded.stderr.strip()]
    if not trace.exists():
        row.outcome = "reference not recorded"
    else:
        ours = run_ours(obj, trace, duration, work / f"{safe}.ours.mp")
        text += [f"$ bpfreplay run {obj.path} --compare {trace}  (exit {ours.returncode})",
                 ours.stdout.strip(), ours.stderr.strip()]
        for key, value in parse_report(ours.stdout, ours.returncode).items():
            if hasattr(row, key):
                setattr(row, key, value)
    row.seconds = time.monotonic() - started
    row.report = "\n".join(t for t in text if t) + "\n"
    return row


def _cell(value: int | None) -> str:
    return "—" if value is None else str(value)


def markdown(rows: list[Row], duration: float) -> str:
    kernel = os.uname().release
    try:
        libbpf = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "libbpf1"],
                                capture_output=True, text=True).stdout or "unknown"
    except OSError:
        libbpf = "unknown"
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    at = sum(r.outcome == r.obj.expect for r in rows)
    lines = [
        "<!-- GENERATED by `make parity` (tools/parity_table.py): do not edit by hand -->",
        "# Parity table of the differential corpus",
        "",
        f"Generated by `make parity` on {now}; kernel {kernel}, libbpf {libbpf} "
        f"(the reference: tests/corpus/refload.c, a bpftool skeleton's calls); "
        f"each side recorded for {duration:g} s.",
        "",
        "For each object, the C reference loader's trace (`bpfreplay record --duration "
        f"{duration:g} -- refload OBJ`) against `bpfreplay run OBJ --compare REF.mp`: "
        "calls in each trace, calls identical after normalisation (docs/parity.md), "
        "differences, and the outcome (`parity`: full parity of a working load; "
        "`failed_parity`: both loads failed at the same call with the same errno and "
        "log). Calls of the module-BTF walk over other processes' BTF objects are machine "
        "state (docs/parity.md): counted in the calls, not compared, so *identical* can be "
        "less than both counts at parity; so are calls `bpfreplay run` makes as an "
        "application would (reading an iterator). Each object's full report is in "
        "tests/corpus/build/parity/ after a run. The objects and what they cover are "
        "listed in tests/corpus/manifest.py.",
        "",
        f"**{at} of {len(rows)} objects at the parity expected of them** (full parity, "
        "or parity of a failed load for the loads this kernel refuses).",
        "",
        "| object | what it covers | reference calls | our calls | identical | "
        "differences | outcome |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        outcome = r.outcome if r.outcome == r.obj.expect else \
            f"**{r.outcome}** (expected {r.obj.expect})"
        lines.append(f"| {r.obj.name} | {r.obj.covers} | {_cell(r.reference_calls)} | "
                     f"{_cell(r.our_calls)} | {_cell(r.identical)} | "
                     f"{_cell(r.differences)} | {outcome} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=0.5,
                        help="seconds each side stays attached (default 0.5)")
    parser.add_argument("--output", default=str(ROOT / "docs" / "parity-table.md"))
    parser.add_argument("--only", action="append", default=[],
                        help="only this corpus object (may be repeated)")
    args = parser.parse_args(argv)
    if not REFLOAD.exists():
        raise SystemExit("parity_table: tests/corpus is not built (make testprogs)")
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    objects = [o for o in CORPUS if not args.only or o.name in args.only]
    rows = []
    for obj in objects:
        row = measure(obj, LOG_DIR, args.duration)
        (LOG_DIR / f"{obj.name.replace('/', '_')}.txt").write_text(row.report)
        print(f"{obj.name:24} {row.outcome:14} ref {_cell(row.reference_calls):>4} "
              f"ours {_cell(row.our_calls):>4} identical {_cell(row.identical):>4} "
              f"differences {_cell(row.differences):>3}  ({row.seconds:.1f} s)", flush=True)
        rows.append(row)
    Path(args.output).write_text(markdown(rows, args.duration))
    print(f"parity_table: wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
