//! Idempotent-producer state across a clean restart, driven with raw Produce requests:
//! a retry of any of a producer's last five batches is answered with its original
//! offset, as Kafka answers it while the batch is cached (`UnifiedLog.append`: a
//! duplicate gets the original first offset and error NONE, nothing is written).

mod common;

use bytes::Bytes;
use common::{Client, TestBroker};
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use ottla_protocol::compression::Compression;
use ottla_protocol::records::{build_record_batch, Record};

const TOPIC: &str = "dedup";

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

/// Produce one batch to partition 0 with acks=all; returns (error code, base offset).
async fn produce(client: &mut Client, records: Vec<u8>) -> (i16, i64) {
    let req = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(name(TOPIC))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(Bytes::from(records)))])]);
    let resp: ProduceResponse = client.call(ApiKey::Produce, 9, &req).await;
    let p = &resp.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

/// A batch of two ~200 KB records from producer `pid` (epoch 0) starting at `seq`:
/// with `segment.bytes` at its 1 MiB minimum, two batches fill a segment.
fn two_records(pid: i64, seq: i32) -> Vec<u8> {
    let records: Vec<Record> = (0..2)
        .map(|i| Record {
            offset: i,
            timestamp: 1_700_000_000_000 + i,
            key: Some(format!("k{seq}-{i}").into_bytes()),
            value: Some(vec![b'v'; 200 * 1024]),
            headers: vec![],
        })
        .collect();
    build_record_batch(&records, Compression::None, pid, 0, seq)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_of_the_last_five_batches_are_duplicates_after_a_clean_restart() {
    let mut broker = TestBroker::start(&[]).await;
    let mut c = broker.client().await;
    let created: CreateTopicsResponse = c
        .call(
            ApiKey::CreateTopics,
            7,
            &CreateTopicsRequest::default()
                .with_timeout_ms(5000)
                .with_topics(vec![CreatableTopic::default()
                    .with_name(name(TOPIC))
                    .with_num_partitions(1)
                    .with_replication_factor(-1)
                    .with_configs(vec![CreatableTopicConfig::default()
                        .with_name(StrBytes::from_static_str("segment.bytes"))
                        .with_value(Some(StrBytes::from_static_str("1048576")))])]),
        )
        .await;
    assert_eq!(created.topics[0].error_code, 0);
    let init: InitProducerIdResponse = c
        .call(
            ApiKey::InitProducerId,
            4,
            &InitProducerIdRequest::default().with_transaction_timeout_ms(60000),
        )
        .await;
    assert_eq!(init.error_code, 0);
    let pid = init.producer_id.0;
    // Batches 1..=6: sequences 0, 2, …, 10 at offsets 0, 2, …, 10.
    for seq in (0..12).step_by(2) {
        assert_eq!(
            produce(&mut c, two_records(pid, seq)).await,
            (0, i64::from(seq))
        );
    }
    broker.restart().await;

    // The premise: three segments, so the active one holds only batches 5 and 6 and
    // the snapshot at its base, in Kafka's format, only batch 4.
    let partition_dir = broker.dir.path().join("data").join(format!("{TOPIC}-0"));
    let mut logs: Vec<String> = std::fs::read_dir(&partition_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".log"))
        .collect();
    logs.sort();
    assert_eq!(
        logs,
        [
            "00000000000000000000.log",
            "00000000000000000004.log",
            "00000000000000000008.log"
        ]
    );

    let mut c = broker.client().await;
    // Batches 2..=6 are cached: each retry gets its original offset and error NONE.
    for seq in (2..12).step_by(2) {
        assert_eq!(
            produce(&mut c, two_records(pid, seq)).await,
            (0, i64::from(seq)),
            "retry of seq {seq} is a duplicate"
        );
    }
    // Batch 1 fell out of the five: OUT_OF_ORDER_SEQUENCE_NUMBER, as Kafka answers a
    // sequence that neither is cached nor follows the last one.
    assert_eq!(
        produce(&mut c, two_records(pid, 0)).await.0,
        45,
        "OUT_OF_ORDER_SEQUENCE_NUMBER"
    );
    // Nothing was written twice: the next batch follows batch 6.
    assert_eq!(produce(&mut c, two_records(pid, 12)).await, (0, 12));
}
