"""How ``bpfreplay explain`` prints: plain text to a pipe or file, colour on a terminal
(rich)."""

from __future__ import annotations

import time
from typing import Any, TextIO

from bpfreplay.decode.terminal import escape_control

_PHASE_STYLE = {"probe": "dim cyan", "object": "bold green", "attach": "bold magenta",
                "runtime": "yellow", "teardown": "dim"}


class Printer:
    def __init__(self, stream: TextIO, *, verbose: bool):
        self.stream = stream
        self.verbose = verbose
        self.console = None
        if stream.isatty():
            from rich.console import Console

            self.console = Console(file=stream, highlight=False, soft_wrap=True)

    def _out(self, text: str, style: str | None = None) -> None:
        # Every line passes here: what came from the trace (names, paths, logs, argv)
        # reaches the terminal with its control characters escaped.
        text = escape_control(text)
        if self.console is not None:
            from rich.text import Text

            self.console.print(Text(text, style=style or ""))
        else:
            self.stream.write(text + "\n")

    def header(self, header: dict[str, Any], path: str) -> None:
        argv = " ".join(header.get("argv") or [])
        started = header.get("start_time")
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)) if started else "?"
        self._out(f"# {path}: {header.get('recorder', '?')} trace of '{argv}' on Linux "
                  f"{header.get('kernel', '?')} ({header.get('machine', '?')}), {when}",
                  "bold")
        if header.get("version", 1) < 2:
            import os

            other = header.get("kernel") != os.uname().release
            self._out("# trace format 1: tracepoint and PMU names below come from this "
                      "machine's tracefs and sysfs, not from the recording"
                      + (" (made on another kernel: its ids may name other tracepoints "
                         "here)" if other else ""))

    def call(self, explained: Any) -> None:
        label = explained.label
        phase = label.phase if label else "?"
        tag = f"{phase}:{label.probe}" if label and label.probe else phase
        style = "bold red" if explained.failed and not (label and label.probe) else \
            _PHASE_STYLE.get(phase)
        api = f"  <- {explained.api}" if explained.api else ""
        self._out(f"{explained.index:>5} {tag:<24} {explained.line}{api}", style)
        if explained.verifier is not None:
            self._out(f"{'':>30}verifier: {explained.verifier.text()}", "dim")
        if label and label.note and self.verbose:
            self._out(f"{'':>30}note: {label.note}", "dim")
        if not self.verbose:
            return
        for name, text in explained.fields:
            self._out(f"{'':>8}{name} = {text}" if name != "note" else f"{'':>8}! {text}")
        for section in explained.sections:
            self._out(f"{'':>8}--- {section.title}", "bold")
            for line in section.lines:
                self._out(f"{'':>10}{line}")

    def summary(self, stats: Any) -> None:
        """Each line at most ``SUMMARY_WIDTH`` characters, whatever the trace's length:
        counts first, then the first few items, then how many more."""
        self._out("")
        self._out(bounded(f"# {stats.total} calls: ",
                          [f"{n} {phase}" for phase, n in stats.by_phase.items()]), "bold")
        self._out(bounded("#   by command: ", [f"{name.removeprefix('BPF_')} {n}"
                                                for name, n in stats.by_command.most_common()]))
        if stats.probes:
            self._out(bounded(f"#   libbpf feature probes ({sum(stats.probes.values())} bpf() "
                              f"calls): ", list(stats.probes)))
        if stats.failed and stats.failed <= _FEW_FAILURES:
            self._out("#   failed: " + ", ".join(f"#{i} {name} {err}"
                                                  for i, name, err in stats.failures))
        elif stats.failed:
            kinds = [f"{name.removeprefix('BPF_')} {err} {n}"
                     for (name, err), n in stats.failed_kinds.most_common()]
            head = bounded(f"#   failed: {stats.failed} (", kinds, SUMMARY_WIDTH // 2) + "): "
            self._out(bounded(head, [f"#{i} {name.removeprefix('BPF_')} {err}"
                                     for i, name, err in stats.failures], more=stats.failed))
        for line in _verifier_lines(stats):
            self._out(line)


SUMMARY_WIDTH = 200
_FEW_FAILURES = 3  # listed one by one; more are counted by kind first


def bounded(prefix: str, items: list[str], width: int = SUMMARY_WIDTH, *,
            more: int | None = None) -> str:
    """``prefix`` and as many of ``items`` as fit in ``width`` characters, then
    ``and N more`` (``more``: how many items there are in all, when ``items`` holds
    only the first of them)."""
    total = len(items) if more is None else more
    shown: list[str] = []
    length = len(prefix)
    for position, item in enumerate(items):
        rest = total - position - 1
        tail = len(f", and {rest} more") if rest else 0
        if length + (2 if shown else 0) + len(item) + tail > width:
            break
        shown.append(item)
        length += (2 if len(shown) > 1 else 0) + len(item)
    rest = total - len(shown)
    text = prefix + ", ".join(shown)
    if rest:
        text += f"{', ' if shown else ''}and {rest} more"
    return text[:width]


def _verifier_lines(stats: Any) -> list[str]:
    """How many loads had verifier statistics, by verdict, then the verdict and
    statistics of each of the first programs that are not feature probes."""
    total = sum(stats.verdicts.values())
    if not total:
        return []
    lines = [bounded(f"#   verifier statistics: {total} program load{'s' if total > 1 else ''} (",
                     [f"{n} {verdict}" for verdict, n in stats.verdicts.most_common()]) + ")"]
    for index, name, verdict, v in stats.verified:
        peak = v.counters.get("peak_states")
        states = v.counters.get("total_states")
        text = (f"#   verifier: #{index} {name} {verdict}: {v.processed} insns processed "
                f"(limit {v.limit})")
        if states is not None:
            text += f", {states} states"
        if peak is not None:
            text += f" (peak {peak})"
        lines.append(text[:SUMMARY_WIDTH])
    probes = getattr(stats, "verified_probes", 0)
    more = total - len(stats.verified) - probes
    if more:
        lines.append(f"#   verifier: and {more} more program{'s' if more > 1 else ''}")
    if probes:
        lines.append(f"#   verifier: {probes} of the loads are feature probes, not listed")
    return lines
