import java.io.FileInputStream;
import java.io.InputStream;
import java.util.ArrayList;
import java.util.Collection;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;

import org.apache.kafka.clients.CommonClientConfigs;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.CreateAclsResult;
import org.apache.kafka.common.KafkaFuture;
import org.apache.kafka.common.acl.AccessControlEntry;
import org.apache.kafka.common.acl.AccessControlEntryFilter;
import org.apache.kafka.common.acl.AclBinding;
import org.apache.kafka.common.acl.AclBindingFilter;
import org.apache.kafka.common.acl.AclOperation;
import org.apache.kafka.common.acl.AclPermissionType;
import org.apache.kafka.common.errors.ClusterAuthorizationException;
import org.apache.kafka.common.errors.InvalidRequestException;
import org.apache.kafka.common.resource.PatternType;
import org.apache.kafka.common.resource.ResourcePattern;
import org.apache.kafka.common.resource.ResourcePatternFilter;
import org.apache.kafka.common.resource.ResourceType;

/**
 * The Java Admin client's ACL calls (what kafka-acls.sh does) against a broker with
 * {@code authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer}, no
 * ACLs yet, and a super user to log in as.
 *
 * <pre>
 * Usage: OttlaAcls &lt;bootstrap&gt; &lt;admin.properties&gt; &lt;alice.properties&gt; &lt;tag&gt;
 * </pre>
 *
 * The properties files hold each principal's security settings (security.protocol,
 * sasl.mechanism, sasl.jaas.config). As the super user: createAcls of six bindings (topic
 * {@code java-acl-<tag>} READ for alice, PREFIXED {@code java-acl-} WRITE for alice, group
 * {@code java-group-<tag>} READ for alice, a DENY DESCRIBE on the topic for bob from host
 * 127.0.0.1, CLUSTER DESCRIBE for bob, transactional id {@code java-txn-<tag>} WRITE for alice);
 * describeAcls with {@link AclBindingFilter#ANY}, with a principal + resource-type filter and with
 * a MATCH filter on the topic's name; invalid creations (empty resource name, a principal without a
 * colon, a CLUSTER not named kafka-cluster) fail with InvalidRequestException while a valid
 * binding in the same call is created; as alice (not a super user) createAcls, describeAcls and
 * deleteAcls fail with ClusterAuthorizationException; deleteAcls of alice's bindings returns
 * them, describeAcls lists the rest, deleteAcls(ANY) removes the rest and describeAcls lists none.
 *
 * Each listing prints {@code <NAME> <count>} and one {@code <NAME>-ACL <binding>} line per
 * binding, a binding written as {@code TYPE:PATTERN:name principal host OPERATION PERMISSION};
 * compat-tests/test_acls.py asserts on those lines. Exit status as in Harness.
 */
public final class OttlaAcls extends Harness {
    static final Properties ADMIN = new Properties();
    static final Properties ALICE = new Properties();

    public static void main(String[] args) {
        if (args.length < 4) {
            System.err.println("usage: OttlaAcls <bootstrap> <admin.properties> <alice.properties> <tag>");
            System.exit(64);
        }
        bootstrap = args[0];
        runAndExit(() -> {
            load(ADMIN, args[1]);
            load(ALICE, args[2]);
            run(args[3]);
        });
    }

    static void load(Properties into, String path) throws Exception {
        try (InputStream in = new FileInputStream(path)) {
            into.load(in);
        }
    }

