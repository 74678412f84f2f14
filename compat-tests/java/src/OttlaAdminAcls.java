import java.io.FileInputStream;
import java.io.InputStream;
import java.util.ArrayList;
import java.util.Collection;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Properties;
import java.util.Set;
import java.util.TreeSet;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.CommonClientConfigs;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.LogDirDescription;
import org.apache.kafka.clients.admin.NewPartitionReassignment;
import org.apache.kafka.clients.admin.PartitionReassignment;
import org.apache.kafka.clients.admin.QuorumInfo;
import org.apache.kafka.clients.admin.ScramCredentialInfo;
import org.apache.kafka.clients.admin.ScramMechanism;
import org.apache.kafka.clients.admin.TransactionDescription;
import org.apache.kafka.clients.admin.TransactionListing;
import org.apache.kafka.clients.admin.UserScramCredentialUpsertion;
import org.apache.kafka.clients.admin.UserScramCredentialsDescription;
import org.apache.kafka.common.ElectionType;
import org.apache.kafka.common.KafkaFuture;
import org.apache.kafka.common.Node;
import org.apache.kafka.common.TopicPartition;

/**
 * The Java Admin client's cluster-level calls as a principal that is no super user, against
 * a broker with {@code authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer}:
 * what kafka-log-dirs, kafka-metadata-quorum, kafka-reassign-partitions, kafka-configs
 * (SCRAM), kafka-leader-election and kafka-transactions send.
 *
 * <pre>
 * Usage: OttlaAdminAcls &lt;bootstrap&gt; &lt;client.properties&gt; &lt;topic&gt; &lt;transactional id&gt; &lt;scram user&gt; &lt;call,call,...&gt;
 * </pre>
 *
 * The properties file holds the principal's security settings (security.protocol,
 * sasl.mechanism, sasl.jaas.config). Each call named in the last argument is made once, in
 * order; calls: describeLogDirs, describeMetadataQuorum, listPartitionReassignments,
 * describeUserScramCredentials, electLeaders (preferred, partition 0 of the topic),
 * alterPartitionReassignments (partition 0 of the topic onto its current replicas),
 * alterUserScramCredentials (an upsertion for the SCRAM user), listTransactions,
 * describeTransactions (the transactional id). Each prints one line
 * {@code <call>=ok <details>} or {@code <call>=<simple name of the exception>} (then a
 * {@code <call>.message=...} line); compat-tests/test_acls.py asserts on those lines. The
 * program itself exits 0 whatever the calls answered (2 if it could not run).
 */
public final class OttlaAdminAcls extends Harness {
    static final Properties SECURITY = new Properties();
    static final long TIMEOUT_S = 30;

    public static void main(String[] args) {
        if (args.length < 6) {
            System.err.println("usage: OttlaAdminAcls <bootstrap> <client.properties> <topic> <transactional id> "
                    + "<scram user> <call,call,...>");
            System.exit(64);
        }
        bootstrap = args[0];
        runAndExit(() -> {
            try (InputStream in = new FileInputStream(args[1])) {
                SECURITY.load(in);
            }
            run(args[2], args[3], args[4], args[5].split(","));
        });
    }

    static Admin admin() {
        Properties p = new Properties();
        p.put(CommonClientConfigs.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(CommonClientConfigs.CLIENT_ID_CONFIG, "ottla-admin-acls");
        p.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, 15_000);
        p.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, 25_000);
        p.putAll(SECURITY);
        return Admin.create(p);
    }

    interface Call {
        String run() throws Exception;
    }

    static <T> T get(KafkaFuture<T> f) throws Exception {
        return f.get(TIMEOUT_S, TimeUnit.SECONDS);
    }

    /** Prints {@code name=ok details} or {@code name=ExceptionName} (+ its message). */
    static void report(String name, Call call) {
        try {
            String details = call.run();
            info(name + "=ok" + (details.isEmpty() ? "" : " " + details));
        } catch (Throwable t) {
            Throwable cause = t instanceof ExecutionException && t.getCause() != null ? t.getCause() : t;
            info(name + "=" + cause.getClass().getSimpleName());
            info(name + ".message=" + String.valueOf(cause.getMessage()).replace('\n', ' '));
        }
    }

    static String simpleName(Optional<Throwable> t) {
        return t.map(e -> e.getClass().getSimpleName()).orElse("none");
    }

    static void run(String topic, String txnId, String scramUser, String[] calls) throws Exception {
        TopicPartition tp = new TopicPartition(topic, 0);
        try (Admin admin = admin()) {
            List<Integer> brokers = new ArrayList<>();
            for (Node n : get(admin.describeCluster().nodes())) brokers.add(n.id());
            require(!brokers.isEmpty(), "describeCluster listed no brokers");
            for (String call : calls) {
                switch (call) {
                    case "describeLogDirs" -> report(call, () -> {
                        Map<Integer, Map<String, LogDirDescription>> all =
                                get(admin.describeLogDirs(brokers).allDescriptions());
                        int dirs = 0;
                        for (Map<String, LogDirDescription> perBroker : all.values()) dirs += perBroker.size();
                        return "brokers=" + all.size() + " dirs=" + dirs;
                    });
                    case "describeMetadataQuorum" -> report(call, () -> {
                        QuorumInfo q = get(admin.describeMetadataQuorum().quorumInfo());
                        return "leader=" + q.leaderId() + " voters=" + q.voters().size();
                    });
                    case "listPartitionReassignments" -> report(call, () -> {
                        Map<TopicPartition, PartitionReassignment> r =
                                get(admin.listPartitionReassignments().reassignments());
                        return "count=" + r.size();
                    });
                    case "describeUserScramCredentials" -> report(call, () -> {
                        Map<String, UserScramCredentialsDescription> d =
                                get(admin.describeUserScramCredentials().all());
                        return "users=" + new TreeSet<>(d.keySet());
                    });
                    case "electLeaders" -> report(call, () -> {
                        Map<TopicPartition, Optional<Throwable>> r =
                                get(admin.electLeaders(ElectionType.PREFERRED, Set.of(tp)).partitions());
                        return "partition=" + (r.containsKey(tp) ? simpleName(r.get(tp)) : "absent");
                    });
                    case "alterPartitionReassignments" -> report(call, () -> {
                        get(admin.alterPartitionReassignments(
                                Map.of(tp, Optional.of(new NewPartitionReassignment(List.copyOf(brokers.subList(0, 1))))))
                                .all());
                        return "";
                    });
                    case "alterUserScramCredentials" -> report(call, () -> {
                        get(admin.alterUserScramCredentials(List.of(new UserScramCredentialUpsertion(scramUser,
                                new ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 4096), scramUser + "-secret")))
                                .all());
                        return "";
                    });
                    case "listTransactions" -> report(call, () -> {
                        Collection<TransactionListing> l = get(admin.listTransactions().all());
                        TreeSet<String> ids = new TreeSet<>();
                        for (TransactionListing t : l) ids.add(t.transactionalId());
                        return "ids=" + ids;
                    });
                    case "describeTransactions" -> report(call, () -> {
                        TransactionDescription d = get(admin.describeTransactions(List.of(txnId)).description(txnId));
                        return "state=" + d.state();
                    });
                    default -> throw new IllegalArgumentException("unknown call " + call);
                }
            }
        }
    }
}
