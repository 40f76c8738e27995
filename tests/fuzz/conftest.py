"""Fuzz settings: a few examples per harness inside ``make test``; ``make fuzz`` sets
BPFREPLAY_FUZZ_EXAMPLES (20000) and BPFREPLAY_FUZZ_REPORT (a JSON file of the figures:
cases, clean errors, max seconds per case, peak RSS)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.fuzz import harness

EXAMPLES = int(os.environ.get("BPFREPLAY_FUZZ_EXAMPLES", "25"))


@pytest.fixture(scope="session")
def seeds(tmp_path_factory) -> list[harness.Seed]:
    """The kept traces, and a fresh recording of the reference's minimal when it is
    built (``make test`` builds it) and this machine can record."""
    extra = []
    minimal = harness.ROOT / "reference" / "libbpf-bootstrap" / "minimal"
    if minimal.exists():
        out = tmp_path_factory.mktemp("fuzz-seed") / "fresh-minimal.mp"
        done = subprocess.run([sys.executable, "-m", "bpfreplay.cli", "record", "-q", "-o",
                               str(out), "--", str(minimal), "0.2"], capture_output=True,
                              timeout=60)
        if done.returncode == 0 and out.exists():
            extra.append(out)
    return harness.seed_traces(extra)


def pytest_sessionfinish(session, exitstatus) -> None:
    harness.dump_figures(int(exitstatus))
