//! Transactions at the protocol level, with exact requests: Kafka's error codes for
//! every bad transactional request, and the partition side (last stable offset,
//! aborted transactions in read_committed fetches) seen byte for byte.

mod common;

use std::time::Duration;

use common::{Client, TestBroker};
use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::write_txn_markers_request::{
    WritableTxnMarker, WritableTxnMarkerTopic,
};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use ottla_protocol::batch::{BatchIter, RecordBatchMut};
use ottla_protocol::compression::Compression;
use ottla_protocol::control::{build_end_txn_marker, ControlRecordType};
use ottla_protocol::records::{build_record_batch, Record};

const TXN: &str = "payments";
const TOPIC: &str = "ledger";

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

async fn setup() -> (TestBroker, Client) {
    setup_with(&[]).await
}

/// [`setup`] with more broker settings.
async fn setup_with(extra: &[(&str, &str)]) -> (TestBroker, Client) {
    let mut overrides = vec![("transaction.state.log.num.partitions", "3")];
    overrides.extend_from_slice(extra);
    let broker = TestBroker::start(&overrides).await;
    let mut c = broker.client().await;
    let created: CreateTopicsResponse = c
        .call(
            ApiKey::CreateTopics,
            7,
            &CreateTopicsRequest::default()
                .with_timeout_ms(5000)
                .with_topics(vec![CreatableTopic::default()
                    .with_name(TopicName(s(TOPIC)))
                    .with_num_partitions(2)
                    .with_replication_factor(-1)]),
        )
        .await;
    assert_eq!(created.topics[0].error_code, 0);
    let found: FindCoordinatorResponse = c
        .call(
            ApiKey::FindCoordinator,
            4,
            &FindCoordinatorRequest::default()
                .with_key_type(1)
                .with_coordinator_keys(vec![s(TXN)]),
        )
        .await;
    assert_eq!(
        found.coordinators[0].error_code, 0,
        "transaction coordinator found"
    );
    assert_eq!(found.coordinators[0].node_id.0, 1);
    (broker, c)
}

async fn init(c: &mut Client, timeout_ms: i32) -> InitProducerIdResponse {
    c.call(
        ApiKey::InitProducerId,
        4,
        &InitProducerIdRequest::default()
            .with_transactional_id(Some(TransactionalId(s(TXN))))
            .with_transaction_timeout_ms(timeout_ms)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1),
    )
    .await
}

/// AddPartitionsToTxn v`version` (0-3); per (topic, partition) error codes.
async fn add_partitions(
    c: &mut Client,
    version: i16,
    pid: i64,
    epoch: i16,
    topics: &[(&str, i32)],
) -> Vec<(String, i32, i16)> {
    let req = AddPartitionsToTxnRequest::default()
        .with_v3_and_below_transactional_id(TransactionalId(s(TXN)))
        .with_v3_and_below_producer_id(ProducerId(pid))
        .with_v3_and_below_producer_epoch(epoch)
        .with_v3_and_below_topics(
            topics
                .iter()
                .map(|(t, p)| {
                    AddPartitionsToTxnTopic::default()
                        .with_name(TopicName(s(t)))
                        .with_partitions(vec![*p])
                })
                .collect(),
        );
    let r: AddPartitionsToTxnResponse = c.call(ApiKey::AddPartitionsToTxn, version, &req).await;
    r.results_by_topic_v3_and_below
        .iter()
        .flat_map(|t| {
            t.results_by_partition.iter().map(|p| {
                (
                    t.name.to_string(),
                    p.partition_index,
                    p.partition_error_code,
                )
            })
        })
        .collect()
}

async fn end_txn(c: &mut Client, id: &str, pid: i64, epoch: i16, commit: bool) -> i16 {
    let r: EndTxnResponse = c
        .call(
            ApiKey::EndTxn,
            3,
            &EndTxnRequest::default()
                .with_transactional_id(TransactionalId(s(id)))
                .with_producer_id(ProducerId(pid))
                .with_producer_epoch(epoch)
                .with_committed(commit),
        )
        .await;
    r.error_code
}

async fn produce_batch(c: &mut Client, partition: i32, batch: Vec<u8>) -> (i16, i64) {
    produce_batch_v(c, 9, partition, batch).await
}

async fn produce_batch_v(
    c: &mut Client,
    version: i16,
    partition: i32,
    batch: Vec<u8>,
) -> (i16, i64) {
    let req = ProduceRequest::default()
        .with_transactional_id(Some(TransactionalId(s(TXN))))
        .with_acks(-1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(s(TOPIC)))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(batch.into()))])]);
    let r: ProduceResponse = c.call(ApiKey::Produce, version, &req).await;
    let p = &r.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

fn transactional_batch(pid: i64, epoch: i16, seq: i32, n: usize) -> Vec<u8> {
    let records: Vec<Record> = (0..n)
        .map(|i| Record {
            offset: i as i64,
            timestamp: 1_700_000_000_000,
            key: None,
            value: Some(format!("v{i}").into_bytes()),
            headers: Vec::new(),
        })
        .collect();
    let mut b = build_record_batch(&records, Compression::None, pid, epoch, seq);
    RecordBatchMut::new(&mut b)
        .unwrap()
        .set_transactional(false);
    b
}

/// Fetch v11 of partition 0 at `isolation`: (high watermark, last stable offset,
/// aborted transactions, record bytes).
async fn fetch(c: &mut Client, isolation: i8) -> (i64, i64, Option<Vec<(i64, i64)>>, usize) {
    let req = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(0)
        .with_max_bytes(1 << 20)
        .with_isolation_level(isolation)
        .with_topics(vec![FetchTopic::default()
            .with_topic(TopicName(s(TOPIC)))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(0)
                .with_partition_max_bytes(1 << 20)])]);
    let r: FetchResponse = c.call(ApiKey::Fetch, 11, &req).await;
    let p = &r.responses[0].partitions[0];
    assert_eq!(p.error_code, 0);
    let aborted = p.aborted_transactions.as_ref().map(|a| {
        a.iter()
            .map(|t| (t.producer_id.0, t.first_offset))
            .collect()
    });
    let bytes = p.records.as_ref().map_or(0, |r| r.len());
    (p.high_watermark, p.last_stable_offset, aborted, bytes)
}

