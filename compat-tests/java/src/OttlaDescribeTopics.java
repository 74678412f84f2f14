import java.util.List;
import java.util.Map;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.DescribeTopicsOptions;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.common.TopicPartitionInfo;
import org.apache.kafka.common.errors.UnknownTopicOrPartitionException;

/**
 * Admin describeTopics, which from Kafka 3.8 pages through DescribeTopicPartitions (KIP-966)
 * when the broker serves it, as {@code kafka-topics --describe} does: with at most 7
 * partitions per answer, topics of 30 and 5 partitions still come back whole, in order, each
 * partition led by the single broker with it in sync; an unknown topic fails with
 * UnknownTopicOrPartitionException. Driven by test_describe_topics.py.
 */
public final class OttlaDescribeTopics extends Harness {
    public static void main(String[] args) {
        bootstrap = args[0];
        runAndExit(() -> describe(args[1], Integer.parseInt(args[2]), args[3], Integer.parseInt(args[4])));
    }

    static void describe(String big, int bigCount, String small, int smallCount) throws Exception {
        try (Admin admin = newAdmin("ottla-describe-topics-admin")) {
            DescribeTopicsOptions paged = new DescribeTopicsOptions().partitionSizeLimitPerResponse(7);
            Map<String, TopicDescription> found = await(
                    admin.describeTopics(List.of(big, small), paged).allTopicNames(), "describeTopics, 7 per page");
            checkTopic(found.get(big), big, bigCount);
            checkTopic(found.get(small), small, smallCount);
            expectFailure(admin.describeTopics(List.of("no-such-topic-" + big)).allTopicNames(),
                    UnknownTopicOrPartitionException.class, "describeTopics of an unknown topic");
        }
    }

    static void checkTopic(TopicDescription d, String name, int partitions) {
        if (!check(d != null, "no description of " + name)) return;
        checkEq(name, d.name(), "topic name");
        checkEq(partitions, d.partitions().size(), "partitions of " + name);
        check(d.topicId() != null && !d.topicId().toString().isEmpty(), "topic id of " + name);
        checkEq(false, d.isInternal(), "is " + name + " internal");
        for (int i = 0; i < d.partitions().size(); i++) {
            TopicPartitionInfo p = d.partitions().get(i);
            checkEq(i, p.partition(), "partition order of " + name);
            check(p.leader() != null && p.leader().id() == 1, name + "-" + i + " leader " + p.leader());
            checkEq(1, p.isr().size(), name + "-" + i + " ISR size");
            checkEq(1, p.replicas().size(), name + "-" + i + " replicas");
        }
    }
}
