//! Ottla group coordinator: consumer groups and committed offsets (`__consumer_offsets`).

pub mod assignor;
pub mod consumer;
pub mod coordinator;
pub mod records;
pub mod subscription;
pub mod types;
