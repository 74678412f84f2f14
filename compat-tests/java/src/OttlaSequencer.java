import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Properties;

import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.serialization.StringSerializer;

/**
 * The Java client's side of the failover test (test_failover.py): an idempotent acks=all
 * producer writing numbered records ({@code java-00000000}, ...) to a topic until a stop
 * file appears, while the test kills and pauses brokers. It then flushes and prints one
 * line per outcome: {@code ACK <partition> <offset> <value>} or {@code FAILED <value>
 * <error>}, and {@code SENT <n>}; the test checks every acknowledged record in the log.
 */
public final class OttlaSequencer {
    /** A pause after each record: about 1,000 records a second, enough to cross every
     *  failover, few enough to check quickly. */
    static final long PAUSE_MS = 1;

    public static void main(String[] args) throws Exception {
        if (args.length != 3) {
            System.err.println("usage: OttlaSequencer <bootstrap> <topic> <stop-file>");
            System.exit(64);
        }
        Properties p = new Properties();
        p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, args[0]);
        p.put(ProducerConfig.CLIENT_ID_CONFIG, "ottla-sequencer");
        p.put(ProducerConfig.ACKS_CONFIG, "all");
        p.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, "true");
        p.put(ProducerConfig.LINGER_MS_CONFIG, "5");
        // A request to a paused leader is given up in 10 s and sent again to the new one.
        p.put(ProducerConfig.REQUEST_TIMEOUT_MS_CONFIG, "10000");
        p.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, "180000");
        p.put(ProducerConfig.METADATA_MAX_AGE_CONFIG, "1000");
        p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        String topic = args[1];
        Path stop = Paths.get(args[2]);
        List<String> outcomes = Collections.synchronizedList(new ArrayList<>());
        long sent = 0;
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(p)) {
            while (!Files.exists(stop)) {
                String value = String.format("java-%08d", sent++);
                producer.send(new ProducerRecord<>(topic, value, value), (md, e) -> {
                    if (e != null) {
                        outcomes.add("FAILED " + value + " " + e);
                    } else {
                        outcomes.add("ACK " + md.partition() + " " + md.offset() + " " + value);
                    }
                });
                Thread.sleep(PAUSE_MS);
            }
            producer.flush();
        }
        synchronized (outcomes) {
            for (String line : outcomes) System.out.println(line);
        }
        System.out.println("SENT " + sent);
    }
}
