"""Real-kernel testbed: the Xen-like namespace topology under real load and real NAPI knobs.

Modules: ``trial`` (``run_trial``: topology → knobs → closed-loop policy → load → TrialResult),
``sockperf`` / ``iperf3`` (tool drivers: pure ``build_argv`` / ``parse``), ``tap`` (in-loop tenant
latency from wire0), ``load`` (tenants → tools), ``sites`` (sites → devices, counters),
``measure`` (NET_RX, schedstat CPU), ``summary`` (TrialResult). The topology itself and the
processes are in ``vcoal.linux.topology`` / ``vcoal.linux.procs``; see docs/testbed.md.
"""
