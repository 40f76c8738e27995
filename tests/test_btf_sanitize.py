"""BTF sanitisation for kernels without some BTF kinds (libbpf's rules): every object
BTF we build, sanitised for a kernel lacking all of them, still loads into the real
kernel, keeps every type id, and holds none of the kinds it was told to avoid."""

from __future__ import annotations

import pytest

from bpfreplay import sys as bsys
from bpfreplay.decode.btf import Kind, parse_btf
from bpfreplay.loader.btf_sanitize import sanitize_btf
from bpfreplay.loader.spec import load_spec
from tests.conftest import REFERENCE_DIR, ROOT, _built, require_kernel

FEATURES = ("btf_func", "btf_global_func", "btf_datasec", "btf_float", "btf_decl_tag",
            "btf_type_tag", "btf_enum64")
LOADER_DATA = ROOT / "tests" / "data" / "loader"


def _objects() -> list:
    _built(LOADER_DATA / "build" / "core.bpf.o", LOADER_DATA)
    return [REFERENCE_DIR / "minimal.bpf.o",
            *(LOADER_DATA / "build" / f"{n}.bpf.o" for n in ("globals", "maps", "core"))]


def _kernel_accepts(blob: bytes) -> None:
    from bpfreplay.loader import bpfcalls
    from bpfreplay.loader.features import Features

    fd = bpfcalls.btf_load(blob, features=Features())
    bsys.close(fd)


def test_nothing_changes_when_everything_is_supported():
    for obj in _objects():
        blob = load_spec(obj).btf_bytes
        assert sanitize_btf(blob, dict.fromkeys(FEATURES, True)) == blob


@pytest.mark.parametrize("missing", [FEATURES, ("btf_datasec",), ("btf_func",),
                                     ("btf_enum64", "btf_float", "btf_type_tag")])
def test_sanitised_btf_loads_and_avoids_the_missing_kinds(missing):
    require_kernel()
    banned = {"btf_func": {Kind.FUNC, Kind.FUNC_PROTO}, "btf_datasec": {Kind.VAR,
              Kind.DATASEC}, "btf_float": {Kind.FLOAT}, "btf_decl_tag": {Kind.DECL_TAG},
              "btf_type_tag": {Kind.TYPE_TAG}, "btf_enum64": {Kind.ENUM64}}
    supported = {name: name not in missing for name in FEATURES}
    for obj in _objects():
        original = parse_btf(load_spec(obj).btf_bytes)
        blob = sanitize_btf(load_spec(obj).btf_bytes, supported)
        result = parse_btf(blob)
        kinds = {t.kind for t in result.types}
        for feature in missing:
            assert not kinds & banned.get(feature, set()), (obj.name, feature)
        if "btf_global_func" in missing and "btf_func" not in missing:
            assert all(t.linkage == 0 for t in result.types if t.kind == Kind.FUNC)
        # ids are kept: the same number of types, plus the enum64 placeholder at most
        assert len(original.types) <= len(result.types) <= len(original.types) + 1
        anonymous_params = any(t.kind == Kind.FUNC_PROTO and any(not p.name for p in t.members)
                               for t in original.types)
        if "btf_func" in missing and anonymous_params:
            # libbpf's own limit: a FUNC_PROTO with unnamed parameters (a function
            # pointer type) becomes an ENUM with unnamed members, which kernels refuse;
            # libbpf then loads the object without BTF ("BTF is optional, ignoring").
            with pytest.raises(OSError):
                _kernel_accepts(blob)
        else:
            _kernel_accepts(blob)


def test_the_loader_sanitises_when_a_probe_says_no(tmp_path):
    """The kernel stage asks the seven BTF probes and loads the sanitised copy: here the
    btf_datasec probe is made to fail (every other call is real)."""
    require_kernel()
    import errno

    from bpfreplay.loader import bpfcalls
    from bpfreplay.loader.features import BTF_PROBES
    from bpfreplay.loader.kernel import load, open_object
    from bpfreplay.loader.spec import skeleton_name
    from bpfreplay.recording.self_trace import SelfTracer
    from bpfreplay.trace import read_trace
    from bpfreplay.uapi import cmd_value

    datasec_probe = bpfcalls.raw_btf(*BTF_PROBES["btf_datasec"])
    btf_load = cmd_value("BPF_BTF_LOAD")
    import ctypes

    def no_datasec(number, args):
        if number == 321 and args[0] == btf_load:
            size = int.from_bytes(ctypes.string_at(args[1] + 16, 4), "little")
            blob = ctypes.string_at(int.from_bytes(ctypes.string_at(args[1], 8), "little"),
                                    size)
            if blob == datasec_probe:
                return -1, errno.EINVAL
        return bsys._libc_syscall(number, args)

    obj_path = REFERENCE_DIR / "minimal.bpf.o"
    spec = load_spec(obj_path, name=skeleton_name(obj_path))
    trace = tmp_path / "t.mp"
    with SelfTracer(str(trace)) as tracer, bsys.traced_by(tracer), \
            bsys.override_syscall(no_datasec):
        obj = open_object(spec)
        try:
            load(obj)
            assert obj.features.results["btf_datasec"] is False
        finally:
            obj.close()
    with read_trace(str(trace)) as t:
        loads = [c["in"]["btf"] for c in t.calls() if c["syscall"] == "bpf"
                 and c["cmd"] == btf_load and c["ret"] >= 0]
    expected = sanitize_btf(spec.btf_bytes, {"btf_datasec": False})
    assert loads[-1] == expected != spec.btf_bytes
