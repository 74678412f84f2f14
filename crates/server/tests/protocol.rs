//! Protocol-level behaviour of a real broker, driven with exact requests: error codes,
//! the ApiVersions fallback, idempotence, long polling, ordering, hostile input.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{Client, TestBroker};
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use ottla_protocol::batch::BatchIter;
use ottla_protocol::compression::Compression;
use ottla_protocol::records::{build_record_batch, decode_records, Record};

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

fn record(offset: i64, value: &str) -> Record {
    Record {
        offset,
        timestamp: 1_700_000_000_000 + offset,
        key: Some(format!("k{offset}").into_bytes()),
        value: Some(value.as_bytes().to_vec()),
        headers: vec![
            ("h".into(), Some(b"1".to_vec())),
            ("h".into(), Some(b"2".to_vec())),
        ],
    }
}

fn batch(values: &[&str], codec: Compression) -> Vec<u8> {
    let records: Vec<Record> = values
        .iter()
        .enumerate()
        .map(|(i, v)| record(i as i64, v))
        .collect();
    build_record_batch(&records, codec, -1, -1, -1)
}

async fn create_topic(
    client: &mut Client,
    topic: &str,
    partitions: i32,
    configs: &[(&str, &str)],
) -> CreateTopicsResponse {
    let configs = configs
        .iter()
        .map(|(k, v)| {
            CreatableTopicConfig::default()
                .with_name(StrBytes::from_string(k.to_string()))
                .with_value(Some(StrBytes::from_string(v.to_string())))
        })
        .collect();
    let req = CreateTopicsRequest::default()
        .with_timeout_ms(5000)
        .with_topics(vec![CreatableTopic::default()
            .with_name(name(topic))
            .with_num_partitions(partitions)
            .with_replication_factor(-1)
            .with_configs(configs)]);
    client.call(ApiKey::CreateTopics, 7, &req).await
}

/// Produce one batch to one partition; returns (error code, base offset).
async fn produce(
    client: &mut Client,
    topic: &str,
    partition: i32,
    records: Vec<u8>,
    acks: i16,
) -> (i16, i64) {
    let req = ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(5000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(name(topic))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(Bytes::from(records)))])]);
    let resp: ProduceResponse = client.call(ApiKey::Produce, 9, &req).await;
    let p = &resp.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

/// FindCoordinator v4 for one group.
async fn find_coordinator(client: &mut Client, group: &str) -> FindCoordinatorResponse {
    let req = FindCoordinatorRequest::default()
        .with_coordinator_keys(vec![StrBytes::from_string(group.to_string())]);
    client.call(ApiKey::FindCoordinator, 4, &req).await
}

fn fetch_request(
    topic: &str,
    partition: i32,
    offset: i64,
    max_wait_ms: i32,
    min_bytes: i32,
) -> FetchRequest {
    FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(min_bytes)
        .with_max_bytes(50 * 1024 * 1024)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default()
            .with_topic(name(topic))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(partition)
                .with_fetch_offset(offset)
                .with_partition_max_bytes(1024 * 1024)])])
}

/// Decode all records in a fetch response partition.
fn records_of(data: &kafka_protocol::messages::fetch_response::PartitionData) -> Vec<Record> {
    let bytes = data.records.clone().unwrap_or_default();
    let mut out = Vec::new();
    for b in BatchIter::new(&bytes) {
        let b = b.unwrap();
        b.validate().expect("fetched batches arrive intact (CRC)");
        out.extend(decode_records(&b, 1 << 20).unwrap());
    }
    out
}

#[tokio::test]
async fn api_versions_fallback_for_unknown_version() {
    let broker = TestBroker::start(&[]).await;
    let mut c = broker.client().await;
    let id = c
        .send_claiming(ApiKey::ApiVersions, 99, 3, &ApiVersionsRequest::default())
        .await;
    let (got, resp): (i32, ApiVersionsResponse) = c.receive(ApiKey::ApiVersions, 0).await;
    assert_eq!(got, id);
    assert_eq!(resp.error_code, 35, "UNSUPPORTED_VERSION");
    let av = resp
        .api_keys
        .iter()
        .find(|k| k.api_key == ApiKey::ApiVersions as i16)
        .unwrap();
    assert_eq!((av.min_version, av.max_version), (0, 4));
    // The same connection keeps working at a supported version.
    let resp: ApiVersionsResponse = c
        .call(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default())
        .await;
    assert_eq!(resp.error_code, 0);
    assert!(
        resp.api_keys
            .iter()
            .any(|k| k.api_key == 0 && k.min_version == 0 && k.max_version == 12),
        "Produce advertised from v0 (KAFKA-18659)"
    );
}

