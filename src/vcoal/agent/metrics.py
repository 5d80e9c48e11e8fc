"""Prometheus metrics of the agent, node_exporter style: ``vcoal_agent_*``, base units, labels.

Served by prometheus-client on 127.0.0.1 by default from the agent's own registry (no process or
platform collectors, so nothing but the agent's own series).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from vcoal.agent.loop import WindowReport
from vcoal.model.params import CoalesceParams

_LABELS = ("interface", "layer")
INFEASIBLE_SUFFIX = ".infeasible"  # decision-record input a policy sets to 1.0 for an infeasible tenant
_PARAM_GAUGES = {
    # parameter -> (metric name, help, factor to base units)
    "rx_usecs": ("vcoal_agent_coalesce_rx_seconds", "rx-usecs in force, in seconds", 1e-6),
    "tx_usecs": ("vcoal_agent_coalesce_tx_seconds", "tx-usecs in force, in seconds", 1e-6),
    "rx_frames": ("vcoal_agent_coalesce_rx_frames", "rx-frames in force", 1.0),
    "tx_frames": ("vcoal_agent_coalesce_tx_frames", "tx-frames in force", 1.0),
    "gro_flush_timeout_ns": ("vcoal_agent_napi_gro_flush_timeout_seconds", "NAPI gro_flush_timeout in force, in seconds", 1e-9),
    "napi_defer_hard_irqs": ("vcoal_agent_napi_defer_hard_irqs", "NAPI napi_defer_hard_irqs in force", 1.0),
}


class AgentMetrics:
    """All series the agent exports; ``update`` is called once per window."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = self.registry = registry or CollectorRegistry(auto_describe=True)
        self.params = {
            k: Gauge(name, doc, _LABELS, registry=r) for k, (name, doc, _) in _PARAM_GAUGES.items()
        }
        self.decisions = Counter(
            "vcoal_agent_decisions_total", "Decisions per site, by whether they changed a knob",
            (*_LABELS, "changed"), registry=r,
        )
        self.knob_writes = Counter(
            "vcoal_agent_knob_changes_total", "Interface knob changes applied", _LABELS, registry=r
        )
        self.skipped = Counter(
            "vcoal_agent_decisions_skipped_total", "Decisions not applied, by reason", (*_LABELS, "reason"), registry=r
        )
        self.restores = Counter("vcoal_agent_restores_total", "Knobs restored to their original values", registry=r)
        self.backoffs = Counter(
            "vcoal_agent_backoffs_total", "Interfaces backed off after an external knob change", registry=r
        )
        self.windows = Counter("vcoal_agent_windows_total", "Control windows run", registry=r)
        self.overruns = Counter(
            "vcoal_agent_window_overruns_total", "Windows skipped because the loop ran late", registry=r
        )
        self.interfaces = Gauge("vcoal_agent_interfaces", "Interfaces under control", registry=r)
        self.rx_pps = Gauge(
            "vcoal_agent_receive_packets_per_second", "Received packets per second in the last window", _LABELS, registry=r
        )
        self.tx_pps = Gauge(
            "vcoal_agent_transmit_packets_per_second", "Transmitted packets per second in the last window", _LABELS, registry=r
        )
        self.irq_rate = Gauge(
            "vcoal_agent_receive_interrupts_per_second", "Receive interrupts (or NET_RX softirqs) per second", _LABELS, registry=r
        )
        self.predicted_delay = Gauge(
            "vcoal_agent_predicted_delay_seconds", "The policy's predicted added delay per site", _LABELS, registry=r
        )
        self.slo_infeasible = Gauge(
            "vcoal_tenant_slo_infeasible", "1 while the policy finds the tenant's SLO infeasible (decision input "
            "'<tenant>.infeasible'), else 0", ("tenant",), registry=r,
        )
        self.loop_seconds = Gauge(
            "vcoal_agent_window_processing_seconds", "CPU wall time spent in the last window's work", registry=r
        )

    def serve(self, address: str, port: int) -> int:
        """Start the HTTP endpoint (a daemon thread); returns the port bound (``port`` 0: any free one)."""
        server, _thread = start_http_server(port, addr=address, registry=self.registry)
        return int(server.server_port)

    def set_params(self, interface: str, layer: str, params: CoalesceParams) -> None:
        """Publish the parameters in force at one interface."""
        for k, (_, _, factor) in _PARAM_GAUGES.items():
            self.params[k].labels(interface, layer).set(getattr(params, k) * factor)

    def update(self, report: WindowReport, interfaces: int) -> None:
        """Account one window."""
        self.windows.inc()
        if report.overruns:
            self.overruns.inc(report.overruns)
        self.interfaces.set(interfaces)
        for site, s in report.stats.sites.items():
            labels = (site.instance, site.layer.value)
            self.rx_pps.labels(*labels).set(s.pps("rx"))
            self.tx_pps.labels(*labels).set(s.pps("tx"))
            self.irq_rate.labels(*labels).set(s.irq_per_s("rx"))
            self.set_params(site.instance, site.layer.value, s.params)
        for rec in report.records:
            labels = (rec.site.instance, rec.site.layer.value)
            self.decisions.labels(*labels, "true" if rec.changed else "false").inc()
            for key, value in rec.inputs.items():
                if key.endswith(INFEASIBLE_SUFFIX):
                    self.slo_infeasible.labels(key.removesuffix(INFEASIBLE_SUFFIX)).set(value)
            for key, value in rec.predicted.items():
                if "delay" in key:
                    scale = 1e-6 if key.endswith("_us") else 1e-9 if key.endswith("_ns") else 1.0
                    self.predicted_delay.labels(*labels).set(value * scale)
        for a in report.applied:
            labels = (a.site.instance, a.site.layer.value)
            if a.skipped and a.skipped != "dry run":
                self.skipped.labels(*labels, a.skipped.replace(" ", "_")).inc()
            elif a.changed:
                self.knob_writes.labels(*labels).inc()
                self.set_params(*labels, a.params)
