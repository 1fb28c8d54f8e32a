"""zvsr: Viewstamped Replication (VR Revisited, Liskov & Cowling 2012) as Python middleware over ZeroMQ."""

__version__ = "0.1.0"
