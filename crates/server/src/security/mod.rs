//! Kafka's security model on the client listeners: each listener's security protocol
//! (`listener.security.protocol.map`), TLS through rustls ([`tls`]) and SASL
//! ([`sasl`]), resolved once at start-up into a [`ListenerSecurity`] per listener, and
//! the [`Session`] each connection carries: who the client is, once it has said so.

pub mod authorizer;
pub mod principal;
pub mod sasl;
pub mod scram;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;

use crate::config::{BrokerConfig, Listener};

/// Kafka's `SecurityProtocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecurityProtocol {
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl SecurityProtocol {
    pub fn parse(name: &str) -> Result<SecurityProtocol, String> {
        match name.to_ascii_uppercase().as_str() {
            "PLAINTEXT" => Ok(SecurityProtocol::Plaintext),
            "SSL" => Ok(SecurityProtocol::Ssl),
            "SASL_PLAINTEXT" => Ok(SecurityProtocol::SaslPlaintext),
            "SASL_SSL" => Ok(SecurityProtocol::SaslSsl),
            _ => Err(format!("No enum constant SecurityProtocol.{name}")),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "PLAINTEXT",
            SecurityProtocol::Ssl => "SSL",
            SecurityProtocol::SaslPlaintext => "SASL_PLAINTEXT",
            SecurityProtocol::SaslSsl => "SASL_SSL",
        }
    }

    pub fn uses_tls(self) -> bool {
        matches!(self, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
    }

    pub fn uses_sasl(self) -> bool {
        matches!(
            self,
            SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl
        )
    }
}

/// Kafka's principal for a client that did not authenticate (PLAINTEXT, or SSL
/// without a client certificate).
pub const ANONYMOUS: &str = "User:ANONYMOUS";

/// What one client listener needs to secure its connections.
pub struct ListenerSecurity {
    /// The listener's name (`SSL`, `EXTERNAL`, ...).
    pub name: String,
    /// This broker's node id (the endpoint below is this broker's).
    pub node_id: i32,
    pub protocol: SecurityProtocol,
    /// How this broker is advertised on this listener: Metadata and FindCoordinator
    /// answered here name this address, so a client stays on the listener it chose.
    pub advertised_host: String,
    pub advertised_port: u16,
    /// Set on SSL and SASL_SSL listeners; reloadable (SIGHUP), so shared.
    pub tls: Option<Arc<tls::ListenerTls>>,
    /// Set on SASL_PLAINTEXT and SASL_SSL listeners.
    pub sasl: Option<Arc<sasl::SaslConfig>>,
    /// `ssl.principal.mapping.rules`, on SSL listeners (SASL_SSL's principal is the
    /// SASL user).
    pub principal_mapper: Option<principal::PrincipalMapper>,
    /// The broker's authorizer, when `authorizer.class.name` configures one.
    pub authorizer: Option<Arc<authorizer::Authorizer>>,
}

impl ListenerSecurity {
    /// The principal of a TLS client: `User:ANONYMOUS` without a certificate, else its
    /// subject through `ssl.principal.mapping.rules` (Err: no rule applies).
    pub fn tls_principal(&self, subject: Option<String>) -> Result<String, String> {
        match (subject, &self.principal_mapper) {
            (None, _) | (Some(_), None) => Ok(ANONYMOUS.to_string()),
            (Some(dn), Some(mapper)) => mapper
                .name(&dn)
                .map(|name| format!("User:{name}"))
                .ok_or_else(|| format!("No rules apply to {dn}")),
        }
    }

    /// Resolve `listener`'s settings (`listener.name.<l>.*` first, then the broker-wide
    /// keys; this broker's `dynamic` configs over the static ones for key stores),
    /// reading key and certificate files. `bound_port` replaces an advertised
    /// port of 0 (tests bind ephemeral ports).
    pub fn resolve(
        config: &BrokerConfig,
        dynamic: Option<&std::collections::BTreeMap<String, String>>,
        listener: &Listener,
        bound_port: u16,
        scram: sasl::ScramLookup,
        authorizer: Option<Arc<authorizer::Authorizer>>,
    ) -> anyhow::Result<ListenerSecurity> {
        let advertised = config
            .advertised_listeners
            .iter()
            .find(|a| a.name == listener.name);
        let advertised_host = advertised.map_or_else(
            || match listener.host.as_str() {
                "" | "0.0.0.0" => "localhost".to_string(),
                h => h.to_string(),
            },
            |a| a.host.clone(),
        );
        let advertised_port = match advertised.map(|a| a.port) {
            Some(0) | None => bound_port,
            Some(p) => p,
        };
        let protocol = listener.security_protocol;
        let tls = if protocol.uses_tls() {
            let settings = tls::SslSettings { config, dynamic };
            Some(Arc::new(tls::ListenerTls::new(&settings, &listener.name)?))
        } else {
            None
        };
        let sasl = if protocol.uses_sasl() {
            Some(Arc::new(sasl::SaslConfig::resolve(
                config,
                &listener.name,
                scram,
            )?))
        } else {
            None
        };
        let principal_mapper = if protocol == SecurityProtocol::Ssl {
            let rules = config
                .listener_value(&listener.name, "ssl.principal.mapping.rules")
                .unwrap_or_default();
            Some(principal::PrincipalMapper::parse(&rules).map_err(|e| {
                anyhow::anyhow!(
                    "listener {}: ssl.principal.mapping.rules: {e}",
                    listener.name
                )
            })?)
        } else {
            None
        };
        Ok(ListenerSecurity {
            principal_mapper,
            name: listener.name.clone(),
            node_id: config.node_id,
            protocol,
            advertised_host,
            advertised_port,
            tls,
            sasl,
            authorizer,
        })
    }
}

/// How this broker secures its connections to the other brokers (replica fetching,
/// transaction markers, transaction verification): as the inter-broker listener
/// (`inter.broker.listener.name`) asks, with that listener's own settings, as Kafka's
/// brokers do. SASL uses `sasl.mechanism.inter.broker.protocol` (Kafka's default,
/// GSSAPI, is not served by Ottla, so it must be set) and the `username` and
/// `password` options of that mechanism's JAAS config on the listener
/// (`listener.name.<l>.<mechanism>.sasl.jaas.config`, else `sasl.jaas.config`).
pub fn inter_broker_client(
    config: &BrokerConfig,
    dynamic: Option<&std::collections::BTreeMap<String, String>>,
) -> anyhow::Result<ottla_client::ClientSecurity> {
    let listener = config.inter_broker_advertised();
    let protocol = listener.security_protocol;
    let tls = if protocol.uses_tls() {
        let settings = tls::SslSettings { config, dynamic };
        Some(tls::client_tls(&settings, &listener.name)?)
    } else {
        None
    };
    let sasl = if protocol.uses_sasl() {
        Some(inter_broker_sasl(config, &listener.name)?)
    } else {
        None
    };
    Ok(ottla_client::ClientSecurity { tls, sasl })
}

fn inter_broker_sasl(
    config: &BrokerConfig,
    listener: &str,
) -> anyhow::Result<ottla_client::SaslCredentials> {
    use ottla_client::SaslMechanism;
    let mechanism = config
        .explicit
        .get("sasl.mechanism.inter.broker.protocol")
        .map(|m| m.trim().to_string())
        .unwrap_or_else(|| "GSSAPI".to_string());
    let Some(parsed) = SaslMechanism::from_name(&mechanism) else {
        anyhow::bail!(
            "sasl.mechanism.inter.broker.protocol={mechanism}: the inter-broker listener {listener} uses SASL, and Ottla's brokers authenticate to each other with PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (set sasl.mechanism.inter.broker.protocol to one of them)"
        );
    };
    let enabled = config
        .listener_value(listener, "sasl.enabled.mechanisms")
        .unwrap_or_default();
    if !enabled.split(',').any(|m| m.trim() == mechanism) {
        anyhow::bail!(
            "sasl.mechanism.inter.broker.protocol must be included in sasl.enabled.mechanisms when SASL is used for inter-broker communication"
        );
    }
    let key = format!(
        "listener.name.{}.{}.sasl.jaas.config",
        listener.to_ascii_lowercase(),
        mechanism.to_ascii_lowercase()
    );
    let Some(jaas) = config
        .explicit
        .get(&key)
        .or_else(|| config.explicit.get("sasl.jaas.config"))
    else {
        anyhow::bail!(
            "the inter-broker listener {listener} uses SASL/{mechanism}: set {key} with the username and password this broker logs in with"
        );
    };
    let options = sasl::parse_jaas(jaas).map_err(|e| anyhow::anyhow!("{key}: {e}"))?;
    let option = |name: &str| {
        options
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let (Some(username), Some(password)) = (option("username"), option("password")) else {
        anyhow::bail!(
            "{key}: the inter-broker listener {listener} uses SASL/{mechanism}, so its JAAS config needs username=\"...\" and password=\"...\" (the credentials this broker logs in with)"
        );
    };
    Ok(ottla_client::SaslCredentials {
        mechanism: parsed,
        username,
        password,
    })
}

/// How this node's controller connections are secured (the CONTROLLER listener, both
/// ways): PLAINTEXT or SSL with the listener's `listener.name.<l>.ssl.*` settings, the
/// peer's principal from its certificate (`ssl.principal.mapping.rules`), and, with
/// the authorizer on, only super users admitted: every controller RPC needs
/// CLUSTER_ACTION in Kafka, and a peer on this listener can change any metadata.
/// (Kafka also admits principals with a CLUSTER_ACTION ACL; Ottla's controllers do not
/// consult ACLs on this listener.)
pub fn controller_transport(
    config: &BrokerConfig,
) -> anyhow::Result<ottla_controller::QuorumTransport> {
    let name = config.controller_listener_name.clone();
    // With the authorizer on, a peer that shows no certificate is User:ANONYMOUS and is
    // refused unless it is a super user: a quorum configured so would never form, so
    // say so at start-up instead of refusing every connection.
    if let Some(authorizer) = &config.authorizer {
        let anonymous_is_super = authorizer.super_users.iter().any(|s| s == ANONYMOUS);
        let certificates_required = config.controller_protocol.uses_tls()
            && config
                .listener_value(&name, "ssl.client.auth")
                .is_some_and(|v| v.trim().eq_ignore_ascii_case("required"));
        let listens = config.controller_listener.is_some();
        let plaintext = !config.controller_protocol.uses_tls();
        if !anonymous_is_super && (plaintext || (listens && !certificates_required)) {
            anyhow::bail!(
                "with the authorizer on, the controller listener {name} admits super users only (Kafka requires CLUSTER_ACTION on every controller RPC), and its peers would all be {ANONYMOUS}: use {name}:SSL in listener.security.protocol.map with listener.name.{}.ssl.client.auth=required and the nodes' certificate principals in super.users, or add {ANONYMOUS} to super.users",
                name.to_ascii_lowercase()
            );
        }
    }
    let admit: ottla_controller::QuorumAdmission = match &config.authorizer {
        None => Arc::new(|_| Ok(())),
        Some(authorizer) => {
            let super_users = authorizer.super_users.clone();
            Arc::new(move |principal: &str| {
                if super_users.iter().any(|s| s == principal) {
                    Ok(())
                } else {
                    Err("with the authorizer on, the controller listener admits super.users only (controller RPCs need CLUSTER_ACTION)".into())
                }
            })
        }
    };
    let tls = if config.controller_protocol.uses_tls() {
        let settings = tls::SslSettings {
            config,
            dynamic: None,
        };
        let acceptor = match &config.controller_listener {
            Some(_) => Some(tls::ListenerTls::new(&settings, &name)?.acceptor()),
            None => None,
        };
        let connector = tls::client_tls(&settings, &name)?;
        let rules = config
            .listener_value(&name, "ssl.principal.mapping.rules")
            .unwrap_or_default();
        let mapper = principal::PrincipalMapper::parse(&rules)
            .map_err(|e| anyhow::anyhow!("listener {name}: ssl.principal.mapping.rules: {e}"))?;
        Some(ottla_controller::QuorumTls {
            acceptor,
            connector,
            principal: Arc::new(move |cert| {
                let subject = tls::certificate_subject(cert)
                    .ok_or_else(|| "unreadable certificate subject".to_string())?;
                mapper
                    .name(&subject)
                    .map(|n| format!("User:{n}"))
                    .ok_or_else(|| format!("No rules apply to {subject}"))
            }),
        })
    } else {
        None
    };
    Ok(ottla_controller::QuorumTransport {
        listener: name,
        tls,
        admit,
    })
}

/// One connection's security state: where it came from, on which listener, and the
/// principal it authenticated as (Kafka's `RequestContext` principal).
pub struct Session {
    pub peer: SocketAddr,
    pub listener: Arc<ListenerSecurity>,
    /// `User:ANONYMOUS` until SASL succeeds; on TLS with a client certificate, the
    /// certificate's subject. Changed through [`Session::set_principal`].
    pub principal: String,
    /// The principal and host as the authorizer checks them.
    pub caller: authorizer::Caller,
    /// On a SASL listener: the handshake's progress (requests other than ApiVersions
    /// and the SASL ones are refused until it is done).
    pub sasl: Option<sasl::SaslServer>,
}

impl Session {
    pub fn new(peer: SocketAddr, listener: Arc<ListenerSecurity>, principal: String) -> Session {
        let sasl = listener.sasl.clone().map(sasl::SaslServer::new);
        let caller = authorizer::Caller::new(&principal, peer.ip(), listener.authorizer.clone());
        Session {
            peer,
            listener,
            principal,
            caller,
            sasl,
        }
    }

    /// The connection authenticated as `principal`.
    pub fn set_principal(&mut self, principal: String) {
        self.caller =
            authorizer::Caller::new(&principal, self.peer.ip(), self.listener.authorizer.clone());
        self.principal = principal;
    }

    /// Whether requests other than ApiVersions and the SASL ones may be served.
    pub fn is_authenticated(&self) -> bool {
        self.sasl.as_ref().is_none_or(sasl::SaslServer::is_complete)
    }
}
