import java.util.List;
import java.util.Map;
import java.util.Set;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AlterConfigOp;
import org.apache.kafka.clients.admin.Config;
import org.apache.kafka.clients.admin.ConfigEntry;
import org.apache.kafka.clients.admin.DescribeConfigsOptions;
import org.apache.kafka.common.config.ConfigResource;

/**
 * The cluster-wide broker default, as {@code kafka-configs --entity-type brokers
 * --entity-default --alter} sets it: incrementalAlterConfigs on the BROKER resource with an
 * empty name, then describeConfigs of a broker shows it as DYNAMIC_DEFAULT_BROKER_CONFIG
 * (and of the empty name lists only it), until it is deleted. Driven by test_configs.py.
 */
public final class OttlaConfigs extends Harness {
    static final String KEY = "follower.replication.throttled.rate";

    public static void main(String[] args) {
        bootstrap = args[0];
        if (args.length == 4 && args[1].equals("set-default")) {
            runAndExit(() -> alterDefault(args[2], args[3], AlterConfigOp.OpType.SET));
        } else if (args.length == 3 && args[1].equals("delete-default")) {
            runAndExit(() -> alterDefault(args[2], null, AlterConfigOp.OpType.DELETE));
        } else {
            runAndExit(OttlaConfigs::clusterDefault);
        }
    }

    /** {@code kafka-configs --entity-type brokers --entity-default --alter --add-config} (or
     * {@code --delete-config}) of one key. */
    static void alterDefault(String key, String value, AlterConfigOp.OpType op) throws Exception {
        ConfigResource cluster = new ConfigResource(ConfigResource.Type.BROKER, "");
        ConfigResource one = new ConfigResource(ConfigResource.Type.BROKER, "1");
        try (Admin admin = newAdmin("ottla-configs-admin")) {
            await(admin.incrementalAlterConfigs(Map.of(cluster, List.of(new AlterConfigOp(
                    new ConfigEntry(key, value), op)))).all(), op + " the default " + key);
            if (value == null) return;
            // What kafka-configs --describe --all shows: the value, its source and the
            // synonyms behind it, the cluster-wide default first among them.
            ConfigEntry e = await(admin.describeConfigs(List.of(one),
                    new DescribeConfigsOptions().includeSynonyms(true)).all(), "describe broker 1")
                    .get(one).get(key);
            checkEq(value, e.value(), "broker 1 runs with the new default of " + key);
            checkEq(ConfigEntry.ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG, e.source(), "its source");
            checkEq(false, e.isReadOnly(), key + " is dynamic");
            ConfigEntry.ConfigSynonym first = e.synonyms().get(0);
            checkEq(key, first.name(), "the first synonym");
            checkEq(ConfigEntry.ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG, first.source(), "its source");
            checkEq(value, first.value(), "its value");
        }
    }

    static void clusterDefault() throws Exception {
        ConfigResource cluster = new ConfigResource(ConfigResource.Type.BROKER, "");
        ConfigResource one = new ConfigResource(ConfigResource.Type.BROKER, "1");
        try (Admin admin = newAdmin("ottla-configs-admin")) {
            await(admin.incrementalAlterConfigs(Map.of(cluster, List.of(new AlterConfigOp(
                    new ConfigEntry(KEY, "3000000"), AlterConfigOp.OpType.SET)))).all(), "set the default");
            Config c = await(admin.describeConfigs(List.of(one)).all(), "describe broker 1").get(one);
            ConfigEntry e = c.get(KEY);
            checkEq("3000000", e.value(), "broker 1 runs with the cluster default");
            checkEq(ConfigEntry.ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG, e.source(), "its source");
            Config all = await(admin.describeConfigs(List.of(cluster)).all(), "describe the default").get(cluster);
            Set<String> names = new java.util.TreeSet<>();
            for (ConfigEntry entry : all.entries()) names.add(entry.name());
            checkEq(Set.of(KEY), names, "the cluster-wide resource lists what is set there");
            await(admin.incrementalAlterConfigs(Map.of(cluster, List.of(new AlterConfigOp(
                    new ConfigEntry(KEY, null), AlterConfigOp.OpType.DELETE)))).all(), "delete the default");
            e = await(admin.describeConfigs(List.of(one)).all(), "describe broker 1").get(one).get(KEY);
            checkEq(ConfigEntry.ConfigSource.DEFAULT_CONFIG, e.source(), "back to Kafka's default");
        }
    }
}
