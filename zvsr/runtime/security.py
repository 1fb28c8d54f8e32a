"""CurveZMQ for zvsr: key files, the two ZAP domains, and the options each socket needs.

Theory of operation
-------------------
Without a ``[security]`` section nothing here runs and traffic is plain TCP (trusted networks only). With one,
every bound socket is a CURVE *server* and every connecting socket a CURVE *client* that knows the server's
public key, so traffic is encrypted and each side proves it holds its secret key. Who may connect is decided
by ZAP (pyzmq's `ThreadAuthenticator`) per *domain*, each with its own set of public keys:

====================  ==========================  ============================================================
socket                ZAP domain                  keys admitted
====================  ==========================  ============================================================
replica peer ROUTER   ``replicas``                the replicas' (``keys/replicas/*.key``)
replica client ROUTER ``clients``                 the clients' and the proxies' (``keys/clients``, ``keys/proxy``)
replica heartbeat PUB ``heartbeats``              the replicas' and the proxies'
proxy frontend ROUTER ``clients``                 the clients'
====================  ==========================  ============================================================

So a client key cannot even connect to the replica protocol's port. Authentication is not identification:
the routing id of a peer DEALER is chosen by the peer, so a replica's key could still claim another replica's
routing id or ``replica`` field. The peer port therefore maps the *authenticated* key of each message (its
``User-Id`` property: the z85 public key) to a replica index and drops, and counts, any message whose
``replica`` field disagrees (ARCHITECTURE §4).

Pitfalls measured with pyzmq (ARCHITECTURE §4): ``configure_curve(location=CURVE_ALLOW_ANY)`` for one domain
opens every domain, and mixing the callback and directory styles disables the directories. So one style only:
a single credentials callback that looks the key up in the set of the domain it is asked about, loaded from
the key directories at start. An unknown domain admits nobody.

Key files are pyzmq's certificate format (``zmq.auth.create_certificates``): ``name.key`` holds the public key,
``name.key_secret`` both keys, written with mode 0600. `zvsr keygen` lays them out:

    keys/replicas/replica-<i>.key[_secret]   one pair per replica
    keys/proxy/proxy.key[_secret]            the proxies' pair (server to clients, client to replicas)
    keys/clients/<name>.key[_secret]         one pair per client application, and ``admin`` for the CLI tools

A host needs only its own secret file and the public ones.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

DOMAIN_REPLICAS: Final = "replicas"
DOMAIN_CLIENTS: Final = "clients"
DOMAIN_HEARTBEATS: Final = "heartbeats"
REPLICA_KEY: Final = "replica-{index}"
PROXY_KEY: Final = "proxy"
ADMIN_KEY: Final = "admin"


class SecurityError(Exception):
    """Keys missing, unreadable or inconsistent; the message names the file."""


@dataclass(frozen=True, slots=True)
class KeyPair:
    public: bytes  # z85, 40 bytes
    secret: bytes  # z85, 40 bytes


def read_public(path: Path) -> bytes:
    try:
        public, _ = zmq.auth.load_certificate(str(path))
    except (OSError, ValueError) as error:
        raise SecurityError(f"cannot read the public key {path}: {error}") from error
    return public


def read_pair(path: Path) -> KeyPair:
    """A ``.key_secret`` file: both keys. Refuses a secret file others can read."""
    try:
        mode = path.stat().st_mode
        public, secret = zmq.auth.load_certificate(str(path))
    except (OSError, ValueError) as error:
        raise SecurityError(f"cannot read the key pair {path}: {error}") from error
    if secret is None:
        raise SecurityError(f"{path} holds no secret key (use the .key_secret file)")
    if mode & 0o077:
        raise SecurityError(f"{path} is readable by others (mode {mode & 0o777:o}); chmod 600 it")
    return KeyPair(public, secret)


def generate(directory: Path, *, replicas: int, clients: Iterable[str] = ()) -> list[Path]:
    """Write the key layout above (refusing to overwrite a key); returns the files written."""
    written: list[Path] = []
    plan = [("replicas", REPLICA_KEY.format(index=i)) for i in range(replicas)]
    plan += [("proxy", PROXY_KEY), ("clients", ADMIN_KEY)]
    plan += [("clients", name) for name in clients if name != ADMIN_KEY]
    for folder, name in plan:
        if not name or "/" in name or name.startswith("."):
            raise SecurityError(f"bad key name {name!r}")
        target = directory / folder
        if (target / f"{name}.key").exists() or (target / f"{name}.key_secret").exists():
            raise SecurityError(f"{target / name}.key exists: refusing to overwrite keys")
        target.mkdir(parents=True, exist_ok=True)
        previous = os.umask(0o077)  # the secret file is never readable by others, not even for a moment
        try:
            public_file, secret_file = zmq.auth.create_certificates(str(target), name)
        finally:
            os.umask(previous)
        os.chmod(public_file, 0o644)
        os.chmod(secret_file, 0o600)
        written += [Path(public_file), Path(secret_file)]
    return written


@dataclass(slots=True)
class Keys:
    """The public keys of a cluster's key directory, and (for one process) its own pair."""

    directory: Path
    replicas: list[bytes]  # public key of replica i at index i
    proxies: set[bytes]
    clients: set[bytes]
    denied: int = 0  # connections ZAP refused (any domain)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def load(cls, directory: Path, replica_count: int) -> Keys:
        folder = directory / "replicas"
        replicas = [read_public(folder / f"{REPLICA_KEY.format(index=i)}.key") for i in range(replica_count)]
        if len(set(replicas)) != len(replicas):
            raise SecurityError(f"{directory}/replicas: two replicas share a key")
        return cls(
            directory=directory,
            replicas=replicas,
            proxies=_public_keys(directory / "proxy"),
            clients=_public_keys(directory / "clients"),
        )

    def replica_pair(self, index: int) -> KeyPair:
        pair = read_pair(self.directory / "replicas" / f"{REPLICA_KEY.format(index=index)}.key_secret")
        if pair.public != self.replicas[index]:
            raise SecurityError(f"replica {index}'s secret key does not match its public key")
        return pair

    def proxy_public(self) -> bytes:
        return read_public(self.directory / "proxy" / f"{PROXY_KEY}.key")

    def proxy_pair(self) -> KeyPair:
        return read_pair(self.directory / "proxy" / f"{PROXY_KEY}.key_secret")

    def replica_of(self, user_id: str | None) -> int | None:
        """The replica whose key authenticated a message (its ``User-Id``), or None."""
        if user_id is None:
            return None
        key = user_id.encode("ascii")
        for index, public in enumerate(self.replicas):
            if public == key:
                return index
        return None

    def admitted(self, domain: str) -> set[bytes]:
        if domain == DOMAIN_REPLICAS:
            return set(self.replicas)
        if domain == DOMAIN_CLIENTS:
            return self.clients | self.proxies
        if domain == DOMAIN_HEARTBEATS:
            return set(self.replicas) | self.proxies
        return set()

    # pyzmq's credentials-provider protocol: callback(domain, z85 key) -> bool
    def callback(self, domain: str, key: bytes) -> bool:
        allowed = key in self.admitted(domain)
        if not allowed:
            with self._lock:
                self.denied += 1
        return allowed

    def start_authenticator(self, context: zmq.Context[zmq.Socket[bytes]]) -> None:
        """Run ZAP for every CURVE server socket of `context` (one callback, every domain: see above). A context
        has one ZAP handler: nodes sharing a context (tests) share the first one's keys."""
        with _AUTHENTICATORS_LOCK:
            entry = _AUTHENTICATORS.get(id(context))
            if entry is not None:
                entry.users += 1
                return
            authenticator = ThreadAuthenticator(context)
            authenticator.start()
            # pyzmq matches the domain exactly ("*" covers only sockets without one): register each of ours.
            for domain in (DOMAIN_REPLICAS, DOMAIN_CLIENTS, DOMAIN_HEARTBEATS):
                authenticator.configure_curve_callback(domain=domain, credentials_provider=self)
            _AUTHENTICATORS[id(context)] = _Running(authenticator)

    @staticmethod
    def stop_authenticator(context: zmq.Context[zmq.Socket[bytes]]) -> None:
        with _AUTHENTICATORS_LOCK:
            entry = _AUTHENTICATORS.get(id(context))
            if entry is None:
                return
            entry.users -= 1
            if entry.users == 0:
                del _AUTHENTICATORS[id(context)]
                entry.authenticator.stop()


@dataclass(slots=True)
class _Running:
    authenticator: ThreadAuthenticator
    users: int = 1


_AUTHENTICATORS: dict[int, _Running] = {}  # id(context) -> its ZAP handler
_AUTHENTICATORS_LOCK = threading.Lock()


def _public_keys(folder: Path) -> set[bytes]:
    if not folder.is_dir():
        return set()
    return {read_public(path) for path in sorted(folder.glob("*.key"))}


def server_options(pair: KeyPair, domain: str) -> dict[str, int | bytes]:
    """Options of a bound socket (before bind)."""
    return {
        "CURVE_SERVER": 1,
        "CURVE_PUBLICKEY": pair.public,
        "CURVE_SECRETKEY": pair.secret,
        "ZAP_DOMAIN": domain.encode(),
    }


def client_options(pair: KeyPair, server_public: bytes) -> dict[str, int | bytes]:
    """Options of a connecting socket (before connect)."""
    return {
        "CURVE_SERVERKEY": server_public,
        "CURVE_PUBLICKEY": pair.public,
        "CURVE_SECRETKEY": pair.secret,
    }
