"""What ``explain`` names beyond bpf()'s attrs, against strace -v's rendering of the same
calls: fcntl commands, memfd_create flags, setsockopt's BPF options (a classic program
as strace prints it, a program fd named), errno 524 as ENOTSUPP, config 0 of a perf
event. tests/data/names/named_calls.py makes the real calls, once under strace and once
under bpfreplay record; the fds are the same in both runs (same program, same order)."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.conftest import ROOT, require_kernel, require_tool

BPFREPLAY = [sys.executable, "-m", "bpfreplay.cli"]
SCRIPT = ROOT / "tests" / "data" / "names" / "named_calls.py"
_OBJECT = re.compile(r"(\d+)<[^<>]*>")  # 4<prog (no name)>: strace has the number only
_LINE = re.compile(r"^\s*\d+ \S+\s+(\w+\(.*)$")


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> tuple[list[str], list[str], str]:
    require_kernel()
    require_tool("strace")
    tmp = tmp_path_factory.mktemp("names")
    log = tmp / "strace.log"
    subprocess.run(["strace", "-v", "-qq", "-s", "256", "-e", "signal=none", "-e",
                    "trace=bpf,perf_event_open,fcntl,memfd_create,setsockopt", "-o", str(log),
                    sys.executable, str(SCRIPT)], check=True, capture_output=True, timeout=120)
    trace = tmp / "trace.mp"
    subprocess.run([*BPFREPLAY, "record", "-o", str(trace), "--", sys.executable, str(SCRIPT)],
                   check=True, capture_output=True, timeout=120)
    ours = subprocess.run([*BPFREPLAY, "explain", str(trace)], check=True,
                          capture_output=True, text=True).stdout
    verbose = subprocess.run([*BPFREPLAY, "explain", "-v", str(trace)], check=True,
                             capture_output=True, text=True).stdout
    lines = [m[1] for m in map(_LINE.match, ours.splitlines()) if m]
    theirs = [" ".join(line.split()) for line in log.read_text().splitlines()]
    return theirs, lines, verbose


def _plain(line: str) -> str:
    return " ".join(_OBJECT.sub(r"\1", line).split())


def _one(lines: list[str], start: str) -> str:
    found = [line for line in lines if line.startswith(start)]
    assert len(found) == 1, (start, lines)
    return found[0]


def test_fcntl_and_memfd_named_as_strace(runs):
    theirs, ours, _ = runs
    fcntl = [line for line in theirs if line.startswith("fcntl(") and "F_DUPFD_CLOEXEC" in line]
    assert [_plain(line) for line in ours if line.startswith("fcntl(")] == fcntl
    assert _plain(_one(ours, "memfd_create(")) == _one(theirs, "memfd_create(")


def test_setsockopt_bpf_options_as_strace(runs):
    """The whole line, for every option (the one-line form shortens the classic program
    longer than 16 instructions: that one is compared up to its filter)."""
    theirs, ours, _ = runs
    options = ("SO_ATTACH_FILTER", "SO_DETACH_FILTER", "SO_ATTACH_BPF",
               "SO_ATTACH_REUSEPORT_CBPF", "SO_ATTACH_REUSEPORT_EBPF")
    mine = [_plain(line) for line in ours if line.startswith("setsockopt(")]
    strace = [line for line in theirs if line.startswith("setsockopt(")
              and line.split(", ")[2] in options]
    assert len(strace) == len(options) + 1 == len(mine)
    for line, expected in zip(mine, strace, strict=True):
        if " more]" in line:
            head = line.split("filter=[")[0]
            assert expected.startswith(head) and expected.endswith("= -1 EINVAL (Invalid argument)")
        else:
            assert line == expected
    attach = [line for line in ours if "SO_ATTACH_BPF" in line][0]
    assert re.search(r"\[\d+<prog [^>]*>\]", attach), attach  # the program fd, named


def test_classic_programs_in_verbose_as_strace(runs):
    theirs, _, verbose = runs
    instruction = r"BPF_(?:STMT|JUMP)\((?:[^()]|\([^()]*\))*\)"
    expected = [re.findall(instruction, re.search(r"filter=\[(.*)\]\}", line)[1])
                for line in theirs if re.search(r"SO_ATTACH_(?:REUSEPORT_C)?(?:FILTER|BPF), \{",
                                                line)]
    sections = verbose.split("--- classic BPF program")[1:]
    shown = [re.findall(rf"^\s+\d+: ({instruction})$", s.split("---")[0].split("\n\n")[0],
                        re.M) for s in sections]
    assert len(expected) == 3 and shown == expected


def test_kernel_internal_errno_named_as_strace(runs):
    theirs, ours, _ = runs
    strace = _one(theirs, "bpf(BPF_PROG_TEST_RUN")
    assert strace.endswith("= -1 ENOTSUPP (Unknown error 524)")
    assert _one(ours, "bpf(BPF_PROG_TEST_RUN").endswith("= -1 ENOTSUPP (Unknown error 524)")


def test_perf_event_config_zero_shown(runs):
    theirs, ours, _ = runs
    config = re.search(r"config=(\w+)", _one(theirs, "perf_event_open("))[1]
    assert config == "PERF_COUNT_SW_CPU_CLOCK"  # config 0, named by strace
    assert f"config={config}," in _one(ours, "perf_event_open(")


def test_verifier_statistics_beside_the_call_and_in_the_summary(tmp_path):
    """The statistics line under each PROG_LOAD with a log is the one the kernel wrote
    into the log the program got back (and printed); the summary gives each program's
    verdict with them."""
    require_kernel()
    script = ROOT / "tests" / "data" / "names" / "verifier_stats.py"
    trace = tmp_path / "trace.mp"
    printed = subprocess.run([*BPFREPLAY, "record", "-o", str(trace), "--", sys.executable,
                              str(script)], check=True, capture_output=True, text=True).stdout
    logs = {}
    for part in printed.split("--- log ")[1:]:
        head, _, log = part.partition("\n")
        name, fd = head.split()
        logs[name] = (int(fd), log.splitlines())
    assert logs["branchy"][0] >= 0 and logs["refused"][0] == -1
    out = subprocess.run([*BPFREPLAY, "explain", str(trace)], check=True, capture_output=True,
                         text=True).stdout.splitlines()
    shown = [line.split("verifier: ", 1)[1] for line in out
             if line.startswith(" " * 30 + "verifier: ")]
    expected = []
    for _fd, log in logs.values():
        processed = [line for line in log if line.startswith("processed ")][-1]
        extra = [line for line in log if line.startswith(("verification time", "stack depth"))]
        expected.append("; ".join([processed] + extra))
    assert shown == expected
    summary = [line for line in out if line.startswith("#   verifier: ")]
    assert len(summary) == 3
    for line, (name, (fd, log)) in zip(summary, logs.items(), strict=True):
        numbers = re.search(r"processed (\d+) insns \(limit (\d+)\).* total_states (\d+) "
                            r"peak_states (\d+)", "\n".join(log))
        verdict = "loaded" if fd >= 0 else "EACCES"
        assert re.search(rf" {name} {verdict}: {numbers[1]} insns processed \(limit "
                         rf"{numbers[2]}\), {numbers[3]} states \(peak {numbers[4]}\)$",
                         line), line
    tail = out[len(out) - out[::-1].index(""):]  # the summary: after the last empty line
    assert tail and all(len(line) <= 200 for line in tail)


def test_summary_lines_bounded_on_bpftool_feature_probe(tmp_path):
    """bpftool's feature probe makes thousands of failing loads: every summary line
    stays within 200 characters, the counts are the trace's own."""
    require_kernel()
    bpftool = require_tool("bpftool")
    trace = tmp_path / "trace.mp"
    subprocess.run([*BPFREPLAY, "record", "-o", str(trace), "--", bpftool, "feature", "probe"],
                   check=True, capture_output=True, timeout=300)
    from bpfreplay.trace import read_trace

    with read_trace(str(trace)) as t:
        calls = list(t.calls())
    failed = sum(1 for c in calls if c.get("ret") == -1 and c.get("errno"))
    assert failed > 1000
    out = subprocess.run([*BPFREPLAY, "explain", str(trace)], check=True, capture_output=True,
                         text=True).stdout.splitlines()
    tail = out[len(out) - out[::-1].index(""):]
    assert tail[0].startswith(f"# {len(calls)} calls: ")
    assert all(len(line) <= 200 for line in tail), max(tail, key=len)
    line = [line for line in tail if line.startswith("#   failed: ")][0]
    assert line.startswith(f"#   failed: {failed} (")
    shown = len(re.findall(r"#\d+ ", line))
    assert line.endswith(f", and {failed - shown} more")


