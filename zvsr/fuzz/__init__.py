"""Fuzzing zvsr's trust boundaries: bad input at every socket of a running cluster, and checks that nothing broke.

Every byte a zvsr process reads from a socket is untrusted (docs/protocol.md §10): bad input must be dropped
and counted, never crash a process, never lose or corrupt committed data. This package produces bad input and
checks that promise. It is a tool that drives the system (STYLE rule 15): nothing a node imports imports it.

Modules, each importing only those above it:

- `msgpack_bytes`: msgpack written by hand — lying headers, widest formats, raw encodings at the edges.
- `mutations`: random msgpack values; byte-level and msgpack-level mutations of a valid encoding.
- `generators`: seeds (the golden vectors), fresh valid messages of every kind, content bombs, and
  `FrameGenerator`, the payloads and multipart shapes for each port; deterministic for a seed.
- `workload`: `Workload`, clients writing through the proxy with their history recorded (also used by
  tests/test_processes.py).
- `report`: `FuzzReport`, what a live run found, and `judge`, the verdict.
- `live`: `run_live_fuzz`, the driver that fires the frames at a running cluster and runs the checks.
- `cli`: `zvsr fuzz`, which starts a local cluster and runs the driver against it.

tests/test_fuzz_codec.py drives the generators and mutators with hypothesis' `Random`;
tests/test_fuzz_live.py runs the live driver. Import from the submodules.
"""
