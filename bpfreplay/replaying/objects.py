"""What the replay made, and how the recording's names for things become ours.

The recording's fds are followed by decode/fds.py's ``FdTable`` (per process, through
dup and close); each ``FdLife`` the replay reproduced maps to the fd it got here. Kernel
ids seen made by the trace map to the ids of our objects; mappings, pins and sockets
are ours to undo. ``teardown`` ends whatever is still open: the replay leaves nothing
in the kernel, however it ends.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from dataclasses import dataclass, field
from typing import Any

from bpfreplay.decode.fds import FdLife, FdTable
from bpfreplay.replaying.errors import NeedsCall, NotReproducible
from bpfreplay.uapi.pointers import MapShape

# bpf_attr/fdinfo keys of the kernel ids of each kind of object (rule 4 of parity.md).
ID_KEYS = ("prog_id", "map_id", "btf_id", "link_id")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def _whole_pages(length: int) -> int:
    return -(-length // PAGE_SIZE) * PAGE_SIZE


@dataclass
class Mapping:
    """An mmap of ours standing for a recorded one."""

    recorded: int  # the address the recording got
    ours: int
    length: int


@dataclass
class ReplayState:
    """The recording's fds, ids and addresses, and what stands for each of them here."""

    table: FdTable = field(default_factory=FdTable)
    fds: dict[FdLife, int] = field(default_factory=dict)  # recorded fd life -> our fd
    owned: dict[int, str] = field(default_factory=dict)  # our open fd -> what it is
    shapes: dict[int, MapShape] = field(default_factory=dict)  # our map fd -> its shape
    map_types: dict[int, int] = field(default_factory=dict)  # our map fd -> map type
    ids: dict[tuple[str, int], int] = field(default_factory=dict)  # (id key, recorded) -> ours
    mappings: list[Mapping] = field(default_factory=list)
    sockets: dict[tuple[int, int], int] = field(default_factory=dict)  # (pid, fd) -> ours
    # every mapping the recording made: (address, length, index of its mmap call)
    recorded_mappings: list[tuple[int, int, int]] = field(default_factory=list)
    pin_dir: str | None = None  # the private bpffs directory, once made
    pinned: set[str] = field(default_factory=set)  # recorded paths the trace pinned

    # ------------------------------------------------------------ fds

    def our_fd(self, pid: int, fd: int, what: str) -> int:
        """Our fd for the recording's ``fd`` of process ``pid`` as the current call reads
        it; NeedsCall when the object was not made here, NotReproducible when the trace
        never made it."""
        life = self.table.open.get((pid, fd))
        if life is None:
            raise NotReproducible(f"{what} {fd} is not an fd the trace made")
        ours = self.fds.get(life)
        if ours is None:
            raise NeedsCall(life.created, f"{what} {fd}")
        return ours

    def life(self, pid: int, fd: int) -> FdLife | None:
        return self.table.open.get((pid, fd))

    def made(self, fd: int, kind: str, facts: dict[str, Any] | None = None) -> None:
        """Our call returned ``fd`` (a ``kind`` object): ours to close at the end."""
        self.owned[fd] = kind
        if facts and facts.get("kind") == "map" and "key_size" in facts:
            self.shapes[fd] = MapShape(int(facts.get("map_type", 0)), int(facts["key_size"]),
                                       int(facts["value_size"]))
            self.map_types[fd] = int(facts.get("map_type", 0))

    def learn_ids(self, recorded: dict[str, Any] | None, ours: dict[str, Any]) -> None:
        """The kernel ids of an object the trace made and of ours that stands for it."""
        for key in ID_KEYS:
            theirs, mine = (recorded or {}).get(key), ours.get(key)
            if isinstance(theirs, int) and isinstance(mine, int):
                self.ids[(key, theirs)] = mine

    def forget(self, fd: int) -> None:
        self.owned.pop(fd, None)
        self.shapes.pop(fd, None)
        self.map_types.pop(fd, None)
        for life, ours in list(self.fds.items()):
            if ours == fd:
                del self.fds[life]

    # ------------------------------------------------------------ addresses

    def our_range(self, address: int, length: int) -> tuple[int, int, Mapping]:
        """Our address and length for a recorded munmap; only inside a mapping of ours."""
        for m in self.mappings:
            if m.recorded <= address < m.recorded + m.length:
                offset = address - m.recorded
                return m.ours + offset, min(length, m.length - offset), m
        for start, size, index in reversed(self.recorded_mappings):
            if start <= address < start + size:
                raise NeedsCall(index, f"the mapping at {address:#x}")
        raise NotReproducible(f"address {address:#x} is not a mapping the trace made of a "
                              "BPF object")

    def unmapped(self, mapping: Mapping, address: int, length: int) -> None:
        """Our munmap of ``length`` bytes at ``address`` (inside ``mapping``) succeeded:
        keep only the pages of it still mapped (the kernel unmaps whole pages), so that
        the teardown never unmaps a page that is no longer ours (by then it may be
        anybody's memory in this process)."""
        end = min(address + _whole_pages(length), mapping.ours + mapping.length)
        pieces = []
        if address > mapping.ours:
            pieces.append(Mapping(mapping.recorded, mapping.ours, address - mapping.ours))
        if end < mapping.ours + mapping.length:
            offset = end - mapping.ours
            pieces.append(Mapping(mapping.recorded + offset, end, mapping.length - offset))
        at = self.mappings.index(mapping)
        self.mappings[at:at + 1] = pieces

    # ------------------------------------------------------------ pins

    def pin_path(self, recorded: str, root: str, *, make_parents: bool) -> str:
        """Where the recorded pin path lives in our private bpffs directory (made under
        ``root`` on first use): the path below the bpffs mount, never outside ours."""
        if self.pin_dir is None:
            if not os.path.isdir(root):
                raise NotReproducible(f"no bpffs at {root} for the pin {recorded}")
            import tempfile

            self.pin_dir = tempfile.mkdtemp(prefix=f"bpfreplay-replay-{os.getpid()}-",
                                            dir=root)
        relative = recorded.removeprefix("/sys/fs/bpf/").lstrip("/")
        path = os.path.normpath(os.path.join(self.pin_dir, relative))
        if not relative or os.path.commonpath([path, self.pin_dir]) != self.pin_dir \
                or path == self.pin_dir:
            raise NotReproducible(f"the pin path {recorded!r} leaves the replay's directory")
        if make_parents:
            os.makedirs(os.path.dirname(path), exist_ok=True)
        return path


def teardown(state: ReplayState, close: Any, munmap: Any) -> list[str]:
    """Undo what is left: mappings, sockets, fds (links before programs and maps, as the
    kernel detaches a link on its last close), then the private pins. Returns what was
    done, for the report; never raises."""
    done = []
    for m in list(state.mappings):
        with contextlib.suppress(OSError):
            munmap(m.ours, m.length)
        state.mappings.remove(m)
        done.append(f"munmap {m.length} bytes")
    order = {"link": 0, "perf_event": 1, "prog": 2, "map": 3, "btf": 4}
    for fd, kind in sorted(state.owned.items(), key=lambda item: order.get(item[1], 5)):
        with contextlib.suppress(OSError):
            close(fd)
        done.append(f"close {kind} fd {fd}")
    state.owned.clear()
    state.fds.clear()
    for fd in state.sockets.values():
        with contextlib.suppress(OSError):
            close(fd)
        done.append(f"close socket fd {fd}")
    state.sockets.clear()
    if state.pin_dir is not None:
        shutil.rmtree(state.pin_dir, ignore_errors=True)  # bpffs: unlink drops the pins
        if not os.path.exists(state.pin_dir):
            done.append(f"removed {state.pin_dir}")
        state.pin_dir = None
    return done
