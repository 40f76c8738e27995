"""Printing a parity report: what matched, the differences grouped by kind (each with
its call, field and both values), the application's own calls apart, the module-BTF
walk's counts, and the outcome line."""

from __future__ import annotations

import json
import sys
from typing import Any, TextIO

from bpfreplay.compare import DIFFERENCES, FAILED_PARITY, PARITY, Difference, ParityReport

_MAX_VALUE = 160
_MAX_APPLICATION = 40  # application calls listed; the rest are counted
_GROUPS = (
    ("missing", "calls only in the reference"),
    ("extra", "calls only in ours"),
    ("moved", "calls made in another order"),
    ("size", "attrs of another size"),
    ("changed", "fields that differ"),
)


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= _MAX_VALUE else text[:_MAX_VALUE - 3] + "..."


def _where(d: Difference | Any) -> str:
    where = f"reference #{d.reference_index}" if d.reference_index is not None else ""
    if d.our_index is not None:
        where += (", " if where else "") + f"ours #{d.our_index}"
    return where


def outcome_line(report: ParityReport) -> str:
    outcome = report.outcome
    if outcome == PARITY:
        return ("FULL PARITY: same calls, same order, same attrs, payloads and answers")
    if outcome == FAILED_PARITY:
        failure = report.reference_failure
        assert failure is not None
        log = "the same verifier log" if failure.log else "no log"
        return (f"PARITY OF A FAILED LOAD: both failed at {failure.call} with "
                f"{failure.errno_name} ({log}); every call up to it matches")
    assert outcome == DIFFERENCES
    return f"{len(report.differences) or 'the'} difference(s): NOT AT PARITY"


def print_report(report: ParityReport, reference: str, ours: str,
                 out: TextIO = sys.stdout) -> None:
    from bpfreplay.decode.terminal import EscapingWriter

    out = EscapingWriter(out)  # type: ignore[assignment]  # names and logs from the traces
    print(f"parity: reference {reference} ({report.reference_calls} calls) vs. "
          f"ours {ours} ({report.our_calls} calls)", file=out)
    apart = []
    walk = report.walk
    if walk is not None and (walk.reference_foreign_calls or walk.our_foreign_calls):
        apart.append(f"{walk.reference_foreign_calls}/{walk.our_foreign_calls} calls on "
                     "foreign BTF objects")
    app_calls = [c for c in report.application if not getattr(c, "note", "")]
    if app_calls:
        ref_app = sum(1 for c in app_calls if c.reference_index is not None)
        our_app = sum(1 for c in app_calls if c.our_index is not None)
        apart.append(f"{ref_app}/{our_app} application calls")
    notes = len(report.application) - len(app_calls)
    if notes:
        apart.append(f"the options of {notes} hand attach(es)")
    aside = f"; apart (reference/ours): {', '.join(apart)}" if apart else ""
    print(f"parity: {report.matched} calls identical after normalisation "
          f"(docs/parity.md){aside}", file=out)
    _print_walk(report, out)
    if getattr(report, "not_auto_attached", None):
        print("parity: programs libbpf's skeleton attach does not auto-attach (by their "
              f"sections): {', '.join(report.not_auto_attached)}; the reference's "
              "attaches of these are its application's", file=out)
    if report.teardown_skipped:
        print(f"parity: the reference has no teardown (stopped before it): our "
              f"{report.teardown_skipped} teardown call(s) not compared", file=out)
    _print_application(report, out)
    _print_failures(report, out)
    if report.differences:
        print(f"parity: {len(report.differences)} difference(s):", file=out)
        for kind, title in _GROUPS:
            group = [d for d in report.differences if d.kind == kind]
            if group:
                print(f"  {title} ({len(group)}):", file=out)
            for d in group:
                _print_difference(d, out)
    print(f"parity: {outcome_line(report)}", file=out)


def _print_difference(d: Difference, out: TextIO) -> None:
    if d.kind in ("missing", "extra"):
        print(f"    [{_where(d)}] {d.call}", file=out)
        return
    print(f"    [{_where(d)}] {d.call}: {d.path}", file=out)
    if d.kind == "moved":
        return
    ref_value, our_value = d.reference, d.ours
    if isinstance(ref_value, str) and isinstance(our_value, str) \
            and "\n" in ref_value + our_value:
        ref_lines, our_lines = ref_value.split("\n"), our_value.split("\n")
        common = min(len(ref_lines), len(our_lines))
        line = next((n for n in range(common) if ref_lines[n] != our_lines[n]), common)
        print(f"        first difference in line {line + 1}:", file=out)
        ref_value = ref_lines[line] if line < len(ref_lines) else "(no such line)"
        our_value = our_lines[line] if line < len(our_lines) else "(no such line)"
    print(f"        reference: {_short(ref_value)}", file=out)
    print(f"        ours:      {_short(our_value)}", file=out)


def _print_walk(report: ParityReport, out: TextIO) -> None:
    walk = report.walk
    if walk is None or not (walk.reference_walked or walk.our_walked):
        return
    for side, walked, kernel, foreign in (
            ("reference", walk.reference_walked, walk.reference_kernel, walk.reference_foreign),
            ("ours", walk.our_walked, walk.our_kernel, walk.our_foreign)):
        if not walked:
            print(f"parity: module-BTF walk: {side}: none", file=out)
            continue
        found = "; ".join(kernel) if kernel else "no kernel BTF"
        print(f"parity: module-BTF walk: {side}: {found}; {foreign} foreign BTF object(s) "
              "walked over (machine state, not compared)", file=out)


def _print_application(report: ParityReport, out: TextIO) -> None:
    calls = report.application
    if not calls:
        return
    own = [c for c in calls if not getattr(c, "note", "")]
    both = sum(1 for c in own if c.reference_index is not None and c.our_index is not None)
    mine = sum(1 for c in own if c.reference_index is None)
    options = len(calls) - len(own)
    aside = f"; the options of {options} hand attach(es)" if options else ""
    print(f"parity: application section ({len(own)} call(s), not loader differences; "
          f"{both} made by both, {mine} by ours only{aside}):", file=out)
    for c in calls[:_MAX_APPLICATION]:
        if getattr(c, "note", ""):
            side = c.note
        elif c.reference_index is not None and c.our_index is not None:
            side = "both, identical" if c.identical else "both, not identical"
        else:
            side = "reference only" if c.our_index is None else "ours only"
        print(f"    [{_where(c)}] {c.call} ({side})", file=out)
    if len(calls) > _MAX_APPLICATION:
        print(f"    ... and {len(calls) - _MAX_APPLICATION} more", file=out)


def _print_failures(report: ParityReport, out: TextIO) -> None:
    for side, failure in (("the reference's", report.reference_failure),
                          ("our", report.our_failure)):
        if failure is not None:
            print(f"parity: {side} load ended with #{failure.index} {failure.call} "
                  f"({failure.errno_name})", file=out)
