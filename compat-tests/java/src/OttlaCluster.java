import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.TreeSet;
import java.util.concurrent.ExecutionException;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.QuorumInfo;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.Node;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.TopicPartitionInfo;
import org.apache.kafka.common.errors.UnknownTopicOrPartitionException;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

/**
 * The Java clients against a multi-node Ottla cluster (driven by test_cluster.py):
 * {@code quorum <voters>} checks what {@code Admin.describeMetadataQuorum} (the call behind
 * {@code kafka-metadata-quorum describe --status/--replication}) and
 * {@code describeCluster} report, then creates a topic, produces to its partitions (the
 * producer follows each partition's leader) and reads every record back.
 */
public final class OttlaCluster extends Harness {
    public static void main(String[] args) {
        if (args.length == 4 && args[1].equals("observers")) {
            bootstrap = args[0];
            runAndExit(() -> observers(ids(args[2]), ids(args[3])));
            return;
        }
        if (args.length < 3 || !args[1].equals("quorum")) {
            System.err.println("usage: OttlaCluster <bootstrap> quorum <voters> | observers <voter ids> <broker ids>");
            System.exit(64);
        }
        bootstrap = args[0];
        int voters = Integer.parseInt(args[2]);
        runAndExit(() -> quorum(voters));
    }

    static Set<Integer> ids(String csv) {
        Set<Integer> out = new TreeSet<>();
        for (String s : csv.split(",")) out.add(Integer.parseInt(s.trim()));
        return out;
    }

    /**
     * Controllers and brokers on separate nodes: describeMetadataQuorum (what
     * {@code kafka-metadata-quorum describe --replication} prints) lists the controllers as
     * voters and the broker-only nodes as observers; describeCluster lists only the brokers.
     */
    static void observers(Set<Integer> voterIds, Set<Integer> brokerIds) throws Exception {
        try (Admin admin = newAdmin("ottla-cluster-observers")) {
            QuorumInfo q = await(admin.describeMetadataQuorum().quorumInfo(), "describeMetadataQuorum");
            info("quorum: leader " + q.leaderId() + ", voters " + q.voters() + ", observers " + q.observers());
            Set<Integer> voters = new TreeSet<>();
            for (QuorumInfo.ReplicaState r : q.voters()) voters.add(r.replicaId());
            checkEq(voterIds, voters, "the voters are the controllers");
            check(voterIds.contains(q.leaderId()), "a controller leads: " + q.leaderId());
            Set<Integer> observers = new TreeSet<>();
            for (QuorumInfo.ReplicaState r : q.observers()) {
                observers.add(r.replicaId());
                check(r.logEndOffset() > 0, "observer " + r.replicaId() + " has fetched metadata: " + r.logEndOffset());
            }
            checkEq(brokerIds, observers, "the observers are the broker-only nodes");
            Set<Integer> nodes = new TreeSet<>();
            for (Node n : await(admin.describeCluster().nodes(), "describeCluster")) nodes.add(n.id());
            checkEq(brokerIds, nodes, "describeCluster lists the brokers only");
        }
    }

    static void quorum(int voters) throws Exception {
        try (Admin admin = newAdmin("ottla-cluster-admin")) {
            QuorumInfo q = await(admin.describeMetadataQuorum().quorumInfo(), "describeMetadataQuorum");
            info("quorum: leader " + q.leaderId() + ", epoch " + q.leaderEpoch()
                    + ", high watermark " + q.highWatermark() + ", voters " + q.voters());
            Set<Integer> voterIds = new TreeSet<>();
            for (QuorumInfo.ReplicaState r : q.voters()) voterIds.add(r.replicaId());
            Set<Integer> expected = new TreeSet<>();
            for (int i = 1; i <= voters; i++) expected.add(i);
            checkEq(expected, voterIds, "the quorum's voters");
            check(voterIds.contains(q.leaderId()), "the leader " + q.leaderId() + " is a voter");
            check(q.leaderEpoch() >= 1, "the leader epoch is at least 1 after an election: " + q.leaderEpoch());
            check(q.highWatermark() > 0, "the metadata log has committed entries: " + q.highWatermark());
            for (QuorumInfo.ReplicaState r : q.voters()) {
                // Every voter has replicated at least the entries up to the high watermark
                // minus what is still in flight; the leader holds everything.
                if (r.replicaId() == q.leaderId()) {
                    check(r.logEndOffset() >= q.highWatermark(),
                            "the leader's log end " + r.logEndOffset() + " reaches the high watermark");
                } else {
                    check(r.logEndOffset() > 0, "voter " + r.replicaId() + " has replicated entries: " + r.logEndOffset());
                }
            }

            Collection<Node> nodes = await(admin.describeCluster().nodes(), "describeCluster");
            Set<Integer> brokerIds = new TreeSet<>();
            for (Node n : nodes) brokerIds.add(n.id());
            checkEq(expected, brokerIds, "the registered brokers");

            String topic = "cluster-java-" + RUN;
            await(admin.createTopics(List.of(new NewTopic(topic, 6, (short) 1))).all(), "createTopics");
            TopicDescription td = null;
            for (int i = 0; i < 100; i++) {
                // The broker the Admin asks may not have applied the new topic yet (as in
                // Kafka, CreateTopics answers once the controller has committed it).
                try {
                    Map<String, TopicDescription> d = admin.describeTopics(List.of(topic)).allTopicNames().get();
                    td = d.get(topic);
                    if (td != null && td.partitions().size() == 6) break;
                } catch (ExecutionException e) {
                    if (!(e.getCause() instanceof UnknownTopicOrPartitionException)) throw e;
                }
                Thread.sleep(100);
            }
            require(td != null && td.partitions().size() == 6, "the new topic is described with 6 partitions");
            Set<Integer> leaders = new HashSet<>();
            for (TopicPartitionInfo p : td.partitions()) leaders.add(p.leader().id());
            checkEq(expected, new TreeSet<>(leaders), "the partitions' leaders spread over every broker");

            int n = 600;
            Properties pp = new Properties();
            pp.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
            pp.put(ProducerConfig.ACKS_CONFIG, "all");
            pp.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
            pp.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
            try (KafkaProducer<String, String> producer = new KafkaProducer<>(pp)) {
                for (int i = 0; i < n; i++) {
                    producer.send(new ProducerRecord<>(topic, i % 6, "k" + i, "v" + i)).get();
                }
            }
            Properties cp = new Properties();
            cp.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
            cp.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
            cp.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
            cp.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
            Set<String> values = new TreeSet<>();
            try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(cp)) {
                List<TopicPartition> parts = new ArrayList<>();
                for (int p = 0; p < 6; p++) parts.add(new TopicPartition(topic, p));
                consumer.assign(parts);
                consumer.seekToBeginning(parts);
                long deadline = System.currentTimeMillis() + 60_000;
                while (values.size() < n && System.currentTimeMillis() < deadline) {
                    for (ConsumerRecord<String, String> r : consumer.poll(Duration.ofMillis(500))) {
                        check(r.value().equals("v" + r.key().substring(1)), "record " + r.key() + " holds its value");
                        check(r.partition() == Integer.parseInt(r.key().substring(1)) % 6,
                                "record " + r.key() + " is in the partition it was sent to");
                        values.add(r.value());
                    }
                }
            }
            checkEq(n, values.size(), "records read back from every partition's leader");
        }
    }
}
