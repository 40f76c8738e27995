#!/usr/bin/env python3
"""The kernel matrix (`make test-kernels`): for each Debian kernel, one qemu boot
(run-in-kernel.sh) that runs guest-matrix.sh there — the demo (libbpf's reference
recorded in the guest, then `bpfreplay run --compare` against it), the host's fresh
recording replayed in the guest and the kernel-facing tests — then, on the host, the
guest's recording replayed here. Each cross replay is checked (crosscheck.py) against
libbpf's reference recorded on the kernel it ran on: the same outcome for every call
both made. Prints one table: kernel x tests x demo parity x replays. Exit status 0
when every cell passed (a replay that reports differences is an answer, not a failure;
a replay that cannot run, or whose answers are not the reference's there, is), 1
otherwise.

    usage: tools/kernel-matrix/matrix.py [--kernels "5.10 6.1 6.12"] [--out DIR]
                                         [--tests FILE... | --ci] [--timeout S]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
BIN = ROOT / ".venv" / "bin"
REFERENCE = ROOT / "reference" / "libbpf-bootstrap" / "minimal"

# The kernel-facing tests: the files whose tests load, attach or record on the running
# kernel (tests/conftest.py's require_kernel); test_kernel_matrix.py boots qemu itself
# and test_corpus.py runs the corpus (run separately: tools/parity_table.py).
KERNEL_FACING = (
    "test_btf_sanitize", "test_compare_hand_attach", "test_compare_hand_options",
    "test_compare_rules", "test_compare_slots", "test_compare_unions", "test_compare_walk",
    "test_decode_attrs", "test_disasm", "test_iter", "test_kprobe_multi", "test_lineinfo",
    "test_loader_spec", "test_module_btf", "test_pinning", "test_probes", "test_record",
    "test_record_capture", "test_run", "test_run_compare", "test_struct_ops", "test_sys",
    "test_uapi", "test_unknown_section", "test_usdt",
)
# .ci/run's subset (--ci), as pytest arguments: the tests that ask the kernel what
# differs between kernels (probes, uapi layouts, verifier-log disassembly, BTF
# sanitising, kprobe/attach fallbacks, pins, what strace decodes, what libbpf loads),
# not the pure ones (fuzzing, parsing) nor those that compile with clang, to keep the
# matrix within its 15 minutes for two kernels under TCG (README: the times measured).
CI_SUBSET = (
    "tests/test_probes.py", "tests/test_uapi.py", "tests/test_btf_sanitize.py",
    "tests/test_kprobe_multi.py", "tests/test_sys.py",
    *(f"tests/test_disasm.py::test_{name}" for name in (
        "verifier_log_families", "verifier_log_minimal", "bpftool_xlated_minimal")),
    "tests/test_decode_attrs.py::test_minimal_every_field_strace_prints_agrees",
    "tests/test_decode_attrs.py::test_minimal_tracepoint_config_is_named",
    "tests/test_loader_spec.py::test_kconfig_externs",
    # bpftool's dump of vmlinux BTF alone takes ~3 min under TCG
    "-k", "not never_crash and not garbage and not btf_dump_of_vmlinux",
)


@dataclass
class Row:
    kernel: str
    release: str = "?"
    tests: str = "not run"
    demo: str = "not run"
    replay_in_guest: str = "not run"
    replay_on_host: str = "not run"
    seconds: float = 0.0
    ok: bool = False


def run_child(command: list[str], **kwargs: object) -> int:
    """A child that is sent SIGTERM, not SIGKILL, when we are interrupted or killed:
    run-in-kernel.sh then ends its qemu (its EXIT trap)."""
    child = subprocess.Popen(command, **kwargs)  # type: ignore[call-overload]
    try:
        return child.wait()
    except BaseException:
        child.terminate()
        try:
            child.wait(timeout=30)
        except subprocess.TimeoutExpired:
            child.kill()
        raise


def _terminated(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def read_rc(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def tests_cell(out: Path) -> tuple[str, bool]:
    """'P passed, F failed, S skipped' from pytest's junit XML."""
    try:
        suite = ET.parse(out / "tests.xml").getroot()
    except (OSError, ET.ParseError):
        return "no result", False
    if suite.tag == "testsuites":
        suite = suite[0]
    total, skipped = int(suite.get("tests", 0)), int(suite.get("skipped", 0))
    failed = int(suite.get("failures", 0)) + int(suite.get("errors", 0))
    cell = f"{total - failed - skipped} passed, {failed} failed, {skipped} skipped"
    return cell, failed == 0 and read_rc(out / "tests.rc") == 0