#[tokio::test]
async fn produce_fetch_round_trip_with_every_codec() {
    let broker = TestBroker::start(&[]).await;
    let mut c = broker.client().await;
    assert_eq!(
        create_topic(&mut c, "codecs", 1, &[]).await.topics[0].error_code,
        0
    );
    let mut expected_offset = 0;
    for codec in [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ] {
        let (err, base) = produce(&mut c, "codecs", 0, batch(&["a", "b", "c"], codec), -1).await;
        assert_eq!((err, base), (0, expected_offset), "{codec:?}");
        expected_offset += 3;
    }
    let resp: FetchResponse = c
        .call(ApiKey::Fetch, 12, &fetch_request("codecs", 0, 0, 0, 1))
        .await;
    let p = &resp.responses[0].partitions[0];
    assert_eq!(p.error_code, 0);
    assert_eq!(p.high_watermark, 15);
    let records = records_of(p);
    assert_eq!(records.len(), 15);
    for (i, r) in records.iter().enumerate() {
        assert_eq!(r.offset, i as i64);
        assert_eq!(r.value.as_deref(), Some(["a", "b", "c"][i % 3].as_bytes()));
        assert_eq!(r.key, Some(format!("k{}", i % 3).into_bytes()));
        assert_eq!(r.timestamp, 1_700_000_000_000 + (i % 3) as i64);
        assert_eq!(r.headers.len(), 2, "duplicate header keys kept");
        assert_eq!(r.headers[1].1.as_deref(), Some(&b"2"[..]));
    }
}

#[tokio::test]
async fn bad_batches_get_kafka_error_codes_and_store_nothing() {
    let broker = TestBroker::start(&[("auto.create.topics.enable", "false")]).await;
    let mut c = broker.client().await;
    create_topic(&mut c, "strict", 1, &[("max.message.bytes", "1024")]).await;
    assert_eq!(
        produce(&mut c, "strict", 0, batch(&["ok"], Compression::None), 1).await,
        (0, 0)
    );
    let mut corrupt = batch(&["x"], Compression::None);
    let n = corrupt.len();
    corrupt[n - 2] ^= 0xff;
    assert_eq!(
        produce(&mut c, "strict", 0, corrupt, 1).await.0,
        2,
        "CORRUPT_MESSAGE"
    );
    let big = "x".repeat(4000);
    assert_eq!(
        produce(&mut c, "strict", 0, batch(&[&big], Compression::None), 1)
            .await
            .0,
        10,
        "MESSAGE_TOO_LARGE"
    );
    assert_eq!(
        produce(&mut c, "nope", 0, batch(&["x"], Compression::None), 1)
            .await
            .0,
        3,
        "UNKNOWN_TOPIC_OR_PARTITION"
    );
    assert_eq!(
        produce(&mut c, "strict", 7, batch(&["x"], Compression::None), 1)
            .await
            .0,
        3,
        "unknown partition"
    );
    let mut two = batch(&["a"], Compression::None);
    two.extend(batch(&["b"], Compression::None));
    assert_eq!(
        produce(&mut c, "strict", 0, two, 1).await.0,
        87,
        "INVALID_RECORD: two batches"
    );
    let resp: FetchResponse = c
        .call(ApiKey::Fetch, 12, &fetch_request("strict", 0, 0, 0, 1))
        .await;
    let p = &resp.responses[0].partitions[0];
    assert_eq!(p.high_watermark, 1, "only the good batch was stored");
    assert_eq!(records_of(p).len(), 1);
    let bad = create_topic(&mut c, "bad name!", 1, &[]).await;
    assert_eq!(bad.topics[0].error_code, 17, "INVALID_TOPIC_EXCEPTION");
    let dup = create_topic(&mut c, "strict", 1, &[]).await;
    assert_eq!(dup.topics[0].error_code, 36, "TOPIC_ALREADY_EXISTS");
    let bad_config = create_topic(&mut c, "cfg", 1, &[("retention.ms", "soon")]).await;
    assert_eq!(bad_config.topics[0].error_code, 40, "INVALID_CONFIG");
    let unknown_config = create_topic(&mut c, "cfg", 1, &[("no.such.config", "1")]).await;
    assert_eq!(unknown_config.topics[0].error_code, 40, "INVALID_CONFIG");
}

#[tokio::test]
async fn idempotent_producer_dedups_and_detects_gaps_across_restart() {
    let mut broker = TestBroker::start(&[]).await;
    let mut c = broker.client().await;
    create_topic(&mut c, "idem", 1, &[]).await;
    let init: InitProducerIdResponse = c
        .call(
            ApiKey::InitProducerId,
            4,
            &InitProducerIdRequest::default().with_transaction_timeout_ms(60000),
        )
        .await;
    assert_eq!(init.error_code, 0);
    let pid = init.producer_id.0;
    let recs = |seq: i32, n: usize| {
        let records: Vec<Record> = (0..n).map(|i| record(i as i64, "v")).collect();
        build_record_batch(&records, Compression::None, pid, 0, seq)
    };
    assert_eq!(produce(&mut c, "idem", 0, recs(0, 2), -1).await, (0, 0));
    assert_eq!(produce(&mut c, "idem", 0, recs(2, 2), -1).await, (0, 2));
    // A retry of the last batch is answered with its original offset and not stored again.
    assert_eq!(produce(&mut c, "idem", 0, recs(2, 2), -1).await, (0, 2));
    // A gap in sequence numbers.
    assert_eq!(
        produce(&mut c, "idem", 0, recs(7, 1), -1).await.0,
        45,
        "OUT_OF_ORDER_SEQUENCE_NUMBER"
    );
    broker.restart_uncleanly().await;
    let mut c = broker.client().await;
    assert_eq!(
        produce(&mut c, "idem", 0, recs(2, 2), -1).await,
        (0, 2),
        "dedup survives a crash"
    );
    assert_eq!(produce(&mut c, "idem", 0, recs(4, 1), -1).await, (0, 4));
    // A new producer id never collides with the old one, even after restarts.
    let init2: InitProducerIdResponse = c
        .call(
            ApiKey::InitProducerId,
            4,
            &InitProducerIdRequest::default().with_transaction_timeout_ms(60000),
        )
        .await;
    assert_ne!(init2.producer_id.0, pid);
}

