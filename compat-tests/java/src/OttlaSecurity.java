import java.io.FileInputStream;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.TreeMap;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.CommonClientConfigs;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.ScramCredentialInfo;
import org.apache.kafka.clients.admin.ScramMechanism;
import org.apache.kafka.clients.admin.UserScramCredentialDeletion;
import org.apache.kafka.clients.admin.UserScramCredentialUpsertion;
import org.apache.kafka.clients.admin.UserScramCredentialsDescription;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.Node;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.ResourceNotFoundException;
import org.apache.kafka.common.errors.SaslAuthenticationException;
import org.apache.kafka.common.errors.UnacceptableCredentialException;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;

/**
 * The Java client over a secured listener (TLS and/or SASL): the security settings come from
 * a properties file (security.protocol, ssl.truststore.type=PEM, ssl.truststore.location,
 * sasl.mechanism, sasl.jaas.config, ...) that is added to every client's configuration.
 *
 * <pre>
 * Usage: OttlaSecurity &lt;bootstrap&gt; &lt;client.properties&gt; data &lt;topic&gt; &lt;records&gt;
 *        OttlaSecurity &lt;bootstrap&gt; &lt;client.properties&gt; bad-login [&lt;expected message&gt;]
 *        OttlaSecurity &lt;bootstrap&gt; &lt;client.properties&gt; scram-admin &lt;user&gt; &lt;password&gt; &lt;iterations&gt;
 * </pre>
 *
 * {@code data}: describeCluster lists exactly this broker at the bootstrap address (the
 * listener the client came in on); createTopics makes a 2-partition topic; an idempotent
 * KafkaProducer (acks=all) sends the records (key, value, a header, explicit timestamp); a
 * KafkaConsumer without a group (assign + seekToBeginning) reads them all back and every field
 * is compared with what was acknowledged at that partition and offset.
 * {@code bad-login}: describeCluster fails with SaslAuthenticationException carrying the
 * broker's message: the given one, by default PLAIN's "Authentication failed: Invalid username or
 * password".
 * {@code scram-admin}: the Admin client, logged in with the properties' credentials, creates (or
 * replaces) the user's SCRAM-SHA-512 credential with alterUserScramCredentials;
 * describeUserScramCredentials then lists exactly [SCRAM-SHA-512 with those iterations] for the
 * user, describing everyone lists the user too; a user without credentials is described with
 * ResourceNotFoundException "Attempt to describe a user credential that does not exist...",
 * 1000 iterations are refused with UnacceptableCredentialException "Iterations 1000 is less than
 * the minimum 4096 for SCRAM-SHA-512", and deleting a credential that does not exist fails with
 * ResourceNotFoundException "Attempt to delete a user credential that does not exist".
 * Exit status as in Harness. Driven by compat-tests/test_security.py and test_scram.py.
 */
public final class OttlaSecurity extends Harness {
    static final Properties SECURITY = new Properties();

    public static void main(String[] args) {
        if (args.length < 3) {
            System.err.println("usage: OttlaSecurity <bootstrap> <client.properties> data <topic> <records>"
                    + " | bad-login [<expected message>] | scram-admin <user> <password> <iterations>");
            System.exit(64);
        }
        bootstrap = args[0];
        runAndExit(() -> {
            try (InputStream in = new FileInputStream(args[1])) {
                SECURITY.load(in);
            }
            switch (args[2]) {
                case "data":
                    data(args[3], Integer.parseInt(args[4]));
                    break;
                case "bad-login":
                    badLogin(args.length > 3 ? args[3] : "Authentication failed: Invalid username or password");
                    break;
                case "scram-admin":
                    scramAdmin(args[3], args[4], Integer.parseInt(args[5]));
                    break;
                default:
                    throw new IllegalArgumentException("unknown mode " + args[2]);
            }
        });
    }

