"""Attaching the network programs libbpf leaves to the application: tc classifiers,
XDP programs and socket filters (libbpf 1.1.2's skeleton never attaches SEC("tc"),
SEC("xdp") or SEC("socket"): their sec_defs have no attach function).

- tc (``bpf_tc_hook_create()`` + ``bpf_tc_attach()``, netlink.c): a clsact qdisc on the
  device (RTM_NEWQDISC, NLM_F_CREATE|NLM_F_EXCL; EEXIST means one was there already
  and is not ours), the program's info asked (tc_add_fd_and_name():
  BPF_OBJ_GET_INFO_BY_FD, the filter is named "<prog name>:[<prog id>]"), then a "bpf"
  filter (RTM_NEWTFILTER, NLM_F_CREATE|NLM_F_EXCL) on the clsact's ingress or egress
  parent, protocol ETH_P_ALL, TCA_BPF_FLAG_ACT_DIRECT, handle and priority 0 (libbpf's
  defaults: the kernel picks them, and libbpf reads them back from the echo; we read
  them back from a dump of the parent's filters, by the filter's name). Teardown:
  ``bpf_tc_detach()`` (RTM_DELTFILTER with that handle and priority), and when the
  qdisc is ours, ``bpf_tc_hook_destroy()`` with BPF_TC_INGRESS|BPF_TC_EGRESS
  (RTM_DELQDISC), so nothing is left on the device.
- XDP through a BPF link (``bpf_program__attach_xdp()`` → bpf_program__attach_fd():
  BPF_LINK_CREATE, target the ifindex, the program's expected attach type BPF_XDP;
  the link's flags carry the mode, --xdp-mode): detached when the link fd closes.
- XDP through netlink (``bpf_xdp_attach()``: RTM_SETLINK with IFLA_XDP { IFLA_XDP_FD,
  IFLA_XDP_FLAGS when not 0 }); detached with ``bpf_xdp_detach()`` (the same with fd -1).
  The kernel keeps such a program after the process is gone: only our teardown
  removes it.
- socket filters (libbpf-bootstrap's sockfilter: a raw AF_PACKET socket, non-blocking
  and close-on-exec, for ETH_P_ALL, bound to the device, then setsockopt(SOL_SOCKET,
  SO_ATTACH_BPF, &prog_fd)): detached when the socket closes.

Netlink goes through pyroute2 and the raw socket through Python's socket module: they
are no BPF calls, and neither ``bpfreplay record`` nor our own trace sees them. The
BPF calls among them (the program's info for tc, LINK_CREATE, setsockopt) go through
bpfreplay.sys and are traced.
"""

from __future__ import annotations

import socket
import struct
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bpfreplay import sys as bsys
from bpfreplay.errors import LoaderError
from bpfreplay.loader import bpfcalls
from bpfreplay.loader.kernel import Link, LoadedObject, LoadedProgram
from bpfreplay.uapi import enum_values, struct_layout

ETH_P_ALL = 0x0003
TC_H_CLSACT = 0xFFFFFFF1
TC_H_MIN_INGRESS, TC_H_MIN_EGRESS = 0xFFF2, 0xFFF3
TCA_BPF_FLAG_ACT_DIRECT = 1
TC_DIRECTIONS = {"ingress": TC_H_MIN_INGRESS, "egress": TC_H_MIN_EGRESS}
XDP_MODES = {"skb": 1 << 1, "drv": 1 << 2}  # XDP_FLAGS_SKB_MODE, XDP_FLAGS_DRV_MODE
SOL_SOCKET, SO_ATTACH_BPF = 1, 50
BPF_XDP = enum_values("bpf_attach_type")["BPF_XDP"]
_PROG_TYPES = enum_values("bpf_prog_type")


def _prog_info_size() -> int:
    """sizeof(struct bpf_prog_info) in libbpf 1.1.2's uapi header, which tc_add_fd_and_name()
    passes as info_len: its last field is attach_btf_id, the struct aligned to 8."""
    layout = struct_layout("bpf_prog_info")
    assert layout is not None
    end = next(f.offset + f.size for f in layout.fields if f.name == "attach_btf_id")
    return (end + 7) // 8 * 8


def interface_index(device: str) -> int:
    try:
        return socket.if_nametoindex(device)
    except OSError:
        raise LoaderError(f"network device '{device}' does not exist") from None


def programs_of_type(obj: LoadedObject, type_name: str) -> list[LoadedProgram]:
    """The object's loaded entry programs of BPF_PROG_TYPE_<type_name>, in object order."""
    wanted = _PROG_TYPES["BPF_PROG_TYPE_" + type_name]
    return [p for p in obj.programs
            if p.fd >= 0 and not p.spec.is_subprog and p.spec.prog_type == wanted]