#[tokio::test]
async fn long_poll_fetch_wakes_on_append_and_replies_stay_in_order() {
    let broker = TestBroker::start(&[]).await;
    let mut setup = broker.client().await;
    create_topic(&mut setup, "poll", 1, &[]).await;
    let mut consumer = broker.client().await;
    // A fetch that would wait 25 s, then ApiVersions pipelined behind it.
    let fetch_id = consumer
        .send(ApiKey::Fetch, 12, &fetch_request("poll", 0, 0, 25_000, 1))
        .await;
    let versions_id = consumer
        .send(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default())
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        produce(
            &mut setup,
            "poll",
            0,
            batch(&["wake"], Compression::None),
            1
        )
        .await,
        (0, 0)
    );
    let (id, resp): (i32, FetchResponse) =
        tokio::time::timeout(Duration::from_secs(20), consumer.receive(ApiKey::Fetch, 12))
            .await
            .expect("the append woke the fetch");
    assert_eq!(id, fetch_id, "responses in request order");
    assert_eq!(
        records_of(&resp.responses[0].partitions[0])[0]
            .value
            .as_deref(),
        Some(&b"wake"[..])
    );
    let (id, _): (i32, ApiVersionsResponse) = consumer.receive(ApiKey::ApiVersions, 3).await;
    assert_eq!(id, versions_id);
}

#[tokio::test]
async fn fetch_errors_and_limits() {
    let broker = TestBroker::start(&[]).await;
    let mut c = broker.client().await;
    create_topic(&mut c, "lim", 1, &[]).await;
    for _ in 0..3 {
        produce(
            &mut c,
            "lim",
            0,
            batch(&[&"v".repeat(300)], Compression::None),
            1,
        )
        .await;
    }
    let resp: FetchResponse = c
        .call(ApiKey::Fetch, 12, &fetch_request("lim", 0, 99, 0, 1))
        .await;
    assert_eq!(
        resp.responses[0].partitions[0].error_code, 1,
        "OFFSET_OUT_OF_RANGE"
    );
    // A partition limit smaller than one batch still returns one whole batch (KIP-74).
    let mut req = fetch_request("lim", 0, 0, 0, 1);
    req.topics[0].partitions[0].partition_max_bytes = 10;
    let resp: FetchResponse = c.call(ApiKey::Fetch, 12, &req).await;
    assert_eq!(records_of(&resp.responses[0].partitions[0]).len(), 1);
    // Unknown topic id on v13+.
    let mut req = fetch_request("", 0, 0, 0, 1);
    req.topics[0].topic = TopicName::default();
    req.topics[0].topic_id = uuid::Uuid::new_v4();
    let resp: FetchResponse = c.call(ApiKey::Fetch, 13, &req).await;
    assert_eq!(
        resp.responses[0].partitions[0].error_code, 100,
        "UNKNOWN_TOPIC_ID"
    );
}

#[tokio::test]
async fn hostile_frames_close_only_their_connection() {
    let broker = TestBroker::start(&[("socket.request.max.bytes", "1048576")]).await;
    // Size prefix above the limit.
    let mut c = broker.client().await;
    c.send_raw(&(1i32 << 30).to_be_bytes()).await;
    assert!(c.is_closed().await);
    // Unknown API key.
    let mut c = broker.client().await;
    c.send_raw(&[0, 0, 0, 10, 0x27, 0x0f, 0, 0, 0, 0, 0, 1, 0xff, 0xff])
        .await;
    assert!(c.is_closed().await);
    // Metadata v1 claiming 2^31-1 topics in a 14-byte frame: must not allocate them.
    let mut c = broker.client().await;
    let mut frame = vec![0, 3, 0, 1, 0, 0, 0, 9, 0xff, 0xff, 0x7f, 0xff, 0xff, 0xff];
    frame.splice(0..0, (frame.len() as i32).to_be_bytes());
    c.send_raw(&frame).await;
    assert!(c.is_closed().await);
    // Garbage.
    let mut c = broker.client().await;
    c.send_raw(&[0xde; 512]).await;
    assert!(c.is_closed().await);
    // An unsupported version of a known API.
    let mut c = broker.client().await;
    c.send_claiming(ApiKey::Produce, 2, 3, &ProduceRequest::default())
        .await;
    assert!(c.is_closed().await);
    // The broker still serves everyone else.
    let mut c = broker.client().await;
    let resp: ApiVersionsResponse = c
        .call(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default())
        .await;
    assert_eq!(resp.error_code, 0);
}

