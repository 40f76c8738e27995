"""The parity report and the CLI's error line print names and logs that come from
traces: a control character in them reaches the terminal escaped, newlines of the
report itself kept."""

from __future__ import annotations

import io
import subprocess
import sys

from bpfreplay.compare import Difference, ParityReport
from bpfreplay.parity_report import print_report

EVIL = "map\x1b[2J\x07\rname"


def test_report_escapes_trace_strings():
    report = ParityReport(1, 1, differences=[
        Difference(0, 0, f"bpf BPF_MAP_CREATE map:{EVIL}#1", "fields.map_name", EVIL,
                   "map_name")])
    out = io.StringIO()
    print_report(report, f"/tmp/{EVIL}.mp", "ours.mp", out=out)
    text = out.getvalue()
    assert "\x1b" not in text and "\x07" not in text and "\r" not in text
    assert "map\\x1b[2J\\x07\\rname" in text
    assert text.count("\n") >= 4  # the report's own lines are kept


def test_cli_error_line_escapes_the_path(tmp_path):
    missing = tmp_path / "x\x1b]0;owned\x07.mp"
    result = subprocess.run([sys.executable, "-m", "bpfreplay.cli", "explain", str(missing)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "\x1b" not in result.stderr and "\x07" not in result.stderr
    assert "Traceback" not in result.stderr
