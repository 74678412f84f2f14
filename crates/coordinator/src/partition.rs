//! How a shard reaches its partition: the only I/O a coordinator does. The broker
//! implements these over its replica layer, so a coordinator's records are appended
//! exactly as a producer's batch is, and replicated with the partition.

use bytes::Bytes;
use tokio::sync::watch;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct WriteError(pub String);

/// Appends a shard's records and reports when they are committed.
pub trait PartitionWriter: Send + Sync + 'static {
    /// Append one record batch (built by the runtime) as the partition's leader and
    /// return the offset after its last record: the records are committed once the high
    /// watermark reaches it. Must not wait for the disk or for followers.
    fn append(&self, batch: Vec<u8>) -> Result<i64, WriteError>;
    /// The high watermark, as a receiver that sees every move.
    fn high_watermark(&self) -> watch::Receiver<i64>;
}

/// Reads a partition back when its shard is loaded.
pub trait PartitionLoader: Send + Sync + 'static {
    fn log_start_offset(&self) -> i64;
    fn log_end_offset(&self) -> i64;
    /// Whole stored batches from `offset` (at least one if any), about `max_bytes` long.
    /// Blocking: the runtime calls it on a blocking thread.
    fn read(&self, offset: i64, max_bytes: usize) -> Result<Bytes, WriteError>;
    /// A name for logs, `__consumer_offsets-7`.
    fn name(&self) -> String;
}

/// A partition a shard is loaded from and writes to.
pub trait CoordinatorPartition: PartitionWriter + PartitionLoader {}

impl<T: PartitionWriter + PartitionLoader> CoordinatorPartition for T {}
