"""Shared test helpers: kernel/tool requirements and the built reference programs."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
REFERENCE_DIR = ROOT / "reference" / "libbpf-bootstrap"
PROGS_DIR = ROOT / "tests" / "progs" / "build"


def pytest_configure(config) -> None:
    """The loader's vmlinux BTF index cache (loader/btf_cache.py) goes to a directory of
    this session, not the user's ~/.cache, unless a test or the caller chose one."""
    if "BPFREPLAY_CACHE" not in os.environ:
        import tempfile

        os.environ["BPFREPLAY_CACHE"] = tempfile.mkdtemp(prefix="bpfreplay-test-cache-")


def kernel_required() -> bool:
    return os.environ.get("BPFREPLAY_REQUIRE_KERNEL") == "1"


def require_kernel() -> None:
    """Skip (or fail in CI, where BPFREPLAY_REQUIRE_KERNEL=1) without root and bpf()."""
    problems = []
    if os.geteuid() != 0:
        problems.append("not root")
    if not os.path.exists("/sys/kernel/btf/vmlinux"):
        problems.append("no /sys/kernel/btf/vmlinux")
    if problems:
        message = "needs the kernel: " + ", ".join(problems)
        if kernel_required():
            pytest.fail(message)
        pytest.skip(message)


def require_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        message = f"needs {name}"
        if kernel_required():
            pytest.fail(message)
        pytest.skip(message)
    return path


def _built(path: Path, make_dir: Path) -> Path:
    if not path.exists():
        result = subprocess.run(["make", "-s", "-C", str(make_dir)], capture_output=True,
                                text=True)
        if result.returncode != 0 or not path.exists():
            message = f"building {path.name} failed: {result.stderr[-2000:]}"
            if kernel_required():
                pytest.fail(message)
            pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def minimal_binary() -> Path:
    require_kernel()
    return _built(REFERENCE_DIR / "minimal", REFERENCE_DIR)


@pytest.fixture(scope="session")
def minimal_object() -> Path:
    return _built(REFERENCE_DIR / "minimal.bpf.o", REFERENCE_DIR)


@pytest.fixture(scope="session")
def test_progs() -> Path:
    _built(PROGS_DIR / "bpf_heavy", ROOT / "tests" / "progs")
    return PROGS_DIR
