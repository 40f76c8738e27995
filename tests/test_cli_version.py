"""`bpfreplay --version` answers before argparse is imported (entry.py's fast path): the
same text and status as the parser's own version action."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_fast_version_is_the_parsers():
    script = Path(sys.executable).parent / "bpfreplay"
    fast = subprocess.run([str(script), "--version"], capture_output=True, text=True,
                          timeout=60)
    parser = subprocess.run([sys.executable, "-m", "bpfreplay.cli", "--version"],
                            capture_output=True, text=True, timeout=60)
    assert fast.returncode == parser.returncode == 0
    assert fast.stdout == parser.stdout and fast.stdout.startswith("bpfreplay ")
    # and nothing of the command line was imported for it
    imported = subprocess.run([sys.executable, "-X", "importtime", str(script), "--version"],
                              capture_output=True, text=True, timeout=60).stderr
    assert "argparse" not in imported and "bpfreplay.cli" not in imported