    static Properties base(String clientId) {
        Properties p = new Properties();
        p.put(CommonClientConfigs.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(CommonClientConfigs.CLIENT_ID_CONFIG, clientId);
        p.putAll(SECURITY);
        return p;
    }

    static Admin admin() {
        Properties p = base("ottla-security-admin");
        p.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, 30_000);
        p.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, 60_000);
        return Admin.create(p);
    }

    static String hostOf(String hostPort) {
        return hostPort.substring(0, hostPort.lastIndexOf(':'));
    }

    static int portOf(String hostPort) {
        return Integer.parseInt(hostPort.substring(hostPort.lastIndexOf(':') + 1));
    }

    static String value(int i) {
        StringBuilder b = new StringBuilder("java-security-v" + i + ":");
        for (int j = 0; j < i % 50; j++) b.append((char) ('a' + (i + j) % 26));
        return b.toString();
    }

    static void data(String topic, int n) throws Exception {
        long baseTs = System.currentTimeMillis() - 60_000;
        try (Admin admin = admin()) {
            Collection<Node> nodes = await(admin.describeCluster().nodes(), "describeCluster.nodes");
            checkEq(1, nodes.size(), "describeCluster node count");
            for (Node node : nodes) {
                checkEq(hostOf(bootstrap) + ":" + portOf(bootstrap), node.host() + ":" + node.port(),
                        "describeCluster: the broker's address on the listener the client used");
            }
            await(admin.createTopics(List.of(new NewTopic(topic, 2, (short) 1))).all(), "createTopics " + topic);
            require(waitUntil(30_000, () -> {
                try {
                    return admin.describeTopics(List.of(topic)).allTopicNames().get(10, TimeUnit.SECONDS)
                            .get(topic).partitions().stream().allMatch(p -> p.leader() != null);
                } catch (Exception e) {
                    return false;
                }
            }), "topic " + topic + " has leaders within 30 s");
        }

        // partition -> offset -> index of the record acknowledged there
        Map<Integer, TreeMap<Long, Integer>> acked = new TreeMap<>();
        Properties pp = base("ottla-security-producer");
        pp.put(ProducerConfig.ACKS_CONFIG, "all");
        pp.put(ProducerConfig.LINGER_MS_CONFIG, 5);
        pp.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        pp.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        try (KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(pp)) {
            List<Future<RecordMetadata>> futures = new ArrayList<>();
            for (int i = 0; i < n; i++) {
                ProducerRecord<byte[], byte[]> r = new ProducerRecord<>(topic, i % 2, baseTs + i,
                        ("k" + i).getBytes(StandardCharsets.UTF_8), value(i).getBytes(StandardCharsets.UTF_8));
                r.headers().add("h", ("h" + i).getBytes(StandardCharsets.UTF_8));
                futures.add(producer.send(r));
            }
            producer.flush();
            for (int i = 0; i < n; i++) {
                RecordMetadata md;
                try {
                    md = futures.get(i).get(CALL_TIMEOUT_S, TimeUnit.SECONDS);
                } catch (ExecutionException e) {
                    throw new AssertionError("send of record " + i + " failed: " + e.getCause(), e.getCause());
                }
                acked.computeIfAbsent(md.partition(), k -> new TreeMap<>()).put(md.offset(), i);
            }
        }
        for (Map.Entry<Integer, TreeMap<Long, Integer>> e : acked.entrySet()) {
            checkEq(0L, e.getValue().firstKey(), "partition " + e.getKey() + ": first acknowledged offset");
            checkEq((long) e.getValue().size() - 1, e.getValue().lastKey(),
                    "partition " + e.getKey() + ": last acknowledged offset (dense offsets)");
        }
        info("produced " + n + " records to " + topic);

        Properties cp = base("ottla-security-consumer");
        cp.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, false);
        cp.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "none");
        cp.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        cp.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        int got = 0;
        try (KafkaConsumer<byte[], byte[]> consumer = new KafkaConsumer<>(cp)) {
            List<TopicPartition> tps = List.of(new TopicPartition(topic, 0), new TopicPartition(topic, 1));
            consumer.assign(tps);
            consumer.seekToBeginning(tps);
            long deadline = System.currentTimeMillis() + 60_000;
            while (got < n) {
                require(System.currentTimeMillis() < deadline, "consumed only " + got + " of " + n + " records in 60 s");
                for (ConsumerRecord<byte[], byte[]> r : consumer.poll(Duration.ofMillis(500))) {
                    got++;
                    Integer i = acked.getOrDefault(r.partition(), new TreeMap<>()).get(r.offset());
                    if (!check(i != null, "consumed an offset never acknowledged: " + r.partition() + "@" + r.offset())) {
                        continue;
                    }
                    String where = "record " + i + " at " + r.partition() + "@" + r.offset();
                    checkEq("k" + i, new String(r.key(), StandardCharsets.UTF_8), where + " key");
                    checkEq(value(i), new String(r.value(), StandardCharsets.UTF_8), where + " value");
                    checkEq(baseTs + i, r.timestamp(), where + " timestamp");
                    List<String> hs = new ArrayList<>();
                    for (Header h : r.headers()) hs.add(h.key() + "=" + new String(h.value(), StandardCharsets.UTF_8));
                    checkEq(List.of("h=h" + i), hs, where + " headers");
                }
            }
        }
        checkEq(n, got, "records consumed");
        info("consumed " + got + " records from " + topic);
    }

    static void badLogin(String expected) throws Exception {
        try (Admin admin = admin()) {
            Throwable t = failureOf(admin.describeCluster().nodes());
            check(t instanceof SaslAuthenticationException,
                    "describeCluster with a wrong password: expected SaslAuthenticationException, got "
                            + (t == null ? "success" : t.getClass().getName() + ": " + t.getMessage()));
            if (t != null) {
                check(String.valueOf(t.getMessage()).contains(expected),
                        "the authentication error carries the broker's message, got: " + t.getMessage());
                info("AUTH ERROR: " + t.getClass().getSimpleName() + ": " + t.getMessage());
            }
        }
    }

    static String describeInfos(UserScramCredentialsDescription d) {
        List<String> infos = new ArrayList<>();
        for (ScramCredentialInfo ci : d.credentialInfos()) infos.add(ci.mechanism().mechanismName() + "=" + ci.iterations());
        infos.sort(null);
        return infos.toString();
    }

    static void scramAdmin(String user, String password, int iterations) throws Exception {
        String ghost = "java-ghost-" + RUN;
        try (Admin admin = admin()) {
            await(admin.alterUserScramCredentials(List.of(new UserScramCredentialUpsertion(user,
                    new ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, iterations), password))).all(),
                    "alterUserScramCredentials: upsert SCRAM-SHA-512 for " + user);
            UserScramCredentialsDescription d = await(
                    admin.describeUserScramCredentials(List.of(user)).description(user),
                    "describeUserScramCredentials([" + user + "])");
            checkEq(user, d.name(), "describeUserScramCredentials: the user described");
            checkEq("[SCRAM-SHA-512=" + iterations + "]", describeInfos(d),
                    "describeUserScramCredentials: " + user + "'s mechanisms and iterations");
            info("SCRAM USER " + user + " " + describeInfos(d));

            Map<String, UserScramCredentialsDescription> all = await(admin.describeUserScramCredentials().all(),
                    "describeUserScramCredentials() (every user)");
            check(all.containsKey(user), "describeUserScramCredentials() lists " + user + ": " + all.keySet());
            if (all.containsKey(user)) {
                checkEq("[SCRAM-SHA-512=" + iterations + "]", describeInfos(all.get(user)),
                        "describeUserScramCredentials(): " + user + "'s mechanisms and iterations");
            }
            check(!all.containsKey(ghost), "describeUserScramCredentials() lists a user never created: " + ghost);

            Throwable t = failureOf(admin.describeUserScramCredentials(List.of(ghost)).description(ghost));
            check(t instanceof ResourceNotFoundException
                            && String.valueOf(t.getMessage()).startsWith("Attempt to describe a user credential that does not exist"),
                    "describeUserScramCredentials of a user without credentials: expected ResourceNotFoundException "
                            + "\"Attempt to describe a user credential that does not exist...\", got " + describe(t));

            t = failureOf(admin.alterUserScramCredentials(List.of(new UserScramCredentialUpsertion(ghost,
                    new ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 1000), "ghost-password"))).all());
            check(t instanceof UnacceptableCredentialException
                            && "Iterations 1000 is less than the minimum 4096 for SCRAM-SHA-512".equals(t.getMessage()),
                    "alterUserScramCredentials with 1000 iterations: expected UnacceptableCredentialException "
                            + "\"Iterations 1000 is less than the minimum 4096 for SCRAM-SHA-512\", got " + describe(t));

            t = failureOf(admin.alterUserScramCredentials(List.of(
                    new UserScramCredentialDeletion(ghost, ScramMechanism.SCRAM_SHA_256))).all());
            check(t instanceof ResourceNotFoundException
                            && "Attempt to delete a user credential that does not exist".equals(t.getMessage()),
                    "alterUserScramCredentials deleting a credential that does not exist: expected "
                            + "ResourceNotFoundException \"Attempt to delete a user credential that does not exist\", got "
                            + describe(t));

            // Neither failed alteration created anything.
            t = failureOf(admin.describeUserScramCredentials(List.of(ghost)).description(ghost));
            check(t instanceof ResourceNotFoundException,
                    "after the refused alterations " + ghost + " has no credentials: got " + describe(t));
        }
    }

    static String describe(Throwable t) {
        return t == null ? "success" : t.getClass().getName() + ": " + t.getMessage();
    }
}
