"""Presentation as data: display name, colour and marker per policy (Pantheon's config.yml idea)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Style:
    """How a policy is drawn."""

    display: str
    color: str
    marker: str


POLICY_STYLE: dict[str, Style] = {
    "off": Style("off (irq per packet)", "#7f7f7f", "x"),
    "static": Style("static", "#1f77b4", "s"),
    "net_dim": Style("net_dim", "#ff7f0e", "^"),
    "intel_itr": Style("Intel ITR", "#2ca02c", "v"),
    "napi_defer": Style("NAPI defer", "#9467bd", "D"),
    "dxzl": Style("DXZL (frontend)", "#8c564b", "P"),
    "qos": Style("qos (vcoal)", "#d62728", "o"),
}

_FALLBACK_COLORS = ("#17becf", "#bcbd22", "#e377c2", "#393b79", "#637939", "#8c6d31", "#843c39")
_FALLBACK_MARKERS = ("o", "s", "^", "v", "D", "P", "X")

LAYER_LINESTYLE: dict[str, str] = {"nic": "-", "backend": "--", "frontend": ":"}


def style_of(policy: str) -> Style:
    """The style of a policy; unregistered names get a stable fallback from their hash."""
    if policy in POLICY_STYLE:
        return POLICY_STYLE[policy]
    h = sum(policy.encode()) % len(_FALLBACK_COLORS)
    return Style(policy, _FALLBACK_COLORS[h], _FALLBACK_MARKERS[h])