async fn latest(c: &mut Client, isolation: i8) -> i64 {
    let req = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_isolation_level(isolation)
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(TopicName(s(TOPIC)))
            .with_partitions(vec![ListOffsetsPartition::default()
                .with_partition_index(0)
                .with_timestamp(-1)])]);
    let r: ListOffsetsResponse = c.call(ApiKey::ListOffsets, 7, &req).await;
    r.topics[0].partitions[0].offset
}

#[tokio::test]
async fn bad_transactional_requests_get_kafkas_errors() {
    let (_broker, mut c) = setup().await;
    // transaction.timeout.ms outside (0, transaction.max.timeout.ms].
    assert_eq!(
        init(&mut c, 0).await.error_code,
        50,
        "INVALID_TRANSACTION_TIMEOUT"
    );
    assert_eq!(init(&mut c, 900_001).await.error_code, 50);
    let first = init(&mut c, 60_000).await;
    assert_eq!(first.error_code, 0);
    assert_eq!(first.producer_epoch, 0);
    let pid = first.producer_id.0;
    // A second InitProducerId bumps the epoch: the first producer is fenced.
    let second = init(&mut c, 60_000).await;
    assert_eq!((second.producer_id.0, second.producer_epoch), (pid, 1));
    assert_eq!(
        add_partitions(&mut c, 3, pid, 0, &[(TOPIC, 0)]).await,
        vec![(TOPIC.to_string(), 0, 90)],
        "PRODUCER_FENCED"
    );
    assert_eq!(
        add_partitions(&mut c, 1, pid, 0, &[(TOPIC, 0)]).await,
        vec![(TOPIC.to_string(), 0, 47)],
        "INVALID_PRODUCER_EPOCH before KIP-588"
    );
    assert_eq!(
        add_partitions(&mut c, 3, pid + 1, 1, &[(TOPIC, 0)]).await,
        vec![(TOPIC.to_string(), 0, 49)],
        "INVALID_PRODUCER_ID_MAPPING"
    );
    // An unknown partition fails the whole request; the rest is not attempted.
    assert_eq!(
        add_partitions(&mut c, 3, pid, 1, &[(TOPIC, 0), (TOPIC, 7), ("nope", 0)]).await,
        vec![
            (TOPIC.to_string(), 0, 55),
            (TOPIC.to_string(), 7, 3),
            ("nope".to_string(), 0, 3)
        ]
    );
    assert_eq!(end_txn(&mut c, "never-seen", pid, 1, true).await, 49);
    assert_eq!(
        end_txn(&mut c, TXN, pid, 1, true).await,
        48,
        "INVALID_TXN_STATE: no transaction open"
    );
    // Clients may not write markers themselves.
    let (code, _) = produce_batch(
        &mut c,
        0,
        build_end_txn_marker(pid, 1, 0, ControlRecordType::Commit, 0),
    )
    .await;
    assert_eq!(code, 87, "INVALID_RECORD");
    let markers: WriteTxnMarkersResponse = c
        .call(
            ApiKey::WriteTxnMarkers,
            1,
            &WriteTxnMarkersRequest::default().with_markers(vec![WritableTxnMarker::default()
                .with_producer_id(ProducerId(pid))
                .with_producer_epoch(1)
                .with_transaction_result(true)
                .with_topics(vec![WritableTxnMarkerTopic::default()
                    .with_name(TopicName(s("nope")))
                    .with_partition_indexes(vec![0])])]),
        )
        .await;
    assert_eq!(markers.markers[0].topics[0].partitions[0].error_code, 3);
    let described: DescribeTransactionsResponse = c
        .call(
            ApiKey::DescribeTransactions,
            0,
            &DescribeTransactionsRequest::default()
                .with_transactional_ids(vec![TransactionalId(s("never-seen"))]),
        )
        .await;
    assert_eq!(
        described.transaction_states[0].error_code, 105,
        "TRANSACTIONAL_ID_NOT_FOUND"
    );
    // Nothing above left a transaction open or changed the id's producer.
    let d: DescribeTransactionsResponse = c
        .call(
            ApiKey::DescribeTransactions,
            0,
            &DescribeTransactionsRequest::default()
                .with_transactional_ids(vec![TransactionalId(s(TXN))]),
        )
        .await;
    let state = &d.transaction_states[0];
    assert_eq!(state.transaction_state.as_str(), "Empty");
    assert_eq!((state.producer_id.0, state.producer_epoch), (pid, 1));
}

#[tokio::test]
async fn read_committed_stops_at_an_open_transaction_and_learns_of_its_abort() {
    let (broker, mut c) = setup().await;
    let r = init(&mut c, 60_000).await;
    let (pid, epoch) = (r.producer_id.0, r.producer_epoch);
    assert_eq!(
        add_partitions(&mut c, 3, pid, epoch, &[(TOPIC, 0)]).await,
        vec![(TOPIC.to_string(), 0, 0)]
    );
    assert_eq!(
        produce_batch(&mut c, 0, transactional_batch(pid, epoch, 0, 3)).await,
        (0, 0)
    );
    // Open: read_uncommitted sees 3 records, read_committed stops at 0.
    let (hw, lso, aborted, bytes) = fetch(&mut c, 1).await;
    assert_eq!((hw, lso, bytes), (3, 0, 0));
    assert_eq!(
        aborted,
        Some(vec![]),
        "read_committed: an empty list, as Kafka sends"
    );
    let (_, _, aborted, bytes) = fetch(&mut c, 0).await;
    assert!(bytes > 0);
    assert_eq!(
        aborted, None,
        "read_uncommitted carries no aborted list (null)"
    );
    assert_eq!(latest(&mut c, 1).await, 0);
    assert_eq!(latest(&mut c, 0).await, 3);

    assert_eq!(end_txn(&mut c, TXN, pid, epoch, false).await, 0);
    // The marker follows EndTxn's answer (the second phase).
    let mut waited = Duration::ZERO;
    loop {
        let (hw, lso, _, _) = fetch(&mut c, 1).await;
        if hw == 4 && lso == 4 {
            break;
        }
        assert!(
            waited < Duration::from_secs(10),
            "marker never written: hw {hw} lso {lso}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
        waited += Duration::from_millis(20);
    }
    let (_, _, aborted, bytes) = fetch(&mut c, 1).await;
    assert!(bytes > 0);
    assert_eq!(aborted, Some(vec![(pid, 0)]));
    assert_eq!(latest(&mut c, 1).await, 4);

    // The marker is a control batch with the producer's id and epoch.
    let req = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_bytes(1 << 20)
        .with_topics(vec![FetchTopic::default()
            .with_topic(TopicName(s(TOPIC)))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(3)
                .with_partition_max_bytes(1 << 20)])]);
    let r: FetchResponse = c.call(ApiKey::Fetch, 11, &req).await;
    let records = r.responses[0].partitions[0].records.clone().unwrap();
    let marker = BatchIter::new(&records).next().unwrap().unwrap();
    assert!(marker.is_control() && marker.is_transactional());
    assert_eq!((marker.base_offset(), marker.producer_id()), (3, pid));
    assert_eq!(
        ottla_protocol::control::control_record_type(&marker),
        Some(ControlRecordType::Abort)
    );
    drop(broker);
}

