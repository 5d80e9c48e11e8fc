"""``vcoal testbed up|down|status|run``: the real-kernel testbed (needs root)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import typer

from vcoal.cli.main import fail, output_path

EPILOG = """Examples (as root):

  vcoal testbed up examples/testbed/mixed.toml --tag demo

  vcoal testbed status

  vcoal testbed run examples/testbed/mixed.toml --policy off --duration 5 --out off.json

  vcoal testbed run examples/testbed/mixed.toml --policy static --params '{"nic": {"napi_defer_hard_irqs": 2, "gro_flush_timeout_ns": 50000}}'

  vcoal testbed down            # removes every vcoal topology, also leftovers of crashed runs
"""

testbed_app = typer.Typer(
    name="testbed",
    help="Xen-like topology in network namespaces with real NAPI coalescing knobs and real load.",
    no_args_is_help=True,
    epilog=EPILOG,
)


PLACEMENTS = ("auto", "shared")


def _need_root() -> None:
    if os.geteuid() != 0:
        fail("the testbed needs root (network namespaces, veth, NAPI knobs)")


@testbed_app.command("up", epilog=EPILOG)
def up(
    spec_path: Path = typer.Argument(..., help="scenario TOML file (guests become namespaces)"),
    tag: str = typer.Option("tb", "--tag", help="topology name (1-12 lower-case letters/digits)"),
    no_napi: bool = typer.Option(False, "--no-napi", help="leave veth offloads at their defaults"),
) -> None:
    """Build the topology of a scenario (wire, dom0 with xenbr0, a namespace per guest) and set its knobs."""
    from vcoal.linux import topology
    from vcoal.spec import load_scenario
    from vcoal.testbed.load import check_tools
    from vcoal.testbed.sites import site_devices
    from vcoal.testbed.trial import KnobSet

    try:
        spec = load_scenario(spec_path)
        check_tools(spec)
    except ValueError as exc:
        fail(str(exc))
    _need_root()
    try:
        plan = topology.plan(tag, [g.name for g in spec.guests])
        devices = site_devices(spec, plan)
        topology.up(plan, napi=not no_napi)
    except (ValueError, RuntimeError, OSError) as exc:
        fail(str(exc))
    try:
        knobs = KnobSet(devices)
        try:
            written = knobs.apply(dict(spec.site_params()))
        finally:
            knobs.close()
    except (ValueError, RuntimeError, OSError) as exc:
        topology.down(tag)
        fail(f"setting the scenario's knobs: {exc}")
    typer.echo(f"topology {tag}: wire {plan.wire_ns} ({plan.wire_ip}), dom0 {plan.dom0_ns}")
    for w in written:
        a = w["applied"]
        typer.echo(f"  knobs {w['dev']}: defer {a['napi_defer_hard_irqs']} gro_flush {a['gro_flush_timeout_ns']} ns")
    for g in plan.guests:
        typer.echo(f"  guest {g.name}: ns {g.ns}, {g.dev} {g.ip}, backend {plan.dom0_ns}/{g.vif}")
    typer.echo(f"try: ip netns exec {plan.wire_ns} sockperf pp -i {plan.guests[0].ip} (server: sockperf sr in the guest)")


@testbed_app.command("down")
def down(tag: str = typer.Option(None, "--tag", help="only this topology (default: every vcoal topology)")) -> None:
    """Remove vcoal topologies (namespaces, veths, bridges, processes left inside them)."""
    from vcoal.linux import topology

    _need_root()
    try:
        removed = topology.down(tag)
    except ValueError as exc:
        fail(str(exc))
    typer.echo(f"removed {len(removed)} namespaces" + (": " + " ".join(removed) if removed else ""))


@testbed_app.command("status")
def status(as_json: bool = typer.Option(False, "--json", help="print JSON")) -> None:
    """List vcoal namespaces with their interfaces, addresses, packet counts and processes."""
    from vcoal.linux import topology

    _need_root()
    entries = topology.status()
    if as_json:
        typer.echo(json.dumps(entries, indent=2))
        return
    if not entries:
        typer.echo("no vcoal topology")
        return
    for e in entries:
        typer.echo(f"{e['ns']}  (tag {e['tag']}, {len(e['pids'])} processes)")
        for link in e["links"]:
            addrs = ",".join(link["addrs"])
            k = _knobs_of(e["ns"], link["ifname"]) if link["kind"] == "veth" else ""
            typer.echo(
                f"  {link['ifname']:8s} {link['kind'] or '-':6s} {link['state']:8s} {addrs:18s}"
                f" rx {link['rx_packets']} tx {link['tx_packets']}{k}"
            )


def _knobs_of(ns: str, dev: str) -> str:
    from vcoal.linux.knobs import read_knobs

    try:
        k = read_knobs(dev, netns=ns)
    except (OSError, ValueError):
        return ""
    return f"  defer {k.get('napi_defer_hard_irqs')} gro_flush {k.get('gro_flush_timeout_ns')} ns"


MAX_SETTLE_S = 600.0


def _check_settle(settle: float) -> None:
    if not 0 <= settle <= MAX_SETTLE_S:
        raise ValueError(f"--settle {settle}: must be in [0, {MAX_SETTLE_S:g}] seconds")


@testbed_app.command("run", epilog=EPILOG)
def run(
    spec_path: Path = typer.Argument(..., help="scenario TOML file"),
    policy: str = typer.Option("off", "--policy", "-p", help="registered policy (see 'vcoal policies')"),
    params_json: str = typer.Option(None, "--params", help="policy parameters as a JSON object"),
    duration: float = typer.Option(None, "--duration", help="measured seconds (default: the spec's duration_s, >= 1)"),
    window: float = typer.Option(1.0, "--window", help="policy window in seconds"),
    reps: int = typer.Option(1, "--reps", help="repetitions (each on a fresh topology)"),
    settle: float = typer.Option(0.0, "--settle", help="seconds the load and the policy run before the measured period (the simulator's warm-up)"),
    tap_every: int = typer.Option(4, "--tap-every", help="time every N-th sockperf round trip on wire0 for the policy (0 = off)"),
    placement: str = typer.Option("auto", "--placement", help="auto: driver domain, wire and guests on their own CPUs when there are enough; shared: never"),
    as_json: bool = typer.Option(False, "--json", help="print the full result(s) as JSON"),
    out: Path = typer.Option(None, "--out", "-o", help="write the JSON result (a list when --reps > 1)"),
) -> None:
    """Run a scenario's tenants as real sockperf/iperf3 processes under a closed-loop policy."""
    from vcoal.policies import make_policy
    from vcoal.spec import load_scenario
    from vcoal.testbed.load import check_tools
    from vcoal.testbed.trial import TrialOptions, run_trial

    output_path(out, "--out")
    try:
        spec = load_scenario(spec_path)
        check_tools(spec)
    except ValueError as exc:
        fail(str(exc))
    _need_root()
    try:
        params = json.loads(params_json) if params_json else {}
        if not isinstance(params, dict):
            raise ValueError("--params: expected a JSON object")
        make_policy(policy, params)
        if duration is not None and not 1 <= duration <= 3600:
            raise ValueError(f"--duration {duration}: must be in [1, 3600] seconds")
        if not 0.2 <= window <= 60:
            raise ValueError(f"--window {window}: must be in [0.2, 60] seconds")
        if not 1 <= reps <= 100:
            raise ValueError(f"--reps {reps}: must be in [1, 100]")
        _check_settle(settle)
        if tap_every and (tap_every & (tap_every - 1) or tap_every > 256):
            raise ValueError(f"--tap-every {tap_every}: must be 0 or a power of two <= 256")
        if placement not in PLACEMENTS:
            raise ValueError(f"--placement {placement!r}: one of {', '.join(PLACEMENTS)}")
    except json.JSONDecodeError as exc:
        fail(f"--params: not valid JSON: {exc}")
    except ValueError as exc:
        fail(str(exc))
    results = []
    for _ in range(reps):
        try:
            r = run_trial(spec, make_policy(policy, params), TrialOptions(
                measure_s=duration, window_s=window, tap_every=tap_every, placement=placement, settle_s=settle))
        except (RuntimeError, ValueError, OSError) as exc:
            fail(f"trial failed: {exc}", code=1)
        results.append(r)
        if not as_json:
            _print(r)
    docs = [r.to_dict() for r in results]
    doc = docs[0] if reps == 1 else docs
    if out is not None:
        from vcoal.results.files import write_atomic

        write_atomic(out, json.dumps(doc, indent=1, default=str))
    if as_json:
        typer.echo(json.dumps(doc, default=str))


