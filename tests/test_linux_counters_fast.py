"""The agent's fast /proc readers agree with the full parsers, on captured real output."""

from __future__ import annotations

import shutil
from pathlib import Path

from vcoal.linux.counters import (
    NS_PER_TICK,
    InterfaceCounters,
    ProcFile,
    irq_totals,
    net_dev_names,
    net_dev_rows,
    parse_interrupts,
    parse_net_dev,
    parse_proc_stat,
    parse_softirqs,
    softirq_total,
)
from vcoal.model.stats import CounterSample, DirStats

GOLDEN = Path(__file__).parent / "golden" / "linux"


def _read(name: str) -> str:
    return (GOLDEN / name).read_text()


def test_net_dev_rows_and_names():
    text = _read("proc_net_dev.txt")
    full = parse_net_dev(text)
    assert net_dev_names(text) == set(full) == {"lo", "tap0", "va", "vb"}
    rows = net_dev_rows(text, {"va", "tap0", "absent0"})
    assert set(rows) == {"va", "tap0"}
    c = rows["va"].split()
    d = full["va"]
    assert (int(c[0]), int(c[1]), int(c[3]), int(c[8]), int(c[9]), int(c[11])) == (
        d.rx_bytes, d.rx_packets, d.rx_drops, d.tx_bytes, d.tx_packets, d.tx_drops)


def test_softirq_total_matches_the_full_parser():
    text = _read("proc_softirqs.txt")
    full = parse_softirqs(text)
    for name in ("NET_RX", "NET_TX", "HI", "RCU"):
        assert softirq_total(text, name) == sum(full[name])
    assert softirq_total(text, "NO_SUCH") == 0
    assert softirq_total("    X_NET_RX: 5 6\n", "NET_RX") == 0  # only a whole row name


def test_irq_totals_match_the_full_parser():
    text = _read("proc_interrupts.txt")
    by = {line.irq: line.total for line in parse_interrupts(text)}
    assert irq_totals(text, {"38", "39", "999"}) == {"38": by["38"], "39": by["39"]}
    assert irq_totals("", {"1"}) == {}


def test_proc_file_rereads_from_the_start(tmp_path):
    path = tmp_path / "f.txt"
    path.write_text("cpu  1 2 3\nmore\n")
    f = ProcFile(str(path))
    assert f.read() == "cpu  1 2 3\nmore\n"
    path.write_text("cpu  4 5 6\n")  # same inode, new content
    assert f.read() == "cpu  4 5 6\n"
    assert f.read(first=4) == "cpu "
    f.close()
    f.close()


def test_sample_from_captured_files(tmp_path):
    """InterfaceCounters on captured /proc files gives the values of the full parsers."""
    for name in ("proc_net_dev.txt", "proc_softirqs.txt", "proc_stat.txt", "proc_interrupts.txt"):
        shutil.copy(GOLDEN / name, tmp_path / name)
    c = InterfaceCounters(clock_ns=lambda: 123)
    c._files = {f"/proc/{key}": ProcFile(str(tmp_path / name)) for key, name in (
        ("net/dev", "proc_net_dev.txt"), ("softirqs", "proc_softirqs.txt"), ("stat", "proc_stat.txt"),
        ("interrupts", "proc_interrupts.txt"))}
    dev = parse_net_dev(_read("proc_net_dev.txt"))
    soft = parse_softirqs(_read("proc_softirqs.txt"))
    cpu_ns = parse_proc_stat(_read("proc_stat.txt"))["cpu"].softirq_ns
    assert cpu_ns == 436 * NS_PER_TICK

    def expected(name: str) -> CounterSample:
        d = dev[name]
        net_rx, net_tx = sum(soft["NET_RX"]), sum(soft["NET_TX"])
        return CounterSample(123, DirStats(d.rx_packets, d.rx_bytes, net_rx, net_rx, d.rx_drops),
                             DirStats(d.tx_packets, d.tx_bytes, 0, net_tx, d.tx_drops), cpu_ns)

    first = c.sample(["va", "gone0", "lo"])
    assert first == {"va": expected("va"), "lo": expected("lo")}
    assert list(first) == ["va", "lo"]
    again = c.sample(["va", "gone0", "lo"], keys=["site-va", "site-gone", "site-lo"])
    assert again == {"site-va": expected("va"), "site-lo": expected("lo")}
    assert again["site-va"].tx is first["va"].tx  # unchanged row and NET_TX: the same tx object
    (tmp_path / "proc_softirqs.txt").write_text(_read("proc_softirqs.txt").replace("NET_TX:          3", "NET_TX:          4"))
    moved = c.sample(["va"])
    assert moved["va"].tx.polls == again["site-va"].tx.polls + 1 and moved["va"].tx is not first["va"].tx
    c.close()