@pytest.fixture(scope="module")
def special(tmp_path_factory):
    """tests/data/names/special_insns.bpf.o loaded by ``bpftool -d prog loadall`` (its
    verifier log and libbpf's debug messages on stderr), recorded; bpftool's own dumps
    of what it loaded, read before the private bpffs goes."""
    require_kernel()
    bpftool = require_tool("bpftool")
    from tests.conftest import _built

    obj = _built(ROOT / "tests" / "data" / "names" / "build" / "special_insns.bpf.o",
                 ROOT / "tests" / "data" / "names")
    tmp = tmp_path_factory.mktemp("special")
    pins = tmp / "bpffs"
    pins.mkdir()
    # a bpffs of our own, the parent of loadall's directory (else bpftool mounts one on
    # that parent itself); unmounting it unpins what bpftool pinned
    subprocess.run(["mount", "-t", "bpf", "bpf", str(pins)], check=True)
    try:
        trace = tmp / "trace.mp"
        loaded = subprocess.run([*BPFREPLAY, "record", "-o", str(trace), "--", bpftool, "-d",
                                 "prog", "loadall", str(obj), str(pins / "special_insns")],
                                capture_output=True, text=True, timeout=300)
        assert loaded.returncode == 0, loaded.stderr[-3000:]
        xlated = subprocess.run([bpftool, "prog", "dump", "xlated", "pinned",
                                 str(pins / "special_insns" / "special")], check=True,
                                capture_output=True, text=True).stdout
        import json

        info = json.loads(subprocess.run([bpftool, "-j", "prog", "show", "pinned",
                                          str(pins / "special_insns" / "special")], check=True,
                                         capture_output=True, text=True).stdout)
        btf = subprocess.run([bpftool, "btf", "dump", "id", str(info["btf_id"])], check=True,
                             capture_output=True, text=True).stdout
    finally:
        subprocess.run(["umount", str(pins)], check=True)
    out = subprocess.run([*BPFREPLAY, "explain", "-v", "--cmd", "PROG_LOAD", str(trace)],
                         check=True, capture_output=True, text=True).stdout
    block = [b for b in re.split(r"\n(?=\s*\d+ \S+\s+bpf\()", out) if 'prog_name="special"' in b]
    assert len(block) == 1
    section = block[0].split("--- instructions")[1].split("\n        ---")[0]
    insns = {int(m[1]): m[2] for m in re.finditer(r"^\s+(\d+): (.*)$", section, re.M)}
    return loaded.stderr, xlated, btf, insns


