//! A reusable, lazily (re)connected client for one node.

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, SaslAuthenticateRequest, SaslHandshakeRequest,
};
use kafka_protocol::protocol::{Request, StrBytes};
use kafka_protocol::ResponseError;
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::backoff::ExponentialBackoff;
use crate::config::ClientConfig;
use crate::connection::Connection;
use crate::error::ClientError;
use crate::scram::ScramClient;
use crate::security::{SaslCredentials, SaslMechanism};
use crate::versions::ApiVersionTable;

/// The ApiVersions version sent on every new connection. v3 (Kafka 2.4, KIP-511) is
/// the first flexible version and carries the client's software name and version,
/// which brokers log; every Ottla broker and every Kafka broker since 2.4 accepts it.
pub const API_VERSIONS_REQUEST_VERSION: i16 = 3;
/// `client.software.name` sent in ApiVersions (Kafka checks it against
/// `[a-zA-Z0-9](?:[a-zA-Z0-9\-.]*[a-zA-Z0-9])?`).
const CLIENT_SOFTWARE_NAME: &str = "ottla";
/// SaslHandshake v1 (KIP-152): the tokens then travel in SaslAuthenticate requests.
const SASL_HANDSHAKE_VERSION: i16 = 1;
/// SaslAuthenticate versions this client speaks (v1 adds the session lifetime).
const SASL_AUTHENTICATE_VERSIONS: (i16, i16) = (0, 2);
/// A session with a lifetime (KIP-368) is replaced once this share of it has passed,
/// before the peer closes it (Kafka's clients re-authenticate at 85–95%).
const SESSION_RENEW_SHARE: f64 = 0.85;

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
    /// When the current connection's SASL session should be renewed (it has a
    /// lifetime: KIP-368): a new connection is made for requests after that, while
    /// requests in flight finish on the old one.
    renew_at: Option<Instant>,
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
        if state.renew_at.is_some_and(|at| Instant::now() >= at) {
            tracing::debug!("Renewing the SASL session with {}", self.address);
            state.connection = None;
            state.renew_at = None;
        }
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
            Ok((connection, versions, renew_at)) => {
                let connection = Arc::new(connection);
                let versions = Arc::new(versions);
                state.failures = 0;
                state.retry_at = None;
                state.renew_at = renew_at;
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

    /// Open a connection, exchange ApiVersions on it, and authenticate if SASL is
    /// configured; with the instant its SASL session should be renewed, if it ends.
    async fn connect(&self) -> Result<(Connection, ApiVersionTable, Option<Instant>), ClientError> {
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
        let renew_at = match &self.config.security.sasl {
            None => None,
            Some(credentials) => match authenticate(&connection, &versions, credentials).await {
                Ok(lifetime) => lifetime.map(|l| Instant::now() + l.mul_f64(SESSION_RENEW_SHARE)),
                Err(e) => {
                    connection.close();
                    return Err(e);
                }
            },
        };
        tracing::info!(
            "Connected to {} at {} over {} ({} APIs advertised)",
            self.address,
            connection.peer_addr(),
            self.config.security.protocol_name(),
            versions.iter().count()
        );
        Ok((connection, versions, renew_at))
    }
}

/// SaslHandshake v1 and SaslAuthenticate round trips for `credentials`, as Kafka's
/// `SaslClientAuthenticator`; the session's lifetime if the peer set one.
async fn authenticate(
    connection: &Connection,
    versions: &ApiVersionTable,
    credentials: &SaslCredentials,
) -> Result<Option<std::time::Duration>, ClientError> {
    let mechanism = credentials.mechanism.name();
    versions.require(
        ApiKey::SaslHandshake,
        SASL_HANDSHAKE_VERSION,
        SASL_HANDSHAKE_VERSION,
    )?;
    let handshake = connection
        .send(
            SASL_HANDSHAKE_VERSION,
            &SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str(mechanism)),
        )
        .await?;
    if handshake.error_code != 0 {
        let enabled: Vec<&str> = handshake.mechanisms.iter().map(|m| m.as_str()).collect();
        return Err(ClientError::Authentication(format!(
            "the peer does not enable SASL mechanism {mechanism} (error {}; it enables {})",
            handshake.error_code,
            enabled.join(", ")
        )));
    }
    let version = versions.require(
        ApiKey::SaslAuthenticate,
        SASL_AUTHENTICATE_VERSIONS.0,
        SASL_AUTHENTICATE_VERSIONS.1,
    )?;
    let round_trip = |token: Vec<u8>| async move {
        let response = connection
            .send(
                version,
                &SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(token)),
            )
            .await?;
        if response.error_code != 0 {
            return Err(ClientError::Authentication(format!(
                "{} (error {})",
                response
                    .error_message
                    .as_ref()
                    .map(|m| m.to_string())
                    .unwrap_or_else(|| format!("{mechanism} refused")),
                response.error_code
            )));
        }
        let lifetime = (response.session_lifetime_ms > 0)
            .then(|| std::time::Duration::from_millis(response.session_lifetime_ms as u64));
        Ok((response.auth_bytes, lifetime))
    };
    match credentials.mechanism {
        SaslMechanism::Plain => {
            // authzid NUL authcid NUL password, with an empty authzid.
            let mut token = Vec::new();
            token.push(0);
            token.extend_from_slice(credentials.username.as_bytes());
            token.push(0);
            token.extend_from_slice(credentials.password.as_bytes());
            let (_, lifetime) = round_trip(token).await?;
            Ok(lifetime)
        }
        SaslMechanism::Scram(m) => {
            let mut scram = ScramClient::new(m, &credentials.username, &credentials.password);
            let (server_first, _) = round_trip(scram.first()).await?;
            let client_final = scram
                .answer(&server_first)
                .map_err(ClientError::Authentication)?;
            let (server_final, lifetime) = round_trip(client_final).await?;
            scram
                .verify(&server_final)
                .map_err(ClientError::Authentication)?;
            Ok(lifetime)
        }
    }
}
