"""Brokerless examples: existing ZeroMQ applications given replicated coordination by zvsr (see README.md)."""
