"""The README's Python API example, taken from README.md as it is and run: while it
runs, this test starts a program, and the example prints that program's exec and exit
with its pid, its parent (us) and its name."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from tests.conftest import ROOT, _built, require_kernel
from tests.corpus.manifest import CORPUS_DIR, by_name


def readme_example() -> str:
    """The first ```python block of the README's "## Python API" section."""
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## Python API\n", 1)[1].split("\n## ", 1)[0]
    found = re.search(r"^```python\n(.*?)^```$", section, re.S | re.M)
    assert found, "no python block in the README's Python API section"
    return found.group(1)


def test_readme_example_prints_the_exec_and_exit_of_a_program_we_run(tmp_path):
    require_kernel()
    _built(by_name("bootstrap").path, CORPUS_DIR)
    script = tmp_path / "example.py"
    script.write_text(readme_example())
    example = subprocess.Popen([sys.executable, str(script), "4"], cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert example.stdout is not None
    header = example.stdout.readline()  # printed once the programs are attached
    try:
        assert header.split() == ["EVENT", "COMM", "PID", "PPID", "EXIT", "CODE"], header
        ours = subprocess.Popen(["/bin/sleep", "0"])
        ours.wait()
    finally:
        out, err = example.communicate(timeout=120)
    assert example.returncode == 0, err[-3000:]
    mine = [line.split() for line in out.splitlines()
            if len(line.split()) > 2 and line.split()[2] == str(ours.pid)]
    assert ["EXEC", "sleep", str(ours.pid), str(os.getpid())] in mine, out[-3000:]
    assert any(fields[:5] == ["EXIT", "sleep", str(ours.pid), str(os.getpid()), "[0]"]
               for fields in mine), out[-3000:]
