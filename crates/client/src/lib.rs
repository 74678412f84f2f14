//! ottla-client: the small async Kafka client Ottla brokers use among themselves
//! (follower fetching, WriteTxnMarkers, controller RPCs).
//!
//! Brokers talk to each other in Kafka's own protocol, with the same message structs
//! the server decodes (`kafka-protocol`), so an Ottla broker could in principle fetch
//! from any Kafka-speaking leader and vice versa. The client is deliberately small:
//!
//! - [`Connection`] is one TCP connection. Requests are pipelined: each gets the next
//!   correlation id and is written in that order, and a reader task hands each response
//!   to whoever waits for it. Kafka answers in request order on a connection, so the
//!   response must be for the oldest request still waiting; anything else means the
//!   two sides disagree about the byte stream and the connection is closed.
//! - [`NodeClient`] keeps one lazily (re)connected [`Connection`] to one node, with
//!   Kafka's reconnect backoff ([`ExponentialBackoff`]) and the node's ApiVersions
//!   table ([`ApiVersionTable`]) so callers can pick a version both sides speak.
//! - Everything read from the network is bounded: the number of requests in flight
//!   ([`MAX_IN_FLIGHT_PER_CONNECTION`]), the size of a response frame
//!   ([`ClientConfig::max_response_bytes`]), and the time a request may take
//!   ([`ClientConfig::request_timeout`]). Nothing read from a peer can panic the
//!   broker; it becomes a [`ClientError`] and, where the stream can no longer be
//!   trusted, a closed connection.
//!
//! - TLS and SASL ([`ClientSecurity`]) as the inter-broker listener asks: the TLS
//!   handshake when connecting, SASL PLAIN or SCRAM right after ApiVersions; a
//!   connection whose SASL session has a lifetime (KIP-368) is replaced before it ends.
//!
//! What it does not do (yet): metadata-driven routing (callers pick the node), retries (callers know which requests are safe to
//! repeat), and Kafka's growing `socket.connection.setup.timeout.max.ms`.

mod backoff;
mod config;
mod connection;
mod error;
mod node;
mod pool;
pub mod scram;
mod security;
mod versions;

pub use backoff::ExponentialBackoff;
pub use config::{
    ClientConfig, DEFAULT_CONNECTION_SETUP_TIMEOUT, DEFAULT_MAX_RESPONSE_BYTES,
    DEFAULT_RECONNECT_BACKOFF, DEFAULT_RECONNECT_BACKOFF_MAX, DEFAULT_REQUEST_TIMEOUT,
    RECONNECT_BACKOFF_EXP_BASE, RECONNECT_BACKOFF_JITTER,
};
pub use connection::{Connection, MAX_IN_FLIGHT_PER_CONNECTION};
pub use error::ClientError;
pub use node::{NodeClient, API_VERSIONS_REQUEST_VERSION};
pub use pool::NodeClients;
pub use security::{ClientSecurity, ClientTls, SaslCredentials, SaslMechanism};
pub use versions::ApiVersionTable;
