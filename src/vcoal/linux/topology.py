"""The Xen-like testbed topology in network namespaces (see docs/testbed.md).

::

    wire ns                dom0 ns (driver domain)                       guest ns (one per guest)
    wire0 198.18.0.1 ==veth== peth0 ──┐
                                    xenbr0 (bridge, no IP, stp off)
                          vif1.0 ─────┤ ==veth== geth1 198.18.1.1   (guest 1)
                          vif2.0 ─────┘ ==veth== geth2 198.18.1.2   (guest 2)

``peth0`` plays the physical NIC (its NAPI moderates wire → host), ``vifN.0`` netback (moderates what
guest N transmits), the guest's ``gethN`` netfront (moderates what the guest receives; it is the
guest's eth0, named gethN so that no bug can ever touch the root namespace's eth0, and numbered so
that every hop of a topology has its own name: the kernel's ``napi:napi_poll`` tracepoint names
devices, not namespaces, see ``vcoal.linux.napitrace``). Every veth has
GRO on and TSO off, which makes every hop use NAPI (docs/testbed.md, "NAPI conditions").
Addresses come only from 198.18.0.0/15 (RFC 2544 benchmarking range); neighbours are static so
ARP never perturbs a run; IPv6 is disabled in every namespace so no RS/MLD packet is counted.

``plan()`` is pure (names and addresses from a list of guest names); ``up()``/``down()``/``status()``
need root.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from vcoal.linux import netns

PREFIX_LEN = 15
WIRE_IP = "198.18.0.1"
BRIDGE = "xenbr0"
NIC_DEV = "peth0"
WIRE_DEV = "wire0"
GUEST_DEV_PREFIX = "geth"
MAX_GUESTS = 250 * 254
#: GRO on gives every veth a NAPI; TSO off keeps packets MTU-sized (docs/testbed.md, "NAPI conditions").
NAPI_FEATURES = {"gro": True, "tso": False}
_NET = ipaddress.ip_network(f"198.18.0.0/{PREFIX_LEN}")


@dataclass(frozen=True, slots=True)
class GuestPlan:
    """One guest: its namespace, its backend (vifN.0 in dom0) and frontend (gethN in its ns), its IP."""

    name: str
    ns: str
    vif: str
    dev: str
    ip: str


@dataclass(frozen=True, slots=True)
class TopologyPlan:
    """All names and addresses of one topology (``tag`` makes them unique on the host)."""

    tag: str
    wire_ns: str
    dom0_ns: str
    wire_dev: str = WIRE_DEV
    wire_ip: str = WIRE_IP
    nic_dev: str = NIC_DEV
    bridge: str = BRIDGE
    guests: tuple[GuestPlan, ...] = field(default_factory=tuple)

    @property
    def namespaces(self) -> tuple[str, ...]:
        """Every namespace of the topology, wire and dom0 first."""
        return (self.wire_ns, self.dom0_ns, *(g.ns for g in self.guests))

    def guest(self, name: str) -> GuestPlan:
        """The plan of guest ``name``; KeyError naming the known guests."""
        for g in self.guests:
            if g.name == name:
                return g
        raise KeyError(f"guest {name!r}: not in topology {self.tag} ({', '.join(g.name for g in self.guests)})")

    def napi_devices(self) -> tuple[str, ...]:
        """Every device with a NAPI of its own (every veth end; names unique within the topology)."""
        return tuple(dev for _a, dev_a, _b, dev_b in self.veths() for dev in (dev_a, dev_b))

    def veths(self) -> list[tuple[str, str, str, str]]:
        """Every veth pair as (ns_a, dev_a, ns_b, dev_b); a sends what b receives and back."""
        pairs = [(self.dom0_ns, self.nic_dev, self.wire_ns, self.wire_dev)]
        pairs += [(self.dom0_ns, g.vif, g.ns, g.dev) for g in self.guests]
        return pairs


def guest_ip(index: int) -> str:
    """Address of guest ``index`` (0-based): 198.18.1.1, 198.18.1.2, ... 250 per /24."""
    if not 0 <= index < MAX_GUESTS:
        raise ValueError(f"guest index {index}: at most {MAX_GUESTS} guests")
    addr = f"198.18.{1 + index // 250}.{1 + index % 250}"
    assert ipaddress.ip_address(addr) in _NET
    return addr


def plan(tag: str, guest_names: list[str] | tuple[str, ...]) -> TopologyPlan:
    """Names and addresses for a topology with the given guests (pure)."""
    netns.check_tag(tag)
    guests = tuple(
        GuestPlan(name, netns.ns_name(tag, f"g-{name}"), f"vif{i + 1}.0", f"{GUEST_DEV_PREFIX}{i + 1}", guest_ip(i))
        for i, name in enumerate(guest_names)
    )
    return TopologyPlan(tag, netns.ns_name(tag, "wire"), netns.ns_name(tag, "dom0"), guests=guests)


# --- building and removing (root) -------------------------------------------------------------


def up(p: TopologyPlan, napi: bool = True) -> None:
    """Build the topology; on any failure remove what was built and re-raise.

    Refuses (RuntimeError) when a topology with the same tag exists, leaving it untouched.
    """
    existing = netns.list_namespaces(f"{netns.PREFIX}{p.tag}-")
    if existing:
        raise RuntimeError(f"topology {p.tag!r} already exists ({len(existing)} namespaces); run down first")
    try:
        _build(p, napi)
    except BaseException:
        down(p.tag)
        raise


def _build(p: TopologyPlan, napi: bool) -> None:
    from pyroute2 import IPRoute

    for ns in p.namespaces:
        netns.create(ns)
    with IPRoute(netns=p.dom0_ns) as ipr:
        ipr.link("add", ifname=p.bridge, kind="bridge", br_stp_state=0, br_forward_delay=0)
        br = ipr.link_lookup(ifname=p.bridge)[0]
        for _ns_a, dev_a, ns_b, dev_b in p.veths():
            ipr.link("add", ifname=dev_a, kind="veth", peer={"ifname": dev_b, "net_ns_fd": ns_b})
            idx = ipr.link_lookup(ifname=dev_a)[0]
            ipr.link("set", index=idx, master=br)
            ipr.link("set", index=idx, state="up")
        ipr.link("set", index=br, state="up")
    macs = {}
    ends = [(p.wire_ns, p.wire_dev, p.wire_ip)] + [(g.ns, g.dev, g.ip) for g in p.guests]
    for ns, dev, ip in ends:
        with IPRoute(netns=ns) as ipr:
            idx = ipr.link_lookup(ifname=dev)[0]
            ipr.addr("add", index=idx, address=ip, prefixlen=PREFIX_LEN)
            ipr.link("set", index=idx, state="up")
            macs[ip] = ipr.get_links(idx)[0].get("IFLA_ADDRESS")
    for ns, dev, ip in ends:
        peers = [g.ip for g in p.guests] if ip == p.wire_ip else [p.wire_ip]
        with IPRoute(netns=ns) as ipr:
            idx = ipr.link_lookup(ifname=dev)[0]
            for peer in peers:
                ipr.neigh("replace", dst=peer, lladdr=macs[peer], ifindex=idx, state=0x80)  # NUD_PERMANENT
    _configure(p, napi)


def _configure(p: TopologyPlan, napi: bool) -> None:
    """Disable IPv6 in every namespace and set GRO on / TSO off on every veth (ethtool netlink: no
    ``ethtool`` binary needed)."""
    from vcoal.linux.features import set_features

    devs: dict[str, list[str]] = {ns: [] for ns in p.namespaces}
    for ns_a, dev_a, ns_b, dev_b in p.veths():
        devs[ns_a].append(dev_a)
        devs[ns_b].append(dev_b)
    for ns, names in devs.items():
        netns.run_in(ns, ["sh", "-ec", "; ".join(f"echo 1 > /proc/sys/net/ipv6/conf/{c}/disable_ipv6"
                                                  for c in ("all", "default"))])
        if napi:
            for dev in names:
                set_features(ns, dev, NAPI_FEATURES)


def tags_present() -> list[str]:
    """Tags of every vcoal topology (complete or partial) present on the host."""
    return sorted({t for n in netns.list_namespaces() if (t := netns.tag_of(n))})


def down(tag: str | None = None) -> list[str]:
    """Remove topology ``tag`` (None: every vcoal topology), including leftovers of crashed runs.

    Processes still running inside those namespaces (tool servers of a crashed run) are ended by
    PID first: SIGTERM, then SIGKILL. Deleting a namespace deletes its veths and the bridge; the
    tracefs instance of a crashed trial's per-hop trace (``vcoal-<tag>``) goes too.
    Returns the namespaces removed.
    """
    from vcoal.linux import procs

    prefix = f"{netns.PREFIX}{netns.check_tag(tag)}-" if tag else netns.PREFIX
    names = [n for n in netns.list_namespaces(prefix) if netns.tag_of(n)]
    for name in names:
        for pid in netns.pids_in(name):
            procs.end_pid(pid)
    for name in names:
        netns.remove(name)
    from vcoal.linux.napitrace import remove_instance

    for t in {netns.tag_of(n) for n in names}:
        remove_instance(t)  # the per-hop trace of a crashed trial (named after its topology)
    return names


def status() -> list[dict]:
    """Every vcoal namespace with its interfaces (name, state, addresses, rx/tx packets)."""
    from pyroute2 import IPRoute

    out = []
    for name in netns.list_namespaces():
        entry: dict = {"ns": name, "tag": netns.tag_of(name), "links": [], "pids": netns.pids_in(name)}
        try:
            with IPRoute(netns=name) as ipr:
                addrs: dict[int, list[str]] = {}
                for a in ipr.get_addr():
                    addrs.setdefault(a["index"], []).append(f"{a.get('IFA_ADDRESS')}/{a['prefixlen']}")
                for link in ipr.get_links():
                    stats = link.get("IFLA_STATS64") or {}
                    info = link.get("IFLA_LINKINFO")
                    entry["links"].append(
                        {
                            "ifname": link.get("IFLA_IFNAME"),
                            "kind": info.get("IFLA_INFO_KIND") if info else None,
                            "state": link.get("IFLA_OPERSTATE"),
                            "addrs": addrs.get(link["index"], []),
                            "rx_packets": stats.get("rx_packets", 0),
                            "tx_packets": stats.get("tx_packets", 0),
                        }
                    )
        except OSError as exc:
            entry["error"] = str(exc)
        out.append(entry)
    return out


_STAT_KEYS = ("rx_packets", "tx_packets", "rx_bytes", "tx_bytes", "rx_dropped", "tx_dropped")


class LinkCounters:
    """rx/tx packets/bytes/dropped of every device of some namespaces: one netlink socket per
    namespace, kept open, and one dump per namespace per ``read``."""

    def __init__(self, namespaces) -> None:
        from pyroute2 import IPRoute

        self._ipr = {ns: IPRoute(netns=ns) for ns in namespaces}

    def read(self) -> dict[str, dict[str, dict[str, int]]]:
        """namespace -> device -> counters."""
        out: dict[str, dict[str, dict[str, int]]] = {}
        for ns, ipr in self._ipr.items():
            devs = out[ns] = {}
            for link in ipr.get_links():
                st = link.get("IFLA_STATS64") or {}
                devs[link.get("IFLA_IFNAME")] = {k: int(st.get(k, 0)) for k in _STAT_KEYS}
        return out

    def close(self) -> None:
        for ipr in self._ipr.values():
            ipr.close()
