"""`bpfreplay run`'s attach options for the programs libbpf leaves to the application:
--tc, --xdp/--xdp-netlink (with --xdp-mode), --socket and --perf-event. Each option
attaches every loaded program of its kind (bpfreplay.loader.attach_net,
bpfreplay.loader.attach_perf_event) after the skeleton's auto-attach; the links go into
the object's links, so the object's teardown detaches them, on exit, on an error or on
Ctrl-C."""

from __future__ import annotations

import argparse
from typing import Any

from bpfreplay.errors import LoaderError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tc", metavar="DEV[:ingress|egress]",
                        help="attach the tc programs (SEC(\"tc\"), classifier) to DEV's "
                        "clsact hook, ingress by default, as bpf_tc_hook_create() + "
                        "bpf_tc_attach() do; the filter, and the qdisc if we made it, are "
                        "removed at exit")
    parser.add_argument("--xdp", metavar="DEV",
                        help="attach the XDP programs to DEV through a BPF link, as "
                        "bpf_program__attach_xdp() does (detached when the link closes)")
    parser.add_argument("--xdp-netlink", metavar="DEV",
                        help="attach the XDP programs to DEV through netlink, as "
                        "bpf_xdp_attach() does (detached at exit by bpf_xdp_detach())")
    parser.add_argument("--xdp-mode", choices=("skb", "drv"),
                        help="XDP mode for --xdp/--xdp-netlink (default: the kernel's "
                        "choice, native when the driver has it)")
    parser.add_argument("--socket", metavar="DEV",
                        help="attach the socket filters to a raw socket bound to DEV "
                        "(setsockopt SO_ATTACH_BPF, as libbpf-bootstrap's sockfilter)")
    parser.add_argument("--perf-event", metavar="EVENT[:FREQ]",
                        help="attach the perf_event programs to EVENT (e.g. cpu-clock) "
                        "sampled FREQ times a second (default 50) on every online CPU, as "
                        "libbpf-bootstrap's profile")


def _programs(obj: Any, type_name: str, option: str, what: str) -> list[Any]:
    from bpfreplay.loader.attach_net import programs_of_type

    found = programs_of_type(obj, type_name)
    if not found:
        raise LoaderError(f"{option}: object '{obj.spec.name}' has no loaded {what} program")
    return found


def attach_requested(obj: Any, args: argparse.Namespace) -> None:
    """Attach what the options ask for, in the order tc, xdp, socket, perf event."""
    options = {name: getattr(args, name, None) for name in
               ("tc", "xdp", "xdp_netlink", "xdp_mode", "socket", "perf_event")}
    if not any(options.values()):
        return  # (and attach_net, its socket and netlink imports, stay unloaded)
    from bpfreplay.loader import attach_net

    args = argparse.Namespace(**options)
    if args.xdp_mode and not (args.xdp or args.xdp_netlink):
        raise LoaderError("--xdp-mode: give --xdp DEV or --xdp-netlink DEV")
    if args.xdp and args.xdp_netlink:
        raise LoaderError("--xdp and --xdp-netlink: one XDP attach at a time")
    if args.tc:
        device, _, direction = args.tc.partition(":")
        for prog in _programs(obj, "SCHED_CLS", "--tc", "tc (SEC(\"tc\"))"):
            obj.links.append(attach_net.attach_tc(obj, prog, device, direction or "ingress"))
    for device, attach in ((args.xdp, attach_net.attach_xdp_link),
                           (args.xdp_netlink, attach_net.attach_xdp_netlink)):
        if device:
            option = "--xdp" if attach is attach_net.attach_xdp_link else "--xdp-netlink"
            for prog in _programs(obj, "XDP", option, "XDP"):
                if prog.spec.expected_attach_type not in (0, attach_net.BPF_XDP):
                    continue  # xdp/devmap, xdp/cpumap: run from a map, not on a device
                obj.links.append(attach(obj, prog, device, args.xdp_mode))
    if args.socket:
        for prog in _programs(obj, "SOCKET_FILTER", "--socket", "socket filter"):
            obj.links.append(attach_net.attach_socket(obj, prog, args.socket))
    if args.perf_event:
        from bpfreplay.loader.attach_perf_event import attach_perf_event_every_cpu, parse_event

        choice = parse_event(args.perf_event)
        for prog in _programs(obj, "PERF_EVENT", "--perf-event", "perf_event"):
            obj.links.extend(attach_perf_event_every_cpu(obj, prog, choice))
