"""compare between traces of different format versions: a version-1 recording (its
recorder kept no info buffers, pointer-array strings or classic filters) is compared
on what it holds; between two version-2 traces those payloads count."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import msgpack

from bpfreplay.compare import compare_trace_files
from tests.conftest import ROOT, require_kernel

BPFREPLAY = [sys.executable, "-m", "bpfreplay.cli"]
LOADER = ROOT / "tests" / "data" / "loader" / "build"


def _as_written_by_a_version_1_recorder(source: Path, target: Path, version: int) -> int:
    """``source`` rewritten without the payloads only format 2 keeps (info.* outputs),
    with ``version`` in its header; the number of payloads dropped."""
    dropped = 0
    with open(source, "rb") as f:
        objects = list(msgpack.Unpacker(f, raw=False, strict_map_key=False))
    objects[0]["version"] = version
    for record in objects[1:]:
        out = record.get("out") if isinstance(record, dict) else None
        if out:
            for key in [k for k in out if k.startswith("info.")]:
                del out[key]
                dropped += 1
    target.write_bytes(b"".join(msgpack.packb(o, use_bin_type=True) for o in objects))
    return dropped


def test_a_version_1_reference_is_compared_on_what_it_holds(tmp_path):
    """libbpf's core_walk walks every BTF object (GET_INFO_BY_FD with a name buffer):
    the version-2 recorder keeps out['info.name'] for each, a version-1 recorder did
    not. Ours against the version-1 rendition: at parity; against the same bytes
    claiming version 2: the missing info buffers are differences."""
    require_kernel()
    skeleton = LOADER / "core_walk_skel"
    reference = tmp_path / "libbpf.mp"
    subprocess.run([*BPFREPLAY, "record", "-q", "-o", str(reference), "--", str(skeleton), "0.05"],
                   check=True, capture_output=True, timeout=120)
    ours = tmp_path / "ours.mp"
    subprocess.run([*BPFREPLAY, "run", str(LOADER / "core_walk.bpf.o"), "--duration", "0",
                    "--save-trace", str(ours)], check=True, capture_output=True, timeout=120)
    both_v2 = compare_trace_files(str(reference), str(ours))
    assert both_v2.at_parity, both_v2

    old = tmp_path / "libbpf-v1.mp"
    assert _as_written_by_a_version_1_recorder(reference, old, 1) > 0
    assert compare_trace_files(str(old), str(ours)).at_parity
    assert compare_trace_files(str(ours), str(old)).at_parity  # either side

    claims_v2 = tmp_path / "libbpf-stripped.mp"
    _as_written_by_a_version_1_recorder(reference, claims_v2, 2)
    report = compare_trace_files(str(claims_v2), str(ours))
    assert not report.at_parity
