"""A second hole in VR Revisited's state transfer (§5.2), beyond the last_normal_view one.

The paper has a replica that learns of a newer view from a Prepare or Commit truncate its log to its
commit_number before fetching the new view's log. The ops it drops may include one that was committed in an
older view with *its own* PrepareOk, by a primary whose commit it never heard of. If it then joins a view
change with the primary that holds the op cut off, a quorum can form in which nobody has the op any more.
zvsr keeps the old log (and its old last_normal_view) until the whole new log has arrived.
"""

from __future__ import annotations

import pytest

from zvsr.protocol.messages import Prepare, Reply, StartView
from zvsr.protocol.replica import Replica, Status
from zvsr.sim.harness import Cluster, InFlight


def is_prepare(item: InFlight) -> bool:
    return isinstance(item.message, Prepare)


def is_start_view(item: InFlight) -> bool:
    return isinstance(item.message, StartView)


def build_scenario() -> tuple[Cluster, Replica]:
    """Five replicas. Returns the cluster and the primary of the last view change."""
    cluster = Cluster(5)
    # View 0: primary 0 prepares op 1; only replicas 1 and 2 get it. With their acks it commits and the client
    # is answered, but nobody else learns of the commit.
    cluster.request(client_id=1, request_number=1, op=b"acknowledged")
    cluster.deliver(lambda m: is_prepare(m) and m.to in (1, 2))
    cluster.drop(is_prepare)
    cluster.deliver_all()
    assert cluster.replicas[0].commit_number == 1
    assert any(isinstance(r, Reply) and r.client_id == 1 for r in cluster.replies)
    assert cluster.replicas[2].commit_number == 0

    # Replica 0 is cut off, replica 4 too; 1, 2 and 3 change to view 1 but every StartView is lost.
    cluster.partition({0}, {1, 2, 3, 4})
    cluster.partition({4}, {0, 1, 2, 3})
    for _ in range(300):
        cluster.tick(only={1, 2, 3})
        cluster.drop(is_start_view)
        while cluster.deliver(lambda m: not is_start_view(m)):
            cluster.drop(is_start_view)
        if cluster.replicas[1].status is Status.NORMAL and cluster.replicas[1].view_number == 1:
            break
    cluster.drop(is_start_view)
    assert cluster.replicas[1].is_primary() and cluster.replicas[1].view_number == 1
    assert cluster.replicas[2].status is Status.VIEW_CHANGE

    # Primary 1 prepares op 2 of view 1; 2, 3 and 4 learn of view 1 from that Prepare (rule 3) ...
    cluster.heal()
    cluster.partition({0}, {1, 2, 3, 4})
    cluster.request(client_id=2, request_number=1, op=b"later", to=1)
    cluster.deliver(is_prepare)
    assert all(cluster.replicas[i].state_transfer for i in (2, 3, 4))
    # ... and before any NewState arrives, 0 and 1 are cut off: 2, 3 and 4 change view without them.
    cluster.drop(lambda m: True)
    cluster.heal()
    cluster.partition({0, 1}, {2, 3, 4})

    def new_view_started() -> bool:
        survivors = cluster.replicas[2:]
        return any(r.status is Status.NORMAL and r.is_primary() and r.view_number >= 2 for r in survivors)

    cluster.run_until(new_view_started)
    primary = next(r for r in cluster.replicas[2:] if r.status is Status.NORMAL and r.is_primary())
    return cluster, primary


def test_state_transfer_keeps_an_op_committed_with_our_ack() -> None:
    _, primary = build_scenario()
    assert [entry.operation for entry in primary.log[:1]] == [b"acknowledged"]


def test_the_paper_truncation_is_caught_by_this_scenario(monkeypatch: pytest.MonkeyPatch) -> None:
    """Mutation check: truncating at the start of a state transfer (the paper's text) loses the op."""
    original = Replica._start_state_transfer

    def truncating(self: Replica, view: int) -> None:
        original(self, view)
        del self.log[self.commit_number :]
        self.op_number = self.commit_number

    monkeypatch.setattr(Replica, "_start_state_transfer", truncating)
    _, primary = build_scenario()
    assert all(entry.operation != b"acknowledged" for entry in primary.log)
