"""The cache of the vmlinux BTF index (loader/btf_cache.py): a warm load answers as
bpftool reads the kernel's BTF; a changed kernel, a corrupt, foreign or hostile cache
file is a miss (rebuilt, never trusted); the files are private."""

from __future__ import annotations

import hashlib
import os
import re
import stat
import subprocess
import zlib
from pathlib import Path

import pytest

from bpfreplay.decode.btf import Kind, dump_type
from bpfreplay.loader import btf_cache
from tests.conftest import require_kernel, require_tool

VMLINUX = Path("/sys/kernel/btf/vmlinux")
NAMES = ("task_struct", "sk_buff", "pt_regs", "trace_event_raw_sys_enter", "int",
         "bpf_prog_aux", "mm_struct")


@pytest.fixture(scope="module")
def blob() -> bytes:
    require_kernel()
    return VMLINUX.read_bytes()


@pytest.fixture(scope="module")
def bpftool_lines() -> dict[int, list[str]]:
    """bpftool's dump of the kernel's BTF, the lines of each type by id."""
    require_kernel()
    dump = subprocess.run([require_tool("bpftool"), "btf", "dump", "file", str(VMLINUX)],
                          check=True, capture_output=True, text=True).stdout
    lines: dict[int, list[str]] = {}
    current = 0
    for line in dump.splitlines():
        m = re.match(r"^\[(\d+)\] ", line)
        if m:
            current = int(m[1])
        lines.setdefault(current, []).append(line)
    return lines


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    directory = tmp_path / "cache"
    monkeypatch.setenv("BPFREPLAY_CACHE", str(directory))
    return directory


def _answers(btf, bpftool_lines) -> None:
    """Lookups of a few names against bpftool's dump: the type found is the first of
    that name and kind bpftool lists, and it dumps as bpftool dumps it."""
    for name in NAMES:
        for kind in (Kind.STRUCT, Kind.INT, Kind.TYPEDEF):
            first = next((i for i, lines in bpftool_lines.items()
                          if lines[0].startswith(f"[{i}] {kind.name} '{name}'")), None)
            found = btf.by_name(name, kind)
            assert (found.id if found else None) == first, (name, kind)
            if found is not None:
                assert list(dump_type(btf, found)) == bpftool_lines[found.id]


def test_cold_then_warm_answers_as_bpftool(blob, cache, bpftool_lines):
    cold = btf_cache.load_vmlinux_index(blob)
    files = list(cache.iterdir())
    assert len(files) == 1 and f"-{len(blob)}-" in files[0].name
    assert stat.S_IMODE(os.stat(cache).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(files[0]).st_mode) == 0o600
    warm = btf_cache.load_vmlinux_index(blob)
    assert cold._pairs is None and warm._pairs is not None  # built, then read
    _answers(cold, bpftool_lines)
    _answers(warm, bpftool_lines)


def test_a_changed_kernel_gets_its_own_entry(blob, cache):
    btf_cache.load_vmlinux_index(blob)
    other = bytearray(blob)
    other[-2] ^= 0x01  # one byte of the last string: another kernel's BTF
    again = btf_cache.load_vmlinux_index(bytes(other))
    assert again._pairs is None  # not answered by the first kernel's index
    assert len(list(cache.iterdir())) == 2


