//! SASL on SASL_PLAINTEXT and SASL_SSL listeners: the server side of Kafka's
//! `SaslServerAuthenticator`. A connection first says which mechanism it wants
//! (SaslHandshake), then sends its tokens (SaslAuthenticate, or raw size-prefixed
//! tokens after a v0 handshake); until that succeeds nothing but ApiVersions is
//! served.
//!
//! Mechanisms: PLAIN (RFC 4616) with the users of Kafka's `PlainLoginModule` options in
//! `listener.name.<l>.plain.sasl.jaas.config` (`user_<name>="<password>"`), and
//! SCRAM-SHA-256 / SCRAM-SHA-512 ([`super::scram`]) with the credentials the controller
//! stores (AlterUserScramCredentials).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;

use super::scram::{failure_message, ScramExchange, ScramMechanism, ScramStep, StoredCredential};
use crate::config::BrokerConfig;

/// Where SCRAM credentials come from (the controller's metadata image).
pub type ScramLookup = Arc<dyn Fn(&str, ScramMechanism) -> Option<StoredCredential> + Send + Sync>;

/// Kafka's mechanism names.
pub const PLAIN: &str = "PLAIN";
/// Mechanisms this broker can serve.
const IMPLEMENTED: &[&str] = &[PLAIN, "SCRAM-SHA-256", "SCRAM-SHA-512"];
/// A PLAIN token is three short strings; anything longer is hostile.
const MAX_PLAIN_TOKEN_BYTES: usize = 4096;

/// One listener's SASL settings.
pub struct SaslConfig {
    /// `sasl.enabled.mechanisms`, in the order configured (SaslHandshake lists them).
    pub enabled: Vec<String>,
    /// PLAIN's users and passwords.
    plain_users: HashMap<String, String>,
    /// SCRAM's credentials.
    scram: ScramLookup,
    /// Each enabled mechanism's session lifetime (KIP-368:
    /// `listener.name.<l>.<mechanism>.connections.max.reauth.ms`, else
    /// `listener.name.<l>.connections.max.reauth.ms`, else `connections.max.reauth.ms`);
    /// absent when 0.
    max_reauth: HashMap<String, Duration>,
}

impl std::fmt::Debug for SaslConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SaslConfig")
            .field("enabled", &self.enabled)
            .field("plain_users", &self.plain_users.len())
            .finish()
    }
}

impl SaslConfig {
    /// `listener`'s `sasl.enabled.mechanisms` and each enabled mechanism's JAAS config.
    pub fn resolve(
        config: &BrokerConfig,
        listener: &str,
        scram: ScramLookup,
    ) -> anyhow::Result<SaslConfig> {
        let enabled: Vec<String> = config
            .listener_value(listener, "sasl.enabled.mechanisms")
            .unwrap_or_default()
            .split(',')
            .map(|m| m.trim().to_string())
            .filter(|m| !m.is_empty())
            .collect();
        if enabled.is_empty() {
            bail!("listener {listener} uses SASL but sasl.enabled.mechanisms is empty");
        }
        for mechanism in &enabled {
            if !IMPLEMENTED.contains(&mechanism.as_str()) {
                bail!(
                    "listener {listener}: SASL mechanism {mechanism} (sasl.enabled.mechanisms) is not supported; supported: {}",
                    IMPLEMENTED.join(", ")
                );
            }
        }
        let mut plain_users = HashMap::new();
        if enabled.iter().any(|m| m == PLAIN) {
            let key = format!(
                "listener.name.{}.plain.sasl.jaas.config",
                listener.to_ascii_lowercase()
            );
            let Some(jaas) = config
                .explicit
                .get(&key)
                .cloned()
                .or_else(|| config.explicit.get("sasl.jaas.config").cloned())
            else {
                bail!("listener {listener} enables PLAIN but {key} is not set (org.apache.kafka.common.security.plain.PlainLoginModule required user_<name>=\"<password>\";)");
            };
            let options = parse_jaas(&jaas).map_err(|e| anyhow::anyhow!("{key}: {e}"))?;
            for (name, value) in options {
                if let Some(user) = name.strip_prefix("user_") {
                    plain_users.insert(user.to_string(), value);
                }
            }
        }
        let mut max_reauth = HashMap::new();
        for mechanism in &enabled {
            let key = format!(
                "listener.name.{}.{}.{CONNECTIONS_MAX_REAUTH_MS}",
                listener.to_ascii_lowercase(),
                mechanism.to_ascii_lowercase()
            );
            let listener_key = format!(
                "listener.name.{}.{CONNECTIONS_MAX_REAUTH_MS}",
                listener.to_ascii_lowercase()
            );
            let value = config
                .explicit
                .get(&key)
                .or_else(|| config.explicit.get(&listener_key))
                .or_else(|| config.explicit.get(CONNECTIONS_MAX_REAUTH_MS));
            let ms = match value {
                None => 0,
                Some(v) => v
                    .trim()
                    .parse::<i64>()
                    .map_err(|_| anyhow::anyhow!("{key}: {v} is not a number of milliseconds"))?,
            };
            if ms > 0 {
                max_reauth.insert(mechanism.clone(), Duration::from_millis(ms as u64));
            }
        }
        Ok(SaslConfig {
            enabled,
            plain_users,
            scram,
            max_reauth,
        })
    }
}