def demo_cell(out: Path) -> tuple[str, bool]:
    """The parity verdict of run --compare (exit 0: parity; the report's call count)."""
    rc = read_rc(out / "demo.rc")
    if rc is None:
        return "no result", False
    text = (out / "demo.txt").read_text(errors="replace")
    calls = re.search(r"^parity: (\d+) calls identical", text, re.M)
    if rc == 0 and re.search(r"FULL PARITY", text):
        return f"full parity ({calls.group(1)} calls)" if calls else "full parity", True
    diffs = re.search(r"^parity: (\d+) difference\(s\)", text, re.M)
    return (f"{diffs.group(1)} difference(s)" if diffs else f"exit {rc}"), False


def replay_cell(out: Path, name: str) -> tuple[str, bool]:
    """The replay's summary (same/different/skipped, from its JSON report) and the
    crosscheck's verdict; a replay's exit 1 (differences) is an answer, 2 (cannot
    replay) or anything else a failure, as is a crosscheck that fails."""
    rc = read_rc(out / f"{name}.rc")
    if rc is None:
        return "no result", False
    try:
        text = (out / f"{name}.json").read_text()
        summary = json.loads(text[text.index("{"):])["summary"]
        counts = (f"{summary['same']} same, {summary['different']} different, "
                  f"{summary['skipped']} skipped")
    except (OSError, ValueError, KeyError):
        return f"exit {rc}, no report", False
    if rc not in (0, 1):
        return f"exit {rc} ({counts})", False
    check_rc = read_rc(out / f"{name}-check.rc")
    try:
        verdict = (out / f"{name}-check.txt").read_text().strip().splitlines()[-1]
        verdict = verdict.removeprefix("crosscheck: ")
    except (OSError, IndexError):
        verdict = "no crosscheck"
    return f"{counts}; {verdict}", check_rc == 0


def run_guest(kernel: str, out: Path, host_trace: Path, tests: list[str], timeout: int,
              env: dict[str, str]) -> int:
    command = [str(HERE / "run-in-kernel.sh"), "--mem", "2G", "--timeout", str(timeout),
               "--rw", str(out.parent), kernel, "--"]
    if env.get("BPFREPLAY_REQUIRE_KERNEL") == "1":
        command += ["env", "BPFREPLAY_REQUIRE_KERNEL=1"]
    command += [str(HERE / "guest-matrix.sh"), str(out), str(host_trace), *tests]
    return run_child(command, cwd=ROOT)


def host_replay(out: Path) -> None:
    """The guest's recording replayed here."""
    with open(out / "replay-on-host.json", "w") as report, \
            open(out / "replay-on-host.txt", "w") as errors:
        rc = run_child([str(BIN / "bpfreplay"), "replay", "--json", str(out / "guest.mp")],
                       stdout=report, stderr=errors, cwd=ROOT)
    (out / "replay-on-host.rc").write_text(f"{rc}\n")