#[tokio::test]
async fn topics_configs_and_data_survive_restart() {
    let mut broker = TestBroker::start(&[]).await;
    let mut c = broker.client().await;
    let created = create_topic(&mut c, "durable", 2, &[("retention.ms", "123456")]).await;
    let topic_id = created.topics[0].topic_id;
    assert_eq!(
        produce(
            &mut c,
            "durable",
            1,
            batch(&["one", "two"], Compression::Lz4),
            -1
        )
        .await,
        (0, 0)
    );
    broker.restart().await;
    let mut c = broker.client().await;
    let md: MetadataResponse = c
        .call(
            ApiKey::Metadata,
            12,
            &MetadataRequest::default().with_topics(Some(vec![
                kafka_protocol::messages::metadata_request::MetadataRequestTopic::default()
                    .with_name(Some(name("durable"))),
            ])),
        )
        .await;
    assert_eq!(md.topics[0].error_code, 0);
    assert_eq!(md.topics[0].topic_id, topic_id);
    assert_eq!(md.topics[0].partitions.len(), 2);
    let resp: FetchResponse = c
        .call(ApiKey::Fetch, 12, &fetch_request("durable", 1, 0, 0, 1))
        .await;
    let values: Vec<_> = records_of(&resp.responses[0].partitions[0])
        .into_iter()
        .map(|r| r.value.unwrap())
        .collect();
    assert_eq!(values, vec![b"one".to_vec(), b"two".to_vec()]);
    let req = DescribeConfigsRequest::default().with_resources(vec![
        kafka_protocol::messages::describe_configs_request::DescribeConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(StrBytes::from_static_str("durable"))
            .with_configuration_keys(Some(vec![
                StrBytes::from_static_str("retention.ms"),
                StrBytes::from_static_str("cleanup.policy"),
            ])),
    ]);
    let resp: DescribeConfigsResponse = c.call(ApiKey::DescribeConfigs, 4, &req).await;
    let configs = &resp.results[0].configs;
    let get = |n: &str| configs.iter().find(|c| c.name.as_str() == n).unwrap();
    assert_eq!(get("retention.ms").value.as_deref(), Some("123456"));
    assert_eq!(get("retention.ms").config_source, 1, "DYNAMIC_TOPIC_CONFIG");
    assert_eq!(get("cleanup.policy").value.as_deref(), Some("delete"));
    assert_eq!(get("cleanup.policy").config_source, 5, "DEFAULT_CONFIG");
    assert_eq!(configs.len(), 2, "only the requested keys");
}

#[tokio::test]
/// `flush.messages=1` makes every answer wait for a flush (`Reply::Later`): the answers
/// come in order with the right offsets, acks=0 included, and the data is there after an
/// unclean restart. (An in-process crash keeps the page cache, so this cannot show that
/// the fsync happened; the log and replica tests cover what a flush covers.)
async fn a_topic_that_fsyncs_every_message_answers_in_order_after_each_flush() {
    let mut broker = TestBroker::start(&[]).await;
    let mut c = broker.client().await;
    let created = create_topic(&mut c, "fsynced", 2, &[("flush.messages", "1")]).await;
    assert_eq!(created.topics[0].error_code, 0);
    for (i, acks) in [1, -1, 0, 1].into_iter().enumerate() {
        let records = batch(&["a", "b"], Compression::None);
        if acks == 0 {
            let req = ProduceRequest::default()
                .with_acks(0)
                .with_timeout_ms(5000)
                .with_topic_data(vec![TopicProduceData::default()
                    .with_name(name("fsynced"))
                    .with_partition_data(vec![PartitionProduceData::default()
                        .with_index(1)
                        .with_records(Some(Bytes::from(records)))])]);
            c.send(ApiKey::Produce, 9, &req).await;
            continue;
        }
        assert_eq!(
            produce(&mut c, "fsynced", 1, records, acks).await,
            (0, 2 * i as i64)
        );
    }
    broker.restart_uncleanly().await;
    let mut c = broker.client().await;
    let resp: FetchResponse = c
        .call(ApiKey::Fetch, 12, &fetch_request("fsynced", 1, 0, 0, 1))
        .await;
    assert_eq!(records_of(&resp.responses[0].partitions[0]).len(), 8);
}