/// The options of a one-module JAAS config:
/// `<LoginModule class> required key="value" key2="value2";`.
pub fn parse_jaas(text: &str) -> Result<Vec<(String, String)>, String> {
    let text = text.trim();
    let body = text
        .strip_suffix(';')
        .ok_or("a JAAS config ends with ';'")?
        .trim();
    let mut rest = body;
    // The login module class and its control flag.
    for _ in 0..2 {
        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        if end == 0 {
            return Err("expected '<LoginModule> required ...'".into());
        }
        rest = rest[end..].trim_start();
    }
    let mut options = Vec::new();
    while !rest.is_empty() {
        let (name, after) = rest
            .split_once('=')
            .ok_or_else(|| format!("expected key=value at '{rest}'"))?;
        let name = name.trim().to_string();
        let after = after.trim_start();
        let (value, after) = if let Some(quoted) = after.strip_prefix('"') {
            let mut value = String::new();
            let mut chars = quoted.char_indices();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, escaped)) = chars.next() {
                            value.push(escaped);
                        }
                    }
                    '"' => {
                        end = Some(i + 1);
                        break;
                    }
                    c => value.push(c),
                }
            }
            let end = end.ok_or_else(|| format!("unterminated quote in the value of {name}"))?;
            (value, &quoted[end..])
        } else {
            let end = after.find(char::is_whitespace).unwrap_or(after.len());
            (after[..end].to_string(), &after[end..])
        };
        options.push((name, value));
        rest = after.trim_start();
    }
    Ok(options)
}

/// Where a connection is in its SASL exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// Before SaslHandshake (ApiVersions may come first).
    Handshake,
    /// The mechanism is chosen; tokens come in SaslAuthenticate requests (`raw`:
    /// false) or as raw frames after a v0 handshake (`raw`: true). SCRAM takes two
    /// client messages (the server's `scram` exchange holds what lies between).
    Authenticate {
        mechanism: String,
        raw: bool,
        scram: Option<ScramMechanism>,
    },
    Complete,
    /// A re-authentication's handshake named another mechanism than the session's:
    /// Kafka accepts the handshake and fails the token that follows with this message.
    BadReauthMechanism(String),
    /// A refused handshake or token: the connection closes after the reply.
    Failed,
}

/// The session an authentication (or the latest re-authentication) established.
#[derive(Debug, Clone)]
struct Authenticated {
    mechanism: String,
    principal: String,
    /// When the session lifetime ends (KIP-368): after it, only a re-authentication
    /// may use the connection.
    expires_at: Option<Instant>,
    /// Authenticated through SaslAuthenticate v1+ (not raw v0 tokens): the client can
    /// re-authenticate, as Kafka's `connectedClientSupportsReauthentication`.
    can_reauthenticate: bool,
}

/// KIP-368's session lifetime setting.
const CONNECTIONS_MAX_REAUTH_MS: &str = "connections.max.reauth.ms";

