import java.util.Collection;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.TreeSet;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AlterConfigOp;
import org.apache.kafka.clients.admin.Config;
import org.apache.kafka.clients.admin.ConfigEntry;
import org.apache.kafka.clients.admin.NewPartitionReassignment;
import org.apache.kafka.clients.admin.PartitionReassignment;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.common.Node;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.TopicPartitionInfo;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.errors.InvalidReplicaAssignmentException;
import org.apache.kafka.common.errors.NoReassignmentInProgressException;
import org.apache.kafka.common.errors.UnknownTopicOrPartitionException;

/**
 * Partition reassignment through the Java Admin, the calls {@code kafka-reassign-partitions}
 * makes ({@code --execute}: alterPartitionReassignments, {@code --verify}/{@code --list}:
 * listPartitionReassignments, {@code --cancel}: an empty target). Driven by
 * test_reassignment.py, which creates {@code <topic>} with three partitions on brokers
 * [1,2], [2,1], [1,2] of a four-node cluster and fills them; this program throttles
 * replication as {@code kafka-reassign-partitions --throttle} does (incrementalAlterConfigs on
 * the brokers and the topic), so that a move takes seconds:
 * <ul>
 * <li>bad requests get Kafka's errors and change nothing;</li>
 * <li>partition 0 moves to [3,4] (both replicas replaced, the leader too); while it runs,
 *     listPartitionReassignments reports the merged replicas and what is added and removed;</li>
 * <li>partition 1's move to [2,4] is cancelled and it is back on [2,1];</li>
 * <li>once the list is empty, describeTopics shows the new replica sets, fully in sync.</li>
 * </ul>
 */
public final class OttlaReassign extends Harness {
    public static void main(String[] args) {
        if (args.length < 2) {
            System.err.println("usage: OttlaReassign <bootstrap> <topic>");
            System.exit(64);
        }
        bootstrap = args[0];
        runAndExit(() -> reassign(args[1]));
    }

    static Optional<NewPartitionReassignment> to(Integer... replicas) {
        return Optional.of(new NewPartitionReassignment(List.of(replicas)));
    }

