"""A program in a section libbpf 1.1.2 does not know, beside a map and a known program:
libbpf opens it (prog type UNSPEC), loads the BTF, creates the maps, loads the programs
before it, and fails at it in bpf_object_load_prog() ("missing BPF prog type",
-EINVAL); unless it is not autoloaded (SEC("?...")), when the load works. Compared
with refload's recorded trace (the corpus object unknown_section has no map and one
program, so it cannot show the order)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT, kernel_required, require_kernel, require_tool
from tests.corpus.manifest import REFLOAD

BPFREPLAY = str(ROOT / ".venv" / "bin" / "bpfreplay")

SOURCE = """
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
char LICENSE[] SEC("license") = "GPL";
__u64 counter;
SEC("tp/syscalls/sys_enter_getppid")
int known_first(void *ctx) { counter++; return 0; }
SEC("%s/corpus:corpus_target_*")
int unknown_second(void *ctx) { counter++; return 0; }
"""


def _build(tmp_path: Path, section: str) -> Path:
    clang = require_tool("clang")
    src = tmp_path / "obj.bpf.c"
    src.write_text(SOURCE % section)
    machine = subprocess.run(["cc", "-dumpmachine"], capture_output=True, text=True).stdout
    obj = tmp_path / "unknown_sec.bpf.o"
    subprocess.run([clang, "-g", "-O2", "-target", "bpf", f"-I/usr/include/{machine.strip()}",
                    "-c", str(src), "-o", str(obj)], check=True)
    return obj


def _compare(tmp_path: Path, obj: Path) -> tuple[subprocess.CompletedProcess, str]:
    require_kernel()
    if not REFLOAD.exists():
        message = "needs the corpus build (make -C tests/corpus)"
        if kernel_required():
            pytest.fail(message)
        pytest.skip(message)
    ref = tmp_path / "ref.mp"
    recorded = subprocess.run([BPFREPLAY, "record", "-o", str(ref), "--", str(REFLOAD),
                               str(obj), "0.2"], capture_output=True, text=True, timeout=120)
    run = subprocess.run([BPFREPLAY, "run", str(obj), "--compare", str(ref), "--duration",
                          "0.2"], capture_output=True, text=True, timeout=120)
    return run, recorded.stderr


def test_unknown_section_fails_at_its_program_after_maps_and_earlier_programs(tmp_path):
    obj = _build(tmp_path, "uprobe.multi")
    run, ref_err = _compare(tmp_path, obj)
    assert "missing BPF prog type" in ref_err and "load failed: -22" in ref_err, ref_err
    assert run.returncode == 3, run.stdout[-3000:] + run.stderr[-3000:]
    assert "PARITY OF A FAILED LOAD" in run.stdout
    # the load got that far on both sides: the map and the first program exist
    explained = subprocess.run([BPFREPLAY, "explain", str(tmp_path / "ref.mp")],
                               capture_output=True, text=True, check=True).stdout
    loads = [line for line in explained.splitlines() if " object " in line
             and "BPF_PROG_LOAD" in line]
    assert "map_name=\"unknown_.bss\"" in explained
    assert len(loads) == 1 and 'prog_name="known_first"' in loads[0], loads
    assert "missing BPF prog type, check ELF section name 'uprobe.multi/" in run.stderr


def test_unknown_section_not_autoloaded_loads(tmp_path):
    obj = _build(tmp_path, "?uprobe.multi")
    run, ref_err = _compare(tmp_path, obj)
    assert "loaded and attached" in ref_err, ref_err
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "FULL PARITY" in run.stdout
