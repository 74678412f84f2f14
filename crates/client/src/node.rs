//! A reusable, lazily (re)connected client for one node.

use std::sync::Arc;

use kafka_protocol::messages::{ApiKey, ApiVersionsRequest};
use kafka_protocol::protocol::{Request, StrBytes};
use kafka_protocol::ResponseError;
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::backoff::ExponentialBackoff;
use crate::config::ClientConfig;
use crate::connection::Connection;
use crate::error::ClientError;
use crate::versions::ApiVersionTable;

/// The ApiVersions version sent on every new connection. v3 (Kafka 2.4, KIP-511) is
/// the first flexible version and carries the client's software name and version,
/// which brokers log; every Ottla broker and every Kafka broker since 2.4 accepts it.
pub const API_VERSIONS_REQUEST_VERSION: i16 = 3;
/// `client.software.name` sent in ApiVersions (Kafka checks it against
/// `[a-zA-Z0-9](?:[a-zA-Z0-9\-.]*[a-zA-Z0-9])?`).
const CLIENT_SOFTWARE_NAME: &str = "ottla";

/// One node's connection, opened on first use and reopened after it breaks.
///
/// Like Kafka's `NetworkClient` for a single node: a failed connection attempt, or a
/// connection that breaks, starts the reconnect backoff (`reconnect.backoff.ms`,
/// doubling per consecutive failure up to `reconnect.backoff.max.ms`, ±20% jitter,
/// counted from the moment of the failure); until it has passed, `send` fails fast with
/// [`ClientError::Backoff`]. Each new connection first exchanges ApiVersions, and
/// only then counts as established, which resets the backoff.
///
/// Share it behind an `Arc`; concurrent `send`s are pipelined on the one connection,
/// and concurrent reconnects are serialised (one attempt, not one per caller).
#[derive(Debug)]
pub struct NodeClient {
    address: String,
    config: ClientConfig,
    backoff: ExponentialBackoff,
    state: Mutex<NodeState>,
}

#[derive(Debug, Default)]
struct NodeState {
    /// The current connection and its node's ApiVersions table.
    connection: Option<(Arc<Connection>, Arc<ApiVersionTable>)>,
    /// Consecutive failures since the last established connection.
    failures: u32,
    /// No connection attempt before this instant.
    retry_at: Option<Instant>,
}

impl NodeClient {
    /// A client for the node at `address` (`host:port`, resolved on each connection
    /// attempt). Does not connect until the first request.
    pub fn new(address: impl Into<String>, config: ClientConfig) -> Self {
        let backoff = ExponentialBackoff::reconnect(&config);
        NodeClient {
            address: address.into(),
            config,
            backoff,
            state: Mutex::new(NodeState::default()),
        }
    }

    /// The node's address as given.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The settings this client uses.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// Send `request` at `version`, connecting first if needed.
    ///
    /// A version outside the node's advertised range fails with
    /// [`ClientError::UnsupportedVersion`] before anything is sent (the broker would
    /// otherwise answer with an error or close the connection). Not retried on failure:
    /// only the caller knows whether its request is safe to repeat.
    pub async fn send<R: Request>(
        &self,
        version: i16,
        request: &R,
    ) -> Result<R::Response, ClientError> {
        let api_key = ApiKey::try_from(R::KEY)
            .map_err(|_| ClientError::Encode(format!("unknown API key {}", R::KEY)))?;
        let (connection, versions) = self.ready().await?;
        versions.require(api_key, version, version)?;
        connection.send(version, request).await
    }

    /// [`Self::send`] at the highest version in `ours_min..=ours_max` the node supports;
    /// returns that version with the response (its fields depend on it).
    pub async fn send_negotiated<R: Request>(
        &self,
        ours_min: i16,
        ours_max: i16,
        request: &R,
    ) -> Result<(i16, R::Response), ClientError> {
        let api_key = ApiKey::try_from(R::KEY)
            .map_err(|_| ClientError::Encode(format!("unknown API key {}", R::KEY)))?;
        let (connection, versions) = self.ready().await?;
        let version = versions.require(api_key, ours_min, ours_max)?;
        Ok((version, connection.send(version, request).await?))
    }

