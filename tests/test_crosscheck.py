"""tools/kernel-matrix/crosscheck.py, the kernel matrix's check of a cross replay, on this
kernel: a recording of the C reference replayed here must get, call for call, the
outcome libbpf's reference got here (another recording made now); a reference that
got another answer for one call makes the check fail on that call, and a replay whose
difference is in what it sent is not an answer of the kernel."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

from bpfreplay.trace import TraceWriter, read_trace
from tests.conftest import REFERENCE_DIR, ROOT, _built, require_kernel
from tests.test_replay import BPFREPLAY, _record

_SPEC = importlib.util.spec_from_file_location(
    "crosscheck", ROOT / "tools" / "kernel-matrix" / "crosscheck.py")
assert _SPEC is not None and _SPEC.loader is not None
crosscheck = importlib.util.module_from_spec(_SPEC)
sys.modules["crosscheck"] = crosscheck  # its dataclasses look their module up
_SPEC.loader.exec_module(crosscheck)


def _recordings(tmp_path: Path) -> tuple[Path, Path, dict]:
    """Two recordings of the reference made now, and the replay of the first."""
    require_kernel()
    minimal = _built(REFERENCE_DIR / "minimal", REFERENCE_DIR)
    recorded = _record(tmp_path, "recorded", str(minimal), "1")
    reference = _record(tmp_path, "reference", str(minimal), "1")
    result = subprocess.run([*BPFREPLAY, "replay", "--json", str(recorded)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    return recorded, reference, json.loads(result.stdout)


def test_a_replay_here_gets_the_outcomes_of_the_reference_here(tmp_path):
    recorded, reference, report = _recordings(tmp_path)
    result = crosscheck.check(crosscheck.read_calls(recorded), report,
                              crosscheck.read_calls(reference))
    assert result.ok, result.failures
    calls = crosscheck.read_calls(recorded)
    assert result.paired == len(calls) and not result.unpaired and not result.differing
    out = subprocess.run([str(ROOT / ".venv" / "bin" / "python"),
                          str(ROOT / "tools" / "kernel-matrix" / "crosscheck.py"),
                          str(recorded), "/dev/stdin", str(reference)],
                         input=json.dumps(report), capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"as the reference here ({len(calls)} paired)" in out.stdout


def test_a_probe_the_reference_here_saw_fail_must_fail_in_the_replay(tmp_path):
    """The reference 'here' rewritten as if this kernel had refused libbpf's memcg probe
    (as 5.10 does): the replay, which this kernel answered, no longer agrees."""
    recorded, reference, report = _recordings(tmp_path)
    with read_trace(str(reference)) as trace:
        header, records = trace.header, list(trace.records())
    refused = tmp_path / "refused.mp"
    labels = {i: c.get("probe") for i, c in enumerate(crosscheck.read_calls(reference))}
    with TraceWriter(str(refused), header) as writer:
        position = 0
        for record in records:
            if record.get("type") == "call":
                if labels[position] == "memcg_account" and record.get("cmd") == 5:
                    record = {k: v for k, v in record.items() if k != "object"}
                    record.update(ret=-1, errno=22)
                position += 1
            writer.write(record)
    result = crosscheck.check(crosscheck.read_calls(recorded), report,
                              crosscheck.read_calls(refused))
    assert not result.ok
    assert any("probe:memcg_account" in f and "answered EINVAL, the replay ok" in f
               for f in result.failures), result.failures


def test_a_difference_in_what_the_replay_sent_is_not_an_answer(tmp_path):
    recorded, reference, report = _recordings(tmp_path)
    load = next(c for c in report["calls"]
                if c["call"].startswith("bpf BPF_PROG_LOAD prog:handle_tp"))
    load["status"] = "different"
    load["differences"] = [{"path": "fields.insn_cnt", "recorded": 14, "here": 15}]
    result = crosscheck.check(crosscheck.read_calls(recorded), report,
                              crosscheck.read_calls(reference))
    assert not result.ok
    assert result.failures == [f"#{load['index']} bpf BPF_PROG_LOAD prog:handle_tp: the "
                               "replay sent other bytes: fields.insn_cnt"]
