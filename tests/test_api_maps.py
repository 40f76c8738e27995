"""bpfreplay.load() and obj.maps: what we write through the API is what bpftool reads
from the same map in the kernel, and what bpftool writes we read."""

import json
import subprocess
from pathlib import Path

import pytest

from tests.conftest import require_kernel, require_tool

OBJECT = Path(__file__).parent / "data/net/build/counters.bpf.o"


def _bpftool(*args: str) -> object:
    out = subprocess.run([require_tool("bpftool"), "-j", *args], check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out) if out.strip() else None


def test_maps_lookup_update_delete_keys_against_bpftool() -> None:
    require_kernel()
    import bpfreplay.api as api

    with api.load(str(OBJECT), attach=False) as obj:
        counts = obj.maps["counts"]
        counts[1] = (1234).to_bytes(8, "little")
        # bpftool opens the map by the fd's id: find ours through /proc/self/fdinfo.
        own_id = int(next(line.split()[1] for line in
                          Path(f"/proc/self/fdinfo/{counts.fd}").read_text().splitlines()
                          if line.startswith("map_id:")))
        got = _bpftool("map", "lookup", "id", str(own_id), "key", "1", "0", "0", "0")
        assert int(got["formatted"]["value"]) == 1234 if "formatted" in got else \
            bytes(int(b, 16) for b in got["value"]) == (1234).to_bytes(8, "little")
        subprocess.run([require_tool("bpftool"), "map", "update", "id", str(own_id), "key",
                        "2", "0", "0", "0", "value", "7", "0", "0", "0", "0", "0", "0", "0"],
                       check=True)
        assert counts[2] == (7).to_bytes(8, "little")
        dumped = _bpftool("map", "dump", "id", str(own_id))
        assert len(list(counts.keys())) == len(dumped) == counts.max_entries
        assert sorted(obj.programs) and "counts" in obj.maps
        with pytest.raises(KeyError):
            obj.maps["no_such_map"]
        from bpfreplay.errors import LoaderError

        with pytest.raises(LoaderError):
            counts.delete(1)  # arrays refuse deletes (EINVAL)
    assert counts.fd == -1  # torn down on leaving the block
