//! TLS on SSL and SASL_SSL listeners, with rustls (no OpenSSL linkage), configured with
//! Kafka's `ssl.*` keys in their PEM form.

use std::sync::Arc;

use anyhow::{anyhow, bail, Context};
use ottla_client::ClientTls;
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use crate::config::BrokerConfig;

/// A listener's TLS settings, rebuilt from its key and trust stores when they change:
/// on SIGHUP (the files were replaced) and when a per-broker dynamic config names new
/// ones (`kafka-configs --alter --entity-type brokers --entity-name 1 --add-config
/// listener.name.ssl.ssl.keystore.location=...`). A rotated certificate is served to new
/// connections without a restart; connections already open keep their session.
pub struct ListenerTls {
    listener: String,
    current: parking_lot::RwLock<Loaded>,
}

struct Loaded {
    acceptor: TlsAcceptor,
    /// What the acceptor was built from: the settings and the files' bytes. A reload
    /// that would read the same is skipped (and logs nothing).
    inputs: Vec<u8>,
}

/// Where a listener's `ssl.*` values come from, as Kafka resolves a reconfigurable
/// listener config: the dynamic per-broker configs override the static ones key by
/// key, then `listener.name.<l>.<key>` wins over `<key>`.
pub struct SslSettings<'a> {
    pub config: &'a BrokerConfig,
    pub dynamic: Option<&'a std::collections::BTreeMap<String, String>>,
}

impl SslSettings<'_> {
    fn value(&self, listener: &str, key: &str) -> Option<String> {
        self.raw(listener, key).filter(|v| !v.trim().is_empty())
    }

    /// The value as set (or its default), an empty one included (for keys where empty
    /// means "off").
    fn raw(&self, listener: &str, key: &str) -> Option<String> {
        let prefixed = format!("listener.name.{}.{key}", listener.to_ascii_lowercase());
        let dynamic = |k: &str| self.dynamic.and_then(|d| d.get(k)).cloned();
        dynamic(&prefixed)
            .or_else(|| self.config.explicit.get(&prefixed).cloned())
            .or_else(|| dynamic(key))
            .or_else(|| self.config.listener_value(listener, key))
    }
}

impl ListenerTls {
    pub fn new(settings: &SslSettings<'_>, listener: &str) -> anyhow::Result<ListenerTls> {
        let value = |key: &str| settings.value(listener, key);
        Ok(ListenerTls {
            listener: listener.to_string(),
            current: parking_lot::RwLock::new(Loaded {
                acceptor: acceptor(&value, listener)?,
                inputs: inputs(&value),
            }),
        })
    }

    /// The acceptor for the next connection (a cheap clone of an `Arc`).
    pub fn acceptor(&self) -> TlsAcceptor {
        self.current.read().acceptor.clone()
    }

    /// Read the settings and the key and trust stores again; rebuild when any differs
    /// from what the current acceptor was built from. Ok(true) when rebuilt. On any
    /// error the current settings stay and the error says why: a half-written file
    /// must not take the listener down.
    pub fn reload(&self, settings: &SslSettings<'_>) -> anyhow::Result<bool> {
        let value = |key: &str| settings.value(&self.listener, key);
        let inputs = inputs(&value);
        if self.current.read().inputs == inputs {
            return Ok(false);
        }
        let acceptor = acceptor(&value, &self.listener)?;
        *self.current.write() = Loaded { acceptor, inputs };
        Ok(true)
    }

    pub fn listener(&self) -> &str {
        &self.listener
    }
}

/// The reloadable settings and the bytes of the files they name.
fn inputs(value: &dyn Fn(&str) -> Option<String>) -> Vec<u8> {
    let mut out = Vec::new();
    for key in crate::config::RELOADABLE_SSL_CONFIGS {
        let v = value(key);
        out.extend_from_slice(format!("{key}={v:?}\n").as_bytes());
        if key.ends_with(".location") {
            if let Some(path) = v {
                match std::fs::read(&path) {
                    Ok(bytes) => out.extend_from_slice(&bytes),
                    Err(e) => out.extend_from_slice(format!("unreadable: {e}").as_bytes()),
                }
            }
        }
    }
    out
}

