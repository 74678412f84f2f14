import java.util.Map;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.DeletedRecords;
import org.apache.kafka.clients.admin.ListOffsetsResult;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.clients.admin.RecordsToDelete;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.OffsetOutOfRangeException;

/**
 * Admin deleteRecords, what {@code kafka-delete-records} sends: the low watermark moves to
 * the offset asked, listOffsets(earliest) follows it, and an offset beyond the high
 * watermark is refused with OffsetOutOfRangeException. Driven by test_delete_records.py,
 * which wrote 100 records to partition 0 of the topic given.
 */
public final class OttlaDeleteRecords extends Harness {
    public static void main(String[] args) {
        bootstrap = args[0];
        String topic = args[1];
        runAndExit(() -> deleteRecords(topic));
    }

    static void deleteRecords(String topic) throws Exception {
        TopicPartition tp = new TopicPartition(topic, 0);
        try (Admin admin = newAdmin("ottla-delete-records-admin")) {
            DeletedRecords deleted = await(admin.deleteRecords(Map.of(tp, RecordsToDelete.beforeOffset(30)))
                    .lowWatermarks().get(tp), "deleteRecords before offset 30");
            checkEq(30L, deleted.lowWatermark(), "low watermark after deleting before offset 30");
            ListOffsetsResult.ListOffsetsResultInfo earliest = await(
                    admin.listOffsets(Map.of(tp, OffsetSpec.earliest())).partitionResult(tp), "listOffsets earliest");
            checkEq(30L, earliest.offset(), "earliest offset after deleteRecords");
            expectFailure(admin.deleteRecords(Map.of(tp, RecordsToDelete.beforeOffset(1_000)))
                    .lowWatermarks().get(tp), OffsetOutOfRangeException.class,
                    "deleteRecords beyond the high watermark");
            // Going back is a no-op: the low watermark stays.
            deleted = await(admin.deleteRecords(Map.of(tp, RecordsToDelete.beforeOffset(10)))
                    .lowWatermarks().get(tp), "deleteRecords before an already deleted offset");
            checkEq(30L, deleted.lowWatermark(), "low watermark never moves back");
        }
    }
}