def _netlink() -> Any:
    from pyroute2 import IPRoute

    return IPRoute()


def _netlink_error() -> type[Exception]:
    from pyroute2.netlink.exceptions import NetlinkError

    return NetlinkError


def _strerror(e: Exception) -> str:
    import os

    code = getattr(e, "code", None)
    return os.strerror(code) if isinstance(code, int) else str(e)


def _warn(message: str) -> None:
    print(f"bpfreplay: warning: {message}", file=sys.stderr)


# ------------------------------------------------------------------------------ tc


@dataclass
class _TcHook:
    """A clsact qdisc our attaches use; ``created``: ours to delete when the last of
    them is detached."""

    ifindex: int
    created: bool
    users: int = 0


_tc_hooks: dict[int, _TcHook] = {}


def _tc_hook_create(ipr: Any, ifindex: int, device: str) -> _TcHook:
    """bpf_tc_hook_create(): RTM_NEWQDISC of a clsact qdisc, NLM_F_EXCL; EEXIST is a
    hook that was there before us (upstream's tc example goes on with it)."""
    hook = _tc_hooks.get(ifindex)
    if hook is not None:
        return hook
    try:
        ipr.tc("add", "clsact", ifindex)
        created = True
    except _netlink_error() as e:
        if getattr(e, "code", None) != 17:  # EEXIST
            raise LoaderError(f"creating the clsact qdisc on {device}: {_strerror(e)}") \
                from None
        created = False
    hook = _tc_hooks[ifindex] = _TcHook(ifindex, created)
    return hook


def _tc_hook_release(ipr: Any, hook: _TcHook, device: str) -> None:
    """bpf_tc_hook_destroy() with BPF_TC_INGRESS|BPF_TC_EGRESS (tc_qdisc_delete()) once
    no attach of ours uses a qdisc we created."""
    hook.users -= 1
    if hook.users > 0:
        return
    del _tc_hooks[hook.ifindex]
    if not hook.created:
        return
    try:
        ipr.tc("del", "clsact", hook.ifindex)
    except _netlink_error() as e:
        _warn(f"deleting the clsact qdisc of {device}: {_strerror(e)}")


def _prog_name_and_id(prog: LoadedProgram) -> tuple[str, int]:
    """tc_add_fd_and_name()'s bpf_obj_get_info_by_fd() of the program: its name, its id."""
    keep = bsys.Buffers()
    info = bytearray(_prog_info_size())
    try:
        bpfcalls.obj_info(prog.fd, info, keep)
    except OSError as e:
        raise LoaderError(f"prog '{prog.spec.name}': asking its info for a tc filter: "
                          f"{e.strerror}") from e
    prog_id = struct.unpack_from("<I", info, 4)[0]
    name = bytes(info[64:80]).split(b"\0", 1)[0].decode(errors="replace")
    return name, prog_id


def _find_filter(ipr: Any, ifindex: int, parent: int, name: str) -> tuple[int, int]:
    """get_tc_info()'s answer: the handle and priority the kernel gave our filter. libbpf
    reads them from the echo of its request; we find the filter in a dump of the parent
    by its name, which holds the program id (pyroute2 0.9 does not decode TCA_BPF_ID)."""
    for msg in ipr.get_filters(index=ifindex, parent=parent):
        options = msg.get_attr("TCA_OPTIONS")
        if msg.get_attr("TCA_KIND") != "bpf" or options is None:
            continue
        if options.get_attr("TCA_BPF_NAME") == name:
            return msg["handle"], msg["info"] >> 16
    raise LoaderError(f"the tc filter '{name}' is not on the device after it was added")


def attach_tc(obj: LoadedObject, prog: LoadedProgram, device: str,
              direction: str = "ingress") -> Link:
    """bpf_tc_hook_create() + bpf_tc_attach() with libbpf's default options (handle 0,
    priority 0, no flags): the filter on DEVICE's clsact ``direction``."""
    if direction not in TC_DIRECTIONS:
        raise LoaderError(f"--tc {device}:{direction}: the direction is ingress or egress")
    where = f"prog '{prog.spec.name}': tc {device} {direction}"
    ifindex = interface_index(device)
    parent = (TC_H_CLSACT & 0xFFFF0000) | TC_DIRECTIONS[direction]
    ipr = _netlink()
    try:
        hook = _tc_hook_create(ipr, ifindex, device)
        hook.users += 1
        try:
            name, prog_id = _prog_name_and_id(prog)
            filter_name = f"{name}:[{prog_id}]"
            try:
                ipr.tc("add-filter", "bpf", ifindex, 0, parent=parent, fd=prog.fd,
                       name=filter_name, flags=TCA_BPF_FLAG_ACT_DIRECT,
                       protocol=ETH_P_ALL, prio=0)
            except _netlink_error() as e:
                raise LoaderError(f"{where}: adding the bpf filter: {_strerror(e)}") from None
            handle, priority = _find_filter(ipr, ifindex, parent, filter_name)
        except BaseException:
            _tc_hook_release(ipr, hook, device)
            raise
    finally:
        ipr.close()

    def detach() -> None:
        """bpf_tc_detach() of our filter, then the hook released."""
        with _netlink() as ipr:
            try:
                ipr.tc("del-filter", "bpf", ifindex, handle, parent=parent,
                       protocol=ETH_P_ALL, prio=priority)
            except _netlink_error() as e:
                _warn(f"detaching {where} (handle {handle:#x}, priority {priority}): "
                      f"{_strerror(e)}")
            _tc_hook_release(ipr, hook, device)

    return Link(prog.spec.name, "tc", -1,
                target=f"{device} {direction} handle {handle:#x} priority {priority}",
                destroy=detach)