#[tokio::test]
async fn committed_offsets_survive_restart_via_consumer_offsets() {
    use kafka_protocol::messages::offset_commit_request::{
        OffsetCommitRequestPartition, OffsetCommitRequestTopic,
    };
    use kafka_protocol::messages::offset_fetch_request::{
        OffsetFetchRequestGroup, OffsetFetchRequestTopics,
    };
    let mut broker = TestBroker::start(&[("offsets.topic.num.partitions", "5")]).await;
    let mut c = broker.client().await;
    create_topic(&mut c, "orders", 2, &[]).await;
    let find = find_coordinator(&mut c, "billing").await;
    assert_eq!(find.coordinators[0].error_code, 0);
    assert_eq!(find.coordinators[0].node_id.0, 1);
    // A "simple" consumer commit: generation -1, no member id.
    let commit = OffsetCommitRequest::default()
        .with_group_id(GroupId(StrBytes::from_static_str("billing")))
        .with_generation_id_or_member_epoch(-1)
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(name("orders"))
            .with_partitions(vec![
                OffsetCommitRequestPartition::default()
                    .with_partition_index(1)
                    .with_committed_offset(42)
                    .with_committed_leader_epoch(0)
                    .with_committed_metadata(Some(StrBytes::from_static_str("meta"))),
                OffsetCommitRequestPartition::default()
                    .with_partition_index(9)
                    .with_committed_offset(1),
            ])]);
    let resp: OffsetCommitResponse = c.call(ApiKey::OffsetCommit, 8, &commit).await;
    let codes: Vec<i16> = resp.topics[0]
        .partitions
        .iter()
        .map(|p| p.error_code)
        .collect();
    assert_eq!(
        codes,
        vec![0, 3],
        "unknown partition gets UNKNOWN_TOPIC_OR_PARTITION"
    );
    broker.restart_uncleanly().await;
    let mut c = broker.client().await;
    let fetch = OffsetFetchRequest::default().with_groups(vec![OffsetFetchRequestGroup::default()
        .with_group_id(GroupId(StrBytes::from_static_str("billing")))
        .with_topics(Some(vec![OffsetFetchRequestTopics::default()
            .with_name(name("orders"))
            .with_partition_indexes(vec![0, 1])]))]);
    let resp: OffsetFetchResponse = c.call(ApiKey::OffsetFetch, 8, &fetch).await;
    let parts = &resp.groups[0].topics[0].partitions;
    assert_eq!(
        (parts[0].partition_index, parts[0].committed_offset),
        (0, -1)
    );
    assert_eq!(
        (parts[1].partition_index, parts[1].committed_offset),
        (1, 42)
    );
    assert_eq!(parts[1].metadata.as_deref(), Some("meta"));
    let groups: ListGroupsResponse = c
        .call(ApiKey::ListGroups, 4, &ListGroupsRequest::default())
        .await;
    assert_eq!(groups.groups.len(), 1);
    assert_eq!(groups.groups[0].group_state.as_str(), "Empty");
    // The offsets topic is Kafka's: compacted, internal, 5 partitions as configured.
    let md: MetadataResponse = c
        .call(
            ApiKey::Metadata,
            12,
            &MetadataRequest::default().with_topics(None),
        )
        .await;
    let offsets_topic = md
        .topics
        .iter()
        .find(|t| t.name.as_ref().map(|n| n.as_str()) == Some("__consumer_offsets"))
        .unwrap();
    assert!(offsets_topic.is_internal);
    assert_eq!(offsets_topic.partitions.len(), 5);
    let deleted: DeleteGroupsResponse = c
        .call(
            ApiKey::DeleteGroups,
            2,
            &DeleteGroupsRequest::default()
                .with_groups_names(vec![GroupId(StrBytes::from_static_str("billing"))]),
        )
        .await;
    assert_eq!(deleted.results[0].error_code, 0);
    broker.restart().await;
    let mut c = broker.client().await;
    let resp: OffsetFetchResponse = c.call(ApiKey::OffsetFetch, 8, &fetch).await;
    assert_eq!(
        resp.groups[0].topics[0].partitions[1].committed_offset, -1,
        "the deletion's tombstones were replayed"
    );
}

#[tokio::test]
async fn metadata_auto_creates_topics_when_enabled_and_allowed() {
    use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
    let broker = TestBroker::start(&[
        ("num.partitions", "3"),
        ("offsets.topic.num.partitions", "5"),
    ])
    .await;
    let mut c = broker.client().await;
    let ask = |topic: &str, allow: bool| {
        MetadataRequest::default()
            .with_topics(Some(vec![
                MetadataRequestTopic::default().with_name(Some(name(topic)))
            ]))
            .with_allow_auto_topic_creation(allow)
    };
    let refused: MetadataResponse = c
        .call(ApiKey::Metadata, 12, &ask("not-allowed", false))
        .await;
    assert_eq!(refused.topics[0].error_code, 3, "the client opted out");
    let created: MetadataResponse = c.call(ApiKey::Metadata, 12, &ask("auto-made", true)).await;
    assert_eq!(created.topics[0].error_code, 0);
    assert_eq!(
        created.topics[0].partitions.len(),
        3,
        "num.partitions applies"
    );
    assert!(!created.topics[0].topic_id.is_nil());
    let invalid: MetadataResponse = c.call(ApiKey::Metadata, 12, &ask("bad name", true)).await;
    assert_eq!(invalid.topics[0].error_code, 17, "INVALID_TOPIC_EXCEPTION");
    // As in Kafka, a `__` prefix is an ordinary name; the offsets topic is created with
    // its own settings, and so is the transaction log.
    let private: MetadataResponse = c.call(ApiKey::Metadata, 12, &ask("__private", true)).await;
    assert_eq!(private.topics[0].error_code, 0);
    assert_eq!(private.topics[0].partitions.len(), 3);
    assert!(!private.topics[0].is_internal);
    let offsets: MetadataResponse = c
        .call(ApiKey::Metadata, 12, &ask("__consumer_offsets", true))
        .await;
    assert_eq!(offsets.topics[0].error_code, 0);
    assert_eq!(
        offsets.topics[0].partitions.len(),
        5,
        "offsets.topic.num.partitions applies"
    );
    assert!(offsets.topics[0].is_internal);
    let txn: MetadataResponse = c
        .call(ApiKey::Metadata, 12, &ask("__transaction_state", true))
        .await;
    assert_eq!(txn.topics[0].error_code, 0);
    assert_eq!(
        txn.topics[0].partitions.len(),
        50,
        "transaction.state.log.num.partitions applies"
    );
    assert!(txn.topics[0].is_internal);
    assert_eq!(
        produce(&mut c, "auto-made", 2, batch(&["x"], Compression::None), 1).await,
        (0, 0)
    );
}