@pytest.mark.parametrize("damage", ["flip", "truncate", "empty", "foreign-index"])
def test_a_damaged_cache_file_is_a_miss(blob, cache, bpftool_lines, damage):
    btf_cache.load_vmlinux_index(blob)
    (entry,) = cache.iterdir()
    raw = bytearray(entry.read_bytes())
    if damage == "flip":
        raw[len(raw) // 2] ^= 0xFF
    elif damage == "truncate":
        del raw[len(raw) - 100:]
    elif damage == "empty":
        raw = bytearray()
    else:
        # a well-formed entry (checksum right) whose arrays describe other bytes
        payload = bytearray(raw[btf_cache._HEADER.size:])
        payload[4:8] = (12345).to_bytes(4, "little")  # type 2 starts elsewhere
        fields = list(btf_cache._HEADER.unpack_from(raw))
        fields[-1] = zlib.crc32(payload)
        raw = bytearray(btf_cache._HEADER.pack(*fields)) + payload
    entry.write_bytes(bytes(raw))
    btf = btf_cache.load_vmlinux_index(blob)
    assert btf._pairs is None  # rebuilt from the blob
    _answers(btf, bpftool_lines)
    assert btf_cache.load_vmlinux_index(blob)._pairs is not None  # and written again


def test_hostile_places_are_not_used(blob, cache, tmp_path):
    btf_cache.load_vmlinux_index(blob)
    (entry,) = cache.iterdir()
    good = entry.read_bytes()
    # a symlink at the entry's path is not followed
    target = tmp_path / "elsewhere"
    target.write_bytes(good)
    entry.unlink()
    entry.symlink_to(target)
    assert btf_cache.load_vmlinux_index(blob)._pairs is None
    assert entry.is_symlink() or entry.read_bytes() == good
    # a file others may write is not trusted
    if entry.is_symlink():
        entry.unlink()
    entry.write_bytes(good)
    os.chmod(entry, 0o666)
    assert btf_cache.load_vmlinux_index(blob)._pairs is None
    # nor a directory others may write
    os.chmod(entry, 0o600)
    os.chmod(cache, 0o777)
    assert btf_cache.load_vmlinux_index(blob)._pairs is None


def test_an_empty_setting_turns_the_cache_off(blob, tmp_path, monkeypatch):
    monkeypatch.setenv("BPFREPLAY_CACHE", "")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert btf_cache.load_vmlinux_index(blob)._pairs is None
    assert btf_cache.load_vmlinux_index(blob)._pairs is None
    assert list(tmp_path.iterdir()) == []


def _boot_id() -> bytes:
    return Path("/proc/sys/kernel/random/boot_id").read_bytes().strip()


def test_the_running_kernel_is_hashed_once_a_boot(blob, cache, bpftool_lines):
    """The note of this boot gives the blob's digest (checked here against hashlib) and
    names the entry a warm load reads."""
    btf_cache.load_vmlinux_index(blob, running_kernel=True)
    note = cache / f"vmlinux-{len(blob)}.boot"
    assert stat.S_IMODE(os.stat(note).st_mode) == 0o600
    magic, boot, size, digest = btf_cache._NOTE.unpack(note.read_bytes())
    assert (boot, size) == (_boot_id(), len(blob))
    assert digest == hashlib.blake2b(blob, digest_size=32).digest()
    warm = btf_cache.load_vmlinux_index(blob, running_kernel=True)
    assert warm._pairs is not None
    _answers(warm, bpftool_lines)


@pytest.mark.parametrize("damage", ["other-boot", "truncate", "symlink"])
def test_a_note_not_of_this_boot_is_not_believed(blob, cache, tmp_path, damage):
    """A note of another boot naming a wrong digest (the kernel may have changed since),
    a damaged note or one behind a symlink: the blob is hashed, the right entry found,
    and the note written again for this boot."""
    btf_cache.load_vmlinux_index(blob, running_kernel=True)
    note = cache / f"vmlinux-{len(blob)}.boot"
    fields = list(btf_cache._NOTE.unpack(note.read_bytes()))
    fields[3] = bytes(32)  # a digest no entry has
    if damage == "other-boot":
        fields[1] = b"00000000-0000-0000-0000-000000000000"
        note.write_bytes(btf_cache._NOTE.pack(*fields))
    elif damage == "truncate":
        note.write_bytes(btf_cache._NOTE.pack(*fields)[:-1])
    else:
        target = tmp_path / "elsewhere"
        target.write_bytes(btf_cache._NOTE.pack(*fields))
        note.unlink()
        note.symlink_to(target)
    assert btf_cache.load_vmlinux_index(blob, running_kernel=True)._pairs is not None
    assert not note.is_symlink()  # replaced, not written through
    assert btf_cache._NOTE.unpack(note.read_bytes())[1:] == (
        _boot_id(), len(blob), hashlib.blake2b(blob, digest_size=32).digest())
    if damage == "symlink":
        assert (tmp_path / "elsewhere").read_bytes() == btf_cache._NOTE.pack(*fields)


def test_another_file_is_hashed_every_time(blob, cache):
    """Only the running kernel's sysfs blob is noted: bytes from elsewhere (an override
    path) leave no note and are checked by their digest."""
    btf_cache.load_vmlinux_index(blob)
    assert not list(cache.glob("*.boot"))
