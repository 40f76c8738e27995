"""Why a recorded call is not issued again: two answers the engine turns into the
call's ``skipped`` line (they are not errors of bpfreplay: the report is the product)."""

from __future__ import annotations


class NotReproducible(Exception):
    """The call needs something no replay can make here: an fd the trace did not make
    (another process's object, a cgroup, a socket it opened itself), a pointer the
    recording could not read, a network device of the recording machine."""


class NeedsCall(Exception):
    """The call uses an object that an earlier call made in the recording and that this
    replay does not have (that call was skipped or failed here)."""

    def __init__(self, index: int, what: str):
        super().__init__(f"needs #{index} ({what})")
        self.index = index
        self.what = what