#[tokio::test]
async fn repeated_request_entries_are_answered_once() {
    use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
    use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
    use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
    let broker = TestBroker::start(&[]).await;
    let mut c = broker.client().await;
    create_topic(&mut c, "wide", 8, &[]).await;
    let same = MetadataRequestTopic::default().with_name(Some(name("wide")));
    let md: MetadataResponse = c
        .call(
            ApiKey::Metadata,
            12,
            &MetadataRequest::default().with_topics(Some(vec![same; 10_000])),
        )
        .await;
    assert_eq!(md.topics.len(), 1, "one answer per distinct topic");
    assert_eq!(md.topics[0].partitions.len(), 8);
    let broker_resource = DescribeConfigsResource::default()
        .with_resource_type(4)
        .with_resource_name(StrBytes::from_static_str(""));
    let req = DescribeConfigsRequest::default()
        .with_include_documentation(true)
        .with_resources(vec![broker_resource; 1000]);
    let resp: DescribeConfigsResponse = c.call(ApiKey::DescribeConfigs, 4, &req).await;
    assert_eq!(resp.results.len(), 1000);
    assert!(
        resp.results
            .iter()
            .all(|r| r.error_code == 42 && r.configs.is_empty()),
        "duplicates get INVALID_REQUEST"
    );
    // A huge unknown topic name with many partitions: answered with the name once.
    let long = "x".repeat(30_000);
    let req = OffsetFetchRequest::default()
        .with_group_id(GroupId(StrBytes::from_static_str("g")))
        .with_topics(Some(vec![OffsetFetchRequestTopic::default()
            .with_name(name(&long))
            .with_partition_indexes((0..50_000).chain(0..50_000).collect())]));
    let resp: OffsetFetchResponse = c.call(ApiKey::OffsetFetch, 7, &req).await;
    assert_eq!(
        (resp.error_code, resp.topics.len()),
        (16, 0),
        "NOT_COORDINATOR before __consumer_offsets exists, as in Kafka"
    );
    find_coordinator(&mut c, "g").await;
    let resp: OffsetFetchResponse = c.call(ApiKey::OffsetFetch, 7, &req).await;
    assert_eq!(resp.error_code, 0);
    assert_eq!(resp.topics.len(), 1);
    assert_eq!(
        resp.topics[0].partitions.len(),
        50_000,
        "each partition once"
    );
    assert!(resp.topics[0]
        .partitions
        .iter()
        .all(|p| p.committed_offset == -1));
}

#[tokio::test]
async fn internal_topics_are_refused_to_clients() {
    let broker = TestBroker::start(&[]).await;
    let mut c = broker.client().await;
    // FindCoordinator creates __consumer_offsets.
    find_coordinator(&mut c, "g").await;
    assert_eq!(
        produce(
            &mut c,
            "__consumer_offsets",
            0,
            batch(&["forged"], Compression::None),
            1
        )
        .await
        .0,
        17
    );
    let created = create_topic(&mut c, "__transaction_state", 1, &[]).await;
    assert_eq!(created.topics[0].error_code, 42);
    // Other names starting with "__" are ordinary topics (Kafka's Topic.isInternal).
    let created = create_topic(&mut c, "__mine", 1, &[]).await;
    assert_eq!(created.topics[0].error_code, 0);
    assert_eq!(
        produce(&mut c, "__mine", 0, batch(&["ok"], Compression::None), 1)
            .await
            .0,
        0
    );
    let req = DeleteTopicsRequest::default().with_topic_names(vec![name("__mine")]);
    let resp: DeleteTopicsResponse = c.call(ApiKey::DeleteTopics, 5, &req).await;
    assert_eq!(resp.responses[0].error_code, 0);
    let req = DeleteTopicsRequest::default().with_topic_names(vec![name("__consumer_offsets")]);
    let resp: DeleteTopicsResponse = c.call(ApiKey::DeleteTopics, 5, &req).await;
    assert_eq!(resp.responses[0].error_code, 17);
    let md: MetadataResponse = c
        .call(
            ApiKey::Metadata,
            12,
            &MetadataRequest::default().with_topics(None),
        )
        .await;
    assert!(md
        .topics
        .iter()
        .any(|t| t.name.as_ref().map(|n| n.as_str()) == Some("__consumer_offsets")));
}