def _print(r) -> None:
    m = r.meta
    typer.echo(f"{r.scenario} policy={r.policy} measured {r.measured_s:.2f} s on topology {m['topology_tag']}")
    for t in r.tenants:
        src = t.rtt_us or {}
        lat = f"rtt p50 {src.get('p50', float('nan')):.1f} p99 {src.get('p99', float('nan')):.1f} us" if src else ""
        slo = {True: "SLO met", False: "SLO MISSED", None: ""}[t.slo_met]
        typer.echo(
            f"  {t.name:8s} {t.kind:16s} {lat:32s} {t.throughput_bps / 1e9:7.3f} Gbit/s {t.throughput_pps:10.0f} pps {slo}"
        )
    for name, pr in (m.get("tap") or {}).items():
        if pr.get("samples"):
            typer.echo(f"  {name:8s} wire tap ({pr['samples']} samples) rtt p50 {pr['p50_us']:.1f} p99 {pr['p99_us']:.1f} us")
    typer.echo(
        f"  NET_RX {m['net_rx_per_s']:.0f}/s, {m['net_rx_per_packet']:.3f}/packet; task CPU "
        f"{m['tasks_cpu_ns_per_packet'] / 1e3:.2f} us/packet; background CPU {m['background_cpu_frac']:.2f}"
    )
    typer.echo(f"  {attribution_line(m.get('attribution') or {})}; {placement_line(m.get('placement') or {})}")
    for s in r.sites:
        p = s.params_final
        typer.echo(
            f"  {s.site:14s} defer {p.get('napi_defer_hard_irqs', 0):>3} gro_flush {p.get('gro_flush_timeout_ns', 0):>8} ns"
            f"  rx {s.rx.packets / r.measured_s:9.0f} pps  tx {s.tx.packets / r.measured_s:9.0f} pps"
        )


