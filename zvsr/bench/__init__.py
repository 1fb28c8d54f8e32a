"""`zvsr bench`: measure zvsr on this machine against baselines measured in the same run.

A run starts real processes on 127.0.0.1 — a 3-replica cluster and a proxy (`zvsr.runtime.processes`), raw
pyzmq echo servers and a Python forwarder (`zvsr.bench.raw`), optionally a 3-node PySyncObj cluster
(`zvsr.bench.syncobj_node`) — drives them with load-generator processes (`zvsr.bench.loadgen`), and reports
each zvsr figure next to the baseline it should be compared with, as a ratio: the machine is shared and noisy,
so absolute numbers move from run to run while ratios measured minutes apart move much less.

Modules: `runner` (the phases, the report, the table), `loadgen` (the pipelined / strict load), `raw` (echo
server and forwarder), `disk` (the fdatasync-per-append baseline), `failover` (kill -9 of the primary),
`syncobj_node` (PySyncObj), `curves` (throughput and p99 against client count and value size, 5 replicas),
`read_mix` (90% gets / 10% puts per read mode), `procs` (child processes and their cleanup), `progress`,
`stats`, `cli`.

Tools run on their own, each with ``python -m zvsr.bench.<name> --help``: `failover` (the failover phase
alone, median of N runs), `curves` (the curves alone), `read_mix` (the read mix alone), `cpu_per_op` (CPU time
per committed op of every process, from /proc), `profile_pipelined` (py-spy profiles of the primary, a backup
and the proxy), `steady_state` (RSS and disk under a long steady load). This package is the one home of bench
code; the top-level `bench/` holds results.
Method and latest figures: docs/benchmarks.md.
"""
