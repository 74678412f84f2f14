//! Ottla's coordinator runtime, modelled on Kafka's `CoordinatorRuntime`.
//!
//! A coordinator (groups, transactions) is a deterministic state machine: a
//! request is *handled* into records plus a response, and a stored record is *replayed*
//! into state. This crate hosts such state machines: one [`runtime::CoordinatorShard`]
//! per partition of the coordinator's internal topic, each with its own serial event
//! loop, loaded when this broker becomes the partition's leader and unloaded when it
//! stops. The runtime owns what the state machines must not: I/O (through the
//! [`partition::PartitionWriter`] and [`partition::PartitionLoader`] traits, never the
//! broker), time (an injected [`clock::Clock`]) and leadership.
//!
//! [`group::GroupCoordinatorService`] is the group coordinator hosted on it, and
//! [`txn::TxnCoordinatorService`] the transaction coordinator.

pub mod clock;
pub mod error;
pub mod group;
pub mod partition;
pub mod runtime;
pub mod txn;

pub use clock::{Clock, ManualClock, SystemClock};
pub use error::CoordinatorError;
pub use partition::{CoordinatorPartition, PartitionLoader, PartitionWriter, WriteError};
pub use runtime::{Completion, CoordinatorRuntime, CoordinatorShard, Deferred, WriteResult};
