"""bpfreplay run by an unprivileged user (issue 8): record, run, explain and --extract
as ``nobody`` end in clear messages, never tracebacks, and a trace written by root
(0600: it holds tracee memory) cannot be read by them.

The commands run in a subprocess that calls setgroups/setgid/setuid before exec
(subprocess's user=/group=/extra_groups=). Precondition: nobody must be able to run a
Python of this version and import bpfreplay and its dependencies. When this venv's
interpreter or checkout is out of nobody's reach (here the interpreter lives under
/root, 0700), the fixture makes what is missing: the system's python3.X of the same
minor version, and a world-readable copy of bpfreplay and the venv's site-packages.
Only what cannot be made (no nobody user, no such interpreter) skips, or fails under
BPFREPLAY_REQUIRE_KERNEL=1, with that reason.
"""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import REFERENCE_DIR, ROOT, kernel_required, require_kernel

MAIN = "import sys; from bpfreplay.entry import main; sys.exit(main())"
IMPORTS = "import bpfreplay.entry, bpfreplay.cli, msgpack, ptrace, elftools, rich"


def _unmet(reason: str) -> None:
    message = f"precondition for the unprivileged tests: {reason}"
    if kernel_required():
        pytest.fail(message)
    pytest.skip(message)


@dataclass
class Nobody:
    uid: int
    gid: int
    python: str
    pythonpath: str
    workdir: Path  # world-writable, for nobody's outputs

    def run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": self.pythonpath, "HOME": "/nonexistent",
               "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1"}
        return subprocess.run([self.python, "-c", MAIN, *args], user=self.uid, group=self.gid,
                              extra_groups=[], env=env, cwd=self.workdir,
                              capture_output=True, text=True, timeout=timeout)

    def can_import(self) -> str | None:
        """None if nobody imports bpfreplay with this set-up, else why not."""
        env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": self.pythonpath, "HOME": "/nonexistent",
               "PYTHONDONTWRITEBYTECODE": "1"}
        try:
            done = subprocess.run([self.python, "-c", IMPORTS], user=self.uid, group=self.gid,
                                  extra_groups=[], env=env, cwd=self.workdir,
                                  capture_output=True, text=True, timeout=60)
        except OSError as e:
            return f"{self.python}: {e.strerror}"
        return None if done.returncode == 0 else done.stderr.strip().splitlines()[-1]


