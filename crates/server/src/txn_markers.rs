//! The second phase of a transaction: writing COMMIT/ABORT markers (Kafka's
//! `TransactionMarkerChannelManager`).
//!
//! Once a PrepareCommit or PrepareAbort record is committed, the transaction
//! coordinator hands the job here. Its partitions are grouped by leader and each leader
//! gets a WriteTxnMarkers request over the inter-broker client, this broker included
//! (markers always go through the partition leader's WriteTxnMarkers, which waits for
//! the in-sync replicas). Partitions whose leader moved, or that answered with a
//! retriable error, are tried again with backoff until every one has its marker; then
//! the coordinator writes CompleteCommit/CompleteAbort. A job stops if this broker stops
//! hosting the coordinator's partition: the next coordinator loads the Prepare record
//! and starts the markers again.
//!
//! At most one job exists per open transaction, so the tasks here are bounded by the
//! transactions being completed.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Weak};
use std::time::Duration;

use kafka_protocol::messages::write_txn_markers_request::{
    WritableTxnMarker, WritableTxnMarkerTopic,
};
use kafka_protocol::messages::{ProducerId, TopicName, WriteTxnMarkersRequest};
use kafka_protocol::ResponseError;
use ottla_client::{ClientConfig, NodeClient, NodeClients};
use ottla_coordinator::txn::TxnMarkerWriter;
use ottla_txn::MarkerJob;

use crate::broker::Broker;
use crate::handlers::str_bytes;

/// The WriteTxnMarkers version sent (v1 is the flexible one every broker since 2.8 serves).
const WRITE_TXN_MARKERS_VERSION: i16 = 1;
/// Backoff between rounds for partitions still without their marker.
const RETRY_BACKOFF_MIN: Duration = Duration::from_millis(50);
const RETRY_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// Test-only fault: abort the process right after a PrepareCommit is durable, before
/// any marker is sent (the compat tests prove that a restarted coordinator completes
/// the commit).
pub const FAULT_CRASH_BEFORE_TXN_MARKERS: &str = "OTTLA_FAULT_CRASH_BEFORE_TXN_MARKERS";
/// Test-only fault: abort the process once the COMMIT marker of the first partition of
/// a multi-partition transaction is written, before the others are sent (the compat
/// tests prove that a restarted coordinator writes the rest and the LSO catches up).
pub const FAULT_CRASH_AFTER_FIRST_TXN_MARKER: &str = "OTTLA_FAULT_CRASH_AFTER_FIRST_TXN_MARKER";

/// Sends the markers of completing transactions.
pub struct TxnMarkerChannel {
    inner: Arc<Inner>,
}

struct Inner {
    broker: Weak<Broker>,
    /// One client per leader.
    clients: NodeClients,
    crash_before_markers: bool,
    crash_after_first_marker: bool,
}

impl TxnMarkerChannel {
    pub fn new(broker: Weak<Broker>, config: ClientConfig) -> TxnMarkerChannel {
        TxnMarkerChannel {
            inner: Arc::new(Inner {
                broker,
                clients: NodeClients::new(config),
                crash_before_markers: std::env::var_os(FAULT_CRASH_BEFORE_TXN_MARKERS)
                    .is_some_and(|v| v == "1"),
                crash_after_first_marker: std::env::var_os(FAULT_CRASH_AFTER_FIRST_TXN_MARKER)
                    .is_some_and(|v| v == "1"),
            }),
        }
    }
}

impl TxnMarkerWriter for TxnMarkerChannel {
    fn write_markers(&self, txn_partition: i32, coordinator_epoch: i32, job: MarkerJob) {
        if self.inner.crash_before_markers && job.commit {
            tracing::error!(
                "{FAULT_CRASH_BEFORE_TXN_MARKERS} is set: aborting before the markers of {}",
                job.transactional_id
            );
            std::process::abort();
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::error!(
                "No async runtime to send the markers of {} in",
                job.transactional_id
            );
            return;
        };
        runtime.spawn(
            self.inner
                .clone()
                .run(txn_partition, coordinator_epoch, job),
        );
    }
}