def crosscheck(out: Path, name: str, recorded: Path, reference_there: Path) -> None:
    """crosscheck.py on a replay's report (pure: run on the host for both directions)."""
    if not (out / f"{name}.json").exists():
        return
    with open(out / f"{name}-check.txt", "w") as check:
        rc = run_child([str(BIN / "python"), str(HERE / "crosscheck.py"), str(recorded),
                        str(out / f"{name}.json"), str(reference_there)],
                       stdout=check, stderr=subprocess.STDOUT, cwd=ROOT)
    (out / f"{name}-check.rc").write_text(f"{rc}\n")
    print(f"--- {name}: checked against the reference recorded where it ran", flush=True)
    print((out / f"{name}-check.txt").read_text(), flush=True)


def matrix_row(kernel: str, base: Path, host_trace: Path, tests: list[str],
               timeout: int) -> Row:
    row = Row(kernel)
    out = base / kernel
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.iterdir():
        stale.unlink()
    print(f"=== Debian {kernel}: one boot (demo, replay of the host's trace, tests)",
          flush=True)
    start = time.monotonic()
    guest_rc = run_guest(kernel, out, host_trace, tests, timeout, dict(os.environ))
    row.release = (out / "kernel").read_text().strip() if (out / "kernel").exists() \
        else f"no boot (exit {guest_rc})"
    row.tests, tests_ok = tests_cell(out)
    row.demo, demo_ok = demo_cell(out)
    guest_trace = out / "guest.mp"
    if guest_trace.exists():
        crosscheck(out, "replay", host_trace, guest_trace)
    row.replay_in_guest, in_ok = replay_cell(out, "replay")
    if guest_trace.exists():
        print(f"=== host: bpfreplay replay of the trace recorded on {kernel}", flush=True)
        host_replay(out)
        crosscheck(out, "replay-on-host", guest_trace, host_trace)
        row.replay_on_host, host_ok = replay_cell(out, "replay-on-host")
    else:
        row.replay_on_host, host_ok = "no guest trace", False
    replays_ok = in_ok and host_ok
    row.seconds = time.monotonic() - start
    row.ok = tests_ok and demo_ok and replays_ok
    return row


def print_table(rows: list[Row], host_release: str) -> None:
    header = ("kernel", "tests", "demo parity", "host trace replayed there",
              f"its trace replayed on the host ({host_release})", "time")
    lines = [(f"{r.kernel} ({r.release})", r.tests, r.demo, r.replay_in_guest,
              r.replay_on_host, f"{r.seconds:.0f} s") for r in rows]
    widths = [max(len(str(c)) for c in col) for col in zip(header, *lines, strict=True)]
    fmt = "| " + " | ".join(f"{{:<{w}}}" for w in widths) + " |"
    print(fmt.format(*header))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for line in lines:
        print(fmt.format(*line))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kernels", default="5.10 6.1 6.12")
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "kernel-matrix")
    parser.add_argument("--tests", nargs="*", default=None,
                        help="test files for the guests (default: the kernel-facing ones)")
    parser.add_argument("--ci", action="store_true",
                        help="the guests run .ci/run's subset of the kernel-facing tests")
    parser.add_argument("--timeout", type=int, default=1200, help="per guest, seconds")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, _terminated)
    tests = args.tests or (list(CI_SUBSET) if args.ci else
                           [f"tests/{name}.py" for name in KERNEL_FACING])
    base = args.out.resolve()
    base.mkdir(parents=True, exist_ok=True)
    host_trace = base / "host.mp"
    print("=== host: the reference minimal recorded for the guests' replays", flush=True)
    recorded = subprocess.run([str(BIN / "bpfreplay"), "record", "-o", str(host_trace),
                               "--", str(REFERENCE), "2"], capture_output=True, text=True)
    if recorded.returncode != 0:
        print(recorded.stdout + recorded.stderr, file=sys.stderr)
        print("kernel-matrix: recording the reference on the host failed", file=sys.stderr)
        return 1
    rows = [matrix_row(k, base, host_trace, tests, args.timeout)
            for k in args.kernels.split()]
    print()
    print_table(rows, os.uname().release)
    print(f"(reports under {base}/KERNEL/)")
    return 0 if all(r.ok for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