/// The server side of one connection's SASL exchange.
#[derive(Debug)]
pub struct SaslServer {
    config: std::sync::Arc<SaslConfig>,
    state: State,
    /// A SCRAM exchange between its two client messages.
    scram: ScramExchange,
    /// Set once authenticated; a re-authentication keeps it until it completes.
    session: Option<Authenticated>,
}

/// What a SaslHandshake gets.
pub enum HandshakeOutcome {
    Accepted,
    /// UNSUPPORTED_SASL_MECHANISM: not in `sasl.enabled.mechanisms`.
    Unsupported,
    /// ILLEGAL_SASL_STATE: not expected now.
    IllegalState,
}

/// What a token gets.
pub enum TokenOutcome {
    /// Authenticated as this principal; the bytes go back to the client, with the
    /// session lifetime in milliseconds (0: none) for SaslAuthenticate v1+.
    Complete {
        principal: String,
        reply: Vec<u8>,
        session_lifetime_ms: i64,
    },
    /// The mechanism needs another token; these bytes go back to the client.
    Continue(Vec<u8>),
    /// SASL_AUTHENTICATION_FAILED with this message for the client, and the reason for
    /// the log; the connection then closes.
    Failed { message: String, reason: String },
    /// ILLEGAL_SASL_STATE: no handshake chose a mechanism.
    IllegalState,
}

impl SaslServer {
    pub fn new(config: std::sync::Arc<SaslConfig>) -> SaslServer {
        SaslServer {
            config,
            state: State::Handshake,
            scram: ScramExchange::First,
            session: None,
        }
    }

    pub fn enabled_mechanisms(&self) -> &[String] {
        &self.config.enabled
    }

    /// Authenticated (possibly re-authenticating now) and not failed since.
    pub fn is_complete(&self) -> bool {
        self.session.is_some() && self.state != State::Failed
    }

    /// Whether the session lifetime has passed: the connection may then only
    /// re-authenticate (KIP-368), anything else closes it.
    pub fn session_expired(&self, now: Instant) -> bool {
        self.session
            .as_ref()
            .and_then(|s| s.expires_at)
            .is_some_and(|at| now >= at)
    }

    pub fn has_failed(&self) -> bool {
        self.state == State::Failed
    }

    /// Whether the next frame is a raw token (after a v0 handshake), not a request.
    pub fn expects_raw_token(&self) -> bool {
        matches!(self.state, State::Authenticate { raw: true, .. })
    }

    /// SaslHandshake: choose `mechanism`; a v0 handshake (`raw_tokens`) sends its
    /// tokens without Kafka framing.
    ///
    /// On an authenticated connection whose session expires and whose client can
    /// re-authenticate (KIP-368), a SaslHandshake v1+ begins a re-authentication with
    /// the session's mechanism; any other mechanism fails the token that follows, as in
    /// Kafka. Without a session lifetime a second handshake is ILLEGAL_SASL_STATE.
    pub fn handshake(&mut self, mechanism: &str, raw_tokens: bool) -> HandshakeOutcome {
        let reauthenticating = match (&self.state, &self.session) {
            (State::Handshake, None) => false,
            // Kafka's `maybeBeginServerReauthentication`: only a session that expires
            // (connections.max.reauth.ms set) is re-authenticated.
            (State::Complete, Some(session))
                if session.can_reauthenticate && session.expires_at.is_some() && !raw_tokens =>
            {
                true
            }
            _ => return HandshakeOutcome::IllegalState,
        };
        if !self.config.enabled.iter().any(|m| m == mechanism) {
            self.state = State::Failed;
            return HandshakeOutcome::Unsupported;
        }
        if reauthenticating {
            self.scram = ScramExchange::First;
            let previous = self.session.as_ref().map_or("", |s| s.mechanism.as_str());
            if previous != mechanism {
                self.state = State::BadReauthMechanism(format!(
                    "SASL mechanism '{mechanism}' requested by client is not supported for re-authentication of mechanism '{previous}'"
                ));
                return HandshakeOutcome::Accepted;
            }
        }
        self.state = State::Authenticate {
            mechanism: mechanism.to_string(),
            raw: raw_tokens,
            scram: ScramMechanism::from_name(mechanism),
        };
        HandshakeOutcome::Accepted
    }