def attribution_line(a: dict) -> str:
    """Where the per-site polls came from, in one line (the fallback says why)."""
    from vcoal.testbed.trial import ATTRIBUTION_TRACE

    if a.get("source") != ATTRIBUTION_TRACE:
        return f"site polls: host-wide NET_RX ({a.get('reason', 'no trace')})"
    ratio = a.get("attributed_over_net_rx")
    lost = a.get("overrun", 0)
    return (f"site polls: napi_poll tracepoint, {a.get('polls', 0)} polls in {a.get('attributed_net_rx', 0)} of "
            f"{a.get('net_rx', 0)} NET_RX runs ({(ratio or 0) * 100:.0f} %)" + (f", {lost} events LOST" if lost else ""))


def placement_line(p: dict) -> str:
    """The trial's CPU placement in one line."""
    if p.get("mode") == "placed":
        return "placed: " + ", ".join(f"{role} cpus {c[0]}-{c[-1]}" for role, c in p["sets"].items())
    return f"CPUs shared ({p.get('reason', 'unknown')})"


def register(app: typer.Typer) -> None:
    """Add the sub-app to the main app."""
    app.add_typer(testbed_app, name="testbed")


COMPARE_EPILOG = """Examples (as root):

  vcoal testbed compare examples/testbed/mixed-2core.toml --policies off,static,net_dim,napi_defer,qos --oracle --reps 3 --json out.json

  vcoal testbed compare examples/testbed/mixed.toml --policies off,qos --reps 2 --duration 4

  vcoal testbed compare examples/testbed/mixed-2core.toml --policies off,qos --oracle --settle 2 --duration 10 --window 0.5

  vcoal report vcoal-results/testbed-compare -o report.html     # the stored trials
"""


