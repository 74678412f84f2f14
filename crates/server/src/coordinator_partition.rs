//! The broker's side of the coordinator runtime: a hosted partition of an internal
//! topic as the runtime's [`PartitionWriter`] and [`PartitionLoader`]. Coordinator
//! records go through the same leader append as a producer's batch, so the topic's
//! flush policy, its high watermark and (later) its replication apply to them unchanged.

use std::sync::Arc;

use bytes::Bytes;
use ottla_coordinator::{PartitionLoader, PartitionWriter, WriteError};
use ottla_replica::partition::Partition;
use ottla_replica::{AppendOrigin, FetchIsolation};
use tokio::sync::watch;

/// A partition this broker leads, as a coordinator shard reaches it.
pub struct CoordinatorPartitionLog(pub Arc<Partition>);

impl PartitionWriter for CoordinatorPartitionLog {
    fn append(&self, batch: Vec<u8>) -> Result<i64, WriteError> {
        let partition = &self.0;
        // acks=all: a coordinator write must meet min.insync.replicas as Kafka's does.
        let appended = partition
            .append_from(batch, -1, AppendOrigin::Coordinator)
            .map_err(|e| WriteError(e.to_string()))?;
        if let Some(plan) = appended.background_flush {
            partition.complete_flush_in_background(plan);
        }
        if let Some(flush) = appended.flush {
            // The topic's `flush.messages` holds the high watermark below these records
            // until the fsync completes, so the shard (which waits for the high
            // watermark) answers only then; the fsync itself runs off the shard's loop.
            let partition = partition.clone();
            tokio::task::spawn_blocking(move || {
                if let Err(e) = partition.complete_policy_flush(flush) {
                    tracing::error!("Flushing {} failed: {e}", partition.name());
                }
            });
        }
        Ok(appended.result.last_offset + 1)
    }

    fn high_watermark(&self) -> watch::Receiver<i64> {
        self.0.subscribe()
    }
}

impl PartitionLoader for CoordinatorPartitionLog {
    fn log_start_offset(&self) -> i64 {
        self.0.log_start_offset()
    }

    fn log_end_offset(&self) -> i64 {
        self.0.log_end_offset()
    }

    fn read(&self, offset: i64, max_bytes: usize) -> Result<Bytes, WriteError> {
        let read = self
            .0
            .read(offset, max_bytes, FetchIsolation::LogEnd, true)
            .map_err(|e| WriteError(e.to_string()))?;
        read.records
            .to_bytes()
            .map_err(|e| WriteError(e.to_string()))
    }

    fn name(&self) -> String {
        self.0.name()
    }
}