    /// One client token of the chosen mechanism, at `now`. `can_reauthenticate`: the
    /// token came in a SaslAuthenticate v1+ request (not raw, not v0).
    pub fn authenticate(
        &mut self,
        token: &[u8],
        now: Instant,
        can_reauthenticate: bool,
    ) -> TokenOutcome {
        if let State::BadReauthMechanism(message) = &self.state {
            let message = message.clone();
            self.state = State::Failed;
            return TokenOutcome::Failed {
                reason: message.clone(),
                message,
            };
        }
        let State::Authenticate {
            mechanism,
            scram,
            raw,
        } = &self.state
        else {
            return TokenOutcome::IllegalState;
        };
        let mechanism = mechanism.clone();
        let can_reauthenticate = can_reauthenticate && !raw;
        if let Some(scram) = *scram {
            let config = self.config.clone();
            let lookup = |user: &str| (config.scram)(user, scram);
            return match self.scram.step(scram, token, &lookup) {
                ScramStep::Continue(reply) => TokenOutcome::Continue(reply),
                ScramStep::Done { user, reply } => self.complete(
                    &mechanism,
                    format!("User:{user}"),
                    reply,
                    now,
                    can_reauthenticate,
                ),
                ScramStep::Failed(reason) => {
                    self.state = State::Failed;
                    TokenOutcome::Failed {
                        message: failure_message(scram),
                        reason,
                    }
                }
            };
        }
        let outcome = match mechanism.as_str() {
            PLAIN => self.plain(token),
            other => Err(format!(
                "Authentication failed: mechanism {other} is not served"
            )),
        };
        match outcome {
            Ok(user) => self.complete(
                &mechanism,
                format!("User:{user}"),
                Vec::new(),
                now,
                can_reauthenticate,
            ),
            Err(message) => {
                self.state = State::Failed;
                TokenOutcome::Failed {
                    reason: message.clone(),
                    message,
                }
            }
        }
    }

    /// A successful (re-)authentication: the session starts, or, when re-authenticating,
    /// goes on with a new lifetime if the principal is the same (Kafka refuses a change).
    fn complete(
        &mut self,
        mechanism: &str,
        principal: String,
        reply: Vec<u8>,
        now: Instant,
        can_reauthenticate: bool,
    ) -> TokenOutcome {
        if let Some(previous) = &self.session {
            if previous.principal != principal {
                let dotted = |p: &str| p.replacen(':', ".", 1);
                let message = format!(
                    "Cannot change principals during re-authentication from {}: {}",
                    dotted(&previous.principal),
                    dotted(&principal)
                );
                self.state = State::Failed;
                return TokenOutcome::Failed {
                    reason: message.clone(),
                    message,
                };
            }
        }
        let lifetime = self.config.max_reauth.get(mechanism).copied();
        self.session = Some(Authenticated {
            mechanism: mechanism.to_string(),
            principal: principal.clone(),
            expires_at: lifetime.map(|l| now + l),
            can_reauthenticate,
        });
        self.state = State::Complete;
        TokenOutcome::Complete {
            principal,
            reply,
            session_lifetime_ms: lifetime.map_or(0, |l| l.as_millis() as i64),
        }
    }

    /// RFC 4616: `[authzid] NUL authcid NUL passwd`, with Kafka's checks and messages
    /// (`PlainSaslServer`).
    fn plain(&self, token: &[u8]) -> Result<String, String> {
        if token.len() > MAX_PLAIN_TOKEN_BYTES {
            return Err("Authentication failed: token too long".into());
        }
        let text = std::str::from_utf8(token)
            .map_err(|_| "Authentication failed: the token is not UTF-8".to_string())?;
        let parts: Vec<&str> = text.split('\u{0}').collect();
        let [authorization_id, username, password] = parts[..] else {
            return Err(
                "Invalid SASL/PLAIN response: expected 3 tokens, got ".to_string()
                    + &parts.len().to_string(),
            );
        };
        if username.is_empty() {
            return Err("Authentication failed: username not specified".into());
        }
        if password.is_empty() {
            return Err("Authentication failed: password not specified".into());
        }
        match self.config.plain_users.get(username) {
            Some(expected) if constant_time_eq(expected.as_bytes(), password.as_bytes()) => {}
            _ => return Err("Authentication failed: Invalid username or password".into()),
        }
        if !authorization_id.is_empty() && authorization_id != username {
            return Err(
                "Authentication failed: Client requested an authorization id that is different from username"
                    .into(),
            );
        }
        Ok(username.to_string())
    }
}

