"""The Python API: the loader as a library, as a libbpf skeleton is used from C.

    with bpfreplay.load("bootstrap.bpf.o", globals={"min_duration_ns": 0}) as obj:
        for key, value in obj.maps["exec_start"].items():
            ...

``load()`` opens, sets globals, loads and auto-attaches (bpf_object__open, the
skeleton's ``skel->rodata->x = ...``, bpf_object__load, bpf_object__attach_skeleton);
leaving the ``with`` block tears everything down as ``bpfreplay run`` does
(bpf_object__destroy_skeleton). ``Object.open()``, ``set_global()``, ``load()``,
``attach()`` are those stages one by one; ``bpfreplay run`` stands on them. Every BPF
syscall goes through ``bpfreplay.sys``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

from bpfreplay.errors import LoaderError

if TYPE_CHECKING:
    from collections.abc import Callable

    from bpfreplay.loader.globals import Variable
    from bpfreplay.loader.kernel import Link, LoadedMap, LoadedObject, LoadedProgram
    from bpfreplay.loader.spec import ObjectSpec
    from bpfreplay.map_contents import TypedMap
    from bpfreplay.runtime.readers import PerfBufferReader, RingBufferReader


def load(path: str, globals: Mapping[str, int | str] | None = None, *,  # noqa: A002
         name: str | None = None, pin_root: str | None = None,
         attach: bool = True) -> Object:
    """Open, set ``globals`` (name -> integer, or "self" for our pid), load and (unless
    ``attach`` is False) auto-attach the object at ``path``: Object.open(), set_global(),
    load(), attach(), as a skeleton's open_and_load + attach. On any error nothing is
    left loaded."""
    obj = Object.open(path, name=name, pin_root=pin_root)
    try:
        for var_name, value in (globals or {}).items():
            obj.set_global(f"{var_name}={value}")
        obj.load()
        if attach:
            obj.attach()
        return obj
    except BaseException:
        obj.close()
        raise


class Object:
    """A loaded object: its maps, programs and links; a context manager that tears it
    down."""

    def __init__(self, loaded: LoadedObject):
        self.loaded = loaded
        self.maps = Maps(loaded)
        self.notes: list[str] = []  # programs left unattached, and why
        self._readers: list[RingBufferReader | PerfBufferReader] = []

    @property
    def name(self) -> str:
        return self.loaded.spec.name

    @property
    def programs(self) -> dict[str, LoadedProgram]:
        """Loaded programs by name (``.fd``, ``.spec.section``)."""
        return {p.spec.name: p for p in self.loaded.programs}

    @property
    def links(self) -> list[Link]:
        """The links made so far (auto-attach, then the attach calls): the teardown
        destroys them in this order."""
        return self.loaded.links

    @classmethod
    def open(cls, path: str, *, name: str | None = None,
             pin_root: str | None = None) -> Object:
        """bpf_object__open(): the object at ``path`` read (its name: ``name``, else as
        bpftool gen skeleton names it), nothing in the kernel yet; then set_global(),
        load(), attach()."""
        import os

        from bpfreplay.loader.spec import load_spec, skeleton_name

        if not os.path.exists(path):
            raise LoaderError(f"opening {path}: no such file")
        return cls.from_spec(load_spec(path, name=name or skeleton_name(path)),
                             pin_root=pin_root)

    @classmethod
    def from_spec(cls, spec: ObjectSpec, *, pin_root: str | None = None) -> Object:
        """Object.open() of an object already read (bpfreplay.loader.spec.load_spec());
        ``pin_root``: where maps pinned by name are looked for (libbpf's
        pin_root_path)."""
        from bpfreplay.loader.kernel import open_object

        return cls(open_object(spec, pin_root_path=pin_root))

    def set_global(self, assignment: str) -> Variable:
        """NAME=VALUE (an integer, or "self" for our pid) written into the global's data
        map image before load, as ``skel->bss->NAME = VALUE``; after load only .bss and
        .data variables can be written (their maps are mapped)."""
        from bpfreplay.loader.globals import set_global

        return set_global(self.loaded, assignment)

    def load(self) -> None:
        """bpf_object__load(): maps, programs, the data maps remapped; on an error what
        was made is closed (ProgramLoadError carries the verifier log)."""
        from bpfreplay.loader.kernel import LoadOptions
        from bpfreplay.loader.kernel import load as kernel_load

        kernel_load(self.loaded, LoadOptions())

    def attach(self) -> list[str]:
        """bpf_object__attach_skeleton(): every program libbpf auto-attaches; the notes
        (programs left unattached, and why) are returned and kept in ``notes``."""
        from bpfreplay.loader.attach import attach_all

        self.notes = attach_all(self.loaded)
        return self.notes

    def iterator(self, name: str) -> bytes:
        """One walk of iterator program ``name`` (attached at load): what it wrote."""
        from bpfreplay.loader.iterator import iterator_links, read_iterator

        for link in iterator_links(self.loaded):
            if link.program == name:
                return read_iterator(self.loaded, link)
        programs = [link.program for link in iterator_links(self.loaded)]
        raise LoaderError(f"object '{self.name}' has no attached iterator '{name}' (its "
                          f"iterators: {', '.join(programs) or 'none'})")

    def ring_buffer(self, name: str, *, timeout: float | None = None,
                    callback: Callable[[bytes], int | None] | None = None,
                    ) -> RingBufferReader:
        """A reader of ring buffer map ``name`` (ring_buffer__new()): iterate it for
        each record (bytes) until ``timeout`` seconds have passed, or give a
        ``callback`` and call ``poll()``. Closed with the object."""
        from bpfreplay.runtime.readers import RingBufferReader

        reader = RingBufferReader(self.maps[name].fd, name, timeout=timeout,
                                  callback=callback)
        self._readers.append(reader)
        return reader

    def perf_buffer(self, name: str, *, timeout: float | None = None, page_cnt: int = 8,
                    callback: Callable[[int, bytes], None] | None = None,
                    lost: Callable[[int, int], None] | None = None) -> PerfBufferReader:
        """A reader of perf event array ``name`` (perf_buffer__new() with ``page_cnt``
        data pages per CPU): iterate it for PerfSample(cpu, data) until ``timeout``
        seconds have passed, or give ``callback(cpu, data)`` (and ``lost(cpu, n)``)
        and call ``poll()``. Closed with the object."""
        from bpfreplay.runtime.readers import PerfBufferReader

        reader = PerfBufferReader(self.maps[name].fd, name, timeout=timeout,
                                  page_cnt=page_cnt, callback=callback, lost=lost)
        self._readers.append(reader)
        return reader

    def close(self) -> None:
        """The readers first (ring_buffer__free(), perf_buffer__free()), then the object
        (bpf_object__destroy_skeleton()), as an application frees them."""
        while self._readers:
            self._readers.pop().close()
        self.loaded.close()

    def __enter__(self) -> Object:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Maps(Mapping[str, "Map"]):
    """The object's maps by name (the skeleton's name, e.g. ``rb``, or the data
    section's, e.g. ``.bss``)."""

    def __init__(self, loaded: LoadedObject):
        self._loaded = loaded

    def __getitem__(self, name: str) -> Map:
        for m in self._loaded.maps:
            if name in (m.spec.name, m.spec.real_name):
                return Map(m, self._loaded)
        names = ", ".join(m.spec.name for m in self._loaded.maps) or "none"
        raise KeyError(f"object '{self._loaded.spec.name}' has no map '{name}' (its maps: "
                       f"{names})")

    def __iter__(self) -> Iterator[str]:
        return iter([m.spec.name for m in self._loaded.maps])

    def __len__(self) -> int:
        return len(self._loaded.maps)