def test_core_poison_labelled_where_libbpf_poisoned(special):
    stderr, _, _, insns = special
    poisoned = [int(n) for n in re.findall(r"prog 'special': relo #\d+: substituting insn "
                                           r"#(\d+) w/ invalid insn", stderr)]
    assert poisoned
    labelled = [n for n, text in insns.items() if "poisoned CO-RE relocation" in text]
    assert labelled == poisoned
    for n in poisoned:
        assert insns[n].startswith("(85) call unknown#195896080  /* libbpf: ")


def test_kfunc_calls_named_as_the_verifier_log(special):
    stderr, _, _, insns = special
    log = stderr.split("-- BEGIN PROG LOAD LOG --")[-1]
    calls = dict(re.findall(r"^(\d+): (\(85\) call bpf_task_\w+#\d+)", log, re.M))
    assert len(calls) == 2  # bpf_task_acquire, bpf_task_release
    for index, text in calls.items():
        assert insns[int(index)] == text


def test_subprogram_calls_and_callbacks_named_as_bpftool(special):
    _, xlated, _, insns = special
    theirs = re.findall(r"call pc[+-]\d+#bpf_prog_[0-9a-f]+_(\w+)", xlated)
    ours = [m[1] for text in insns.values()
            for m in [re.search(r"/\* (?:call|address) of subprogram (\w+) \*/", text)] if m]
    assert theirs == ours == ["add_one", "loop_step"]


def test_map_values_name_the_variable_of_the_loaded_btf(special):
    _, xlated, btf, insns = special
    offsets = [int(o) for o in re.findall(r"= map\[id:\d+\]\[0\]\+(\d+)", xlated)]
    ours = [(int(m[1]), m[2]) for text in insns.values()
            for m in [re.search(r"map\[fd:\d+\]\[0\]\+(\d+)<map [^>]*>  /\* variable "
                                r"(\w+)(?:\+\d+)? of \.bss \*/", text)] if m]
    # the verifier drops dead code (the poisoned branch's store) from what bpftool dumps
    assert {o for o, _ in ours} == set(offsets) and len(ours) >= len(offsets)
    bss = btf.split("DATASEC '.bss'")[1].split("\n[")[0]
    variables = [(int(o), int(s), v) for o, s, v in
                 re.findall(r"offset=(\d+) size=(\d+) \(VAR '(\w+)'\)", bss)]
    for offset, name in ours:
        assert [v for o, s, v in variables if o <= offset < o + s] == [name]


def test_a_classic_filter_replays_the_same(tmp_path):
    """SO_ATTACH_FILTER's program (recorded through the sock_fprog's pointer) is attached
    again by replay, on its own socket, and answered the same."""
    require_kernel()
    import json

    trace = tmp_path / "trace.mp"
    subprocess.run([*BPFREPLAY, "record", "-q", "-o", str(trace), "--", sys.executable,
                    str(ROOT / "tests" / "data" / "names" / "classic_filter.py")], check=True,
                   capture_output=True, timeout=120)
    ours = tmp_path / "ours.mp"
    result = subprocess.run([*BPFREPLAY, "replay", "--json", "--save-trace", str(ours),
                             str(trace)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["summary"] == {"same": 2, "different": 0, "skipped": 0}
    from bpfreplay.trace import read_trace

    with read_trace(str(trace)) as t, read_trace(str(ours)) as o:
        recorded = [c["in"].get("filter") for c in t.calls()]
        replayed = [c["in"].get("filter") for c in o.calls() if c["syscall"] == "setsockopt"]
    assert recorded == replayed and recorded[0] is not None and len(recorded[0]) == 32
