import java.util.List;
import java.util.Map;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.LogDirDescription;
import org.apache.kafka.clients.admin.ReplicaInfo;
import org.apache.kafka.common.TopicPartition;

/**
 * Admin describeLogDirs, what {@code kafka-log-dirs --describe} sends to each broker: prints
 * each log dir ("DIR path total usable") and each of its replicas ("REPLICA topic-partition
 * size offsetLag future") for test_log_dirs.py to compare with the disk.
 */
public final class OttlaLogDirs extends Harness {
    public static void main(String[] args) {
        bootstrap = args[0];
        int broker = Integer.parseInt(args[1]);
        runAndExit(() -> describe(broker));
    }

    static void describe(int broker) throws Exception {
        try (Admin admin = newAdmin("ottla-log-dirs-admin")) {
            Map<String, LogDirDescription> dirs = await(
                    admin.describeLogDirs(List.of(broker)).descriptions().get(broker), "describeLogDirs");
            check(!dirs.isEmpty(), "broker " + broker + " described no log dir");
            for (Map.Entry<String, LogDirDescription> d : dirs.entrySet()) {
                LogDirDescription desc = d.getValue();
                check(desc.error() == null, "log dir " + d.getKey() + " error " + desc.error());
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
