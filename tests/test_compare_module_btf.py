"""The module-BTF walk rule on libbpf's own walks over a kernel with module BTFs
(tests/data/module_btf: Debian 6.1 under qemu, recorded with `bpfreplay record`). The
visits the compare finds are checked against walk.txt, the digest record.sh wrote of
the same traces; then the rule: a foreign object is counted, a module BTF is compared."""

from __future__ import annotations

import re

import pytest

from bpfreplay.compare import DIFFERENCES, PARITY, compare_calls, normalise
from bpfreplay.parity_sections import FOREIGN, classify, references
from bpfreplay.trace import read_trace
from tests.conftest import ROOT

DATA = ROOT / "tests" / "data" / "module_btf"
_VISIT = re.compile(r"^\s+NEXT_ID #(\d+) = 0; id \d+ \[([^\]]+)\] FD_BY_ID #(\d+) .*?"
                    r"INFO #(\d+) name\[64\] -> btf_size=\d+ kernel_btf=(\d)(.*)$")
_END = re.compile(r"^\s+NEXT_ID #(\d+) ENOENT")


def _digest() -> dict[str, list[tuple[str, list[int]]]]:
    """walk.txt: per trace, each visit's kind and its first calls (NEXT_ID, FD_BY_ID,
    the name INFO, and the close of a BTF that is not kept)."""
    walks: dict[str, list[tuple[str, list[int]]]] = {}
    current: list[tuple[str, list[int]]] = []
    for line in (DATA / "walk.txt").read_text().splitlines():
        if not line.startswith(" "):
            name = line.split(":", 1)[0]
            current = walks.setdefault(name, []) if name.endswith(".mp") else current
            continue
        visit, end = _VISIT.match(line), _END.match(line)
        if visit:
            nxt, name, get, info, kernel_btf, rest = visit.groups()
            closed = re.search(r"close #(\d+)", rest)
            indices = [int(nxt), int(get), int(info)] + ([int(closed.group(1))] if closed
                                                         else [])
            kind = "kernel" if name == "vmlinux" else ("module" if kernel_btf == "1"
                                                       else FOREIGN)
            current.append((kind, indices))
        elif end:
            current.append(("ended", [int(end.group(1))]))
    return walks


def _calls(name: str):
    with read_trace(str(DATA / name)) as trace:
        records = list(trace.records())
    pid = next(r["pid"] for r in records if r["type"] == "process")
    return [r for r in records if r["type"] == "call"], pid


@pytest.mark.parametrize("name", ["core_module.mp", "core_vmlinux.mp", "fentry_module.mp",
                                  "kfunc_module.mp", "tp_btf_module.mp"])
def test_visits_are_those_of_the_digest(name):
    expected = _digest().get(name, [])
    calls, pid = _calls(name)
    visits = classify(normalise(calls, pid)).visits
    assert [(v.kind, v.indices) for v in visits] == expected
    report = compare_calls(normalise(calls, pid), normalise(calls, pid))
    assert report.outcome == PARITY, report.differences[:3]
    modules = sum(1 for kind, _ in expected if kind == "module")
    assert len(report.walk.reference_kernel) == modules + (1 if expected else 0)
    assert report.walk.reference_foreign == sum(1 for kind, _ in expected if kind == FOREIGN)


def test_without_the_foreign_object_the_walk_is_still_at_parity():
    calls, pid = _calls("core_module.mp")
    foreign = next(indices for kind, indices in _digest()["core_module.mp"] if kind == FOREIGN)
    fewer = [c for i, c in enumerate(calls) if i not in foreign]
    report = compare_calls(normalise(calls, pid), normalise(fewer, pid))
    assert report.outcome == PARITY, report.differences[:3]
    assert (report.walk.reference_foreign, report.walk.our_foreign) == (1, 0)


def test_a_module_btf_not_found_is_a_difference():
    """The walk of ours misses nf_conntrack's BTF (its visit, the calls on its fd and
    their close): reported, although the foreign objects around it are forgiven."""
    calls, pid = _calls("core_module.mp")
    items = normalise(calls, pid)
    visit = next(indices for kind, indices in _digest()["core_module.mp"]
                 if kind == "module" and indices[0] == 104)  # nf_conntrack
    fd = items[visit[1]]["ret"]
    drop = set(visit) | {i for i, item in enumerate(items) if fd in references(item)}
    fewer = [c for i, c in enumerate(calls) if i not in drop]
    report = compare_calls(items, normalise(fewer, pid))
    assert report.outcome == DIFFERENCES
    missing = [d.call for d in report.differences if d.kind == "missing"]
    assert "bpf BPF_BTF_GET_FD_BY_ID btf_by_id -> btf_by_id#17" in missing
    assert len(report.walk.our_kernel) == len(report.walk.reference_kernel) - 1
