"""Program-array slot fills are part of the load (docs/parity.md, "Sections"), on a real
trace: corpus slot_unloaded, whose slot names a program that is not loaded. libbpf
1.1.2's init_prog_array_slots() writes that program's bpf_program__fd() (-ENOENT) into
the slot right after the last program load; the kernel's EBADF fails the load there.
The update is the failing call of both loads, compared like any load call."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from bpfreplay.compare import DIFFERENCES, FAILED_PARITY, compare_calls, normalise
from bpfreplay.parity_sections import APPLICATION, LOAD, classify
from bpfreplay.trace import read_trace
from tests.conftest import require_kernel
from tests.corpus.manifest import CORPUS_DIR, REFLOAD, by_name

OBJ = by_name("slot_unloaded")


def _calls(path: Path) -> tuple[list[dict], int]:
    with read_trace(str(path)) as trace:
        records = list(trace.records())
    pid = next(r["pid"] for r in records if r["type"] == "process")
    return [r for r in records if r["type"] == "call"], pid


@pytest.fixture(scope="module")
def traces(tmp_path_factory) -> tuple[Path, Path]:
    """refload's trace of slot_unloaded (recorded with `bpfreplay record`) and ours."""
    require_kernel()
    built = subprocess.run(["make", "-s", "-C", str(CORPUS_DIR), "all"], capture_output=True,
                           text=True, timeout=300)
    assert built.returncode == 0, built.stderr[-2000:]
    import tools.parity_table as parity_table

    tmp = tmp_path_factory.mktemp("slot_unloaded")
    ref, ours = tmp / "ref.mp", tmp / "ours.mp"
    recorded = parity_table.record_reference(OBJ, ref, 0.2)
    assert recorded.returncode == 3, recorded.stderr  # refload: the load failed
    assert REFLOAD.exists() and ref.exists()
    run = parity_table.run_ours(OBJ, ref, 0.1, ours)
    assert run.returncode == 3, run.stdout[-3000:] + run.stderr[-2000:]
    assert "PARITY OF A FAILED LOAD: both failed at bpf BPF_MAP_UPDATE_ELEM map:slots " \
           "with EBADF" in run.stdout
    return ref, ours


def _update(calls: list[dict]) -> int:
    return next(i for i, c in enumerate(calls) if c["syscall"] == "bpf"
                and c.get("attr") is not None and "value" in (c.get("in") or {})
                and len(c["in"]["value"]) == 4 and c.get("errno"))


def test_the_failing_slot_fill_is_the_load_failure(traces):
    ref, ours = traces
    reference, pid = _calls(ref)
    mine, our_pid = _calls(ours)
    theirs, items = normalise(reference, pid), normalise(mine, our_pid)
    at = _update(reference)
    assert theirs[at]["cmd"] == "BPF_MAP_UPDATE_ELEM" and theirs[at]["errno"] == 9
    # bpf_program__fd() of a program not loaded: -ENOENT, not an fd of the object
    assert reference[at]["in"]["value"] == (-2).to_bytes(4, "little", signed=True)
    assert classify(theirs).of[at] == LOAD
    report = compare_calls(theirs, items)
    assert report.outcome == FAILED_PARITY, report.differences
    assert report.reference_failure is not None
    assert report.reference_failure.call == "bpf BPF_MAP_UPDATE_ELEM map:slots"
    assert report.reference_failure.errno_name == "EBADF"
    assert not [c for c in report.application if "MAP_UPDATE_ELEM" in c.call]
    assert APPLICATION not in classify(theirs).of


def test_another_slot_value_is_a_difference(traces):
    """Made up: our slot fill writing another value (-3) differs, and is not filed apart."""
    ref, ours = traces
    reference, pid = _calls(ref)
    mine, our_pid = _calls(ours)
    at = _update(mine)
    changed = dict(mine[at])
    changed["in"] = dict(changed["in"])
    changed["in"]["value"] = (-3).to_bytes(4, "little", signed=True)
    mine = mine[:at] + [changed] + mine[at + 1:]
    report = compare_calls(normalise(reference, pid), normalise(mine, our_pid))
    assert report.outcome == DIFFERENCES
    found = [(d.call, d.path) for d in report.differences]
    assert found == [("bpf BPF_MAP_UPDATE_ELEM map:slots = -1 EBADF", "in.value")], found
