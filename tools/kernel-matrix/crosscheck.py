#!/usr/bin/env python3
"""The kernel matrix's check of a cross replay: a trace recorded on kernel A replayed on
kernel B (`bpfreplay replay --json`) must name the calls whose answers differ on B and
nothing else. What B answers is known independently: libbpf's reference recorded on B.
Its calls are paired with the recorded ones by compare's signature (syscall, command,
probe label, object); for each pair the replay must get the outcome (ok or the errno)
the reference got on B: the probes that fail there fail in the replay, the object calls
that succeed there succeed. A call that differs with the same outcome may differ only
in what the kernel wrote back (logs, info structs), never in what the replay sent; a
call skipped must need one that failed here; a call not reproducible here is a failure.
A recorded call the reference on B did not make (libbpf took another path there: an
ioctl instead of a perf link) is listed as unpaired, its outcome reported as is.

    usage: crosscheck.py RECORDED.mp REPLAY.json REFERENCE_HERE.mp
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bpfreplay.compare import _signature, normalise, self_exes  # noqa: E402
from bpfreplay.replaying.report import outcome  # noqa: E402
from bpfreplay.trace import read_trace  # noqa: E402

# What the kernel writes back; a difference elsewhere is in what the replay sent.
_ANSWERS = ("out", "fields_out", "ret")


@dataclass
class Check:
    ok: bool = True
    differing: list[str] = field(default_factory=list)  # calls whose answers differ
    unpaired: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    tracepoints: list[str] = field(default_factory=list)  # ids resolved by name
    paired: int = 0

    def fail(self, message: str) -> None:
        self.ok = False
        self.failures.append(message)


def read_calls(path: Path) -> list[dict[str, Any]]:
    """A trace's calls, normalised as compare does (fds named, probes labelled)."""
    with read_trace(str(path)) as trace:
        records = list(trace.records())
    calls = [r for r in records if r.get("type") == "call"]
    pid = next((r["pid"] for r in records if r.get("type") == "process"), 0)
    return normalise(calls, pid, self_exes(records))


def pair(recorded: list[dict[str, Any]], reference: list[dict[str, Any]]) -> dict[int, int]:
    """Recorded position -> reference position: the k-th call of a signature with the
    k-th of the same signature; then what is left by syscall, command and probe alone
    (a failed call names its object otherwise than a made one)."""
    pairs: dict[int, int] = {}
    for key in (_signature, _coarse):
        left = deque(j for j in range(len(reference)) if j not in pairs.values())
        queues: dict[str, deque[int]] = defaultdict(deque)
        for j in left:
            queues[key(reference[j])].append(j)
        for i, item in enumerate(recorded):
            if i not in pairs and queues[key(item)]:
                pairs[i] = queues[key(item)].popleft()
    return pairs


def _coarse(call: dict[str, Any]) -> str:
    probe = call.get("probe")
    return f"{call['syscall']} {call.get('cmd', '')} {probe or ''}"


def check(recorded: list[dict[str, Any]], report: dict[str, Any],
          reference: list[dict[str, Any]]) -> Check:
    result = Check()
    pairs = pair(recorded, reference)
    calls = {c["position"]: c for c in report["calls"]}
    if sorted(calls) != list(range(len(recorded))):
        result.fail(f"the report covers {len(calls)} of the {len(recorded)} recorded calls")
    for position, call in sorted(calls.items()):
        item = recorded[position] if position < len(recorded) else {"syscall": "?"}
        where = f"#{call['index']} {_signature(item)}"
        result.tracepoints += [f"#{call['index']} {n}" for n in call.get("notes") or []
                               if n.startswith("tracepoint ")
                               and not n.startswith("tracepoint id")]
        here = call.get("outcome")
        if call["status"] == "skipped":
            needed = calls.get(_position_of(report, call.get("needs")))
            if needed is None or needed.get("outcome") in (None, "ok") \
                    and needed["status"] != "skipped":
                result.fail(f"{where}: skipped ({call.get('reason')}) though nothing it "
                            "needs failed here")
            continue
        reference_here = reference[pairs[position]] if position in pairs else None
        if reference_here is not None:
            result.paired += 1
            expected = outcome(reference_here)
            if here != expected:
                result.fail(f"{where}: the reference here answered {expected}, the replay "
                            f"{here}")
        elif here != call.get("recorded_outcome"):
            result.unpaired.append(f"{where}: {call.get('recorded_outcome')} recorded, "
                                   f"{here} here (the reference here made no such call)")
        if call["status"] != "different":
            continue
        sent = [d["path"] for d in call.get("differences") or []
                if d["path"].split(".")[0].split("[")[0] not in _ANSWERS
                and d["path"] != "errno"]
        if here is None:
            result.fail(f"{where}: not made here: {call.get('reason')}")
        elif sent:
            result.fail(f"{where}: the replay sent other bytes: {', '.join(sent)}")
        else:
            line = f"{where}: {call.get('recorded_outcome')} recorded, {here} here"
            if here == call.get("recorded_outcome"):
                paths = ", ".join(d["path"] for d in call.get("differences") or [])
                line += f" (answered otherwise: {paths})"
            result.differing.append(line)
    return result


def _position_of(report: dict[str, Any], index: int | None) -> int | None:
    return next((c["position"] for c in report["calls"] if c["index"] == index), None)


def summary(result: Check) -> str:
    """One line for the matrix table."""
    verdict = "as the reference here" if result.ok else "NOT as the reference here"
    text = f"{verdict} ({result.paired} paired"
    if result.unpaired:
        text += f", {len(result.unpaired)} unpaired"
    text += ")"
    other = [t.split(" ", 2)[2] for t in result.tracepoints if " recorded, " in t]
    if other:
        text += "; other tracepoint ids resolved by name: " + "; ".join(other)
    elif result.tracepoints:
        text += "; tracepoints resolved by name, same ids"
    return text


def print_check(result: Check, out: Any = sys.stdout) -> None:
    for title, lines in (("answers that differ", result.differing),
                         ("unpaired (libbpf took another path here)", result.unpaired),
                         ("tracepoints", result.tracepoints),
                         ("CHECK FAILED", result.failures)):
        if lines:
            print(f"crosscheck: {title}:", file=out)
            for line in lines:
                print(f"  {line}", file=out)
    print(f"crosscheck: {summary(result)}", file=out)


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__.strip().splitlines()[-1].strip(), file=sys.stderr)
        return 2
    recorded, report_path, reference = argv
    text = Path(report_path).read_text()
    report = json.loads(text[text.index("{"):]) if "{" in text else None
    if report is None:
        print(f"crosscheck: no JSON report in {report_path}", file=sys.stderr)
        return 1
    result = check(read_calls(Path(recorded)), report, read_calls(Path(reference)))
    print_check(result)
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
