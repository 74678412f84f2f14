"""Transactions v2 (KIP-890 part 2) across the brokers of a three-node cluster.

The Java producer (kafka-clients 4.1) uses transactions v2 because the brokers finalize
``transaction.version`` 2: it sends no AddPartitionsToTxn or AddOffsetsToTxn. Each partition
leader adds its partition to the producer's transaction itself (AddPartitionsToTxn v5 to the
transaction coordinator when that is another broker), and the group coordinator adds the
group's ``__consumer_offsets`` partition when TxnOffsetCommit v5 arrives.

* ``test_java_transactions_v2_across_brokers``: ``OttlaTxn eos`` (consume, transform, produce
  and commit the group's offsets in one transaction; an aborted transaction in between) runs
  against three brokers whose single-replica partitions are led by all three, so most adds
  cross brokers. Afterwards the group's committed offsets (OffsetFetch by confluent-kafka) are
  the ones sent in the committed transaction, and a read_committed confluent-kafka consumer of
  the output sees each input record's output exactly once and nothing of the aborted
  transaction.
"""

from __future__ import annotations

from conftest import ck_group_offsets, run_java
from test_cluster import bootstrap, start_cluster
from test_replication import partition_state
from test_transactions import PARTS, assert_partition_lists, read_topic, wait_stable


class _Cluster:
    """What run_java needs of a broker: a bootstrap list (all three nodes)."""

    def __init__(self, nodes):
        self.bootstrap = bootstrap(nodes)


def test_java_transactions_v2_across_brokers(java_program, ottla_factory):
    nodes = start_cluster(ottla_factory, extra={"transaction.state.log.num.partitions": "6"})
    out = run_java(java_program, "OttlaTxn", _Cluster(nodes), "eos", timeout=600, heap="512m")
    lines = dict(line.split(": ", 1) for line in out.splitlines()
                 if line.startswith(("GROUP: ", "OUTPUT: ", "INPUT: ")))
    group, output = lines["GROUP"].strip(), lines["OUTPUT"].strip()
    leaders = {leader for (leader, _replicas, _isr) in partition_state(nodes[0], output).values()}
    assert len(leaders) == 3, (
        f"the output topic's partitions are led by brokers {leaders}: the test needs all three so "
        f"that partitions are added to the transaction by brokers other than its coordinator")
    bs = bootstrap(nodes)
    offsets = ck_group_offsets(bs, group)
    assert offsets == {p: 10 for p in PARTS}, (
        f"group {group}'s committed offsets (confluent-kafka OffsetFetch) {offsets}, expected the "
        f"ones sent in the committed transaction (10 per partition)")
    hw = wait_stable(bs, output)
    view = read_topic(bs, output, "read_committed", ends=hw)
    got = {p: [v for (_o, _k, v) in view[p]] for p in PARTS}
    want = {p: [f"in-{p}-{i}:out" for i in range(10)] + [f"after-{p}"] for p in PARTS}
    assert_partition_lists(got, want, f"read_committed confluent-kafka consumer of {output}")