# ----------------------------------------------------------------------------- xdp


def _xdp_flags(mode: str | None) -> int:
    if mode is None:
        return 0
    if mode not in XDP_MODES:
        raise LoaderError(f"--xdp-mode {mode}: the mode is skb or drv")
    return XDP_MODES[mode]


def attach_xdp_link(obj: LoadedObject, prog: LoadedProgram, device: str,
                    mode: str | None = None) -> Link:
    """bpf_program__attach_xdp(): BPF_LINK_CREATE of the program on the ifindex, with
    the program's expected attach type; the mode (if any) as the link's flags."""
    ifindex = interface_index(device)
    attach_type = prog.spec.expected_attach_type
    try:
        fd = bpfcalls.link_create(prog.fd, ifindex, attach_type, flags=_xdp_flags(mode))
    except OSError as e:
        raise LoaderError(f"prog '{prog.spec.name}': failed to attach to xdp {device}: "
                          f"{e.strerror}") from e
    return Link(prog.spec.name, "xdp", fd, target=device + (f" ({mode} mode)" if mode else ""))


def _xdp_netlink_set(ipr: Any, ifindex: int, prog_fd: int, flags: int) -> None:
    """__bpf_set_link_xdp_fd_replace() without a prog to replace: IFLA_XDP_FD, and
    IFLA_XDP_FLAGS when there are flags."""
    attrs: list[tuple[str, int]] = [("IFLA_XDP_FD", prog_fd)]
    if flags:
        attrs.append(("IFLA_XDP_FLAGS", flags))
    ipr.link("set", index=ifindex, xdp={"attrs": attrs})


def attach_xdp_netlink(obj: LoadedObject, prog: LoadedProgram, device: str,
                       mode: str | None = None) -> Link:
    """bpf_xdp_attach(ifindex, prog_fd, flags, NULL); detached by bpf_xdp_detach()."""
    ifindex = interface_index(device)
    flags = _xdp_flags(mode)
    with _netlink() as ipr:
        try:
            _xdp_netlink_set(ipr, ifindex, prog.fd, flags)
        except _netlink_error() as e:
            raise LoaderError(f"prog '{prog.spec.name}': attaching to xdp {device} through "
                              f"netlink: {_strerror(e)}") from None

    def detach() -> None:
        with _netlink() as ipr:
            try:
                _xdp_netlink_set(ipr, ifindex, -1, flags)
            except _netlink_error() as e:
                _warn(f"detaching prog '{prog.spec.name}' from xdp {device}: {_strerror(e)}")

    return Link(prog.spec.name, "xdp-netlink", -1,
                target=device + (f" ({mode} mode)" if mode else ""), destroy=detach)


# -------------------------------------------------------------------------- socket


def attach_socket(obj: LoadedObject, prog: LoadedProgram, device: str) -> Link:
    """sockfilter's open_raw_sock() and setsockopt(SO_ATTACH_BPF): the socket is the
    attachment; closing it detaches the program."""
    interface_index(device)  # a clear error for a device that does not exist
    sock = socket.socket(socket.AF_PACKET,
                         socket.SOCK_RAW | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC,
                         socket.htons(ETH_P_ALL))
    try:
        sock.bind((device, ETH_P_ALL))
        try:
            bsys.setsockopt(sock.fileno(), SOL_SOCKET, SO_ATTACH_BPF,
                            struct.pack("<i", prog.fd))
        except OSError as e:
            raise LoaderError(f"prog '{prog.spec.name}': attaching to a raw socket on "
                              f"{device} (SO_ATTACH_BPF): {e.strerror}") from e
    except BaseException:
        sock.close()
        raise
    return Link(prog.spec.name, "socket", sock.fileno(), target=device,
                destroy=_closer(sock))


def _closer(sock: socket.socket) -> Callable[[], None]:
    def close() -> None:
        sock.close()

    return close