impl Inner {
    async fn run(self: Arc<Self>, txn_partition: i32, coordinator_epoch: i32, job: MarkerJob) {
        let kind = if job.commit { "COMMIT" } else { "ABORT" };
        let mut remaining: Vec<(String, i32)> = job.partitions.clone();
        let mut backoff = RETRY_BACKOFF_MIN;
        while !remaining.is_empty() {
            let Some(broker) = self.broker.upgrade() else {
                return;
            };
            if !broker.txns.hosts(txn_partition) {
                tracing::info!(
                    "Stopped sending {kind} markers of transactional id {}: this broker no longer coordinates it",
                    job.transactional_id
                );
                return;
            }
            // Only while the transaction is still between its two phases: a stale job
            // (its transaction completed meanwhile) could otherwise end the producer's
            // next transaction in a partition.
            match broker.txns.is_current(txn_partition, job.clone()).await {
                Ok(true) => {}
                Ok(false) => {
                    tracing::debug!(
                        "Dropping stale {kind} markers of transactional id {} (producer id {}, epoch {})",
                        job.transactional_id,
                        job.producer_id,
                        job.producer_epoch
                    );
                    return;
                }
                // Gone from here: the next turn stops; loading or busy: ask again.
                Err(_) => {
                    drop(broker);
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(RETRY_BACKOFF_MAX);
                    continue;
                }
            }
            let image = broker.controller.image();
            let mut by_leader: BTreeMap<i32, Vec<(String, i32)>> = BTreeMap::new();
            remaining.retain(|(topic, p)| {
                let Some(info) = image
                    .topic(topic)
                    .and_then(|t| t.partitions.get(*p as usize))
                else {
                    // Kafka drops the markers of partitions that no longer exist.
                    tracing::info!(
                        "Dropping the {kind} marker of transactional id {} for {topic}-{p}: the partition no longer exists",
                        job.transactional_id
                    );
                    return false;
                };
                by_leader
                    .entry(info.leader)
                    .or_default()
                    .push((topic.clone(), *p));
                true
            });
            let mut done: HashSet<(String, i32)> = HashSet::new();
            let crash_after_first =
                self.crash_after_first_marker && job.commit && remaining.len() > 1;
            for (leader, mut partitions) in by_leader {
                if crash_after_first {
                    partitions.truncate(1);
                }
                let Some(node) = image.brokers.get(&leader) else {
                    continue;
                };
                let client = self
                    .clients
                    .get(leader, format!("{}:{}", node.host, node.port));
                match send(&client, &job, coordinator_epoch, &partitions).await {
                    Ok(results) => {
                        for ((topic, p), code) in results {
                            if code == 0 && crash_after_first {
                                tracing::error!(
                                    "{FAULT_CRASH_AFTER_FIRST_TXN_MARKER} is set: aborting after the COMMIT marker of {topic}-{p} of transactional id {}",
                                    job.transactional_id
                                );
                                std::process::abort();
                            }
                            if code == 0 {
                                done.insert((topic, p));
                            } else if code == ResponseError::InvalidProducerEpoch.code()
                                || code == ResponseError::TransactionCoordinatorFenced.code()
                            {
                                // A newer epoch's marker is there already: this job is
                                // stale (Kafka removes it too).
                                tracing::warn!(
                                    "Giving up the {kind} markers of transactional id {}: {topic}-{p} answered error {code}",
                                    job.transactional_id
                                );
                                return;
                            } else {
                                tracing::debug!(
                                    "{kind} marker of transactional id {} for {topic}-{p} failed with error {code}; retrying",
                                    job.transactional_id
                                );
                            }
                        }
                    }
                    Err(e) => {
                        tracing::debug!("WriteTxnMarkers to broker {leader} failed: {e}; retrying")
                    }
                }
            }
            remaining.retain(|p| !done.contains(p));
            if !remaining.is_empty() {
                drop(broker);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(RETRY_BACKOFF_MAX);
            }
        }
        // Every partition has its marker: the transaction is complete.
        loop {
            let Some(broker) = self.broker.upgrade() else {
                return;
            };
            match broker.txns.complete(txn_partition, job.clone()).await {
                Ok(()) => {
                    tracing::debug!(
                        "Completed the {kind} of transactional id {} (producer id {}, epoch {})",
                        job.transactional_id,
                        job.producer_id,
                        job.producer_epoch
                    );
                    return;
                }
                Err(e) if !broker.txns.hosts(txn_partition) => {
                    tracing::info!(
                        "Could not complete the {kind} of transactional id {}: {e}; the next coordinator will",
                        job.transactional_id
                    );
                    return;
                }
                Err(e) => {
                    tracing::warn!(
                        "Could not record the {kind} of transactional id {} as complete: {e}; retrying",
                        job.transactional_id
                    );
                }
            }
            drop(broker);
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(RETRY_BACKOFF_MAX);
        }
    }
}

/// One WriteTxnMarkers request for `partitions` (all led by the client's node); each
/// partition's error code.
async fn send(
    client: &NodeClient,
    job: &MarkerJob,
    coordinator_epoch: i32,
    partitions: &[(String, i32)],
) -> Result<Vec<((String, i32), i16)>, ottla_client::ClientError> {
    let mut topics: Vec<WritableTxnMarkerTopic> = Vec::new();
    for (topic, p) in partitions {
        match topics.last_mut() {
            Some(t) if t.name.as_str() == topic => t.partition_indexes.push(*p),
            _ => topics.push(
                WritableTxnMarkerTopic::default()
                    .with_name(TopicName(str_bytes(topic.clone())))
                    .with_partition_indexes(vec![*p]),
            ),
        }
    }
    let request =
        WriteTxnMarkersRequest::default().with_markers(vec![WritableTxnMarker::default()
            .with_producer_id(ProducerId(job.producer_id))
            .with_producer_epoch(job.producer_epoch)
            .with_transaction_result(job.commit)
            .with_topics(topics)
            .with_coordinator_epoch(coordinator_epoch)]);
    let response = client.send(WRITE_TXN_MARKERS_VERSION, &request).await?;
    let mut out = Vec::new();
    for marker in response.markers {
        for topic in marker.topics {
            for p in topic.partitions {
                out.push(((topic.name.to_string(), p.partition_index), p.error_code));
            }
        }
    }
    Ok(out)
}