    /// The highest version of `api_key` in `ours_min..=ours_max` that the node
    /// advertises (connecting first if needed), or
    /// [`ClientError::UnsupportedVersion`] naming both ranges.
    pub async fn negotiate(
        &self,
        api_key: ApiKey,
        ours_min: i16,
        ours_max: i16,
    ) -> Result<i16, ClientError> {
        let (_, versions) = self.ready().await?;
        versions.require(api_key, ours_min, ours_max)
    }

    /// The node's ApiVersions table, as advertised on the current connection
    /// (connecting first if needed).
    pub async fn api_versions(&self) -> Result<Arc<ApiVersionTable>, ClientError> {
        Ok(self.ready().await?.1)
    }

    /// True if a connection is open now (it may still break at any moment).
    pub async fn is_connected(&self) -> bool {
        matches!(&self.state.lock().await.connection, Some((c, _)) if !c.is_closed())
    }

    /// Close the current connection, if any (e.g. when the node left the cluster).
    /// Pending requests fail; the next `send` reconnects without backoff.
    pub async fn disconnect(&self) {
        let mut state = self.state.lock().await;
        if let Some((connection, _)) = state.connection.take() {
            connection.close();
        }
    }

    /// The open connection, or a new one if the backoff allows.
    async fn ready(&self) -> Result<(Arc<Connection>, Arc<ApiVersionTable>), ClientError> {
        let mut state = self.state.lock().await;
        if let Some((connection, versions)) = &state.connection {
            match connection.closed_at() {
                None => return Ok((connection.clone(), versions.clone())),
                Some(closed_at) => {
                    // Kafka backs off after any disconnect, counted from the moment
                    // of the disconnect: an idle connection the peer closed long ago
                    // reconnects at once, a flapping one does not spin.
                    let wait = self.backoff.backoff(state.failures);
                    state.failures = state.failures.saturating_add(1);
                    state.retry_at = Some(closed_at + wait);
                    state.connection = None;
                }
            }
        }
        let now = Instant::now();
        if let Some(retry_at) = state.retry_at {
            if now < retry_at {
                return Err(ClientError::Backoff {
                    retry_in: retry_at - now,
                });
            }
        }
        match self.connect().await {
            Ok((connection, versions)) => {
                let connection = Arc::new(connection);
                let versions = Arc::new(versions);
                state.failures = 0;
                state.retry_at = None;
                state.connection = Some((connection.clone(), versions.clone()));
                Ok((connection, versions))
            }
            Err(e) => {
                let wait = self.backoff.backoff(state.failures);
                state.failures = state.failures.saturating_add(1);
                state.retry_at = Some(Instant::now() + wait);
                tracing::warn!(
                    "Connection to {} could not be established ({e}); next attempt in {wait:?} at the earliest",
                    self.address
                );
                Err(e)
            }
        }
    }

    /// Open a connection and exchange ApiVersions on it.
    async fn connect(&self) -> Result<(Connection, ApiVersionTable), ClientError> {
        tracing::debug!("Connecting to {}", self.address);
        let connection = Connection::connect(&self.address, &self.config).await?;
        let request = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str(CLIENT_SOFTWARE_NAME))
            .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
        let response = connection
            .send(API_VERSIONS_REQUEST_VERSION, &request)
            .await?;
        if response.error_code != 0 {
            let error = ResponseError::try_from_code(response.error_code)
                .map(|e| format!("{e:?} ({})", response.error_code))
                .unwrap_or_default();
            connection.close();
            return Err(ClientError::Protocol(format!(
                "ApiVersions v{API_VERSIONS_REQUEST_VERSION} to {} failed: {error}",
                self.address
            )));
        }
        let versions = ApiVersionTable::from_response(&response);
        tracing::info!(
            "Connected to {} at {} ({} APIs advertised)",
            self.address,
            connection.peer_addr(),
            versions.iter().count()
        );
        Ok((connection, versions))
    }
}
