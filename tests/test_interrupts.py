"""Ctrl-C and write errors (issue 8): SIGINT at several moments of record, explain and
run, from the imports on, ends without a traceback, with 130 when it interrupted work
and the command's own status where Ctrl-C is its normal end; a trace that cannot be
written says what and why, exits non-zero, no traceback.

The commands run through the installed console script (.venv/bin/bpfreplay, whose
entry point is bpfreplay.entry:main). BPFREPLAY_TEST_IMPORT_DELAY makes the entry
point sleep before it imports the command line, so that a SIGINT lands "during the
imports" at a known moment.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import msgpack
import pytest

from tests.conftest import ROOT, require_kernel

BPFREPLAY = Path(sys.executable).parent / "bpfreplay"
MINIMAL_TRACE = ROOT / "traces" / "minimal.mp"
UPROBE_OBJECT = ROOT / "tests" / "data" / "run" / "build" / "uprobe.bpf.o"
# A tracee whose own answer to SIGINT is exit status 7: record's status after a Ctrl-C
# that reached it (the recorder forwards SIGINT) is 7, not the recorder's 130.
TRAPPING = ["/bin/sh", "-c", "trap 'exit 7' INT; while :; do sleep 0.02; done"]


def _script() -> Path:
    if not BPFREPLAY.exists():
        pytest.skip(f"no console script {BPFREPLAY} (make venv)")
    return BPFREPLAY


def _interrupt(args: list[str], after: float, *, delay: float | None = None,
               timeout: float = 30) -> tuple[int, str]:
    """Run bpfreplay ARGS, SIGINT it (it alone, not its process group) after AFTER
    seconds; its exit status and stderr."""
    env = dict(os.environ)
    env.pop("BPFREPLAY_TEST_IMPORT_DELAY", None)
    if delay is not None:
        env["BPFREPLAY_TEST_IMPORT_DELAY"] = str(delay)
    p = subprocess.Popen([str(_script()), *args], stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, env=env, cwd=ROOT)
    time.sleep(after)
    p.send_signal(signal.SIGINT)
    try:
        _out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.communicate()
        pytest.fail(f"bpfreplay {args} still running {timeout} s after SIGINT")
    return p.returncode, err.decode(errors="replace")


def _no_traceback(stderr: str) -> None:
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr


@pytest.mark.parametrize("command", ["explain", "record", "run"])
def test_ctrl_c_during_imports_exits_130(command: str, tmp_path: Path) -> None:
    args = {"explain": ["explain", str(MINIMAL_TRACE)],
            "record": ["record", "-o", str(tmp_path / "t.mp"), "--", *TRAPPING],
            "run": ["run", str(UPROBE_OBJECT)]}[command]
    status, stderr = _interrupt(args, 0.4, delay=3)
    _no_traceback(stderr)
    assert status == 130, stderr
    assert not (tmp_path / "t.mp").exists()


@pytest.fixture(scope="module")
def long_trace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """traces/minimal.mp's records 400 times over: explain takes seconds."""
    records = list(msgpack.Unpacker(MINIMAL_TRACE.open("rb"), raw=False,
                                    strict_map_key=False))
    path = tmp_path_factory.mktemp("long") / "long.mp"
    with path.open("wb") as f:
        f.write(msgpack.packb(records[0]))
        body = b"".join(msgpack.packb(r) for r in records[1:])
        for _ in range(400):
            f.write(body)
    return path


@pytest.mark.parametrize("after", [0.15, 0.4, 0.9])
@pytest.mark.parametrize("mode", [[], ["-v"], ["--json"]])
def test_ctrl_c_during_explain_exits_130(long_trace: Path, mode: list[str],
                                        after: float) -> None:
    status, stderr = _interrupt(["explain", *mode, str(long_trace)], after)
    _no_traceback(stderr)
    assert status == 130, stderr


@pytest.mark.parametrize("after", [0.1, 0.3, 0.6, 1.2])
def test_ctrl_c_during_record_keeps_the_tracee_status(after: float,
                                                      tmp_path: Path) -> None:
    """Before the recorder started the tracee: 130. After: the tracee's status (7,
    its answer to the SIGINT the recorder passed on), and a trace that reads."""
    require_kernel()
    out = tmp_path / "t.mp"
    status, stderr = _interrupt(["record", "-o", str(out), "--", *TRAPPING], after)
    _no_traceback(stderr)
    assert status in (7, 130), stderr
    if status == 7:
        assert "exit status 7" in stderr
        assert out.exists()


@pytest.mark.parametrize("after", [0.2, 0.35, 0.5, 0.7, 1.0, 1.5, 2.5])
def test_ctrl_c_during_run_load_or_stream(after: float) -> None:
    """run: 130 when Ctrl-C came before the programs were attached (imports, spec,
    load, attach: an interrupted load is not a completed run), 0 once it streams
    (Ctrl-C is how a run without --duration ends). Before: 0 for an interrupted load,
    and tracebacks at some moments."""
    require_kernel()
    if not UPROBE_OBJECT.exists():
        pytest.skip(f"{UPROBE_OBJECT} not built (make testprogs)")
    status, stderr = _interrupt(["run", str(UPROBE_OBJECT)], after)
    _no_traceback(stderr)
    streaming = "bpfreplay: running" in stderr
    assert status == (0 if streaming else 130), stderr


@pytest.mark.parametrize("target", ["/dev/full", "/proc/version"])
def test_record_write_error_is_a_clean_error(target: str) -> None:
    require_kernel()
    result = subprocess.run([str(_script()), "record", "-o", target, "--", "/bin/true"],
                            capture_output=True, text=True, timeout=30, cwd=ROOT)
    _no_traceback(result.stderr)
    assert result.returncode not in (0, 130)
    assert target in result.stderr and "error" in result.stderr, result.stderr


def test_record_on_a_full_disk_names_the_file_and_the_reason(tmp_path: Path,
                                                             minimal_binary: Path) -> None:
    """A tmpfs with one free page: the header fits, the calls do not. The error is
    about writing the trace (not worded as a tracing error), the tracee is killed."""
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8k", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {done.stderr.strip()}")
    try:
        (mount / "filler").write_bytes(b"\0" * 4096)
        out = mount / "t.mp"
        result = subprocess.run([str(_script()), "record", "-o", str(out), "--",
                                 str(minimal_binary), "5"],
                                capture_output=True, text=True, timeout=60, cwd=ROOT)
        _no_traceback(result.stderr)
        assert result.returncode not in (0, 130), result.stderr
        assert str(out) in result.stderr and "No space left on device" in result.stderr, \
            result.stderr
        leftover = subprocess.run(["pgrep", "-f", f"^{minimal_binary} 5$"],
                                  capture_output=True, text=True)
        assert not leftover.stdout.strip(), "the tracee was left running"
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_bad_interpreter_leaves_no_trace(tmp_path: Path) -> None:
    """execve() of a script whose #! interpreter is missing: an error that names the
    interpreter, and no header-only trace left behind."""
    require_kernel()
    script = tmp_path / "bad.sh"
    script.write_text("#!/nonexistent/interpreter\necho hi\n")
    script.chmod(0o755)
    out = tmp_path / "t.mp"
    result = subprocess.run([str(_script()), "record", "-o", str(out), "--", str(script)],
                            capture_output=True, text=True, timeout=30)
    _no_traceback(result.stderr)
    assert result.returncode == 1
    assert "/nonexistent/interpreter" in result.stderr
    assert not out.exists()
