//! Why the runtime could not run an operation, each mapped to the Kafka error code a
//! client expects (Kafka's `GroupCoordinatorService.normalizeException`).

use kafka_codes::*;

/// Kafka error codes the runtime answers with.
mod kafka_codes {
    pub const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;
    pub const COORDINATOR_NOT_AVAILABLE: i16 = 15;
    pub const NOT_COORDINATOR: i16 = 16;
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CoordinatorError {
    /// This broker does not lead the shard's partition (or stopped leading it while the
    /// operation waited): the client looks the coordinator up again.
    #[error("this broker is not the coordinator for partition {0}")]
    NotCoordinator(i32),
    /// The shard is replaying its partition; the client retries shortly.
    #[error("partition {0} is still loading")]
    LoadInProgress(i32),
    /// The shard's queue is full, its records could not be written, or they were not
    /// committed in time: retriable.
    #[error("coordinator not available: {0}")]
    NotAvailable(String),
}

impl CoordinatorError {
    pub fn kafka_error_code(&self) -> i16 {
        match self {
            CoordinatorError::NotCoordinator(_) => NOT_COORDINATOR,
            CoordinatorError::LoadInProgress(_) => COORDINATOR_LOAD_IN_PROGRESS,
            CoordinatorError::NotAvailable(_) => COORDINATOR_NOT_AVAILABLE,
        }
    }
}
