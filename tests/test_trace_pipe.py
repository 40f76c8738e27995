"""Which objects make `bpfreplay run` take the trace pipe (it has one reader): those
whose programs call bpf_trace_printk/bpf_trace_vprintk, by llvm-objdump's view of
the same objects."""

from __future__ import annotations

import re
import subprocess

import pytest

from bpfreplay.loader.spec import load_spec
from bpfreplay.trace_pipe import calls_trace_printk
from tests.conftest import REFERENCE_DIR, ROOT, _built, require_tool

OBJECTS = [
    (REFERENCE_DIR / "minimal.bpf.o", REFERENCE_DIR),
    (ROOT / "tests" / "data" / "iter" / "build" / "iters.bpf.o", ROOT / "tests" / "data" / "iter"),
    (ROOT / "tests" / "data" / "loader" / "build" / "core.bpf.o",
     ROOT / "tests" / "data" / "loader"),
]


@pytest.mark.parametrize(("path", "make_dir"), OBJECTS, ids=lambda p: getattr(p, "name", ""))
def test_printk_callers_as_llvm_objdump_sees_them(path, make_dir):
    objdump = require_tool("llvm-objdump")
    obj = _built(path, make_dir)
    text = subprocess.run([objdump, "-d", str(obj)], capture_output=True, text=True,
                          check=True).stdout
    # helper calls (src_reg 0): "85 00 .. .. imm" printed as "call N"
    theirs = bool(re.search(r"\t85 00(?: [0-9a-f]{2}){6}\tcall (6|177)$", text, re.M))
    spec = load_spec(str(obj))
    assert any(calls_trace_printk(p.insns) for p in spec.programs) == theirs
    if path.name == "minimal.bpf.o":
        assert theirs  # the reference prints; an iterator object does not
    if path.name == "iters.bpf.o":
        assert not theirs
