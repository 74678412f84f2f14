//! The one error type of the client.

use std::time::Duration;

use kafka_protocol::messages::ApiKey;

/// Why a request (or a connection attempt) failed.
///
/// [`ClientError::UnsupportedVersion`] and [`ClientError::Encode`] are found before
/// anything is sent and leave the connection as it was; [`ClientError::Backoff`] means
/// there is no connection yet. Every other variant means the connection it happened on
/// is gone: the [`crate::NodeClient`] opens a new one on a later `send`, once the
/// reconnect backoff allows. None of them says whether the peer processed the request:
/// a caller retrying a non-idempotent request must make it safe to repeat (as Kafka's
/// callers do).
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Connecting, reading or writing failed at the socket level.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// `operation` took longer than its configured timeout.
    #[error("{operation} timed out after {after:?}")]
    Timeout {
        operation: &'static str,
        after: Duration,
    },
    /// The connection was closed (by the peer, or by us because of a failure on it)
    /// before the response arrived.
    #[error("connection closed: {reason}")]
    ConnectionClosed { reason: String },
    /// The node's last connection failed too recently: no new attempt is made until
    /// the reconnect backoff has passed. Fails fast so that callers can do other work
    /// (or sleep `retry_in`) rather than queue behind a dead node.
    #[error("not connecting yet: reconnect backoff has {retry_in:?} left")]
    Backoff { retry_in: Duration },
    /// The peer sent something we cannot accept: an undecodable or oversized frame,
    /// a response that does not match the oldest request in flight, a failed
    /// ApiVersions exchange.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// No version of `api_key` in `ours_min..=ours_max` is one the node advertises.
    #[error(
        "node does not support {api_key:?} v{ours_min}..=v{ours_max} (it advertises {})",
        describe_range(.theirs)
    )]
    UnsupportedVersion {
        api_key: ApiKey,
        ours_min: i16,
        ours_max: i16,
        /// The node's advertised range, `None` if it does not implement the API.
        theirs: Option<(i16, i16)>,
    },
    /// The TLS handshake failed: a certificate the trust store does not vouch for or
    /// that does not name the host, no TLS version in common, a refused client
    /// certificate.
    #[error("TLS: {0}")]
    Tls(String),
    /// SASL authentication failed: the peer does not enable our mechanism, or it
    /// refused our credentials (its message is kept), or it could not prove it knows
    /// them (SCRAM's server signature).
    #[error("SASL authentication failed: {0}")]
    Authentication(String),
    /// The request cannot be encoded at the requested version (a field set that the
    /// version cannot carry, or a version the message type does not have): a bug in
    /// the caller, reported rather than panicking. Nothing was sent.
    #[error("cannot encode request: {0}")]
    Encode(String),
}

fn describe_range(range: &Option<(i16, i16)>) -> String {
    match range {
        Some((min, max)) => format!("v{min}..=v{max}"),
        None => "no version of it".to_string(),
    }
}