    static void reassign(String topic) throws Exception {
        TopicPartition p0 = new TopicPartition(topic, 0);
        TopicPartition p1 = new TopicPartition(topic, 1);
        TopicPartition p2 = new TopicPartition(topic, 2);
        try (Admin admin = newAdmin("ottla-reassign-admin")) {
            expectFailure(admin.alterPartitionReassignments(Map.of(p2, to(1, 9))).values().get(p2),
                    InvalidReplicaAssignmentException.class, "a target naming an unregistered broker");
            expectFailure(admin.alterPartitionReassignments(Map.of(p2, to(1, 1))).values().get(p2),
                    InvalidReplicaAssignmentException.class, "a target naming a broker twice");
            expectFailure(admin.alterPartitionReassignments(Map.of(p2, Optional.empty())).values().get(p2),
                    NoReassignmentInProgressException.class, "cancelling what is not reassigning");
            TopicPartition missing = new TopicPartition(topic + "-missing", 0);
            expectFailure(admin.alterPartitionReassignments(Map.of(missing, to(1, 2))).values().get(missing),
                    UnknownTopicOrPartitionException.class, "an unknown topic");
            checkEq(Map.of(), await(admin.listPartitionReassignments().reassignments(), "list"),
                    "nothing is reassigning after refused requests");

            // What kafka-reassign-partitions --execute --throttle sets first: a rate on
            // every broker involved, and the replicas to throttle on the topic (leaders:
            // the current replicas of the moving partitions; followers: the new ones).
            throttle(admin, topic, AlterConfigOp.OpType.SET);
            Config t = await(admin.describeConfigs(List.of(topicResource(topic))).all(), "describe the topic")
                    .get(topicResource(topic));
            checkEq("0:1,0:2,1:2,1:1", t.get("leader.replication.throttled.replicas").value(),
                    "the topic's leader throttled replicas");
            checkEq(ConfigEntry.ConfigSource.DYNAMIC_TOPIC_CONFIG,
                    t.get("leader.replication.throttled.replicas").source(), "set dynamically");

            await(admin.alterPartitionReassignments(Map.of(p0, to(3, 4), p1, to(2, 4))).all(),
                    "alterPartitionReassignments");
            Map<TopicPartition, PartitionReassignment> ongoing =
                    await(admin.listPartitionReassignments().reassignments(), "listPartitionReassignments");
            info("ongoing: " + ongoing);
            PartitionReassignment r0 = ongoing.get(p0);
            if (check(r0 != null, "partition 0 is reassigning (replication is throttled)")) {
                checkEq(List.of(3, 4, 1, 2), r0.replicas(), "partition 0's replicas: target, then leaving");
                checkEq(List.of(3, 4), r0.addingReplicas(), "partition 0's adding replicas");
                checkEq(List.of(1, 2), r0.removingReplicas(), "partition 0's removing replicas");
            }
            PartitionReassignment r1 = ongoing.get(p1);
            if (check(r1 != null, "partition 1 is reassigning")) {
                checkEq(List.of(2, 4, 1), r1.replicas(), "partition 1's replicas");
                checkEq(List.of(4), r1.addingReplicas(), "partition 1's adding replicas");
                checkEq(List.of(1), r1.removingReplicas(), "partition 1's removing replicas");
            }
            checkEq(Set.of(p0), await(admin.listPartitionReassignments(Set.of(p0, p2)).reassignments(),
                    "listPartitionReassignments(p0, p2)").keySet(), "a filtered list names only p0");
            // Brokers apply committed metadata asynchronously, as Kafka's do: the broker
            // the Admin asks may be a moment behind the controller that answered above.
            List<Integer> merged = List.of(3, 4, 1, 2);
            waitUntil(10_000, () -> {
                try {
                    return ids(describe(admin, topic).partitions().get(0).replicas()).equals(merged);
                } catch (Exception e) {
                    return false;
                }
            });
            TopicDescription during = describe(admin, topic);
            checkEq(merged, ids(during.partitions().get(0).replicas()),
                    "Metadata reports the merged replica list while moving");

            await(admin.alterPartitionReassignments(Map.of(p1, Optional.empty())).all(), "cancel partition 1");
            checkEq(Set.of(), await(admin.listPartitionReassignments(Set.of(p1)).reassignments(), "list p1")
                    .keySet(), "partition 1 is no longer reassigning");

            long started = System.currentTimeMillis();
            boolean done = waitUntil(240_000, () -> {
                try {
                    Map<TopicPartition, PartitionReassignment> now =
                            admin.listPartitionReassignments().reassignments().get();
                    return now.isEmpty();
                } catch (Exception e) {
                    return false;
                }
            });
            require(done, "the reassignment of partition 0 completes");
            info("partition 0 moved in " + (System.currentTimeMillis() - started) + " ms after the cancel");

            TopicDescription after = describe(admin, topic);
            TopicPartitionInfo a0 = after.partitions().get(0);
            TopicPartitionInfo a1 = after.partitions().get(1);
            TopicPartitionInfo a2 = after.partitions().get(2);
            checkEq(List.of(3, 4), ids(a0.replicas()), "partition 0 ends on [3, 4]");
            checkEq(new TreeSet<>(List.of(3, 4)), new TreeSet<>(ids(a0.isr())), "partition 0's ISR");
            check(a0.leader() != null && (a0.leader().id() == 3 || a0.leader().id() == 4),
                    "partition 0 is led by a new replica: " + a0.leader());
            checkEq(List.of(2, 1), ids(a1.replicas()), "partition 1 is back on [2, 1]");
            checkEq(List.of(1, 2), ids(a2.replicas()), "partition 2 never moved");

            // kafka-reassign-partitions --verify removes the throttles once done.
            throttle(admin, topic, AlterConfigOp.OpType.DELETE);
            ConfigResource b1 = new ConfigResource(ConfigResource.Type.BROKER, "1");
            ConfigEntry rate = await(admin.describeConfigs(List.of(b1)).all(), "describe broker 1")
                    .get(b1).get("leader.replication.throttled.rate");
            checkEq(ConfigEntry.ConfigSource.DEFAULT_CONFIG, rate.source(), "the broker throttle is gone");
        }
    }

    static final String RATE = "150000";

    static ConfigResource topicResource(String topic) {
        return new ConfigResource(ConfigResource.Type.TOPIC, topic);
    }

    static void throttle(Admin admin, String topic, AlterConfigOp.OpType op) throws Exception {
        Map<ConfigResource, Collection<AlterConfigOp>> changes = new HashMap<>();
        for (int b = 1; b <= 4; b++) {
            changes.put(new ConfigResource(ConfigResource.Type.BROKER, Integer.toString(b)), List.of(
                    new AlterConfigOp(new ConfigEntry("leader.replication.throttled.rate", RATE), op),
                    new AlterConfigOp(new ConfigEntry("follower.replication.throttled.rate", RATE), op)));
        }
        changes.put(topicResource(topic), List.of(
                new AlterConfigOp(new ConfigEntry("leader.replication.throttled.replicas", "0:1,0:2,1:2,1:1"), op),
                new AlterConfigOp(new ConfigEntry("follower.replication.throttled.replicas", "0:3,0:4,1:4"), op)));
        await(admin.incrementalAlterConfigs(changes).all(), "incrementalAlterConfigs " + op);
    }

    static TopicDescription describe(Admin admin, String topic) throws Exception {
        return await(admin.describeTopics(List.of(topic)).allTopicNames(), "describeTopics").get(topic);
    }

    static List<Integer> ids(List<Node> nodes) {
        return nodes.stream().map(Node::id).toList();
    }
}
