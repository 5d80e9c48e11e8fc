"""Shared vocabulary of vcoal (standard library only).

Every other package speaks these types: layers and directions, coalescing parameters with ethtool
names, window statistics handed to policies, SLOs, latency histograms, the policy protocol and the
exact queueing formulas used as validation anchors.
"""

from vcoal.model.histogram import LatencyHistogram
from vcoal.model.params import CoalesceParams, TimerMode
from vcoal.model.policy import Decision, DecisionRecord, Policy, PolicyContext, SiteInfo, TenantInfo
from vcoal.model.slo import Slo
from vcoal.model.stats import CounterSample, DirStats, SiteStats, TenantStats, WindowStats
from vcoal.model.units import Direction, Layer, Site

__all__ = [
    "CoalesceParams",
    "CounterSample",
    "Decision",
    "DecisionRecord",
    "DirStats",
    "Direction",
    "LatencyHistogram",
    "Layer",
    "Policy",
    "PolicyContext",
    "Site",
    "SiteInfo",
    "SiteStats",
    "Slo",
    "TenantInfo",
    "TenantStats",
    "TimerMode",
    "WindowStats",
]