def _world_readable_copy(base: Path, site: Path) -> str:
    """bpfreplay and the venv's packages copied where anyone can read them."""
    code = base / "code"
    shutil.copytree(ROOT / "bpfreplay", code / "bpfreplay",
                    ignore=shutil.ignore_patterns("__pycache__"))
    skip = {"pip", "hypothesis", "_pytest", "pytest", "setuptools", "ruff", "__pycache__"}
    for entry in site.iterdir():
        if entry.name in skip or entry.name.startswith("__editable__") or \
                entry.suffix == ".pth":
            continue
        target = code / entry.name
        if entry.is_dir():
            shutil.copytree(entry, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(entry, target)
    for dirpath, dirnames, filenames in os.walk(base):
        for d in dirnames:
            os.chmod(os.path.join(dirpath, d), 0o755)
        for f in filenames:
            p = os.path.join(dirpath, f)
            os.chmod(p, os.stat(p).st_mode | 0o444)
    return str(code)


@pytest.fixture(scope="module")
def nobody() -> Iterator[Nobody]:
    require_kernel()  # root, to drop to nobody at all
    try:
        user = pwd.getpwnam("nobody")
    except KeyError:
        _unmet("no user 'nobody' on this machine")
    base = Path(tempfile.mkdtemp(prefix="bpfreplay-nobody-", dir="/tmp"))
    try:
        os.chmod(base, 0o755)
        work = base / "work"
        work.mkdir()
        os.chmod(work, 0o777)
        site = Path(sysconfig.get_paths()["purelib"])
        version = f"{sys.version_info.major}.{sys.version_info.minor}"
        pythons = [os.path.realpath(sys.executable), f"/usr/bin/python{version}",
                   f"/usr/local/bin/python{version}"]
        pythons = [p for p in dict.fromkeys(pythons) if os.path.exists(p)]
        reasons = []
        found = None
        for python in pythons:  # the checkout as it is first, then a readable copy
            n = Nobody(user.pw_uid, user.pw_gid, python, f"{ROOT}:{site}", work)
            why = n.can_import()
            if why is None:
                found = n
                break
            reasons.append(f"{python} with {n.pythonpath}: {why}")
        if found is None:
            copy = _world_readable_copy(base, site)
            for python in pythons:
                n = Nobody(user.pw_uid, user.pw_gid, python, copy, work)
                why = n.can_import()
                if why is None:
                    found = n
                    break
                reasons.append(f"{python} with a world-readable copy: {why}")
        if found is None:
            _unmet("nobody can run no Python " + version + " that imports bpfreplay: "
                   + "; ".join(reasons))
        yield found
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _clean(result: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in result.stderr, result.stderr


def test_trace_written_by_root_is_unreadable_by_nobody(nobody: Nobody) -> None:
    """Trace files hold tracee memory: root's is 0600 and nobody's explain says it
    cannot open it (it was 0644 and read back)."""
    trace = nobody.workdir / "root.mp"
    done = subprocess.run([str(Path(sys.executable).parent / "bpfreplay"), "record", "-q",
                           "-o", str(trace), "--", "/bin/true"], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE(trace.stat().st_mode) == 0o600
    for mode in ([], ["-v"], ["--json"]):
        result = nobody.run("explain", *mode, str(trace))
        _clean(result)
        assert result.returncode == 1
        assert str(trace) in result.stderr and "Permission denied" in result.stderr, \
            result.stderr
    trace.unlink()


def test_explain_as_nobody_reads_a_public_trace(nobody: Nobody) -> None:
    """The set-up works: nobody explains the repository's example trace."""
    result = nobody.run("explain", str(ROOT / "traces" / "minimal.mp"))
    _clean(result)
    assert result.returncode == 0, result.stderr
    assert "BPF_PROG_LOAD" in result.stdout


def test_record_as_nobody(nobody: Nobody) -> None:
    """Recording its own child works unprivileged; the trace is nobody's, 0600. Writing
    where nobody may not says so; attaching to pid 1 says ptrace was refused and why,
    and leaves no trace behind."""
    out = nobody.workdir / "own.mp"
    result = nobody.run("record", "-o", str(out), "--", "/bin/true")
    _clean(result)
    assert result.returncode == 0, result.stderr
    st = out.stat()
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (nobody.uid, 0o600)
    out.unlink()

    forbidden = ROOT / "nobody-may-not-write-here.mp"
    result = nobody.run("record", "-o", str(forbidden), "--", "/bin/true")
    _clean(result)
    assert result.returncode == 1
    assert str(forbidden) in result.stderr and "Permission denied" in result.stderr, \
        result.stderr
    assert not forbidden.exists()

    attached = nobody.workdir / "pid1.mp"
    result = nobody.run("record", "-o", str(attached), "-p", "1")
    _clean(result)
    assert result.returncode == 1
    assert "attaching to pid 1" in result.stderr and "not permitted" in result.stderr, \
        result.stderr
    assert not attached.exists(), "a header-only trace was left behind"


def test_run_as_nobody_says_bpf_is_refused(nobody: Nobody) -> None:
    obj = REFERENCE_DIR / "minimal.bpf.o"
    if not obj.exists():
        pytest.skip(f"{obj} not built (make reference)")
    if Path("/proc/sys/kernel/unprivileged_bpf_disabled").read_text().strip() == "0":
        pytest.skip("unprivileged bpf() is enabled on this machine")
    result = nobody.run("run", str(obj), "--duration", "1")
    _clean(result)
    assert result.returncode == 1
    assert "error:" in result.stderr and "not permitted" in result.stderr, result.stderr


def test_extract_as_nobody(nobody: Nobody) -> None:
    """--extract into a directory nobody may not write: the payload and the directory
    named with the reason; into its own: the payloads, nobody's."""
    trace = str(ROOT / "traces" / "minimal.mp")
    closed = nobody.workdir.parent / "closed"
    closed.mkdir(mode=0o755, exist_ok=True)
    result = nobody.run("explain", "--extract", str(closed), trace)
    _clean(result)
    assert result.returncode == 1
    assert str(closed) in result.stderr and "Permission denied" in result.stderr, \
        result.stderr
    assert not list(closed.iterdir())

    own = nobody.workdir / "payloads"
    result = nobody.run("explain", "--extract", str(own), trace)
    _clean(result)
    assert result.returncode == 0, result.stderr
    files = list(own.iterdir())
    assert files and all(f.stat().st_uid == nobody.uid for f in files)