/// Build the TLS acceptor of `listener` from its `ssl.*` settings
/// (`listener.name.<l>.ssl.*` first):
/// - the key store, PEM only (`ssl.keystore.type=PEM`): `ssl.keystore.location`, one file
///   holding the private key and the certificate chain, or the PEM text itself in
///   `ssl.keystore.key` and `ssl.keystore.certificate.chain`;
/// - `ssl.client.auth` (`none`, `requested`, `required`) with the CAs of the trust store
///   (`ssl.truststore.location` or `ssl.truststore.certificates`, PEM);
/// - `ssl.enabled.protocols` (TLSv1.2, TLSv1.3).
fn acceptor(value: &dyn Fn(&str) -> Option<String>, listener: &str) -> anyhow::Result<TlsAcceptor> {
    let context = |what: &str| format!("listener {listener}: {what}");
    let (chain, key) = key_store(value, listener)?;
    let versions = enabled_versions(&value("ssl.enabled.protocols").unwrap_or_default())
        .with_context(|| context("ssl.enabled.protocols"))?;
    // ring rather than aws-lc-rs: no C/CMake build of aws-lc. rustls deprecates ring's
    // provider for lacking post-quantum key exchange (X25519MLKEM768); Kafka's JDK
    // clients do not offer it either.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .map_err(|e| anyhow!("{}: {e}", context("TLS versions")))?;
    let client_auth = value("ssl.client.auth").unwrap_or_else(|| "none".into());
    let builder = match client_auth.to_ascii_lowercase().as_str() {
        "none" => builder.with_no_client_auth(),
        mode @ ("requested" | "required") => {
            let roots = trust_store(value)
                .with_context(|| context(&format!("ssl.client.auth={mode} needs a trust store")))?;
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = if mode == "requested" {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            let verifier = verifier
                .build()
                .map_err(|e| anyhow!("{}: {e}", context("client certificate verifier")))?;
            builder.with_client_cert_verifier(verifier)
        }
        other => bail!(
            "{}: ssl.client.auth={other} is not none, requested or required",
            context("TLS")
        ),
    };
    let mut server = builder
        .with_single_cert(chain, key)
        .map_err(|e| anyhow!("{}: {e}", context("the key store")))?;
    // Kafka speaks its own protocol on the port: no ALPN.
    server.alpn_protocols.clear();
    Ok(TlsAcceptor::from(Arc::new(server)))
}

/// The TLS client this broker uses to reach the others on `listener` (the
/// inter-broker listener), as Kafka's brokers build it from the same listener's
/// settings: the trust store verifies the peers, the key store (if any) is shown when a
/// peer asks for a client certificate (`ssl.client.auth`), and
/// `ssl.endpoint.identification.algorithm` (default `https`; empty turns it off)
/// decides whether a peer's certificate must name the host it is reached at.
pub fn client_tls(settings: &SslSettings<'_>, listener: &str) -> anyhow::Result<ClientTls> {
    let value = |key: &str| settings.value(listener, key);
    let context = |what: &str| format!("inter-broker listener {listener}: {what}");
    let roots = trust_store(&value).with_context(|| {
        context("brokers verify each other's certificates with the listener's trust store")
    })?;
    let has_key_store = value("ssl.keystore.location").is_some()
        || value("ssl.keystore.certificate.chain").is_some();
    let identity = if has_key_store {
        Some(key_store(&value, listener)?)
    } else {
        None
    };
    let versions = enabled_versions(&value("ssl.enabled.protocols").unwrap_or_default())
        .with_context(|| context("ssl.enabled.protocols"))?;
    // Kafka's default is "https"; only an explicitly empty value turns the check off.
    let algorithm = settings
        .raw(listener, "ssl.endpoint.identification.algorithm")
        .unwrap_or_else(|| "https".to_string());
    let verify_hostname = match algorithm.trim().to_ascii_lowercase().as_str() {
        "" => false,
        "https" => true,
        other => bail!(
            "{}: ssl.endpoint.identification.algorithm={other} is not supported (https, or empty to turn the check off)",
            context("TLS")
        ),
    };
    ClientTls::new(roots, identity, verify_hostname, &versions).map_err(|e| anyhow!(context(&e)))
}

/// The key store's certificate chain and private key: `ssl.keystore.location`, one PEM
/// file with both (`ssl.keystore.type=PEM`), or the PEM text in `ssl.keystore.key` and
/// `ssl.keystore.certificate.chain`.
fn key_store(
    value: &dyn Fn(&str) -> Option<String>,
    listener: &str,
) -> anyhow::Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
    let context = |what: &str| format!("listener {listener}: {what}");
    let (chain, key) = match (
        value("ssl.keystore.certificate.chain"),
        value("ssl.keystore.key"),
    ) {
        (Some(chain), Some(key)) => (certificates(chain.as_bytes()), private_key(key.as_bytes())),
        _ => {
            let Some(location) = value("ssl.keystore.location") else {
                bail!(
                    "listener {listener} uses TLS but has no key store: set ssl.keystore.location (ssl.keystore.type=PEM) or ssl.keystore.key and ssl.keystore.certificate.chain"
                );
            };
            let store_type = value("ssl.keystore.type").unwrap_or_default();
            if !store_type.eq_ignore_ascii_case("PEM") {
                bail!(
                    "listener {listener}: ssl.keystore.type={store_type} is not supported; Ottla reads PEM key stores (ssl.keystore.type=PEM: the private key and the certificate chain in one file)"
                );
            }
            let pem = std::fs::read(&location).with_context(|| {
                context(&format!("cannot read ssl.keystore.location {location}"))
            })?;
            (certificates(&pem), private_key(&pem))
        }
    };
    let chain = chain.with_context(|| context("the key store's certificate chain"))?;
    let key = key.with_context(|| context("the key store's private key"))?;
    Ok((chain, key))
}

