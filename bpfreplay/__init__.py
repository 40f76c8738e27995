"""bpfreplay: record, explain and reproduce how an eBPF program gets into the kernel."""

from __future__ import annotations

TYPE_CHECKING = False  # (not typing's: the package's import stays free of imports)
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

    from bpfreplay.api import Object

__version__ = "0.1.0"
__all__ = ["Object", "load"]


# The package's import stays empty (entry.py must be running before anything else is
# imported, for Ctrl-C during the imports to exit 130): the API loads on first use.
def load(path: str, globals: Mapping[str, int | str] | None = None, *,  # noqa: A002
         name: str | None = None, pin_root: str | None = None,
         attach: bool = True) -> Object:
    """bpfreplay.api.load(): open, set globals, load and auto-attach an object."""
    from bpfreplay.api import load as api_load

    return api_load(path, globals, name=name, pin_root=pin_root, attach=attach)


def __getattr__(name: str) -> Any:
    if name == "Object":
        from bpfreplay.api import Object

        return Object
    raise AttributeError(f"module 'bpfreplay' has no attribute {name!r}")
