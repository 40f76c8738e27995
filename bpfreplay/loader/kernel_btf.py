"""The kernel's BTF as one load sees it: vmlinux, and the module BTFs found only when a
lookup in vmlinux comes back empty.

libbpf 1.1.2 keeps ``obj->btf_vmlinux`` and ``obj->btf_modules`` for the length of
bpf_object_load(). Module BTFs are walked lazily, by ``load_module_btfs()``, from three
places only, each after vmlinux found nothing:

- ``bpf_core_find_cands()``: a CO-RE local type with no candidate in vmlinux (not when
  vmlinux BTF is overridden by a custom path);
- ``find_ksym_btf_id()``: a typed ``__ksym`` variable or kfunc that vmlinux lacks (during
  extern resolution, before the object's BTF is sanitised and loaded);
- ``find_kernel_btf_id()``: a BTF attach target (fentry/, tp_btf/, lsm/, iter/ ...) that
  vmlinux lacks (while preparing that program's BPF_PROG_LOAD).

The walk happens at most once per load (``btf_modules_loaded``), asks FEAT_MODULE_BTF at
that moment, and keeps the fd of every module BTF open until the end of load, where
bpf_object_load() closes them in the order they were found.
"""

from __future__ import annotations

import errno as errno_codes
import struct
from dataclasses import dataclass, field

from bpfreplay import sys as bsys
from bpfreplay.decode.btf import Btf, DecodeError, Type, parse_btf
from bpfreplay.errors import LoaderError
from bpfreplay.loader import bpfcalls
from bpfreplay.loader.features import Features

# load_module_btfs(): char name[64] for the BTF object's name.
MODULE_NAME_LEN = 64
_KERNEL_BTF_OFFSET = 28  # offsetof(struct bpf_btf_info, kernel_btf)


@dataclass
class ModuleBtf:
    """libbpf's struct module_btf: one module's split BTF and its fd."""

    name: str
    id: int
    fd: int
    btf: Btf
    fd_array_idx: int = 0  # where a kfunc's insn.off finds this fd in fd_array (0: unset)


