"""CPU placement of a testbed trial, like a Xen host's: driver domain, wire and each guest apart.

With enough CPUs (``2 + guests``: the wire, the driver domain and one set per guest) the CPUs are
split into disjoint sets (the driver domain gets the remainder), and

* the load tools run pinned: the clients and the latency tap on the wire's set, each guest's
  server on its guest's set;
* receive packet steering (``vcoal.linux.rps``) sends what a device's NAPI received on to its
  owner's set: peth0 and the vifs to the driver domain (bridge, netback's share), each guest's
  geth to its guest, wire0 to the wire.

A veth's NAPI itself runs where its peer transmitted (``veth_xmit`` schedules it on the sending
CPU), so peth0's polls stay on the wire's CPUs and a geth's on the driver domain's: what moves is
everything after the poll. With fewer CPUs the trial runs shared, and says so (``meta.placement``).
``plan`` is pure.
"""

from __future__ import annotations

from dataclasses import dataclass

from vcoal.linux.topology import TopologyPlan

WIRE, DOM0 = "wire", "dom0"


@dataclass(frozen=True, slots=True)
class Placement:
    """CPU sets by role (``wire``, ``dom0``, ``guest:<name>``) and which devices steer to which."""

    sets: dict[str, tuple[int, ...]]
    devices: dict[tuple[str, str], str]  # (namespace, device) -> role

    def of_guest(self, name: str) -> tuple[int, ...]:
        return self.sets[f"guest:{name}"]

    def to_meta(self) -> dict:
        return {"mode": "placed", "sets": {r: list(c) for r, c in self.sets.items()},
                "rps": {f"{ns}/{dev}": role for (ns, dev), role in self.devices.items()}}


def needed_cpus(topo: TopologyPlan) -> int:
    """CPUs a placed trial needs: one set each for the wire, the driver domain and every guest."""
    return 2 + len(topo.guests)


def plan(topo: TopologyPlan, cpus: list[int] | tuple[int, ...]) -> Placement | None:
    """Disjoint CPU sets for the topology on ``cpus`` (ascending), None when there are too few."""
    n = needed_cpus(topo)
    if len(cpus) < n:
        return None
    share = len(cpus) // n
    roles = [WIRE, *(f"guest:{g.name}" for g in topo.guests)]
    sets: dict[str, tuple[int, ...]] = {}
    at = 0
    for role in roles:
        sets[role] = tuple(cpus[at:at + share])
        at += share
    sets[DOM0] = tuple(cpus[at:])  # the driver domain takes the remainder
    devices = {(topo.wire_ns, topo.wire_dev): WIRE, (topo.dom0_ns, topo.nic_dev): DOM0}
    for g in topo.guests:
        devices[(topo.dom0_ns, g.vif)] = DOM0
        devices[(g.ns, g.dev)] = f"guest:{g.name}"
    return Placement(sets, devices)


def shared_meta(topo: TopologyPlan, cpus: list[int] | tuple[int, ...], asked: str) -> dict:
    """``meta.placement`` of a shared trial, with the reason."""
    reason = ("shared by request" if asked == "shared"
              else f"{len(cpus)} CPUs, a placed trial needs {needed_cpus(topo)} (wire, driver domain, one per guest)")
    return {"mode": "shared", "reason": reason, "cpus": list(cpus)}
