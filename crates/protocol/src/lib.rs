//! ottla-protocol: the Kafka wire format as Ottla uses it.
//!
//! - request/response messages come from the (vendored, patched) `kafka-protocol` crate,
//!   re-exported as [`messages`]; see `vendor/README.md` for why it is vendored;
//! - [`frame`]: size-prefixed frames and the request header, with explicit limits;
//! - [`batch`]: the v2 record batch header, read and rewritten in place;
//! - [`records`]: the records inside a batch, for the few rules that need them;
//! - [`control`]: transaction markers (COMMIT/ABORT control batches);
//! - [`compression`]: the four codecs Kafka clients use;
//! - [`spliced`]: Fetch responses with holes for record data sent straight from files;
//! - [`api_versions`]: the table of APIs and versions this broker implements.

pub mod api_versions;
pub mod batch;
pub mod compression;
pub mod control;
pub mod frame;
pub mod kafka_uuid;
pub mod records;
pub mod spliced;

pub use kafka_protocol as messages;
