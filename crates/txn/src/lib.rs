//! Ottla's transaction coordinator state machine (Kafka's `TransactionCoordinator`
//! and `TransactionStateManager`), stored as `__transaction_state` records.
//!
//! [`coordinator::TransactionCoordinator`] is pure: the coordinator runtime
//! (`ottla-coordinator`) hosts one per `__transaction_state` partition, feeds it time
//! and committed records, and writes the transaction markers it asks for.

pub mod coordinator;
pub mod producer_ids;
pub mod records;

pub use coordinator::{
    EndTxn, EndTxnAnswer, InitProducerId, MarkerJob, ProducerIdAndEpoch, TransactionCoordinator,
    TransactionMetadata, Transition, TxnConfig, TxnError, TxnRecord, TRANSACTION_STATE_TOPIC,
    TRANSACTION_VERSION_2,
};
pub use producer_ids::{ProducerIdManager, PRODUCER_ID_BLOCK_SIZE};
pub use records::{TransactionLogValue, TransactionState};
