"""kprobe.multi/ attach (bpfreplay/loader/kprobe_multi.py) against libbpf itself.

libbpf reads the fixed path /proc/kallsyms, so the rules of its glob resolution
(which symbols, their order, duplicates, module symbols, long names) are tested by
giving it a /proc/kallsyms of our making: a copy of the real file with crafted lines,
bind-mounted over /proc/kallsyms in a private mount namespace. refload loads the corpus
object kprobe_multi.bpf.o (pattern ``do_unlinka*``) there under `bpfreplay record`;
the LINK_CREATE it makes carries the addresses libbpf resolved (the kernel refuses it
without kprobes, after reading them). Our resolution of the same file must give the
same array, and `bpfreplay run --compare` in the same namespace parity of that
failed attach."""

from __future__ import annotations

import fnmatch
import random
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from bpfreplay.loader import kprobe_multi
from bpfreplay.trace.reader import read_trace
from tests.conftest import ROOT, kernel_required, require_kernel
from tests.corpus.manifest import BUILD, REFLOAD

BPFREPLAY = str(ROOT / ".venv" / "bin" / "bpfreplay")
OBJECT = BUILD / "kprobe_multi.bpf.o"
PATTERN = "do_unlinka*"  # the corpus object's sections


def _real_kallsyms() -> list[str]:
    with open(kprobe_multi.KALLSYMS) as f:
        return f.readlines()


def _fixture(real: list[str]) -> list[str]:
    """The real file with lines around the pattern: another type, a module symbol, a
    name the star matches empty, near misses, the real symbol twice more, a name longer
    than libbpf reads (499 characters)."""
    matching = [line for line in real if line.split()[2].startswith("do_unlinka")]
    crafted = ["ffffffff81000010 T do_unlinka\n",
               "ffffffff81000020 t do_unlinkat.cold\n",
               "ffffffffc0001000 t do_unlinkat_mod\t[corpus_mod]\n",
               "ffffffff81000030 T xdo_unlinkat\n",
               "ffffffff81000040 W do_unlinkb\n",
               "ffffffff81000050 d do_unlinka" + "z" * 600 + "\n",
               "ffffffff81000060 T do_unlink\n"]
    return real[:5] + crafted[:5] + real[5:2000] + matching + crafted[5:] + matching


def _recorded_addrs(trace: Path) -> list[list[int]]:
    """The addrs array of each BPF_LINK_CREATE of kind KPROBE_MULTI in a trace."""
    out = []
    with read_trace(str(trace)) as t:
        for call in t.calls():
            raw = (call.get("in") or {}).get("kprobe_multi.addrs")
            if call.get("syscall") == "bpf" and raw is not None:
                out.append([a for (a,) in struct.iter_unpack("<Q", raw)])
    return out


def _in_namespace(kallsyms: Path, argv: list[str]) -> subprocess.CompletedProcess:
    script = 'mount --bind "$0" /proc/kallsyms && exec "$@"'
    return subprocess.run(["unshare", "-m", "sh", "-c", script, str(kallsyms), *argv],
                          capture_output=True, text=True, timeout=120)


def test_glob_match_is_fnmatch_on_star_and_question_mark():
    """glob_match() against Python's fnmatch (another implementation of the same two
    wildcards) on real kernel symbol names and patterns cut from them."""
    names = [line.split()[2] for line in _real_kallsyms()]
    rng = random.Random(7)
    sample = rng.sample(names, 300) + ["", "a", "aa", "do_unlinkat"]
    patterns = ["*", "**", "?", "", "do_unlinka*", "*_unlink*", "do_?nlinkat", "*at",
                "a*a", "*a*a*", "??*", "*?"]
    for name in rng.sample(names, 40):
        cut = rng.randrange(len(name) + 1)
        patterns += [name[:cut] + "*", "*" + name[cut:], name[:cut] + "?" + name[cut + 1:],
                     name[:cut] + "*" + name[cut + 2:]]
    for pattern in patterns:
        for name in sample:
            assert kprobe_multi.glob_match(name, pattern) == \
                fnmatch.fnmatchcase(name, pattern), (name, pattern)


def test_section_patterns_follow_the_sscanf_set():
    assert kprobe_multi.section_pattern("kprobe.multi") is None
    assert kprobe_multi.section_pattern("kretprobe.multi") is None
    assert kprobe_multi.section_pattern("kprobe.multi/vfs_*") == ("vfs_*", False)
    assert kprobe_multi.section_pattern("kretprobe.multi/a?c.d*:x") == ("a?c.d*", True)
    with pytest.raises(kprobe_multi.LoaderError, match="pattern is invalid"):
        kprobe_multi.section_pattern("kprobe.multi/:x")


