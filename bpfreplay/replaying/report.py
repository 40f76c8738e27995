"""The replay's report: compare's normalisation and diff (bpfreplay/compare.py), call
by call, of the recorded call and the one the replay made for it, read back from the
replay's own trace; what the replay changed on purpose (fds, pids, a tracepoint id
resolved by name, a pin path, a mapping address) is listed with the call and not
counted. Per program, the recorded and the replayed verdict and the verifier's
statistics (veristat's compare view).
"""

from __future__ import annotations

import copy
import difflib
import json
import re
from dataclasses import dataclass, field
from typing import Any, TextIO

from bpfreplay.compare import PID, describe_call, diff_pair, normalise, rename_paired, self_exes
from bpfreplay.replaying.engine import CallResult, RecordedTrace

SAME, DIFFERENT, SKIPPED = "same", "different", "skipped"
_STATS = re.compile(r"processed (\d+) insns.*?total_states (\d+) peak_states (\d+)")
_LOGS = ("log_buf", "btf_log_buf", "common.log_buf")
_MAX_LOG_DIFF = 40


@dataclass
class CallReport:
    position: int
    index: int
    call: str
    status: str
    reason: str = ""
    needs: int | None = None
    notes: list[str] = field(default_factory=list)
    differences: list[tuple[str, Any, Any]] = field(default_factory=list)  # path, rec, here
    log_diff: list[str] = field(default_factory=list)
    # "ok" or the errno name, recorded and here (None: not made here): what the kernel
    # matrix checks against the C reference run on this kernel
    recorded_outcome: str = ""
    outcome: str | None = None


@dataclass
class ProgramReport:
    index: int
    name: str
    recorded: str  # "loaded" or the errno name
    here: str  # "loaded", the errno name, or "skipped"
    recorded_stats: tuple[int, int, int] | None  # insns processed, total states, peak
    here_stats: tuple[int, int, int] | None


@dataclass
class ReplayReport:
    trace: str
    recorded_kernel: str
    calls: list[CallReport]
    programs: list[ProgramReport]
    teardown: list[str] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(1 for c in self.calls if c.status == status)

    @property
    def exit_code(self) -> int:
        """0: every call had its recorded outcome; 1: some differ or could not be made."""
        return 0 if all(c.status == SAME for c in self.calls) else 1


def build_report(trace: RecordedTrace, results: list[CallResult],
                 our_records: list[dict[str, Any]], *, exact: bool = False) -> ReplayReport:
    """``exact``: the replay passed the recording's pid, so that pid is the one masked in
    our calls too (rule 3 masks the pid each process wrote as its own)."""
    our_calls = [r for r in our_records if r.get("type") == "call"]
    our_pid = next((r["pid"] for r in our_records if r.get("type") == "process"), 0)
    if exact:
        our_pid = trace.pid
    recorded = normalise(trace.calls, trace.pid, self_exes(trace.processes.values()))
    ours = normalise(our_calls, our_pid, self_exes(our_records))
    _mask_perf_pid(recorded, trace.pid)
    _mask_perf_pid(ours, our_pid)
    pairs = [(r.position, r.ours[0]) for r in results if r.ours and r.ours[0] < len(ours)]
    ours = rename_paired(recorded, ours, pairs)
    calls = [_call_report(trace, recorded, ours, r) for r in results]
    by_position = {c.position: c for c in calls}
    programs = [_program(trace, recorded, ours, r, by_position[r.position]) for r in results
                if recorded[r.position].get("cmd") == "BPF_PROG_LOAD"
                and recorded[r.position].get("probe") is None]
    return ReplayReport(trace.path, str(trace.header.get("kernel", "?")), calls, programs)


def _mask_perf_pid(items: list[dict[str, Any]], pid: int) -> None:
    """perf_event_open's pid is the process's own (rule 3 of parity.md, as in values)."""
    for item in items:
        args = item.get("args")
        if item["syscall"] == "perf_event_open" and isinstance(args, dict) \
                and args.get("pid") == pid and args.get("pid", 0) > 0:
            args["pid"] = PID


def _without(item: dict[str, Any], paths: list[tuple[str, ...]]) -> dict[str, Any]:
    item = copy.deepcopy(item)
    for path in paths:
        holder: Any = item
        for key in path[:-1]:
            holder = holder.get(key) if isinstance(holder, dict) else None
        if isinstance(holder, dict):
            holder.pop(path[-1], None)
    return item


def _call_report(trace: RecordedTrace, recorded: list[dict[str, Any]],
                 ours: list[dict[str, Any]], result: CallResult) -> CallReport:
    item = recorded[result.position]
    index = trace.calls[result.position].get("index", result.position)
    report = CallReport(result.position, index, describe_call(item), SKIPPED,
                        notes=list(result.notes), recorded_outcome=outcome(item))
    if result.skipped:
        report.reason, report.needs = result.skipped, result.needs
        return report
    if not result.ours or result.ours[0] >= len(ours):
        report.status, report.reason = DIFFERENT, "no call of the replay was recorded for it"
        return report
    mine = ours[result.ours[0]]
    report.outcome = outcome(mine)
    found = diff_pair(_without(item, result.adjusted), _without(mine, result.adjusted))
    report.differences = [(path, theirs, here) for _, path, theirs, here in found]
    report.status = DIFFERENT if found else SAME
    for name in _LOGS:
        theirs = (item.get("out") or {}).get(name)
        here = (mine.get("out") or {}).get(name)
        if isinstance(theirs, str) and isinstance(here, str) and theirs != here:
            diff = difflib.unified_diff(theirs.splitlines(), here.splitlines(), "recorded",
                                        "here", n=1, lineterm="")
            lines = list(diff)
            report.log_diff = lines[:_MAX_LOG_DIFF] + (
                [f"... {len(lines) - _MAX_LOG_DIFF} more lines"]
                if len(lines) > _MAX_LOG_DIFF else [])
    return report


