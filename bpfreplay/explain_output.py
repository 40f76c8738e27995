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
        self._out(f"{explained.index:>5} {tag:<24} {explained.line}", style)
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
        self._out("")
        self._out(f"# {stats.total} calls: "
                  + ", ".join(f"{n} {phase}" for phase, n in stats.by_phase.items()), "bold")
        self._out("#   by command: " + ", ".join(f"{name.removeprefix('BPF_')} {n}"
                                                  for name, n in stats.by_command.most_common()))
        if stats.probes:
            self._out(f"#   libbpf feature probes ({sum(stats.probes.values())} bpf() calls): "
                      + ", ".join(stats.probes))
        if stats.failures:
            self._out("#   failed: " + ", ".join(f"#{i} {name} {err}"
                                                  for i, name, err in stats.failures))