    static Admin admin(String clientId, Properties security) {
        Properties p = new Properties();
        p.put(CommonClientConfigs.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(CommonClientConfigs.CLIENT_ID_CONFIG, clientId);
        p.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, 30_000);
        p.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, 60_000);
        p.putAll(security);
        return Admin.create(p);
    }

    static AclBinding acl(ResourceType type, String name, PatternType pattern, String principal, String host,
                          AclOperation op, AclPermissionType perm) {
        return new AclBinding(new ResourcePattern(type, name, pattern), new AccessControlEntry(principal, host, op, perm));
    }

    static String fmt(AclBinding b) {
        return b.pattern().resourceType() + ":" + b.pattern().patternType() + ":" + b.pattern().name() + " "
                + b.entry().principal() + " " + b.entry().host() + " " + b.entry().operation() + " "
                + b.entry().permissionType();
    }

    /** Prints "NAME count" and the sorted "NAME-ACL binding" lines. */
    static List<String> print(String name, Collection<AclBinding> bindings) {
        List<String> lines = new ArrayList<>();
        for (AclBinding b : bindings) lines.add(fmt(b));
        lines.sort(null);
        info(name + " " + bindings.size());
        for (String l : lines) info(name + "-ACL " + l);
        return lines;
    }

    static List<String> sortedFmt(Collection<AclBinding> bindings) {
        List<String> lines = new ArrayList<>();
        for (AclBinding b : bindings) lines.add(fmt(b));
        lines.sort(null);
        return lines;
    }

    static String describe(Throwable t) {
        return t == null ? "success" : t.getClass().getName() + ": " + t.getMessage();
    }

    /** The waits below: the broker's authorizer may apply a committed change a moment later. */
    static Collection<AclBinding> describeUntil(Admin admin, AclBindingFilter filter, int expected, String what)
            throws InterruptedException {
        long deadline = System.currentTimeMillis() + 30_000;
        while (true) {
            Collection<AclBinding> got = await(admin.describeAcls(filter).values(), what);
            if (got.size() == expected || System.currentTimeMillis() > deadline) return got;
            Thread.sleep(200);
        }
    }

    static void run(String tag) throws Exception {
        String topic = "java-acl-" + tag;
        String prefix = "java-acl-";
        String group = "java-group-" + tag;
        String txn = "java-txn-" + tag;
        String alice = "User:alice";
        String bob = "User:bob";
        List<AclBinding> bindings = List.of(
                acl(ResourceType.TOPIC, topic, PatternType.LITERAL, alice, "*", AclOperation.READ, AclPermissionType.ALLOW),
                acl(ResourceType.TOPIC, prefix, PatternType.PREFIXED, alice, "*", AclOperation.WRITE, AclPermissionType.ALLOW),
                acl(ResourceType.GROUP, group, PatternType.LITERAL, alice, "*", AclOperation.READ, AclPermissionType.ALLOW),
                acl(ResourceType.TOPIC, topic, PatternType.LITERAL, bob, "127.0.0.1", AclOperation.DESCRIBE,
                        AclPermissionType.DENY),
                acl(ResourceType.CLUSTER, "kafka-cluster", PatternType.LITERAL, bob, "*", AclOperation.DESCRIBE,
                        AclPermissionType.ALLOW),
                acl(ResourceType.TRANSACTIONAL_ID, txn, PatternType.LITERAL, alice, "*", AclOperation.WRITE,
                        AclPermissionType.ALLOW));

        try (Admin admin = admin("ottla-acls-admin", ADMIN); Admin aliceAdmin = admin("ottla-acls-alice", ALICE)) {
            // Nothing yet.
            Collection<AclBinding> none = await(admin.describeAcls(AclBindingFilter.ANY).values(),
                    "describeAcls(ANY) before any creation");
            checkEq(0, none.size(), "describeAcls(ANY) before any creation: " + sortedFmt(none));

            CreateAclsResult created = admin.createAcls(bindings);
            for (Map.Entry<AclBinding, KafkaFuture<Void>> e : created.values().entrySet()) {
                await(e.getValue(), "createAcls " + fmt(e.getKey()));
            }
            await(created.all(), "createAcls(...).all()");
            print("CREATED", bindings);

            Collection<AclBinding> any = describeUntil(admin, AclBindingFilter.ANY, bindings.size(), "describeAcls(ANY)");
            List<String> anyLines = print("ANY", any);
            checkEq(sortedFmt(bindings), anyLines, "describeAcls(ANY) lists exactly the created bindings");

            AclBindingFilter aliceTopics = new AclBindingFilter(
                    new ResourcePatternFilter(ResourceType.TOPIC, null, PatternType.ANY),
                    new AccessControlEntryFilter(alice, null, AclOperation.ANY, AclPermissionType.ANY));
            print("ALICE-TOPICS", await(admin.describeAcls(aliceTopics).values(), "describeAcls(alice's topic ACLs)"));

            AclBindingFilter match = new AclBindingFilter(
                    new ResourcePatternFilter(ResourceType.TOPIC, topic, PatternType.MATCH), AccessControlEntryFilter.ANY);
            print("MATCH", await(admin.describeAcls(match).values(), "describeAcls(MATCH " + topic + ")"));

            // Invalid creations: each refused on its own, the valid one next to them created.
            Map<String, AclBinding> invalid = new LinkedHashMap<>();
            invalid.put("empty-name", acl(ResourceType.TOPIC, "", PatternType.LITERAL, alice, "*",
                    AclOperation.READ, AclPermissionType.ALLOW));
            invalid.put("no-colon", acl(ResourceType.TOPIC, topic, PatternType.LITERAL, "alice", "*",
                    AclOperation.WRITE, AclPermissionType.ALLOW));
            invalid.put("cluster-name", acl(ResourceType.CLUSTER, "not-the-cluster", PatternType.LITERAL, alice, "*",
                    AclOperation.ALTER, AclPermissionType.ALLOW));
            AclBinding valid = acl(ResourceType.GROUP, "java-valid-" + tag, PatternType.LITERAL, alice, "*",
                    AclOperation.READ, AclPermissionType.ALLOW);
            List<AclBinding> mixed = new ArrayList<>(invalid.values());
            mixed.add(valid);
            CreateAclsResult mixedResult = admin.createAcls(mixed);
            for (Map.Entry<String, AclBinding> e : invalid.entrySet()) {
                Throwable t = failureOf(mixedResult.values().get(e.getValue()));
                check(t instanceof InvalidRequestException,
                        "createAcls " + e.getKey() + " (" + fmt(e.getValue()) + "): expected InvalidRequestException, got "
                                + describe(t));
                info("INVALID " + e.getKey() + " " + (t == null ? "success" : t.getClass().getSimpleName())
                        + (t == null ? "" : ": " + t.getMessage()));
            }
            Throwable t = failureOf(mixedResult.values().get(valid));
            check(t == null, "createAcls of a valid binding next to invalid ones: " + describe(t));
            info("VALID-IN-SAME-REQUEST " + (t == null ? "created" : describe(t)));
            print("WITH-VALID", describeUntil(admin, AclBindingFilter.ANY, bindings.size() + 1,
                    "describeAcls(ANY) after the mixed creation"));

            // alice is no super user and has no CLUSTER ALTER / DESCRIBE.
            t = failureOf(aliceAdmin.createAcls(List.of(acl(ResourceType.TOPIC, topic, PatternType.LITERAL, alice, "*",
                    AclOperation.ALL, AclPermissionType.ALLOW))).all());
            check(t instanceof ClusterAuthorizationException,
                    "createAcls as alice: expected ClusterAuthorizationException, got " + describe(t));
            info("ALICE-CREATE " + (t == null ? "success" : t.getClass().getSimpleName()));
            t = failureOf(aliceAdmin.describeAcls(AclBindingFilter.ANY).values());
            check(t instanceof ClusterAuthorizationException,
                    "describeAcls as alice: expected ClusterAuthorizationException, got " + describe(t));
            info("ALICE-DESCRIBE " + (t == null ? "success" : t.getClass().getSimpleName()));
            t = failureOf(aliceAdmin.deleteAcls(List.of(AclBindingFilter.ANY)).all());
            check(t instanceof ClusterAuthorizationException,
                    "deleteAcls as alice: expected ClusterAuthorizationException, got " + describe(t));
            info("ALICE-DELETE " + (t == null ? "success" : t.getClass().getSimpleName()));

            // Delete alice's bindings, then the rest.
            AclBindingFilter aliceAll = new AclBindingFilter(ResourcePatternFilter.ANY,
                    new AccessControlEntryFilter(alice, null, AclOperation.ANY, AclPermissionType.ANY));
            Collection<AclBinding> deleted = await(admin.deleteAcls(List.of(aliceAll)).all(), "deleteAcls(alice's)");
            print("DELETED", deleted);
            print("AFTER-DELETE", describeUntil(admin, AclBindingFilter.ANY, 2, "describeAcls(ANY) after deleting alice's"));
            Collection<AclBinding> rest = await(admin.deleteAcls(List.of(AclBindingFilter.ANY)).all(), "deleteAcls(ANY)");
            print("DELETED-REST", rest);
            print("FINAL", describeUntil(admin, AclBindingFilter.ANY, 0, "describeAcls(ANY) after deleting everything"));
        }
    }
}