@dataclass
class KernelBtf:
    """vmlinux BTF and, once asked for, the module BTFs of one load."""

    vmlinux: Btf | None
    features: Features
    overridden: bool = False  # vmlinux BTF from a custom path: never walk modules
    modules: list[ModuleBtf] = field(default_factory=list)
    modules_loaded: bool = False
    fd_array: list[int] = field(default_factory=list)  # obj->fd_array (kfuncs in modules)

    # ------------------------------------------------------------ the walk

    def load_modules(self) -> list[ModuleBtf]:
        """libbpf 1.1.2 load_module_btfs(): once per load; nothing if the kernel has no
        module BTF support. Every BTF object of the machine is visited (other processes'
        too); only kernel BTFs other than vmlinux are kept, with their fds."""
        if self.modules_loaded:
            return self.modules
        self.modules_loaded = True  # "don't do this again, even if we find no module BTFs"
        if not self.features.supports("module_btf"):
            return self.modules
        btf_id = 0
        while True:
            try:
                btf_id = bpfcalls.btf_get_next_id(btf_id)
            except OSError as e:
                if e.errno == errno_codes.ENOENT:
                    return self.modules
                raise LoaderError(f"failed to iterate BTF objects: {e.strerror}") from e
            try:
                fd = bpfcalls.btf_get_fd_by_id(btf_id)
            except OSError as e:
                if e.errno == errno_codes.ENOENT:
                    continue  # expected race: the BTF was unloaded meanwhile
                raise LoaderError(f"failed to get BTF object #{btf_id} FD: "
                                  f"{e.strerror}") from e
            try:
                info, name = bpfcalls.btf_info(fd, MODULE_NAME_LEN)
            except OSError as e:
                _close_quietly(fd)
                raise LoaderError(f"failed to get BTF object #{btf_id} info: "
                                  f"{e.strerror}") from e
            kernel_btf = struct.unpack_from("<I", info, _KERNEL_BTF_OFFSET)[0]
            if not kernel_btf or name == "vmlinux":
                _close_quietly(fd)
                continue
            try:
                blob = bpfcalls.btf_data(fd)
                btf = parse_btf(blob, base=self.vmlinux)
            except (OSError, DecodeError) as e:
                _close_quietly(fd)
                reason = e.strerror if isinstance(e, OSError) else str(e)
                raise LoaderError(f"failed to load module [{name}]'s BTF object #{btf_id}: "
                                  f"{reason}") from e
            self.modules.append(ModuleBtf(name, btf_id, fd, btf))

    def close(self) -> None:
        """The end of bpf_object_load(): module BTF fds closed in the order found."""
        for m in self.modules:
            _close_quietly(m.fd)
        self.modules.clear()
        self.fd_array.clear()

    # ------------------------------------------------------------ lookups

    def core_candidates(self, local_btf: Btf, local_id: int) -> list[tuple[Btf, int]]:
        """libbpf 1.1.2 bpf_core_find_cands(): candidates in vmlinux; only if there are
        none (and vmlinux is not overridden), in each module's own types."""
        from bpfreplay.loader.core import core_target

        cands: list[tuple[Btf, int]] = []
        if self.vmlinux is not None:
            cands = core_target(self.vmlinux).candidates(local_btf, local_id)
        if cands or self.overridden:
            return cands
        for m in self.load_modules():
            cands.extend(core_target(m.btf).candidates(local_btf, local_id))
        return cands

    candidates = core_candidates  # core.CandidateSource

    def find_ksym(self, name: str, kind: int) -> tuple[Btf, Type, ModuleBtf | None] | None:
        """libbpf 1.1.2 find_ksym_btf_id(): by name and kind in vmlinux, else in the first
        module whose own types have it."""
        found = self.vmlinux.by_name(name, kind) if self.vmlinux is not None else None
        if found is not None:
            assert self.vmlinux is not None
            return self.vmlinux, found, None
        for m in self.load_modules():
            own = _own_by_name(m.btf, name, kind)
            if own is not None:
                return m.btf, own, m
        return None

    def find_attach_target(self, name: str, kind: int) -> tuple[Type, ModuleBtf | None] | None:
        """libbpf 1.1.2 find_kernel_btf_id(): the attach target in vmlinux (BTF obj fd
        0), else in the first module that has it (that module's BTF fd)."""
        found = self.vmlinux.by_name(name, kind) if self.vmlinux is not None else None
        if found is not None:
            return found, None
        for m in self.load_modules():
            own = _own_by_name(m.btf, name, kind)
            if own is not None:
                return own, m
        return None

    def kfunc_fd_index(self, module: ModuleBtf) -> int:
        """bpf_object__resolve_ksym_func_btf_id(): a module's BTF fd gets a slot in
        fd_array the first time one of its kfuncs is used (slot 0 is never used)."""
        if not module.fd_array_idx:
            if len(self.fd_array) >= 0x7FFF:
                raise LoaderError(f"module BTF fd index {len(self.fd_array)} too big to fit "
                                  "in bpf_insn offset")
            if not self.fd_array:
                self.fd_array.append(0)
            module.fd_array_idx = len(self.fd_array)
            self.fd_array.append(module.fd)
        return module.fd_array_idx

    def fd_array_bytes(self) -> bytes:
        """obj->fd_array as PROG_LOAD passes it (empty: a NULL pointer)."""
        return struct.pack(f"<{len(self.fd_array)}i", *self.fd_array) if self.fd_array else b""


def _own_by_name(btf: Btf, name: str, kind: int) -> Type | None:
    """btf__find_by_name_kind_own(): only the split BTF's own types."""
    found = btf.by_name(name, kind)
    return found if found is not None and found.id >= btf.start_id else None


def _close_quietly(fd: int) -> None:
    try:
        bsys.close(fd)
    except OSError:
        pass