#[tokio::test]
async fn the_aborted_transaction_index_survives_a_restart() {
    let (mut broker, mut c) = setup().await;
    let r = init(&mut c, 60_000).await;
    let (pid, epoch) = (r.producer_id.0, r.producer_epoch);
    add_partitions(&mut c, 3, pid, epoch, &[(TOPIC, 0)]).await;
    produce_batch(&mut c, 0, transactional_batch(pid, epoch, 0, 2)).await;
    assert_eq!(end_txn(&mut c, TXN, pid, epoch, false).await, 0);
    let mut tries = 0;
    while fetch(&mut c, 1).await.1 != 3 {
        tries += 1;
        assert!(tries < 500, "marker never written");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for clean in [true, false] {
        if clean {
            broker.restart().await;
        } else {
            broker.restart_uncleanly().await;
        }
        let mut c = broker.client().await;
        let (hw, lso, aborted, _) = fetch(&mut c, 1).await;
        assert_eq!(
            (hw, lso),
            (3, 3),
            "after a {} restart",
            if clean { "clean" } else { "unclean" }
        );
        assert_eq!(aborted, Some(vec![(pid, 0)]));
    }
}

#[tokio::test]
async fn transactional_data_for_a_partition_outside_the_transaction_is_refused() {
    let (_broker, mut c) = setup().await;
    let r = init(&mut c, 60_000).await;
    let (pid, epoch) = (r.producer_id.0, r.producer_epoch);
    // Partition 1 was never added: the coordinator says so, nothing is written, and no
    // transaction hangs there.
    assert_eq!(
        produce_batch(&mut c, 0, transactional_batch(pid, epoch, 0, 2))
            .await
            .0,
        48,
        "INVALID_TXN_STATE: no transaction open at all"
    );
    assert_eq!(
        add_partitions(&mut c, 3, pid, epoch, &[(TOPIC, 1)]).await,
        vec![(TOPIC.to_string(), 1, 0)]
    );
    assert_eq!(
        produce_batch(&mut c, 0, transactional_batch(pid, epoch, 0, 2))
            .await
            .0,
        48,
        "INVALID_TXN_STATE: partition 0 is not part of the transaction"
    );
    // Kafka's coordinator answers TRANSACTION_ABORTABLE; its `AddPartitionsToTxnManager`
    // reads that as INVALID_TXN_STATE for Produce v0-10 (DEFAULT_ERROR), and
    // `ReplicaManager` gives it its message; v11 (GENERIC_ERROR_SUPPORTED) gets
    // TRANSACTION_ABORTABLE itself, without one.
    let not_added = Some("Partition was not added to the transaction".to_string());
    for (version, expected) in [
        (3, (48, None)),
        (8, (48, not_added.clone())),
        (10, (48, not_added)),
        (11, (120, None)),
    ] {
        let answers = produce_each(
            &mut c,
            version,
            Some(TXN),
            vec![(TOPIC, 0, transactional_batch(pid, epoch, 0, 2))],
        )
        .await;
        assert_eq!(
            answers,
            vec![(TOPIC.to_string(), 0, expected.0, expected.1)],
            "Produce v{version}"
        );
    }
    let (hw, lso, _, _) = fetch(&mut c, 1).await;
    assert_eq!((hw, lso), (0, 0), "nothing was appended to partition 0");
    // A fenced epoch is refused as INVALID_PRODUCER_EPOCH.
    assert_eq!(
        add_partitions(&mut c, 3, pid, epoch, &[(TOPIC, 0)]).await,
        vec![(TOPIC.to_string(), 0, 0)]
    );
    assert_eq!(
        produce_batch(&mut c, 0, transactional_batch(pid, epoch - 1, 0, 2))
            .await
            .0,
        47
    );
    // Once added, the first batch is verified and accepted, and later ones need no
    // further check.
    assert_eq!(
        produce_batch(&mut c, 0, transactional_batch(pid, epoch, 0, 2)).await,
        (0, 0)
    );
    assert_eq!(
        produce_batch(&mut c, 0, transactional_batch(pid, epoch, 2, 1)).await,
        (0, 2)
    );
}

/// AddPartitionsToTxn v4 `verify_only` for [`TXN`], as a partition leader sends it
/// (KIP-890 part 1): the coordinator's code for each of `partitions` of [`TOPIC`].
async fn verify_only(c: &mut Client, pid: i64, epoch: i16, partitions: &[i32]) -> Vec<(i32, i16)> {
    use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTransaction;
    let req = AddPartitionsToTxnRequest::default().with_transactions(vec![
        AddPartitionsToTxnTransaction::default()
            .with_transactional_id(TransactionalId(s(TXN)))
            .with_producer_id(ProducerId(pid))
            .with_producer_epoch(epoch)
            .with_verify_only(true)
            .with_topics(vec![AddPartitionsToTxnTopic::default()
                .with_name(TopicName(s(TOPIC)))
                .with_partitions(partitions.to_vec())]),
    ]);
    let r: AddPartitionsToTxnResponse = c.call(ApiKey::AddPartitionsToTxn, 4, &req).await;
    assert_eq!(r.error_code, 0);
    assert_eq!(r.results_by_transaction.len(), 1);
    let topic = &r.results_by_transaction[0].topic_results[0];
    assert_eq!(topic.name.as_str(), TOPIC);
    topic
        .results_by_partition
        .iter()
        .map(|p| (p.partition_index, p.partition_error_code))
        .collect()
}

/// The verify-only AddPartitionsToTxn (v4+) that partition leaders send is answered
/// as Kafka's `TransactionCoordinator.handleVerifyPartitionsInTransaction` does: the
/// producer checks for the whole transaction, then per partition NONE when it is in
/// the transaction, TRANSACTION_ABORTABLE (not INVALID_TXN_STATE) when it is not,
/// whether a transaction is open or not. Nothing changes: a verification adds nothing.
#[tokio::test]
async fn verify_only_add_partitions_answers_transaction_abortable_outside_the_transaction() {
    let (_broker, mut c) = setup().await;
    let r = init(&mut c, 60_000).await;
    let (pid, epoch) = (r.producer_id.0, r.producer_epoch);
    let abortable = ResponseError::TransactionAbortable.code();
    assert_eq!(
        verify_only(&mut c, pid, epoch, &[0, 1]).await,
        vec![(0, abortable), (1, abortable)],
        "Empty: no transaction open"
    );
    assert_eq!(
        add_partitions(&mut c, 3, pid, epoch, &[(TOPIC, 0)]).await,
        vec![(TOPIC.to_string(), 0, 0)]
    );
    assert_eq!(
        verify_only(&mut c, pid, epoch, &[0, 1]).await,
        vec![(0, 0), (1, abortable)],
        "Ongoing"
    );
    assert_eq!(
        verify_only(&mut c, pid, epoch, &[0, 1]).await,
        vec![(0, 0), (1, abortable)],
        "verifying added nothing"
    );
    // The producer checks come first and cover every partition.
    assert_eq!(
        verify_only(&mut c, pid, epoch + 1, &[0, 1]).await,
        vec![(0, 90), (1, 90)],
        "PRODUCER_FENCED"
    );
    assert_eq!(
        verify_only(&mut c, pid + 1, epoch, &[0, 1]).await,
        vec![(0, 49), (1, 49)],
        "INVALID_PRODUCER_ID_MAPPING"
    );
    // Once the transaction is complete its partitions are out of it again.
    assert_eq!(end_txn(&mut c, TXN, pid, epoch, true).await, 0);
    let mut tries = 0;
    loop {
        let answer = verify_only(&mut c, pid, epoch, &[0, 1]).await;
        if answer == vec![(0, abortable), (1, abortable)] {
            break;
        }
        // Until CompleteCommit is written the coordinator is in PrepareCommit:
        // CONCURRENT_TRANSACTIONS for the whole transaction.
        assert_eq!(answer, vec![(0, 51), (1, 51)]);
        tries += 1;
        assert!(tries < 500, "the transaction never completed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// EndTxn v5 (transactions v2): (error, producer id, producer epoch).
async fn end_txn_v5(c: &mut Client, pid: i64, epoch: i16, commit: bool) -> (i16, i64, i16) {
    let r: EndTxnResponse = c
        .call(
            ApiKey::EndTxn,
            5,
            &EndTxnRequest::default()
                .with_transactional_id(TransactionalId(s(TXN)))
                .with_producer_id(ProducerId(pid))
                .with_producer_epoch(epoch)
                .with_committed(commit),
        )
        .await;
    (r.error_code, r.producer_id.0, r.producer_epoch)
}

/// The last stable offset of partition 0 once the markers have landed.
async fn settled_lso(c: &mut Client, expected: i64) -> i64 {
    let mut lso = -1;
    for _ in 0..100 {
        lso = fetch(c, 1).await.1;
        if lso == expected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    lso
}

#[tokio::test]
async fn transactions_v2_add_partitions_at_the_leader_and_bump_the_epoch_at_every_end() {
    let (_broker, mut c) = setup().await;
    // The broker finalizes transaction.version 2, which is what makes Java producers
    // use transactions v2.
    let versions: ApiVersionsResponse = c
        .call(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default())
        .await;
    let tv = versions
        .finalized_features
        .iter()
        .find(|f| f.name.as_str() == "transaction.version")
        .expect("transaction.version is finalized");
    assert_eq!((tv.min_version_level, tv.max_version_level), (2, 2));
    assert!(versions.finalized_features_epoch >= 0);
    let produce = versions.api_keys.iter().find(|k| k.api_key == 0).unwrap();
    let end = versions.api_keys.iter().find(|k| k.api_key == 26).unwrap();
    assert_eq!((produce.max_version, end.max_version), (12, 5));

    let r = init(&mut c, 60_000).await;
    let (pid, epoch) = (r.producer_id.0, r.producer_epoch);
    // Produce v12 with no AddPartitionsToTxn: the leader adds the partition.
    assert_eq!(
        produce_batch_v(&mut c, 12, 0, transactional_batch(pid, epoch, 0, 3)).await,
        (0, 0)
    );
    assert_eq!(
        produce_batch_v(&mut c, 12, 0, transactional_batch(pid, epoch, 3, 2)).await,
        (0, 3)
    );
    assert_eq!(fetch(&mut c, 1).await.1, 0, "the transaction is open");
    // Produce v11 from the same producer is not added for it: verification refuses
    // partition 1, which is not in the transaction, with TRANSACTION_ABORTABLE (v11
    // clients know it); v10 gets INVALID_TXN_STATE instead.
    assert_eq!(
        produce_batch_v(&mut c, 11, 1, transactional_batch(pid, epoch, 0, 1))
            .await
            .0,
        ResponseError::TransactionAbortable.code()
    );
    assert_eq!(
        produce_batch_v(&mut c, 10, 1, transactional_batch(pid, epoch, 0, 1))
            .await
            .0,
        ResponseError::InvalidTxnState.code()
    );
    // EndTxn v5 commits and answers the bumped epoch; a retry gets the same answer.
    assert_eq!(
        end_txn_v5(&mut c, pid, epoch, true).await,
        (0, pid, epoch + 1)
    );
    assert_eq!(settled_lso(&mut c, 6).await, 6, "5 records and the marker");
    assert_eq!(
        end_txn_v5(&mut c, pid, epoch, true).await,
        (0, pid, epoch + 1)
    );
    assert_eq!(end_txn_v5(&mut c, pid, epoch, false).await.0, 48);
    // The old epoch is fenced by the marker; the new one starts at sequence 0.
    assert_eq!(
        produce_batch_v(&mut c, 12, 0, transactional_batch(pid, epoch, 5, 1))
            .await
            .0,
        47
    );
    assert_eq!(
        produce_batch_v(&mut c, 12, 0, transactional_batch(pid, epoch + 1, 0, 2)).await,
        (0, 6)
    );
    assert_eq!(
        end_txn_v5(&mut c, pid, epoch + 1, false).await,
        (0, pid, epoch + 2)
    );
    assert_eq!(settled_lso(&mut c, 9).await, 9);
    let (_, _, aborted, _) = fetch(&mut c, 1).await;
    assert_eq!(
        aborted,
        Some(vec![(pid, 6)]),
        "the second transaction was aborted"
    );
    // An abort with nothing open only bumps the epoch; a commit is refused.
    assert_eq!(end_txn_v5(&mut c, pid, epoch + 2, true).await.0, 48);
    assert_eq!(
        end_txn_v5(&mut c, pid, epoch + 2, false).await,
        (0, pid, epoch + 3)
    );
    // A stale epoch is fenced: PRODUCER_FENCED.
    assert_eq!(end_txn_v5(&mut c, pid, epoch, false).await.0, 90);
    assert_eq!(settled_lso(&mut c, 9).await, 9, "nothing was written");
}

// ------------------------------------------------------------------------------------
// Transactional records without a transactional id (KafkaApis.handleProduceRequest)

/// A batch of `n` records from no producer (no id, epoch or sequence).
fn plain_batch(n: usize) -> Vec<u8> {
    let records: Vec<Record> = (0..n)
        .map(|i| Record {
            offset: i as i64,
            timestamp: 1_700_000_000_000,
            key: None,
            value: Some(format!("p{i}").into_bytes()),
            headers: Vec::new(),
        })
        .collect();
    build_record_batch(&records, Compression::None, -1, -1, -1)
}

/// Produce v`version` (acks=all) of one batch per (topic, partition), with
/// `transactional_id` as given (`None`: null): each partition's (topic, partition,
/// error, error message).
async fn produce_each(
    c: &mut Client,
    version: i16,
    transactional_id: Option<&str>,
    batches: Vec<(&str, i32, Vec<u8>)>,
) -> Vec<(String, i32, i16, Option<String>)> {
    let mut topics: Vec<TopicProduceData> = Vec::new();
    for (topic, partition, batch) in batches {
        let data = PartitionProduceData::default()
            .with_index(partition)
            .with_records(Some(batch.into()));
        match topics.iter_mut().find(|t| t.name.as_str() == topic) {
            Some(t) => t.partition_data.push(data),
            None => topics.push(
                TopicProduceData::default()
                    .with_name(TopicName(s(topic)))
                    .with_partition_data(vec![data]),
            ),
        }
    }
    let req = ProduceRequest::default()
        .with_transactional_id(transactional_id.map(|t| TransactionalId(s(t))))
        .with_acks(-1)
        .with_timeout_ms(5000)
        .with_topic_data(topics);
    let r: ProduceResponse = c.call(ApiKey::Produce, version, &req).await;
    r.responses
        .iter()
        .flat_map(|t| {
            t.partition_responses.iter().map(|p| {
                (
                    t.name.to_string(),
                    p.index,
                    p.error_code,
                    p.error_message.as_ref().map(|m| m.to_string()),
                )
            })
        })
        .collect()
}

/// ListOffsets latest of `topic`-`partition` at `isolation` (1: read_committed, which
/// answers the last stable offset).
async fn latest_of(c: &mut Client, topic: &str, partition: i32, isolation: i8) -> i64 {
    let req = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_isolation_level(isolation)
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(TopicName(s(topic)))
            .with_partitions(vec![ListOffsetsPartition::default()
                .with_partition_index(partition)
                .with_timestamp(-1)])]);
    let r: ListOffsetsResponse = c.call(ApiKey::ListOffsets, 7, &req).await;
    let p = &r.topics[0].partitions[0];
    assert_eq!(p.error_code, 0, "ListOffsets {topic}-{partition}");
    p.offset
}

/// Both partitions of the test topic: (read_uncommitted end, read_committed end).
async fn ledger_ends(c: &mut Client) -> [(i64, i64); 2] {
    let mut ends = [(0, 0); 2];
    for (p, end) in ends.iter_mut().enumerate() {
        *end = (
            latest_of(c, TOPIC, p as i32, 0).await,
            latest_of(c, TOPIC, p as i32, 1).await,
        );
    }
    ends
}

/// Kafka refuses transactional records that name no transactional id even without an
/// authorizer (`produceRequest.transactionalId != null && authorize(...)`, and
/// `authorize` is true without one): such a batch would open a transaction no
/// coordinator knows of, which no marker ever ends, and the partition's last stable
/// offset would stay behind it for good. The error covers the whole request (Kafka
/// answers it with `sendErrorResponseMaybeThrottle`), transactional partitions or not,
/// known topics or not, with no message; nothing is written.
#[tokio::test]
async fn transactional_records_without_a_transactional_id_refuse_the_whole_request() {
    let (broker, mut c) = setup().await;
    let r = init(&mut c, 60_000).await;
    let (pid, epoch) = (r.producer_id.0, r.producer_epoch);
    let denied = ResponseError::TransactionalIdAuthorizationFailed.code();
    for version in [3, 9, 11, 12] {
        let answers = produce_each(
            &mut c,
            version,
            None,
            vec![
                (TOPIC, 0, transactional_batch(pid, epoch, 0, 2)),
                (TOPIC, 1, plain_batch(3)),
                ("nope", 0, plain_batch(1)),
            ],
        )
        .await;
        assert_eq!(
            answers,
            vec![
                (TOPIC.to_string(), 0, denied, None),
                (TOPIC.to_string(), 1, denied, None),
                ("nope".to_string(), 0, denied, None),
            ],
            "Produce v{version}"
        );
    }
    assert_eq!(
        ledger_ends(&mut c).await,
        [(0, 0), (0, 0)],
        "nothing written"
    );
    // Nothing is left open: records written afterwards are stable at once.
    assert_eq!(
        produce_each(&mut c, 9, None, vec![(TOPIC, 0, plain_batch(2))])
            .await
            .iter()
            .map(|a| a.2)
            .collect::<Vec<_>>(),
        vec![0]
    );
    assert_eq!(ledger_ends(&mut c).await, [(2, 2), (0, 0)]);
    // With acks=0 there is no answer to carry the error: the connection is closed, as
    // for any other acks=0 error.
    let req = ProduceRequest::default()
        .with_acks(0)
        .with_timeout_ms(5000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(s(TOPIC)))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(1)
                .with_records(Some(transactional_batch(pid, epoch, 0, 1).into()))])]);
    c.send(ApiKey::Produce, 9, &req).await;
    assert!(c.is_closed().await, "acks=0 error closes the connection");
    let mut c = broker.client().await;
    assert_eq!(ledger_ends(&mut c).await, [(2, 2), (0, 0)]);
}

