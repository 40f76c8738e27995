"""The BTF of a type declared in a C header: a one-line unit including the header and
declaring a variable of the type is compiled with ``clang -g -target bpf`` and its .BTF
section read by our BTF decoder. (A bootstrap-like program's record type is usually in
a header and absent from the object's BTF: nothing in the object has that type.)"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile

from bpfreplay.decode.btf import Btf, parse_btf
from bpfreplay.errors import BpfReplayError

# Types a header may use without including anything (upstream's bootstrap.h uses bool).
_PRELUDE = "#include <stdbool.h>\n#include <stddef.h>\n"


def header_btf(header: str, type_name: str, *, clang: str | None = None) -> Btf:
    """The BTF of a unit declaring ``type_name *__bpfreplay_event;`` after ``header`` (a
    pointer: a type the header does not define compiles, and is then not found)."""
    from bpfreplay.loader.elf import read_elf

    if not os.path.isfile(header):
        raise BpfReplayError(f"--header {header}: no such file")
    compiler = clang or os.environ.get("CLANG") or shutil.which("clang")
    if not compiler:
        raise BpfReplayError(f"--header {header}: clang is needed to read it (not found)")
    with tempfile.TemporaryDirectory(prefix="bpfreplay-header-") as work:
        unit = os.path.join(work, "event.c")
        out = os.path.join(work, "event.o")
        with open(unit, "w") as f:
            f.write(f"{_PRELUDE}#include \"{os.path.abspath(header)}\"\n"
                    f"{type_name} *__bpfreplay_event;\n")
        done = subprocess.run([compiler, "-g", "-O2", "-target", "bpf", "-c", unit, "-o", out,
                               "-I", os.path.dirname(os.path.abspath(header))],
                              capture_output=True, text=True)
        if done.returncode != 0:
            raise BpfReplayError(f"--header {header}: clang could not compile "
                                 f"'{type_name}' from it:\n{done.stderr.strip()}")
        with open(out, "rb") as f:
            elf = read_elf(f.read(), out)
    section = elf.section_by_name(".BTF")
    if section is None:
        raise BpfReplayError(f"--header {header}: clang made no BTF for '{type_name}'")
    return parse_btf(section.data)
