"""/proc parsers on captured real output, and a live sample."""

from __future__ import annotations

from pathlib import Path

from vcoal.linux.counters import (
    NS_PER_TICK,
    InterfaceCounters,
    IrqLine,
    irq_direction,
    parse_interrupts,
    parse_net_dev,
    parse_proc_stat,
    parse_softirqs,
    parse_softnet_stat,
)
from vcoal.linux.hostinfo import host_info, kernel_version

GOLDEN = Path(__file__).parent / "golden" / "linux"


def _read(name: str) -> str:
    return (GOLDEN / name).read_text()


def test_softirqs():
    s = parse_softirqs(_read("proc_softirqs.txt"))
    assert s["NET_RX"] == [170628, 190534]
    assert s["NET_TX"] == [3, 0]
    assert set(s) >= {"HI", "TIMER", "NET_RX", "NET_TX", "SCHED", "RCU"}


def test_proc_stat():
    st = parse_proc_stat(_read("proc_stat.txt"))
    assert set(st) == {"cpu", "cpu0", "cpu1"}
    assert st["cpu"].softirq_ns == 436 * NS_PER_TICK
    assert st["cpu"].idle_ns == (115490 + 419) * NS_PER_TICK


def test_softnet_stat():
    rows = parse_softnet_stat(_read("proc_net_softnet_stat.txt"))
    assert [r.cpu for r in rows] == [0, 1]
    assert rows[0].processed == 0x50F1C
    assert rows[1].processed == 0x5C036
    assert rows[1].time_squeeze == 0


def test_interrupts_and_virtio_queue_mapping():
    lines = parse_interrupts(_read("proc_interrupts.txt"))
    by = {line.irq: line for line in lines}
    assert by["38"].name == "virtio2-input.0" and by["38"].per_cpu == (0, 7102)
    assert by["39"].chip.startswith("PCI-MSIX")
    assert "LOC" not in by
    assert irq_direction(by["38"], "eth0", "virtio2") == "rx"
    assert irq_direction(by["39"], "eth0", "virtio2") == "tx"
    assert irq_direction(by["41"], "eth0", "virtio2") is None


def test_irq_names_of_other_drivers():
    def line(name: str) -> IrqLine:
        return IrqLine("99", (1, 2), "IR-PCI-MSI", name)

    assert irq_direction(line("eth0-TxRx-3"), "eth0") == "both"
    assert irq_direction(line("eth0-rx-1"), "eth0") == "rx"
    assert irq_direction(line("eth0-tx-1"), "eth0") == "tx"
    assert irq_direction(line("eth10-TxRx-0"), "eth1") is None


def test_net_dev():
    d = parse_net_dev(_read("proc_net_dev.txt"))
    assert d["va"].rx_packets == 9 and d["va"].rx_bytes == 726
    assert set(d) == {"lo", "tap0", "va", "vb"}


def test_live_sample_of_loopback():
    c = InterfaceCounters()
    s = c.sample(["lo", "no-such-if0"])
    assert set(s) == {"lo"}
    assert s["lo"].rx.polls >= 0 and s["lo"].t_ns > 0


def test_hostinfo():
    assert kernel_version("6.18.44-fc-v669") == (6, 18)
    assert kernel_version("garbage") == (0, 0)
    assert host_info().cpus >= 1