/// An empty transactional id is an id for Kafka (only null is "none"), so the batch
/// is verified, and the coordinator refuses the id: INVALID_REQUEST
/// (`handleVerifyPartitionsInTransaction`: "if (transactionalId == null ||
/// transactionalId.isEmpty)"). Nothing is written.
#[tokio::test]
async fn an_empty_transactional_id_is_refused_by_transaction_verification() {
    let (_broker, mut c) = setup().await;
    let r = init(&mut c, 60_000).await;
    let (pid, epoch) = (r.producer_id.0, r.producer_epoch);
    let answers = produce_each(
        &mut c,
        9,
        Some(""),
        vec![(TOPIC, 0, transactional_batch(pid, epoch, 0, 2))],
    )
    .await;
    assert_eq!(answers[0].2, ResponseError::InvalidRequest.code());
    assert_eq!(ledger_ends(&mut c).await, [(0, 0), (0, 0)]);
}

/// With an authorizer, the transactional id is checked only when the request carries
/// transactional records (`if (RequestUtils.hasTransactionalRecords(produceRequest))`),
/// and then the whole request is refused when the id is null or the caller may not
/// WRITE it; a request without transactional records goes through whatever its id.
#[tokio::test]
async fn with_an_authorizer_transactional_id_write_gates_only_transactional_records() {
    let (broker, mut c) = setup_with(&[
        (
            "authorizer.class.name",
            "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        ),
        ("allow.everyone.if.no.acl.found", "true"),
    ])
    .await;
    let r = init(&mut c, 60_000).await;
    let (pid, epoch) = (r.producer_id.0, r.producer_epoch);
    // ANONYMOUS (this PLAINTEXT client) may not WRITE the transactional id; the topics
    // have no ACL, so anyone may write them.
    let acl = CreateAclsRequest::default().with_creations(vec![
        create_acls_request::AclCreation::default()
            .with_resource_type(5) // TRANSACTIONAL_ID
            .with_resource_name(s(TXN))
            .with_resource_pattern_type(3) // LITERAL
            .with_principal(s("User:ANONYMOUS"))
            .with_host(s("*"))
            .with_operation(4) // WRITE
            .with_permission_type(2), // DENY
    ]);
    let created: CreateAclsResponse = c.call(ApiKey::CreateAcls, 3, &acl).await;
    assert_eq!(created.results[0].error_code, 0);
    let denied = ResponseError::TransactionalIdAuthorizationFailed.code();
    let codes = |answers: Vec<(String, i32, i16, Option<String>)>| {
        answers.into_iter().map(|a| a.2).collect::<Vec<_>>()
    };
    // The ACL reaches the authorizer through the metadata image: wait for it. Until
    // then this batch is refused by verification instead (the producer never added
    // partition 0), so the wait writes nothing.
    let mut waited = Duration::ZERO;
    loop {
        let batch = vec![(TOPIC, 0, transactional_batch(pid, epoch, 0, 2))];
        match codes(produce_each(&mut c, 9, Some(TXN), batch).await)[..] {
            [code] if code == denied => break,
            [code] => assert_eq!(code, ResponseError::InvalidTxnState.code()),
            ref other => panic!("{other:?}"),
        }
        assert!(waited < Duration::from_secs(10), "ACL never applied");
        tokio::time::sleep(Duration::from_millis(20)).await;
        waited += Duration::from_millis(20);
    }
    // The whole request is refused, its non-transactional partition too.
    assert_eq!(
        codes(
            produce_each(
                &mut c,
                9,
                Some(TXN),
                vec![
                    (TOPIC, 0, transactional_batch(pid, epoch, 0, 2)),
                    (TOPIC, 1, plain_batch(3)),
                ],
            )
            .await
        ),
        vec![denied, denied]
    );
    // No transactional id at all: refused whatever the ACLs.
    assert_eq!(
        codes(
            produce_each(
                &mut c,
                9,
                None,
                vec![
                    (TOPIC, 0, transactional_batch(pid, epoch, 0, 2)),
                    (TOPIC, 1, plain_batch(3)),
                ],
            )
            .await
        ),
        vec![denied, denied]
    );
    assert_eq!(
        ledger_ends(&mut c).await,
        [(0, 0), (0, 0)],
        "nothing written"
    );
    // Without transactional records the id is not checked: the batch is written.
    assert_eq!(
        codes(produce_each(&mut c, 9, Some(TXN), vec![(TOPIC, 1, plain_batch(3))]).await),
        vec![0]
    );
    assert_eq!(ledger_ends(&mut c).await, [(0, 0), (3, 3)]);
    drop(broker);
}

// ------------------------------------------------------------------------------------
// TxnOffsetCommit v0-4: verified with the transaction coordinator

const GROUP: &str = "ledger-readers";
/// `offsets.topic.num.partitions` of the group tests.
const OFFSETS_PARTITIONS: i32 = 3;

/// A broker whose group coordinator is ready for [`GROUP`], and the group's
/// `__consumer_offsets` partition.
async fn setup_group() -> (TestBroker, Client, i32) {
    let (broker, mut c) = setup_with(&[("offsets.topic.num.partitions", "3")]).await;
    let found: FindCoordinatorResponse = c
        .call(
            ApiKey::FindCoordinator,
            4,
            &FindCoordinatorRequest::default()
                .with_key_type(0)
                .with_coordinator_keys(vec![s(GROUP)]),
        )
        .await;
    assert_eq!(
        found.coordinators[0].error_code, 0,
        "group coordinator found"
    );
    let partition = ottla_group::records::partition_for(GROUP, OFFSETS_PARTITIONS);
    (broker, c, partition)
}

async fn add_offsets(c: &mut Client, pid: i64, epoch: i16) -> i16 {
    let r: AddOffsetsToTxnResponse = c
        .call(
            ApiKey::AddOffsetsToTxn,
            3,
            &AddOffsetsToTxnRequest::default()
                .with_transactional_id(TransactionalId(s(TXN)))
                .with_producer_id(ProducerId(pid))
                .with_producer_epoch(epoch)
                .with_group_id(GroupId(s(GROUP))),
        )
        .await;
    r.error_code
}

/// TxnOffsetCommit v`version` of `offset` for partition 0 of the test topic, as
/// `transactional_id`'s producer: the partition's error.
async fn txn_commit(
    c: &mut Client,
    version: i16,
    transactional_id: &str,
    pid: i64,
    epoch: i16,
    offset: i64,
) -> i16 {
    let req = TxnOffsetCommitRequest::default()
        .with_transactional_id(TransactionalId(s(transactional_id)))
        .with_group_id(GroupId(s(GROUP)))
        .with_producer_id(ProducerId(pid))
        .with_producer_epoch(epoch)
        .with_generation_id(-1)
        .with_member_id(s(""))
        .with_topics(vec![
            txn_offset_commit_request::TxnOffsetCommitRequestTopic::default()
                .with_name(TopicName(s(TOPIC)))
                .with_partitions(vec![
                    txn_offset_commit_request::TxnOffsetCommitRequestPartition::default()
                        .with_partition_index(0)
                        .with_committed_offset(offset)
                        .with_committed_leader_epoch(-1),
                ]),
        ]);
    let r: TxnOffsetCommitResponse = c.call(ApiKey::TxnOffsetCommit, version, &req).await;
    r.topics[0].partitions[0].error_code
}

/// OffsetFetch v7 of partition 0 of the test topic for [`GROUP`]: (error, offset).
async fn fetch_offset(c: &mut Client, require_stable: bool) -> (i16, i64) {
    let req = OffsetFetchRequest::default()
        .with_group_id(GroupId(s(GROUP)))
        .with_topics(Some(vec![
            offset_fetch_request::OffsetFetchRequestTopic::default()
                .with_name(TopicName(s(TOPIC)))
                .with_partition_indexes(vec![0]),
        ]))
        .with_require_stable(require_stable);
    let r: OffsetFetchResponse = c.call(ApiKey::OffsetFetch, 7, &req).await;
    assert_eq!(r.error_code, 0);
    let p = &r.topics[0].partitions[0];
    (p.error_code, p.committed_offset)
}

/// The group's `__consumer_offsets` partition: (end, last stable offset).
async fn offsets_partition_ends(c: &mut Client, partition: i32) -> (i64, i64) {
    (
        latest_of(c, "__consumer_offsets", partition, 0).await,
        latest_of(c, "__consumer_offsets", partition, 1).await,
    )
}

/// Before the fix TxnOffsetCommit v0-4 was never checked with the coordinator: these
/// wrote a transactional batch to `__consumer_offsets` that no marker would end. Each
/// refused commit must leave the group's offsets partition untouched (same end, no
/// open transaction holding its last stable offset back) and its group stable.
async fn assert_nothing_written(c: &mut Client, partition: i32, before: (i64, i64)) {
    assert_eq!(offsets_partition_ends(c, partition).await, before);
    assert_eq!(
        before.0, before.1,
        "no transaction open in the offsets partition"
    );
    assert_eq!(fetch_offset(c, true).await, (0, -1), "no pending offset");
}

/// A group the transaction never added (no AddOffsetsToTxn) is not part of it.
/// Kafka's coordinator answers TRANSACTION_ABORTABLE, which TxnOffsetCommit v4
/// (GENERIC_ERROR_SUPPORTED) gets as it is and its `AddPartitionsToTxnManager` turns
/// into INVALID_TXN_STATE for v0-3 (DEFAULT_ERROR: "For backward compatibility with
/// clients").
#[tokio::test]
async fn txn_offset_commit_for_a_group_outside_the_transaction_is_refused() {
    let (_broker, mut c, partition) = setup_group().await;
    let r = init(&mut c, 60_000).await;
    let (pid, epoch) = (r.producer_id.0, r.producer_epoch);
    let before = offsets_partition_ends(&mut c, partition).await;
    let not_in_txn = |version: i16| {
        if version >= 4 {
            ResponseError::TransactionAbortable.code()
        } else {
            ResponseError::InvalidTxnState.code()
        }
    };
    for version in [0, 1, 2, 3, 4] {
        assert_eq!(
            txn_commit(&mut c, version, TXN, pid, epoch, 10).await,
            not_in_txn(version),
            "v{version}: no transaction open at all"
        );
    }
    // A transaction open elsewhere does not include the group either.
    assert_eq!(
        add_partitions(&mut c, 3, pid, epoch, &[(TOPIC, 1)]).await,
        vec![(TOPIC.to_string(), 1, 0)]
    );
    for version in [0, 3, 4] {
        assert_eq!(
            txn_commit(&mut c, version, TXN, pid, epoch, 10).await,
            not_in_txn(version),
            "v{version}: the group is not part of the transaction"
        );
    }
    assert_nothing_written(&mut c, partition, before).await;
    // Once added, the same commit is accepted.
    assert_eq!(add_offsets(&mut c, pid, epoch).await, 0);
    assert_eq!(txn_commit(&mut c, 3, TXN, pid, epoch, 10).await, 0);
    assert_eq!(
        fetch_offset(&mut c, true).await.0,
        ResponseError::UnstableOffsetCommit.code(),
        "now pending"
    );
}

/// A stale producer epoch is refused before anything is written: the coordinator's
/// PRODUCER_FENCED reaches the client as INVALID_PRODUCER_EPOCH (Kafka's
/// `AddPartitionsToTxnManager`: "Producers expect to handle INVALID_PRODUCER_EPOCH in
/// this scenario"), for every version up to 4, even while the current epoch's
/// transaction holds the group.
#[tokio::test]
async fn txn_offset_commit_from_a_fenced_epoch_is_refused() {
    let (_broker, mut c, partition) = setup_group().await;
    let first = init(&mut c, 60_000).await;
    let (pid, old) = (first.producer_id.0, first.producer_epoch);
    let epoch = init(&mut c, 60_000).await.producer_epoch;
    assert_eq!(epoch, old + 1);
    let before = offsets_partition_ends(&mut c, partition).await;
    let fenced = ResponseError::InvalidProducerEpoch.code();
    for version in [0, 3, 4] {
        assert_eq!(
            txn_commit(&mut c, version, TXN, pid, old, 10).await,
            fenced,
            "v{version}, nothing added"
        );
    }
    assert_nothing_written(&mut c, partition, before).await;
    assert_eq!(add_offsets(&mut c, pid, epoch).await, 0);
    for version in [0, 3, 4] {
        assert_eq!(
            txn_commit(&mut c, version, TXN, pid, old, 10).await,
            fenced,
            "v{version}, the group added by the current epoch"
        );
    }
    assert_nothing_written(&mut c, partition, before).await;
    // The current epoch commits; the old one is still refused once its batch is there
    // (the open transaction in the partition is the current epoch's, not the old one's).
    assert_eq!(txn_commit(&mut c, 3, TXN, pid, epoch, 10).await, 0);
    assert_eq!(txn_commit(&mut c, 3, TXN, pid, old, 11).await, fenced);
    assert_eq!(end_txn(&mut c, TXN, pid, epoch, false).await, 0);
    let mut tries = 0;
    while offsets_partition_ends(&mut c, partition).await != (before.0 + 2, before.0 + 2) {
        tries += 1;
        assert!(tries < 500, "abort marker never written");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(fetch_offset(&mut c, true).await, (0, -1), "aborted");
}

/// A producer id or transactional id the coordinator does not know is refused:
/// INVALID_PRODUCER_ID_MAPPING, as Kafka's coordinator answers a verification for
/// them (`case None => Left(Errors.INVALID_PRODUCER_ID_MAPPING)`, and "if
/// (txnMetadata.producerId != producerId)"); an empty transactional id is
/// INVALID_REQUEST there. Nothing is written.
#[tokio::test]
async fn txn_offset_commit_from_an_unknown_producer_is_refused() {
    let (_broker, mut c, partition) = setup_group().await;
    let r = init(&mut c, 60_000).await;
    let (pid, epoch) = (r.producer_id.0, r.producer_epoch);
    assert_eq!(add_offsets(&mut c, pid, epoch).await, 0);
    let before = offsets_partition_ends(&mut c, partition).await;
    let unknown = ResponseError::InvalidProducerIdMapping.code();
    for version in [0, 3, 4] {
        assert_eq!(
            txn_commit(&mut c, version, "never-seen", pid, epoch, 10).await,
            unknown,
            "v{version}: unknown transactional id"
        );
        assert_eq!(
            txn_commit(&mut c, version, TXN, pid + 1, epoch, 10).await,
            unknown,
            "v{version}: another producer id"
        );
        assert_eq!(
            txn_commit(&mut c, version, "", pid, epoch, 10).await,
            ResponseError::InvalidRequest.code(),
            "v{version}: empty transactional id"
        );
    }
    assert_nothing_written(&mut c, partition, before).await;
}

/// KIP-447: while a transactional offset commit is pending, OffsetFetch with
/// `require_stable` (what read_committed consumers send) answers
/// UNSTABLE_OFFSET_COMMIT for the partition, and a plain OffsetFetch does not see the
/// offset yet; once the transaction commits (its marker reaches the offsets
/// partition) both see it.
#[tokio::test]
async fn require_stable_offset_fetch_waits_for_a_pending_transactional_commit() {
    let (_broker, mut c, partition) = setup_group().await;
    let r = init(&mut c, 60_000).await;
    let (pid, epoch) = (r.producer_id.0, r.producer_epoch);
    assert_eq!(add_offsets(&mut c, pid, epoch).await, 0);
    assert_eq!(txn_commit(&mut c, 3, TXN, pid, epoch, 42).await, 0);
    assert_eq!(
        fetch_offset(&mut c, true).await,
        (ResponseError::UnstableOffsetCommit.code(), -1)
    );
    assert_eq!(
        fetch_offset(&mut c, false).await,
        (0, -1),
        "not committed yet"
    );
    let (end, stable) = offsets_partition_ends(&mut c, partition).await;
    assert!(
        stable < end,
        "the offsets partition holds an open transaction"
    );

    assert_eq!(end_txn(&mut c, TXN, pid, epoch, true).await, 0);
    let mut tries = 0;
    loop {
        let fetched = fetch_offset(&mut c, true).await;
        if fetched == (0, 42) {
            break;
        }
        assert_eq!(fetched, (ResponseError::UnstableOffsetCommit.code(), -1));
        tries += 1;
        assert!(
            tries < 500,
            "commit marker never reached the offsets partition"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(fetch_offset(&mut c, false).await, (0, 42));
    let (end, stable) = offsets_partition_ends(&mut c, partition).await;
    assert_eq!(stable, end, "the marker ended the transaction there");
}

/// An ABORT marker for `pid` at `epoch` from the coordinator at `coordinator_epoch`,
/// written to partition 0 through WriteTxnMarkers: the partition's error code.
async fn write_marker(c: &mut Client, pid: i64, epoch: i16, coordinator_epoch: i32) -> i16 {
    let response: WriteTxnMarkersResponse = c
        .call(
            ApiKey::WriteTxnMarkers,
            1,
            &WriteTxnMarkersRequest::default().with_markers(vec![WritableTxnMarker::default()
                .with_producer_id(ProducerId(pid))
                .with_producer_epoch(epoch)
                .with_coordinator_epoch(coordinator_epoch)
                .with_transaction_result(false)
                .with_topics(vec![WritableTxnMarkerTopic::default()
                    .with_name(TopicName(s(TOPIC)))
                    .with_partition_indexes(vec![0])])]),
        )
        .await;
    response.markers[0].topics[0].partitions[0].error_code
}

/// WriteTxnMarkers from a zombie coordinator: a marker whose coordinator epoch is older
/// than that of the producer's last marker in the partition is refused with
/// TRANSACTION_COORDINATOR_FENCED (52) and not written, as Kafka's
/// `checkCoordinatorEpoch`; the same epoch again (a retry) and a newer one are written.
#[tokio::test]
async fn markers_from_an_older_coordinator_epoch_are_refused() {
    let (_broker, mut c) = setup().await;
    let r = init(&mut c, 60_000).await;
    let (pid, epoch) = (r.producer_id.0, r.producer_epoch);
    assert_eq!(write_marker(&mut c, pid, epoch, 5).await, 0);
    assert_eq!(
        write_marker(&mut c, pid, epoch, 4).await,
        52,
        "TRANSACTION_COORDINATOR_FENCED"
    );
    assert_eq!(
        write_marker(&mut c, pid, epoch, 5).await,
        0,
        "the same coordinator epoch again"
    );
    assert_eq!(write_marker(&mut c, pid, epoch, 6).await, 0);
    assert_eq!(write_marker(&mut c, pid, epoch, 5).await, 52);
    let (hw, _, _, _) = fetch(&mut c, 0).await;
    assert_eq!(hw, 3, "three markers written, the fenced ones not");
}
