"""Network and process faults between real zvsr processes (`zvsr chaos`), and checks that nothing broke.

The simulator (`zvsr.sim`) runs the core under partitions, loss and reordering on a virtual network; this
package runs the real runtime — ZeroMQ reconnects, heartbeats over PUB/SUB, the proxy's view learning, queues at
their high-water marks — under the same kinds of faults, on a real network of Linux namespaces, and checks the
history the clients saw. It is a tool that drives the system (STYLE rule 15): nothing a node imports imports it.

Modules, each importing only those above it:

- `netns`: the namespaces, the bridge, and the kernel's faults (links down, dead-MAC neighbour entries, htb).
- `relay`: a ZMTP-aware relay in front of each replica, for message-level faults (loss one way, delay,
  duplication, reordering); also run as a process, `python -m zvsr.chaos.relay`.
- `cluster`: `ChaosCluster`, relays, replicas and the proxy as processes on that network.
- `nemesis`: the faults, each with its heal.
- `schedule`: the seeded order of faults.
- `report`: `ChaosReport`, what a run found, and its summary.
- `run`: `run_chaos`, the driver (set up, faults, heal, check, clean up).
- `cli`: `zvsr chaos`.
"""