fn certificates(pem: &[u8]) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .map_err(|e| anyhow!("unreadable PEM certificate: {e}"))?;
    if chain.is_empty() {
        bail!("no PEM certificate (-----BEGIN CERTIFICATE-----) found");
    }
    Ok(chain)
}

fn private_key(pem: &[u8]) -> anyhow::Result<PrivateKeyDer<'static>> {
    if std::str::from_utf8(pem).is_ok_and(|t| t.contains("ENCRYPTED PRIVATE KEY")) {
        bail!("encrypted private keys (ssl.key.password) are not supported; give the key unencrypted (PKCS#8, RSA or EC PEM) in a file only the broker can read");
    }
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| anyhow!("no usable PEM private key: {e}"))
}

/// The trust store's CA certificates (`ssl.truststore.certificates` text, or the PEM
/// file at `ssl.truststore.location`).
fn trust_store(value: &dyn Fn(&str) -> Option<String>) -> anyhow::Result<RootCertStore> {
    let pem = match (
        value("ssl.truststore.certificates"),
        value("ssl.truststore.location"),
    ) {
        (Some(text), _) => text.into_bytes(),
        (None, Some(location)) => std::fs::read(&location)
            .with_context(|| format!("cannot read ssl.truststore.location {location}"))?,
        (None, None) => bail!("set ssl.truststore.location (PEM) or ssl.truststore.certificates"),
    };
    let mut roots = RootCertStore::empty();
    for cert in certificates(&pem)? {
        roots
            .add(cert)
            .map_err(|e| anyhow!("a trust store certificate is not usable as a CA: {e}"))?;
    }
    Ok(roots)
}

fn enabled_versions(text: &str) -> anyhow::Result<Vec<&'static rustls::SupportedProtocolVersion>> {
    if text.trim().is_empty() {
        return Ok(vec![&rustls::version::TLS13, &rustls::version::TLS12]);
    }
    let mut versions = Vec::new();
    for name in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        match name {
            "TLSv1.3" => versions.push(&rustls::version::TLS13),
            "TLSv1.2" => versions.push(&rustls::version::TLS12),
            other => bail!("{other} is not supported (TLSv1.2 and TLSv1.3 are)"),
        }
    }
    if versions.is_empty() {
        bail!("no TLS version enabled");
    }
    Ok(versions)
}

/// A client certificate's subject as Kafka sees it: the distinguished name in RFC 2253
/// form (most specific attribute first, as Java's `X500Principal.getName()`), e.g.
/// `CN=client,O=acme`; `ssl.principal.mapping.rules` then makes the principal's name.
pub fn certificate_subject(cert: &CertificateDer<'_>) -> Option<String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let registry = x509_parser::objects::oid_registry();
    let mut parts = Vec::new();
    let rdns: Vec<_> = parsed.subject().iter().collect();
    for rdn in rdns.into_iter().rev() {
        let attributes: Vec<String> = rdn
            .iter()
            .map(|attribute| {
                let oid = attribute.attr_type();
                let name = x509_parser::objects::oid2abbrev(oid, registry)
                    .map(str::to_string)
                    .unwrap_or_else(|_| oid.to_id_string());
                let value = attribute
                    .as_str()
                    .map(escape_rfc2253)
                    .unwrap_or_else(|_| format!("#{}", hex(attribute.attr_value().data)));
                format!("{name}={value}")
            })
            .collect();
        parts.push(attributes.join("+"));
    }
    Some(parts.join(","))
}

fn escape_rfc2253(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for (i, c) in value.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (i == 0 && (c == '#' || c == ' '))
            || (i + 1 == value.chars().count() && c == ' ');
        if special {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
