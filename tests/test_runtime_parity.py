"""Runtime parity of the corpus's sockfilter, tc, profile, task_iter, bootstrap and
bootstrap_legacy objects (issue 11 item 6): each has a C application of our own
(tests/corpus/*_app.c on the system libbpf) doing what the upstream libbpf-bootstrap
example's does after the load; its recording and `bpfreplay run` with the matching
attach option are at full parity, and every call of the application section
(SO_ATTACH_BPF; bpf_tc_attach()'s program info; the perf events, links, probe, enables
and their teardown; the iterator's fd and close; ring_buffer__new()'s info query and
mappings; perf_buffer__new()'s events, mappings, enables and map updates, and their
teardown) is made by both, identically; an attach by hand with options pairs with our
auto-attach.

What the parity cannot see: netlink (the qdisc, the filter), the raw socket's
socket()/bind() and an iterator's read() are no calls the recorder records. The tc
filter and qdisc our run makes are compared here with the C application's instead, as
`tc` shows them, and the iterator's walks as the threads they list."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bpfreplay.compare import compare_calls, normalise, read_normalised
from bpfreplay.errors import LoaderError
from bpfreplay.loader.attach_perf_event import sampling_cpus
from tests.conftest import _built, require_kernel, require_tool
from tests.corpus.manifest import CORPUS_DIR, RUNTIME_APPS, RuntimeApp, by_name
from tests.netns import BPFREPLAY, Namespace, Running, veth_namespace

APP_LINE = re.compile(r"^    \[reference #\d+, ours #\d+\] (.*) \((.*)\)$", re.M)
HAND_LINE = re.compile(r"^    \[reference #\d+, ours #\d+\] (.*?) \((the application attached "
                       r".*)\)$", re.M)


@pytest.fixture(scope="module")
def apps() -> None:
    require_kernel()
    require_tool("tc")
    for app in RUNTIME_APPS:
        _built(app.app, CORPUS_DIR)
        _built(by_name(app.obj).path, CORPUS_DIR)


def _record_and_run(app: RuntimeApp, work: Path, ns: Namespace | None) -> dict:
    """`bpfreplay record` of the C application (2 s, then SIGINT), then `bpfreplay run
    OBJ OPTIONS --compare REF --save-trace OURS`, both in the namespace if it needs one."""
    dev = ns.receiver if ns else ""
    ref, ours = work / f"{app.name}-ref.mp", work / f"{app.name}-ours.mp"

    def command(argv: list[str]) -> list[str]:
        return ns.command(argv) if ns else argv

    recorded = subprocess.run(command([*BPFREPLAY, "record", "-o", str(ref), "--duration",
                                       "2", "--", str(app.app),
                                       *(a.format(dev=dev) for a in app.app_args)]),
                              capture_output=True, text=True, timeout=120)
    assert recorded.returncode == 0, recorded.stderr[-3000:]
    obj = by_name(app.obj).path
    ran = subprocess.run(command([*BPFREPLAY, "run", str(obj),
                                  *(o.format(dev=dev) for o in app.run_options),
                                  "--duration", "1", "--compare", str(ref),
                                  "--save-trace", str(ours)]),
                         capture_output=True, text=True, timeout=120)
    return {"status": ran.returncode, "report": ran.stdout, "stderr": ran.stderr,
            "ref": ref, "ours": ours}


@pytest.mark.parametrize("app", RUNTIME_APPS, ids=lambda a: a.name)
def test_application_calls_at_parity(apps, app, tmp_path):
    if app.network:
        with veth_namespace() as ns:
            result = _record_and_run(app, tmp_path, ns)
    else:
        result = _record_and_run(app, tmp_path, None)
    report = result["report"]
    assert result["status"] == 0, report[-4000:] + result["stderr"][-2000:]
    assert "FULL PARITY" in report
    section = re.search(r"application section \((\d+) call\(s\), not loader differences; "
                        r"(\d+) made by both, (\d+) by ours only(?:; the options of (\d+) "
                        r"hand attach)?", report)
    assert section, report[-3000:]
    hand = HAND_LINE.findall(report)
    assert len(hand) == int(section.group(4) or 0) == len(app.hand_attached)
    for (call, side), program in zip(hand, app.hand_attached, strict=True):
        # only the options are apart: the rest of the call is compared with our attach
        assert call.startswith("bpf BPF_LINK_CREATE"), call
        assert side.startswith(f"the application attached {program} by hand with options")
        assert side.endswith("the rest of the call is compared with our auto-attach")
    calls = [(call, side) for call, side in APP_LINE.findall(report)
             if "by hand with options" not in call + side]
    assert calls and len(calls) == int(section.group(1)) == int(section.group(2))
    assert all(side == "both, identical" for _, side in calls), calls
    kinds = {" ".join(call.split()[:2]) if call.startswith("bpf ") else call.split()[0]
             for call, _ in calls}
    assert set(app.calls) <= kinds, (app.calls, calls)
    if app.obj in ("profile", "bootstrap_legacy"):  # one event per online CPU
        opened = [c for c, _ in calls if c.startswith("perf_event_open")]
        assert len(opened) == len(sampling_cpus())


def test_a_different_program_in_so_attach_bpf_is_seen(apps, tmp_path):
    """The socket's number is masked (`<socket>`), never the program: our setsockopt
    with a map's fd in its optval instead of the program's is not identical."""
    app = next(a for a in RUNTIME_APPS if a.name == "sockfilter")
    with veth_namespace() as ns:
        result = _record_and_run(app, tmp_path, ns)
    assert result["status"] == 0, result["report"][-3000:]
    ref, ours = read_normalised(str(result["ref"])), read_normalised(str(result["ours"]))
    at = next(i for i, c in enumerate(ours.records) if c["syscall"] == "setsockopt")
    assert ours.items[at]["args"]["fd"] == "<socket>"
    assert ours.items[at]["in"] == {"optval": "prog:count_packets#1"}
    map_fd = next(ours.records[j]["ret"] for j, item in enumerate(ours.items)
                  if str(item.get("ret")).startswith("map:by_protocol"))
    calls = [dict(c) for c in ours.records]
    calls[at] = dict(calls[at], **{"in": {"optval": map_fd.to_bytes(4, "little")}})
    changed = normalise(calls, ours.pid)
    report = compare_calls(ref.items, changed)
    setsockopt = [c for c in report.application if c.call.startswith("setsockopt")]
    assert [c.identical for c in setsockopt] == [False]
    assert changed[at]["in"]["optval"].startswith("map:")


def _tc_state(ns: Namespace, direction: str) -> dict[str, str]:
    """What `tc` shows of the receiver's qdiscs and filters, the program's id and the
    load time it implies taken out (they are the kernel's for each load)."""
    dev = ns.receiver
    filters = ns.run(["tc", "filter", "show", "dev", dev, direction])
    return {"qdisc": ns.run(["tc", "qdisc", "show", "dev", dev]),
            "filters": re.sub(r"\[\d+\]|\bid \d+", "<id>", filters)}


@pytest.mark.parametrize("direction", ["ingress", "egress"])
def test_tc_filter_and_qdisc_are_the_c_applications(apps, direction):
    """Netlink is not in the traces: the clsact qdisc and the filter (name, protocol,
    preference, handle, direct-action, program tag) bpf_tc_attach() made for the C
    application are what our --tc makes, and both leave the device as it was."""
    tc_app = next(a for a in RUNTIME_APPS if a.obj == "tc").app
    obj = by_name("tc").path
    with veth_namespace() as ns:
        before = _tc_state(ns, direction)
        proc = subprocess.Popen(ns.command([str(tc_app), ns.receiver, direction]),
                                stderr=subprocess.PIPE, text=True)
        assert proc.stderr is not None
        line = proc.stderr.readline()
        assert line.startswith("tc_app: attached"), line
        theirs = _tc_state(ns, direction)
        proc.send_signal(2)
        assert proc.wait(timeout=60) == 0
        after_theirs = _tc_state(ns, direction)
        run = Running([str(obj), "--tc", f"{ns.receiver}:{direction}"], ns)
        try:
            ours = _tc_state(ns, direction)
        finally:
            status, _, err = run.stop()
        assert status == 0, err[-3000:]
        assert ours == theirs and "tc_ingress:<id>" in ours["filters"], (ours, theirs)
        assert "direct-action" in ours["filters"] and "clsact" in ours["qdisc"]
        assert after_theirs == before == _tc_state(ns, direction)


TASK_LINE = re.compile(r" *(\d+) +(\d+) (.*)")  # task_iter.bpf.c: "%8d %8d %s\n"


def _threads() -> set[int]:
    return {int(tid) for pid in os.listdir("/proc") if pid.isdigit()
            for tid in _listdir(f"/proc/{pid}/task")}


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:  # the process ended meanwhile
        return []


def _tasks(text: str) -> dict[int, tuple[int, str]]:
    """tid -> (tgid, comm) of each line an iter/task walk of task_iter.bpf.c wrote."""
    tasks = {}
    for line in text.splitlines():
        found = TASK_LINE.fullmatch(line)
        assert found, line
        tasks[int(found.group(2))] = (int(found.group(1)), found.group(3))
    return tasks


def test_task_iter_walks_are_the_c_applications(apps, tmp_path):
    """What the iterator wrote, the reads the traces do not hold: the C application's
    walk, `bpfreplay run`'s and the API's obj.iterator("list_tasks") list, in the same
    format, every thread /proc shows before and after all three (the kernel's own
    answer), each with its own process in it."""
    import bpfreplay.api

    app = next(a for a in RUNTIME_APPS if a.name == "task_iter")
    obj = by_name("task_iter").path
    before = _threads()
    theirs = subprocess.run([str(app.app)], capture_output=True, text=True, timeout=60)
    assert theirs.returncode == 0, theirs.stderr
    ran = subprocess.Popen([*BPFREPLAY, "run", str(obj), "--duration", "0"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    run_out, run_err = ran.communicate(timeout=60)
    assert ran.returncode == 0, run_err[-3000:]
    with bpfreplay.api.load(str(obj)) as loaded:
        api_out = loaded.iterator("list_tasks").decode()
        with pytest.raises(LoaderError, match="no attached iterator 'nope'.*list_tasks"):
            loaded.iterator("nope")
    stable = before & _threads()
    walks = {"c": _tasks(theirs.stdout), "run": _tasks(run_out), "api": _tasks(api_out)}
    for name, tasks in walks.items():
        assert stable & tasks.keys() == stable & walks["c"].keys(), name
    # this 6.18 kernel's walk leaves init's thread group out (in all three): most, not all
    assert len(stable & walks["api"].keys()) > len(stable) // 2
    assert any(comm == "task_iter_app" and tgid == tid
               for tid, (tgid, comm) in walks["c"].items())
    assert walks["run"][ran.pid] == (ran.pid, os.path.basename(sys.executable)[:15])
    with open("/proc/self/comm") as comm:
        assert walks["api"][os.getpid()] == (os.getpid(), comm.read().strip())