def _per_cpu_types() -> frozenset[int]:
    from bpfreplay.uapi import enum_values

    types = enum_values("bpf_map_type")
    return frozenset(v for k, v in types.items() if "PERCPU" in k and "CGROUP_STORAGE" not in k
                     or k == "BPF_MAP_TYPE_PERCPU_CGROUP_STORAGE")


class Map:
    """One map: keys and values as bytes (an int key is packed little-endian to the
    key size). Per-CPU maps' values hold one 8-byte-aligned slot per possible CPU, as
    bpf_map_lookup_elem() returns them."""

    def __init__(self, loaded: LoadedMap, obj: LoadedObject):
        self.loaded = loaded
        self.object = obj

    @property
    def name(self) -> str:
        return self.loaded.spec.name

    @property
    def fd(self) -> int:
        return self.loaded.fd

    @property
    def type(self) -> int:
        return self.loaded.spec.type

    @property
    def key_size(self) -> int:
        return self.loaded.spec.key_size

    @property
    def max_entries(self) -> int:
        return self.loaded.spec.max_entries

    @property
    def per_cpu(self) -> bool:
        return self.type in _per_cpu_types()

    @property
    def value_size(self) -> int:
        """Bytes of one value as a lookup returns it (all CPUs' for per-CPU maps)."""
        size = self.loaded.spec.value_size
        if self.per_cpu:
            from bpfreplay.recording.procfs import possible_cpus

            return (size + 7) // 8 * 8 * possible_cpus()
        return size

    def _key(self, key: bytes | int) -> bytes:
        if isinstance(key, int):
            return key.to_bytes(self.key_size, "little")
        if len(key) != self.key_size:
            raise LoaderError(f"map '{self.name}': key of {len(key)} bytes, the map's keys "
                              f"have {self.key_size}")
        return bytes(key)

    def _fd(self) -> int:
        if self.loaded.fd < 0:
            raise LoaderError(f"map '{self.name}': not loaded (or already closed)")
        return self.loaded.fd

    def lookup(self, key: bytes | int) -> bytes | None:
        """bpf_map_lookup_elem(): the value, None when the key is absent."""
        import errno

        from bpfreplay.loader import bpfcalls

        try:
            return bpfcalls.map_lookup_elem(self._fd(), self._key(key), self.value_size)
        except OSError as e:
            if e.errno == errno.ENOENT:
                return None
            raise LoaderError(f"map '{self.name}': lookup failed: {e.strerror}") from e

    def update(self, key: bytes | int, value: bytes, flags: int = 0) -> None:
        """bpf_map_update_elem() (flags: BPF_ANY 0, BPF_NOEXIST 1, BPF_EXIST 2)."""
        from bpfreplay.loader import bpfcalls

        if len(value) != self.value_size:
            raise LoaderError(f"map '{self.name}': value of {len(value)} bytes, the map's "
                              f"values have {self.value_size}")
        try:
            bpfcalls.map_update_elem(self._fd(), self._key(key), bytes(value), flags)
        except OSError as e:
            raise LoaderError(f"map '{self.name}': update failed: {e.strerror}") from e

    def delete(self, key: bytes | int) -> None:
        """bpf_map_delete_elem(); KeyError when the key is absent."""
        import errno

        from bpfreplay.loader import bpfcalls

        try:
            bpfcalls.map_delete_elem(self._fd(), self._key(key))
        except OSError as e:
            if e.errno == errno.ENOENT:
                raise KeyError(key) from None
            raise LoaderError(f"map '{self.name}': delete failed: {e.strerror}") from e

    def keys(self) -> Iterator[bytes]:
        """bpf_map_get_next_key() from NULL until ENOENT."""
        from bpfreplay.loader import bpfcalls

        key: bytes | None = None
        while True:
            try:
                key = bpfcalls.map_get_next_key(self._fd(), key, self.key_size)
            except OSError as e:
                raise LoaderError(f"map '{self.name}': get_next_key failed: "
                                  f"{e.strerror}") from e
            if key is None:
                return
            yield key

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        """(key, value) of every present key (a key deleted meanwhile is skipped)."""
        for key in list(self.keys()):
            value = self.lookup(key)
            if value is not None:
                yield key, value

    @property
    def typed(self) -> TypedMap:
        """This map read through its BTF: ``obj.maps["flows"].typed.items()`` gives
        decoded keys and values (dicts, lists, ints, enum names), as ``bpftool -j map
        dump`` formats them (bpfreplay.map_contents.TypedMap)."""
        from bpfreplay.map_contents import TypedMap

        return TypedMap(self)

    def values_per_cpu(self, value: bytes) -> list[bytes]:
        """A per-CPU map's value split into each CPU's ``value_size`` bytes."""
        size = self.loaded.spec.value_size
        stride = (size + 7) // 8 * 8
        return [value[i:i + size] for i in range(0, len(value), stride)]

    def __getitem__(self, key: bytes | int) -> bytes:
        value = self.lookup(key)
        if value is None:
            raise KeyError(key)
        return value

    def __setitem__(self, key: bytes | int, value: bytes) -> None:
        self.update(key, value)

    def __delitem__(self, key: bytes | int) -> None:
        self.delete(key)

    def __iter__(self) -> Iterator[bytes]:
        return self.keys()

    def __contains__(self, key: object) -> bool:
        return isinstance(key, (bytes, int)) and self.lookup(key) is not None
