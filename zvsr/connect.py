"""How a client-side process connects to a cluster: endpoint checks and CurveZMQ settings.

Theory of operation
-------------------
Two kinds of client-side process talk to a cluster: the request client (`zvsr.client`, through proxies or
straight to the replicas) and the watcher (`zvsr.watch`, on every replica's watch and client endpoints). Both
check the endpoints they are given before any socket exists, and both, with security on, connect as CurveZMQ
clients with a client key admitted by the cluster (``keys/clients``) and the public key of the server behind
each endpoint. Those pieces live here, below both, so that the request client can offer the watcher
(`zvsr.client.watch`) without the watcher depending on the request client: imports point one way,
``zvsr.client`` → ``zvsr.watch`` → ``zvsr.connect``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zmq

from zvsr.runtime.cluster_config import ClusterConfig
from zvsr.runtime.security import read_pair, read_public


def check_endpoints(endpoints: Sequence[object]) -> None:
    """Raise ValueError unless every endpoint is a ZeroMQ endpoint string (``tcp://host:port``)."""
    for endpoint in endpoints:
        if not isinstance(endpoint, str) or "://" not in endpoint:
            raise ValueError(f"endpoints must be ZeroMQ endpoints like tcp://host:port, got {endpoint!r}")


@dataclass(frozen=True, slots=True)
class Curve:
    """CurveZMQ for a client: the servers' public keys — one per endpoint, in order, or one for all — and the
    client's own key pair, all z85 (40 bytes). The cluster admits the client only if its public key is in the
    cluster's ``keys/clients`` directory (docs/security.md)."""

    server_keys: Sequence[bytes]
    public_key: bytes
    secret_key: bytes

    @classmethod
    def from_files(cls, key_secret_file: str, *server_key_files: str) -> Curve:
        """From key files: the client's ``.key_secret`` and the servers' ``.key`` files."""
        pair = read_pair(Path(key_secret_file))
        return cls([read_public(Path(f)) for f in server_key_files], pair.public, pair.secret)

    def check(self, count: int) -> None:
        """Raise ValueError unless there is one server key for all `count` endpoints, or one for each."""
        if len(self.server_keys) not in (1, count):
            raise ValueError(f"Curve has {len(self.server_keys)} server keys for {count} endpoints")

    def options(self, index: int) -> dict[str, bytes]:
        server = self.server_keys[index] if len(self.server_keys) > 1 else self.server_keys[0]
        return {"CURVE_SERVERKEY": server, "CURVE_PUBLICKEY": self.public_key, "CURVE_SECRETKEY": self.secret_key}


def curve_for_proxy(config: ClusterConfig) -> Curve | None:
    """The CLI tools' Curve settings for `config`'s proxy (its ``client_key``), or None with security off."""
    keys, pair = config.keys(), config.client_pair()
    if keys is None or pair is None:
        return None
    return Curve([keys.proxy_public()], pair.public, pair.secret)


def curve_for_replicas(config: ClusterConfig) -> Curve | None:
    """The CLI tools' Curve settings for `config`'s replicas (their public keys in index order, and the
    ``client_key``), or None with security off: what a watcher connects with."""
    keys, pair = config.keys(), config.client_pair()
    if keys is None or pair is None:
        return None
    return Curve(list(keys.replicas), pair.public, pair.secret)


def apply_curve(socket: zmq.Socket[Any], curve: Curve | None, index: int) -> None:
    """Make `socket` a CurveZMQ client of the server behind endpoint `index` (nothing with security off)."""
    if curve is None:
        return
    for name, value in curve.options(index).items():
        socket.setsockopt(getattr(zmq, name), value)