#[tokio::test]
async fn pipelined_large_fetches_are_all_answered_in_order() {
    let broker = TestBroker::start(&[]).await;
    let mut c = broker.client().await;
    create_topic(&mut c, "big", 1, &[]).await;
    let value = "v".repeat(900 * 1024);
    for _ in 0..2 {
        assert_eq!(
            produce(&mut c, "big", 0, batch(&[&value], Compression::None), 1)
                .await
                .0,
            0
        );
    }
    // 100 pipelined fetches of ~1.8 MB each (180 MB in all): their records go out from
    // the segment file (sendfile), interleaved with the encoded parts, in request order,
    // while the reader is held to the in-flight limit.
    let mut consumer = broker.client().await;
    let mut ids = Vec::new();
    for _ in 0..100 {
        let mut req = fetch_request("big", 0, 0, 0, 1);
        req.topics[0].partitions[0].partition_max_bytes = 4 * 1024 * 1024;
        ids.push(consumer.send(ApiKey::Fetch, 12, &req).await);
    }
    for id in ids {
        let (got, resp): (i32, FetchResponse) =
            tokio::time::timeout(Duration::from_secs(60), consumer.receive(ApiKey::Fetch, 12))
                .await
                .expect("no stall");
        assert_eq!(got, id);
        assert_eq!(records_of(&resp.responses[0].partitions[0]).len(), 2);
    }
}

#[tokio::test]
async fn max_connections_is_enforced_and_frees_up() {
    let broker = TestBroker::start(&[("max.connections", "2")]).await;
    let mut a = broker.client().await;
    let mut b = broker.client().await;
    let _: ApiVersionsResponse = a
        .call(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default())
        .await;
    let _: ApiVersionsResponse = b
        .call(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default())
        .await;
    let mut c = broker.client().await;
    assert!(c.is_closed().await, "a third connection is refused");
    drop(a);
    // The slot frees once the broker notices the close.
    let mut served = false;
    for _ in 0..50 {
        let mut d = broker.client().await;
        d.send(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default())
            .await;
        if let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(500), d.read_frame()).await
        {
            served = true;
            break;
        }
    }
    assert!(served, "a connection slot was released");
    let _: ApiVersionsResponse = b
        .call(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default())
        .await;
}

#[tokio::test]
async fn auto_creation_is_bounded_per_request_and_completes_on_retry() {
    use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
    let broker = TestBroker::start(&[]).await;
    let mut c = broker.client().await;
    let req = MetadataRequest::default()
        .with_allow_auto_topic_creation(true)
        .with_topics(Some(
            (0..150)
                .map(|i| {
                    MetadataRequestTopic::default().with_name(Some(name(&format!("auto-{i}"))))
                })
                .collect(),
        ));
    let first: MetadataResponse = c.call(ApiKey::Metadata, 12, &req).await;
    let created = first.topics.iter().filter(|t| t.error_code == 0).count();
    let deferred = first.topics.iter().filter(|t| t.error_code == 5).count();
    assert_eq!(
        (created, deferred),
        (100, 50),
        "LEADER_NOT_AVAILABLE for the rest"
    );
    let second: MetadataResponse = c.call(ApiKey::Metadata, 12, &req).await;
    assert!(
        second.topics.iter().all(|t| t.error_code == 0),
        "the retry creates the remaining topics"
    );
}

/// A fetch claiming a replica id reads to the log end, past the high watermark, so only
/// a follower replica of the partition may send one: anyone else gets Kafka's errors
/// and no records (`Partition.followerReplicaOrThrow`).
#[tokio::test]
async fn a_fetch_claiming_a_replica_id_that_is_not_a_follower_is_refused() {
    let broker = TestBroker::start(&[]).await;
    let mut c = broker.client().await;
    create_topic(&mut c, "guarded", 1, &[]).await;
    let (err, _) = produce(
        &mut c,
        "guarded",
        0,
        batch(&["a", "b"], Compression::None),
        -1,
    )
    .await;
    assert_eq!(err, 0);
    // This broker itself and a node that is no replica at all.
    for replica in [1, 2] {
        let mut req = fetch_request("guarded", 0, 0, 0, 1);
        req.replica_id = BrokerId(replica);
        let resp: FetchResponse = c.call(ApiKey::Fetch, 11, &req).await;
        let p = &resp.responses[0].partitions[0];
        assert_eq!(
            p.error_code, 6,
            "NOT_LEADER_OR_FOLLOWER for replica {replica}"
        );
        assert!(records_of(p).is_empty());
        // With the leader epoch in the request, Kafka answers UNKNOWN_LEADER_EPOCH.
        req.topics[0].partitions[0].current_leader_epoch = 0;
        let resp: FetchResponse = c.call(ApiKey::Fetch, 11, &req).await;
        assert_eq!(resp.responses[0].partitions[0].error_code, 75);
    }
    // A consumer reads as before.
    let resp: FetchResponse = c
        .call(ApiKey::Fetch, 11, &fetch_request("guarded", 0, 0, 0, 1))
        .await;
    assert_eq!(records_of(&resp.responses[0].partitions[0]).len(), 2);
}