/// Compare secrets without an early exit on the first differing byte.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn server() -> SaslServer {
        server_with_lifetime(None)
    }

    pub(super) fn server_with_lifetime(lifetime: Option<Duration>) -> SaslServer {
        let mut plain_users = HashMap::new();
        plain_users.insert("alice".to_string(), "alice-secret".to_string());
        plain_users.insert("bob".to_string(), "bob-secret".to_string());
        let mut max_reauth = HashMap::new();
        if let Some(l) = lifetime {
            max_reauth.insert(PLAIN.to_string(), l);
        }
        SaslServer::new(Arc::new(SaslConfig {
            enabled: vec![PLAIN.into(), "SCRAM-SHA-256".into()],
            plain_users,
            scram: Arc::new(|_, _| None),
            max_reauth,
        }))
    }

    fn login(s: &mut SaslServer, token: &[u8], now: Instant) -> TokenOutcome {
        s.authenticate(token, now, true)
    }

    #[test]
    fn jaas_options_are_read_as_kafka_writes_them() {
        let options = parse_jaas(
            r#"org.apache.kafka.common.security.plain.PlainLoginModule required username="admin" password="a s\"ecret" user_alice="alice-secret";"#,
        )
        .unwrap();
        assert_eq!(
            options,
            vec![
                ("username".into(), "admin".into()),
                ("password".into(), "a s\"ecret".into()),
                ("user_alice".into(), "alice-secret".into()),
            ]
        );
        assert!(parse_jaas("PlainLoginModule required user_a=\"x\"").is_err());
        assert!(parse_jaas("PlainLoginModule required user_a=\"x;").is_err());
    }

    #[test]
    fn plain_accepts_the_right_password_only() {
        let mut s = server();
        assert!(matches!(
            s.handshake("PLAIN", false),
            HandshakeOutcome::Accepted
        ));
        match login(&mut s, b"\0alice\0alice-secret", Instant::now()) {
            TokenOutcome::Complete { principal, .. } => assert_eq!(principal, "User:alice"),
            _ => panic!("the right password is accepted"),
        }
        assert!(s.is_complete());
        let mut s = server();
        s.handshake("PLAIN", false);
        match login(&mut s, b"\0alice\0wrong", Instant::now()) {
            TokenOutcome::Failed { message, .. } => {
                assert_eq!(
                    message,
                    "Authentication failed: Invalid username or password"
                )
            }
            _ => panic!("a wrong password fails"),
        }
        assert!(s.has_failed());
        let mut s = server();
        s.handshake("PLAIN", false);
        assert!(matches!(
            login(&mut s, b"bob\0alice\0alice-secret", Instant::now()),
            TokenOutcome::Failed { .. }
        ));
    }

    #[test]
    fn unknown_mechanisms_and_tokens_out_of_turn_are_refused() {
        let mut s = server();
        assert!(matches!(
            login(&mut s, b"\0alice\0alice-secret", Instant::now()),
            TokenOutcome::IllegalState
        ));
        assert!(matches!(
            s.handshake("SCRAM-SHA-999", false),
            HandshakeOutcome::Unsupported
        ));
        assert!(s.has_failed());
    }
}

#[cfg(test)]
mod reauthentication_tests {
    use super::*;

    fn server(lifetime: Option<Duration>) -> SaslServer {
        super::tests::server_with_lifetime(lifetime)
    }

    const ALICE: &[u8] = b"\0alice\0alice-secret";
    const LIFETIME: Duration = Duration::from_secs(60);

