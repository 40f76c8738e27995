"""Our loader on a kernel that has module BTFs: Debian's 6.1 booted under qemu
(tools/kernel-matrix/), where tests/data/module_btf/compare.sh runs `bpfreplay run
--compare` of each object against libbpf's own recording made on that kernel (CO-RE
against module types, kfuncs from a module, fentry and tp_btf targets in a module, and
an object that must not walk at all). Every one must reach full parity: the same module
BTF walk, at the same place, with the same fds passed on."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from tests.conftest import ROOT, kernel_required, require_kernel

COMPARE = ROOT / "tests" / "data" / "module_btf" / "compare.sh"
OBJECTS = ("core_module", "core_vmlinux", "kfunc_module", "fentry_module", "tp_btf_module")


def test_module_btf_parity_on_debian_6_1():
    require_kernel()
    missing = [t for t in ("qemu-system-x86_64", "busybox") if shutil.which(t) is None]
    if missing:
        message = f"needs {', '.join(missing)} (make kernel-packages)"
        if kernel_required():
            pytest.fail(message)
        pytest.skip(message)
    result = subprocess.run([str(COMPARE), "6.1"], capture_output=True, text=True,
                            timeout=900)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-4000:]
    reports = dict(re.findall(r"^== (\w+): exit \d+\n(.*?)(?=^== |\Z)", result.stdout,
                              re.M | re.S))
    assert sorted(reports) == sorted(OBJECTS), out[-4000:]
    for name, report in reports.items():
        assert "parity: FULL PARITY" in report, (name, report[-2000:])
    # the walk happened where libbpf made it, over the same module BTFs
    for name in ("core_module", "kfunc_module", "fentry_module", "tp_btf_module"):
        walks = re.findall(r"^parity: module-BTF walk: (?:reference|ours): (.*)$",
                           reports[name], re.M)
        assert len(walks) == 2 and "module BTF (kept)" in walks[0], (name, walks)
        assert walks[0].split("; ")[:-1] == walks[1].split("; ")[:-1]
    assert "module-BTF walk" not in reports["core_vmlinux"]