def outcome(item: dict[str, Any]) -> str:
    """A call's answer in one word: "ok", the errno's name, or "no answer"."""
    if item.get("errno"):
        from bpfreplay.uapi.errnos import errno_name

        return errno_name(item["errno"])
    return "ok" if item.get("ret") is not None else "no answer"


def _verdict(item: dict[str, Any]) -> str:
    if item.get("errno"):
        from bpfreplay.uapi.errnos import errno_name

        return errno_name(item["errno"])
    return "loaded" if item.get("ret") is not None else "no answer"


def _stats(item: dict[str, Any]) -> tuple[int, int, int] | None:
    log = (item.get("out") or {}).get("log_buf")
    found = _STATS.search(log) if isinstance(log, str) else None
    return (int(found[1]), int(found[2]), int(found[3])) if found else None


def _program(trace: RecordedTrace, recorded: list[dict[str, Any]],
             ours: list[dict[str, Any]], result: CallResult, call: CallReport,
             ) -> ProgramReport:
    item = recorded[result.position]
    name = (item.get("fields") or {}).get("prog_name") or "(no name)"
    mine = ours[result.ours[0]] if result.ours and result.ours[0] < len(ours) else None
    here = "skipped" if mine is None else _verdict(mine)
    return ProgramReport(call.index, str(name), _verdict(item), here, _stats(item),
                         _stats(mine) if mine is not None else None)


# ------------------------------------------------------------------ printing


def _short(value: Any, limit: int = 160) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def print_report(report: ReplayReport, out: TextIO, *, verbose: bool = False) -> None:
    from bpfreplay.decode.terminal import EscapingWriter

    out = EscapingWriter(out)  # type: ignore[assignment]  # names and logs of the trace
    for c in report.calls:
        if c.status == SAME and not verbose:
            continue
        line = f"  #{c.index:<4} {c.call}: {c.status}"
        if c.reason:
            line += f": {c.reason}"
        print(line, file=out)
        for note in c.notes if (verbose or c.status != SAME) else ():
            print(f"          note: {note}", file=out)
        for path, theirs, here in c.differences:
            if path.startswith("out.") and path.split(".", 1)[1] in _LOGS and c.log_diff:
                continue
            print(f"          {path}: recorded {_short(theirs)}, here {_short(here)}",
                  file=out)
        if c.log_diff:
            print("          log (recorded -> here):", file=out)
            for line in c.log_diff:
                print(f"            {line}", file=out)
    if report.programs:
        print("replay: programs (recorded -> here):", file=out)
        for p in report.programs:
            stats = ""
            if p.recorded_stats or p.here_stats:
                stats = (f"; insns processed {_stat(p.recorded_stats, 0)} -> "
                         f"{_stat(p.here_stats, 0)}, states {_stat(p.recorded_stats, 1)} -> "
                         f"{_stat(p.here_stats, 1)}, peak {_stat(p.recorded_stats, 2)} -> "
                         f"{_stat(p.here_stats, 2)}")
            print(f"  #{p.index:<4} {p.name}: {p.recorded} -> {p.here}{stats}", file=out)
    print(f"replay: {report.count(SAME)} same, {report.count(DIFFERENT)} different, "
          f"{report.count(SKIPPED)} skipped", file=out)


def _stat(stats: tuple[int, int, int] | None, i: int) -> str:
    return str(stats[i]) if stats else "?"


def as_json(report: ReplayReport, our_trace: str | None) -> dict[str, Any]:
    return {
        "trace": report.trace, "recorded_kernel": report.recorded_kernel,
        "our_trace": our_trace,
        "calls": [{"index": c.index, "position": c.position, "call": c.call,
                   "status": c.status, "recorded_outcome": c.recorded_outcome,
                   "outcome": c.outcome,
                   "reason": c.reason or None, "needs": c.needs, "notes": c.notes,
                   "differences": [{"path": p, "recorded": r, "here": h}
                                   for p, r, h in c.differences],
                   "log_diff": c.log_diff} for c in report.calls],
        "programs": [{"index": p.index, "name": p.name, "recorded": p.recorded,
                      "here": p.here, "recorded_stats": p.recorded_stats,
                      "here_stats": p.here_stats} for p in report.programs],
        "summary": {SAME: report.count(SAME), DIFFERENT: report.count(DIFFERENT),
                    SKIPPED: report.count(SKIPPED)},
        "teardown": report.teardown,
        "exit": report.exit_code,
    }