@testbed_app.command("compare", epilog=COMPARE_EPILOG)
def compare(
    spec_paths: list[Path] = typer.Argument(..., help="scenario TOML files"),
    policies: str = typer.Option("off,qos", "--policies", help="comma-separated policies, default parameters"),
    oracle: bool = typer.Option(False, "--oracle", help="also run the static grid and name the testbed oracle"),
    reps: int = typer.Option(3, "--reps", help="repetitions of every configuration, interleaved, each on a fresh topology"),
    duration: float = typer.Option(None, "--duration", help="measured seconds per trial (default: the spec's, >= 1)"),
    window: float = typer.Option(1.0, "--window", help="policy window in seconds"),
    settle: float = typer.Option(0.0, "--settle", help="seconds the load and the policy run before the measured period (the simulator's warm-up)"),
    out_dir: Path = typer.Option(Path("vcoal-results/testbed-compare"), "--out", help="results directory (one file per trial)"),
    json_out: Path = typer.Option(None, "--json", help="write the rows and the oracle as JSON"),
    placement: str = typer.Option("auto", "--placement", help="auto: driver domain, wire and guests on their own CPUs when there are enough; shared: never"),
) -> None:
    """Every policy (and with --oracle a static NAPI-deferral grid) on every scenario: medians \\[min..max]."""
    from functools import partial

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from vcoal.experiments.testbed_compare import configs, run_testbed_compare, testbed_trial
    from vcoal.spec import load_scenario
    from vcoal.testbed.load import check_tools

    names = [p.strip() for p in policies.split(",") if p.strip()]
    try:
        if not names:
            raise ValueError(f"--policies {policies!r}: name at least one policy")
        if not 1 <= reps <= 100:
            raise ValueError(f"--reps {reps}: must be in [1, 100]")
        if duration is not None and not 1 <= duration <= 3600:
            raise ValueError(f"--duration {duration}: must be in [1, 3600] seconds")
        if not 0.2 <= window <= 60:
            raise ValueError(f"--window {window}: must be in [0.2, 60] seconds")
        if placement not in PLACEMENTS:
            raise ValueError(f"--placement {placement!r}: one of {', '.join(PLACEMENTS)}")
        _check_settle(settle)
        specs = [load_scenario(p) for p in spec_paths]
        for s in specs:
            check_tools(s)
            configs(s, names, oracle)
    except ValueError as exc:
        fail(str(exc))
    output_path(json_out, "--json")
    output_path(out_dir, "--out", directory=True)
    _need_root()
    console = Console(stderr=True)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=console, transient=True) as bar:
        task = bar.add_task("testbed", total=None)

        t0 = time.monotonic()

        def step(done: int, total: int, label: str) -> None:
            bar.update(task, completed=done, total=total, description=label)
            if not console.is_terminal:  # no bar in a log: one line per finished trial
                console.print(f"testbed compare: {done}/{total} done ({label}), {time.monotonic() - t0:.0f} s",
                              highlight=False, soft_wrap=True)

        outcome = run_testbed_compare(specs, names, trial_fn=partial(testbed_trial, placement=placement, settle_s=settle),
                                      oracle=oracle, reps=reps, duration_s=duration, window_s=window,
                                      out_dir=out_dir, on_done=step)
    if json_out is not None:
        from vcoal.cli.jsonout import strict_json
        from vcoal.results.files import write_atomic

        write_atomic(json_out, strict_json({"rows": outcome.rows, "oracle": outcome.oracle}, indent=1))
    print_testbed_rows(outcome.rows, outcome.oracle)
    typer.echo(f"{outcome.trials} trials stored in {out_dir}" + (f", {outcome.failed} failed" if outcome.failed else ""))
    if outcome.interrupted:
        fail("interrupted: the rows above are what finished", code=130)
    if outcome.failed:
        raise typer.Exit(1)


def _spread(s: dict | None, d: int = 1, scale: float = 1.0) -> str:
    if not s:
        return "-"
    return f"{s['median'] * scale:.{d}f} [{s['min'] * scale:.{d}f}..{s['max'] * scale:.{d}f}]"


def print_testbed_rows(rows: list[dict], oracle: dict) -> None:
    """The comparison table: one line per scenario x configuration, medians [min..max] over reps."""
    from rich.console import Console
    from rich.table import Table

    console = Console(width=None if Console().is_terminal else 200)
    t = Table(title="testbed: medians \\[min..max] over interleaved reps (p99 = round trip for request-response)")
    for col in ("scenario", "policy", "tenants p99 µs (SLO, met reps)", "all met", "NET_RX/pkt", "task CPU µs/pkt",
                "Gb/s", "polls/pkt per site"):
        t.add_column(col)
    best = {s: r["label"] for s, r in oracle.items() if r}
    for r in rows:
        if not r["ok"]:
            t.add_row(r["scenario"], r["label"], f"[red]{'; '.join(r['errors'])[:120]}[/]", "-", "-", "-", "-", "-")
            continue
        tenants = " ".join(
            f"{n} {_spread(x['p99_us'], 0)} ({_f0(x['slo_p99_us'])}, {x['slo_met_reps']}/{r['ok']})"
            for n, x in r["tenants"].items()
        )
        sites = " ".join(f"{s} {_spread(v, 2)}" for s, v in r["polls_per_packet"].items())
        label = r["label"] + (" [green]← oracle[/]" if best.get(r["scenario"]) == r["label"] else "")
        t.add_row(r["scenario"], label, tenants, f"{r['all_met_reps']}/{r['reps']}", _spread(r["net_rx_per_packet"], 3),
                  _spread(r["task_cpu_us_per_packet"], 2), _spread(r["throughput_bps"], 2, 1e-9), sites)
    console.print(t)
    sources = sorted({s for r in rows for s in r.get("attribution", [])})
    modes = sorted({s for r in rows for s in r.get("placement", [])})
    console.print(f"site polls from: {', '.join(sources) or '-'}; CPUs: {', '.join(modes) or '-'}")
    for scenario, r in oracle.items():
        console.print(f"testbed oracle of {scenario}: " + (f"{r['label']} (NET_RX/pkt {_spread(r['net_rx_per_packet'], 3)})"
                                                            if r else "no grid point met every SLO in every rep"))


def _f0(x) -> str:
    return "-" if x is None else f"{x:.0f}"