def test_return_flag_is_the_kernels():
    from bpfreplay.uapi import enum_values

    flags = enum_values("bpf_kprobe_multi_flags")
    assert flags["BPF_F_KPROBE_MULTI_RETURN"] == kprobe_multi.BPF_F_KPROBE_MULTI_RETURN


@pytest.fixture(scope="module")
def crafted_kallsyms(tmp_path_factory) -> Path:
    require_kernel()
    if shutil.which("unshare") is None or not REFLOAD.exists() or not OBJECT.exists():
        message = "needs unshare and the corpus build (make -C tests/corpus)"
        if kernel_required():
            pytest.fail(message)
        pytest.skip(message)
    path = tmp_path_factory.mktemp("kallsyms") / "kallsyms"
    path.write_text("".join(_fixture(_real_kallsyms())))
    return path


def test_libbpf_resolves_the_glob_as_we_do(crafted_kallsyms, tmp_path):
    ref = tmp_path / "ref.mp"
    result = _in_namespace(crafted_kallsyms, [BPFREPLAY, "record", "-o", str(ref), "--",
                                              str(REFLOAD), str(OBJECT), "0.2"])
    assert ref.exists(), result.stderr[-3000:]
    recorded = _recorded_addrs(ref)
    assert len(recorded) == 1, (recorded, result.stderr[-3000:])  # the first prog fails
    with open(crafted_kallsyms) as f:
        ours = kprobe_multi.resolve(PATTERN, f)
    assert recorded[0] == ours
    assert len(ours) >= 6  # the fixture's matches all counted: the rule was exercised

    # The whole load in the same namespace: parity of the failed attach.
    run = _in_namespace(crafted_kallsyms, [BPFREPLAY, "run", str(OBJECT), "--compare",
                                           str(ref), "--duration", "0.2"])
    assert run.returncode == 3, run.stdout[-3000:] + run.stderr[-3000:]
    assert "PARITY OF A FAILED LOAD" in run.stdout
    assert "failed to attach" in run.stderr and "Traceback" not in run.stderr


def test_no_matching_symbol_fails_before_the_kernel(tmp_path):
    """resolve() of a file without a match: nothing (libbpf: ENOENT, no call)."""
    lines = [line for line in _real_kallsyms()[:1000] if "do_unlinka" not in line]
    assert kprobe_multi.resolve(PATTERN, lines) == []


RETPROBE_SOURCE = """
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
char LICENSE[] SEC("license") = "GPL";
SEC("kretprobe.multi/do_unlinka*")
int on_unlink_return_only(void *ctx) { return 0; }
"""


def test_kretprobe_multi_carries_the_return_flag_as_libbpf(crafted_kallsyms, tmp_path):
    """The corpus object stops at its kprobe.multi program; a kretprobe.multi program
    alone shows libbpf's kprobe_multi.flags (BPF_F_KPROBE_MULTI_RETURN)."""
    from tests.conftest import require_tool

    clang = require_tool("clang")
    src = tmp_path / "kretmulti.bpf.c"
    src.write_text(RETPROBE_SOURCE)
    machine = subprocess.run(["cc", "-dumpmachine"], capture_output=True,
                             text=True).stdout.strip()
    obj = tmp_path / "kretmulti.bpf.o"
    subprocess.run([clang, "-g", "-O2", "-target", "bpf", f"-I/usr/include/{machine}", "-c",
                    str(src), "-o", str(obj)], check=True)
    ref = tmp_path / "ref.mp"
    _in_namespace(crafted_kallsyms, [BPFREPLAY, "record", "-o", str(ref), "--",
                                     str(REFLOAD), str(obj), "0.2"])
    flags = []
    with read_trace(str(ref)) as t:
        for call in t.calls():
            if (call.get("in") or {}).get("kprobe_multi.addrs") is not None:
                flags.append(struct.unpack_from("<I", call["attr"], 16)[0])
    assert flags == [kprobe_multi.BPF_F_KPROBE_MULTI_RETURN]
    run = _in_namespace(crafted_kallsyms, [BPFREPLAY, "run", str(obj), "--compare",
                                           str(ref), "--duration", "0.2"])
    assert run.returncode == 3, run.stdout[-3000:] + run.stderr[-3000:]
    assert "PARITY OF A FAILED LOAD" in run.stdout