    fn lifetime_of(outcome: TokenOutcome) -> i64 {
        match outcome {
            TokenOutcome::Complete {
                session_lifetime_ms,
                ..
            } => session_lifetime_ms,
            _ => panic!("not authenticated"),
        }
    }

    #[test]
    fn a_session_lifetime_is_sent_and_enforced() {
        let t0 = Instant::now();
        let mut s = server(Some(LIFETIME));
        s.handshake(PLAIN, false);
        assert_eq!(lifetime_of(s.authenticate(ALICE, t0, true)), 60_000);
        assert!(!s.session_expired(t0 + LIFETIME - Duration::from_millis(1)));
        assert!(s.session_expired(t0 + LIFETIME));
        // Without connections.max.reauth.ms: no lifetime, never expires.
        let mut s = server(None);
        s.handshake(PLAIN, false);
        assert_eq!(lifetime_of(s.authenticate(ALICE, t0, true)), 0);
        assert!(!s.session_expired(t0 + Duration::from_secs(1 << 30)));
        // ... and nothing to re-authenticate: a second handshake is out of turn.
        assert!(matches!(
            s.handshake(PLAIN, false),
            HandshakeOutcome::IllegalState
        ));
    }

    #[test]
    fn re_authentication_renews_the_session() {
        let t0 = Instant::now();
        let mut s = server(Some(LIFETIME));
        s.handshake(PLAIN, false);
        s.authenticate(ALICE, t0, true);
        let later = t0 + LIFETIME + Duration::from_secs(5);
        assert!(s.session_expired(later));
        // Re-authenticating after expiry is allowed; requests in between still pass.
        assert!(matches!(
            s.handshake(PLAIN, false),
            HandshakeOutcome::Accepted
        ));
        assert!(s.is_complete());
        assert_eq!(lifetime_of(s.authenticate(ALICE, later, true)), 60_000);
        assert!(!s.session_expired(later + Duration::from_secs(59)));
        assert!(s.session_expired(later + LIFETIME));
    }

    #[test]
    fn re_authentication_keeps_the_principal_and_the_mechanism() {
        let t0 = Instant::now();
        let mut s = server(Some(LIFETIME));
        s.handshake(PLAIN, false);
        s.authenticate(ALICE, t0, true);
        s.handshake(PLAIN, false);
        match s.authenticate(b"\0bob\0bob-secret", t0, true) {
            TokenOutcome::Failed { message, .. } => assert_eq!(
                message,
                "Cannot change principals during re-authentication from User.alice: User.bob"
            ),
            _ => panic!("a principal change is refused"),
        }
        assert!(s.has_failed() && !s.is_complete());

        let mut s = server(Some(LIFETIME));
        s.handshake(PLAIN, false);
        s.authenticate(ALICE, t0, true);
        // Kafka accepts the handshake and fails the token that follows.
        assert!(matches!(
            s.handshake("SCRAM-SHA-256", false),
            HandshakeOutcome::Accepted
        ));
        match s.authenticate(b"n,,n=alice,r=abc", t0, true) {
            TokenOutcome::Failed { message, .. } => assert_eq!(
                message,
                "SASL mechanism 'SCRAM-SHA-256' requested by client is not supported for re-authentication of mechanism 'PLAIN'"
            ),
            _ => panic!("another mechanism is refused"),
        }
    }

    #[test]
    fn clients_that_cannot_re_authenticate_are_refused_a_second_handshake() {
        let t0 = Instant::now();
        // SaslAuthenticate v0: no re-authentication (the session still expires).
        let mut s = server(Some(LIFETIME));
        s.handshake(PLAIN, false);
        s.authenticate(ALICE, t0, false);
        assert!(matches!(
            s.handshake(PLAIN, false),
            HandshakeOutcome::IllegalState
        ));
        assert!(s.session_expired(t0 + LIFETIME));
        // Raw tokens after a v0 handshake: the same.
        let mut s = server(Some(LIFETIME));
        s.handshake(PLAIN, true);
        s.authenticate(ALICE, t0, true);
        assert!(matches!(
            s.handshake(PLAIN, false),
            HandshakeOutcome::IllegalState
        ));
    }
}
