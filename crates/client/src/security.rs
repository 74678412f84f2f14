//! TLS and SASL for connections between brokers, configured as Kafka configures its
//! inter-broker clients: from the inter-broker listener's own `ssl.*` settings (its
//! trust store, and its key store as the client certificate when the peer asks for
//! one) and `sasl.mechanism.inter.broker.protocol` with the `username` and `password`
//! options of that mechanism's JAAS config.
//!
//! The broker builds a [`ClientSecurity`] from its configuration; this crate only uses
//! it: [`crate::Connection::connect`] runs the TLS handshake, and
//! [`crate::NodeClient`] authenticates each new connection (SaslHandshake v1, then
//! SaslAuthenticate) right after ApiVersions, as Kafka's `SaslClientAuthenticator`
//! does, before the connection carries any other request.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig as TlsConfig, DigitallySignedStruct, RootCertStore};
use tokio_rustls::TlsConnector;

use crate::scram::ScramMechanism;

/// How connections of one client are secured. The default is PLAINTEXT.
#[derive(Clone, Default)]
pub struct ClientSecurity {
    /// TLS (the SSL and SASL_SSL protocols), `None` for PLAINTEXT and SASL_PLAINTEXT.
    pub tls: Option<ClientTls>,
    /// SASL (SASL_PLAINTEXT and SASL_SSL), `None` otherwise.
    pub sasl: Option<SaslCredentials>,
}

impl std::fmt::Debug for ClientSecurity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientSecurity")
            .field("tls", &self.tls.as_ref().map(|t| t.verify_hostname))
            .field(
                "sasl",
                &self
                    .sasl
                    .as_ref()
                    .map(|s| (s.mechanism.name(), s.username.clone())),
            )
            .finish()
    }
}

impl ClientSecurity {
    /// Kafka's name of the security protocol this amounts to.
    pub fn protocol_name(&self) -> &'static str {
        match (self.tls.is_some(), self.sasl.is_some()) {
            (false, false) => "PLAINTEXT",
            (true, false) => "SSL",
            (false, true) => "SASL_PLAINTEXT",
            (true, true) => "SASL_SSL",
        }
    }
}

/// A TLS client: the CAs it trusts, the certificate it shows when asked, and whether
/// the peer's certificate must name the host it was reached at.
#[derive(Clone)]
pub struct ClientTls {
    pub(crate) connector: TlsConnector,
    /// Kafka's `ssl.endpoint.identification.algorithm=https` (its default): the peer's
    /// certificate must be valid for the host name (or IP address) dialled. Empty
    /// turns the check off; the chain is verified either way.
    pub(crate) verify_hostname: bool,
}

impl ClientTls {
    /// `roots`: the trust store's CAs; `identity`: the key store's certificate chain
    /// and private key (mutual TLS), if any; `versions`: `ssl.enabled.protocols`.
    pub fn new(
        roots: RootCertStore,
        identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
        verify_hostname: bool,
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> Result<ClientTls, String> {
        // ring, as the broker's listeners (no C build of aws-lc).
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .map_err(|e| format!("the trust store cannot verify servers: {e}"))?;
        let verifier: Arc<dyn ServerCertVerifier> = if verify_hostname {
            verifier
        } else {
            Arc::new(ChainOnly(verifier))
        };
        let builder = TlsConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .map_err(|e| format!("TLS versions: {e}"))?
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let config = match identity {
            Some((chain, key)) => builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("the key store's certificate: {e}"))?,
            None => builder.with_no_client_auth(),
        };
        Ok(ClientTls {
            connector: TlsConnector::from(Arc::new(config)),
            verify_hostname,
        })
    }

    /// Run the TLS handshake on `stream` to `addr` (for transports other than Kafka's
    /// protocol, such as the controller quorum's).
    pub async fn handshake(
        &self,
        addr: &str,
        stream: tokio::net::TcpStream,
    ) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, String> {
        let name = ClientTls::server_name(addr)?;
        self.connector
            .connect(name, stream)
            .await
            .map_err(|e| format!("TLS handshake with {addr} failed: {e}"))
    }

    /// The name the peer's certificate is checked against: the host part of `addr`.
    pub(crate) fn server_name(addr: &str) -> Result<ServerName<'static>, String> {
        let host = match addr.rsplit_once(':') {
            Some((host, _)) => host.trim_start_matches('[').trim_end_matches(']'),
            None => addr,
        };
        ServerName::try_from(host.to_string())
            .map_err(|e| format!("{host} is not a valid TLS server name: {e}"))
    }
}

/// The chain checks of the standard verifier without its host name check: what
/// `ssl.endpoint.identification.algorithm=` (empty) means in Kafka. webpki checks the
/// name only after the chain, so "not valid for name" means the chain was good.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// A SASL mechanism a broker can authenticate to another with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaslMechanism {
    Plain,
    Scram(ScramMechanism),
}

impl SaslMechanism {
    pub fn from_name(name: &str) -> Option<SaslMechanism> {
        match name {
            "PLAIN" => Some(SaslMechanism::Plain),
            other => ScramMechanism::from_name(other).map(SaslMechanism::Scram),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::Scram(m) => m.name(),
        }
    }
}

/// Who this broker is to the others: `sasl.mechanism.inter.broker.protocol` and the
/// `username` / `password` of that mechanism's JAAS config on the inter-broker
/// listener.
#[derive(Clone)]
pub struct SaslCredentials {
    pub mechanism: SaslMechanism,
    pub username: String,
    pub password: String,
}
