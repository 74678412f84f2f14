//! Client settings, named after the Kafka client configs they mirror.

use std::time::Duration;

use crate::security::ClientSecurity;

/// Kafka's `request.timeout.ms` default.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_millis(30_000);
/// Kafka's `socket.connection.setup.timeout.ms` default.
pub const DEFAULT_CONNECTION_SETUP_TIMEOUT: Duration = Duration::from_millis(10_000);
/// Kafka's `reconnect.backoff.ms` default.
pub const DEFAULT_RECONNECT_BACKOFF: Duration = Duration::from_millis(50);
/// Kafka's `reconnect.backoff.max.ms` default.
pub const DEFAULT_RECONNECT_BACKOFF_MAX: Duration = Duration::from_millis(1000);
/// Largest response frame accepted by default: the broker-side default of
/// `socket.request.max.bytes` (100 MiB), so a broker never accepts from a peer a frame
/// larger than it would accept from a client.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize =
    ottla_protocol::frame::DEFAULT_SOCKET_REQUEST_MAX_BYTES;
/// Kafka's `CommonClientConfigs.RECONNECT_BACKOFF_EXP_BASE`: each failed attempt
/// doubles the wait.
pub const RECONNECT_BACKOFF_EXP_BASE: f64 = 2.0;
/// Kafka's `CommonClientConfigs.RECONNECT_BACKOFF_JITTER`: each wait is scaled by a
/// random factor in `[0.8, 1.2)`, so that brokers that lost the same peer at the same
/// moment do not all knock on its door in the same millisecond.
pub const RECONNECT_BACKOFF_JITTER: f64 = 0.2;

/// How a [`crate::NodeClient`] or [`crate::Connection`] behaves.
///
/// The fields are Kafka's client configs of the same meaning; brokers fill them from
/// their own configuration (Kafka's brokers use the same names for their inter-broker
/// clients, e.g. `replica.socket.timeout.ms` maps onto `request_timeout` for fetchers).
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `client.id`: sent in every request header, so the peer's logs and quotas can tell
    /// who is calling. Brokers use `ottla-broker-<node id>` (see [`Self::for_broker`]).
    pub client_id: String,
    /// `request.timeout.ms` (30000): how long one request may wait for its response
    /// (including waiting for an in-flight slot). A request that times out closes its
    /// connection: a late response could otherwise be taken for the next one's.
    pub request_timeout: Duration,
    /// `socket.connection.setup.timeout.ms` (10000): how long a TCP connect may take.
    pub connection_setup_timeout: Duration,
    /// `reconnect.backoff.ms` (50): the wait after the first failed connection attempt
    /// (or after a connection breaks) before the next attempt.
    pub reconnect_backoff: Duration,
    /// `reconnect.backoff.max.ms` (1000): the cap of the exponentially growing wait.
    pub reconnect_backoff_max: Duration,
    /// Largest response frame accepted (default 100 MiB). Kafka's clients have no such
    /// limit; a broker does, because a peer's size prefix must never decide how much
    /// memory it allocates. A larger frame closes the connection with a protocol error.
    pub max_response_bytes: usize,
    /// TLS and SASL (Kafka's `security.protocol` and what goes with it); PLAINTEXT by
    /// default.
    pub security: ClientSecurity,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            client_id: "ottla-broker".to_string(),
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            connection_setup_timeout: DEFAULT_CONNECTION_SETUP_TIMEOUT,
            reconnect_backoff: DEFAULT_RECONNECT_BACKOFF,
            reconnect_backoff_max: DEFAULT_RECONNECT_BACKOFF_MAX,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            security: ClientSecurity::default(),
        }
    }
}

impl ClientConfig {
    /// The defaults, with the client id a broker uses for its own requests
    /// (`ottla-broker-<node id>`).
    pub fn for_broker(node_id: i32) -> Self {
        ClientConfig {
            client_id: format!("ottla-broker-{node_id}"),
            ..ClientConfig::default()
        }
    }
}
