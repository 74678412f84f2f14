import java.util.ArrayList;
import java.util.List;
import java.util.Map;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.LogDirDescription;
import org.apache.kafka.clients.admin.ReplicaInfo;
import org.apache.kafka.common.TopicPartition;

/**
 * Admin describeLogDirs, what {@code kafka-log-dirs --describe --broker-list 1,2,3} sends to
 * each broker. The second argument is one broker id or a comma-separated list of them, all
 * described in one {@code describeLogDirs(List.of(...))} call. Prints, per broker,
 * "BROKER id", then each of its log dirs ("DIR path total usable") followed by that dir's
 * replicas ("REPLICA topic-partition size offsetLag future") for test_log_dirs.py to compare
 * with the disk.
 */
public final class OttlaLogDirs extends Harness {
    public static void main(String[] args) {
        bootstrap = args[0];
        List<Integer> brokers = new ArrayList<>();
        for (String id : args[1].split(",")) brokers.add(Integer.parseInt(id.trim()));
        runAndExit(() -> describe(brokers));
    }

    static void describe(List<Integer> brokers) throws Exception {
        try (Admin admin = newAdmin("ottla-log-dirs-admin")) {
            Map<Integer, Map<String, LogDirDescription>> all = await(
                    admin.describeLogDirs(brokers).allDescriptions(), "describeLogDirs " + brokers);
            for (int broker : brokers) {
                Map<String, LogDirDescription> dirs = all.get(broker);
                require(dirs != null, "no answer for broker " + broker);
                System.out.println("BROKER " + broker);
                check(!dirs.isEmpty(), "broker " + broker + " described no log dir");
                for (Map.Entry<String, LogDirDescription> d : dirs.entrySet()) {
                    LogDirDescription desc = d.getValue();
                    check(desc.error() == null, "broker " + broker + " log dir " + d.getKey() + " error " + desc.error());
                    System.out.println("DIR " + d.getKey() + " " + desc.totalBytes().orElse(-1) + " "
                            + desc.usableBytes().orElse(-1));
                    for (Map.Entry<TopicPartition, ReplicaInfo> r : desc.replicaInfos().entrySet()) {
                        System.out.println("REPLICA " + r.getKey() + " " + r.getValue().size() + " "
                                + r.getValue().offsetLag() + " " + r.getValue().isFuture());
                    }
                }
            }
        }
    }
}