/// OffsetForLeaderEpoch answers from the partition's leader-epoch cache, which survives
/// a restart in Kafka's `leader-epoch-checkpoint` file, with Kafka's rules for epochs it
/// does not know and Kafka's fencing errors.
#[tokio::test]
async fn offset_for_leader_epoch_answers_from_the_epoch_cache() {
    use kafka_protocol::messages::offset_for_leader_epoch_request::{
        OffsetForLeaderPartition, OffsetForLeaderTopic,
    };
    fn ask(topic: &str, current: i32, epoch: i32) -> OffsetForLeaderEpochRequest {
        OffsetForLeaderEpochRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_topics(vec![OffsetForLeaderTopic::default()
                .with_topic(name(topic))
                .with_partitions(vec![OffsetForLeaderPartition::default()
                    .with_partition(0)
                    .with_current_leader_epoch(current)
                    .with_leader_epoch(epoch)])])
    }
    async fn answer(c: &mut Client, req: &OffsetForLeaderEpochRequest) -> (i16, i32, i64) {
        let resp: OffsetForLeaderEpochResponse = c.call(ApiKey::OffsetForLeaderEpoch, 4, req).await;
        let p = &resp.topics[0].partitions[0];
        (p.error_code, p.leader_epoch, p.end_offset)
    }
    let mut broker = TestBroker::start(&[]).await;
    let mut c = broker.client().await;
    create_topic(&mut c, "epochs", 1, &[]).await;
    for values in [&["a", "b"][..], &["c"], &["d", "e", "f"]] {
        let (err, _) = produce(&mut c, "epochs", 0, batch(values, Compression::None), -1).await;
        assert_eq!(err, 0);
    }
    // Epoch 0 is the latest: it ends at the log end.
    assert_eq!(answer(&mut c, &ask("epochs", -1, 0)).await, (0, 0, 6));
    // An epoch newer than any the log knows: undefined, as in Kafka.
    assert_eq!(answer(&mut c, &ask("epochs", -1, 3)).await, (0, -1, -1));
    // KIP-320 fencing on the caller's idea of the current epoch.
    assert_eq!(answer(&mut c, &ask("epochs", 0, 0)).await, (0, 0, 6));
    assert_eq!(
        answer(&mut c, &ask("epochs", 1, 0)).await.0,
        75,
        "UNKNOWN_LEADER_EPOCH"
    );
    assert_eq!(answer(&mut c, &ask("nowhere", -1, 0)).await.0, 3);
    // ListOffsets names the epoch of the offsets it returns.
    let list = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![
            kafka_protocol::messages::list_offsets_request::ListOffsetsTopic::default()
                .with_name(name("epochs"))
                .with_partitions(vec![
                    kafka_protocol::messages::list_offsets_request::ListOffsetsPartition::default()
                        .with_partition_index(0)
                        .with_timestamp(-1),
                ]),
        ]);
    let resp: ListOffsetsResponse = c.call(ApiKey::ListOffsets, 7, &list).await;
    let p = &resp.topics[0].partitions[0];
    assert_eq!((p.offset, p.leader_epoch), (6, 0));

    broker.restart_uncleanly().await;
    let mut c = broker.client().await;
    assert_eq!(answer(&mut c, &ask("epochs", -1, 0)).await, (0, 0, 6));
    let checkpoint = broker
        .dir
        .path()
        .join("data/epochs-0/leader-epoch-checkpoint");
    assert_eq!(
        std::fs::read_to_string(&checkpoint).unwrap(),
        "0\n1\n0 0\n",
        "Kafka's format: version, count, then `epoch start-offset`"
    );
}

/// DescribeQuorum on the embedded controller: a quorum of one (this node, never
/// elected, so epoch 0) whose log end is the count of metadata records; a request for
/// another partition gets UNKNOWN_TOPIC_OR_PARTITION, as from Kafka.
#[tokio::test]
async fn describe_quorum_on_a_single_node() {
    use kafka_protocol::messages::describe_quorum_request::{PartitionData, TopicData};
    fn ask(topic: &str, partition: i32) -> DescribeQuorumRequest {
        DescribeQuorumRequest::default().with_topics(vec![TopicData::default()
            .with_topic_name(name(topic))
            .with_partitions(vec![
                PartitionData::default().with_partition_index(partition)
            ])])
    }
    let broker = TestBroker::start(&[]).await;
    let mut c = broker.client().await;
    create_topic(&mut c, "q", 1, &[]).await;
    let resp: DescribeQuorumResponse = c
        .call(ApiKey::DescribeQuorum, 2, &ask("__cluster_metadata", 0))
        .await;
    assert_eq!(resp.error_code, 0);
    let p = &resp.topics[0].partitions[0];
    assert_eq!((p.error_code, p.leader_id.0, p.leader_epoch), (0, 1, 0));
    // The cluster id, the broker's registration, the topic and its partition.
    assert!(p.high_watermark >= 4, "{}", p.high_watermark);
    let voters: Vec<(i32, i64)> = p
        .current_voters
        .iter()
        .map(|v| (v.replica_id.0, v.log_end_offset))
        .collect();
    assert_eq!(voters, vec![(1, p.high_watermark)]);
    for (topic, partition) in [("__cluster_metadata", 1), ("other", 0)] {
        let resp: DescribeQuorumResponse = c
            .call(ApiKey::DescribeQuorum, 2, &ask(topic, partition))
            .await;
        assert_eq!(
            resp.topics[0].partitions[0].error_code, 3,
            "{topic}-{partition}"
        );
    }
}
