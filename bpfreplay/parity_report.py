"""Printing a parity report: what matched, and each difference with its call, field
and both values."""

from __future__ import annotations

import json
import sys
from typing import Any, TextIO

from bpfreplay.compare import ParityReport

_MAX_VALUE = 160


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= _MAX_VALUE else text[:_MAX_VALUE - 3] + "..."


def print_report(report: ParityReport, reference: str, ours: str,
                 out: TextIO = sys.stdout) -> None:
    print(f"parity: reference {reference} ({report.reference_calls} calls) vs. "
          f"ours {ours} ({report.our_calls} calls)", file=out)
    print(f"parity: {report.matched} calls identical after normalisation "
          "(docs/parity.md)", file=out)
    if report.at_parity:
        print("parity: FULL PARITY: same calls, same order, same attrs, payloads and "
              "answers", file=out)
        return
    print(f"parity: {len(report.differences)} difference(s):", file=out)
    for d in report.differences:
        where = f"reference #{d.reference_index}" if d.reference_index is not None else ""
        if d.our_index is not None:
            where += (", " if where else "") + f"ours #{d.our_index}"
        print(f"  [{where}] {d.call}: {d.path}", file=out)
        if d.path == "(whole call)":
            side = "only in the reference" if d.our_index is None else "only in ours"
            print(f"      {side}", file=out)
        else:
            print(f"      reference: {_short(d.reference)}", file=out)
            print(f"      ours:      {_short(d.ours)}", file=out)
