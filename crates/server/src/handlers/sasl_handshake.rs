//! SaslHandshake (key 17): the client names its SASL mechanism. On a SASL listener
//! before authentication this picks the mechanism (v0: raw tokens follow, v1: tokens
//! come in SaslAuthenticate); anywhere else it is ILLEGAL_SASL_STATE, as Kafka's
//! `KafkaApis` answers it.

use kafka_protocol::messages::{SaslHandshakeRequest, SaslHandshakeResponse};
use kafka_protocol::ResponseError;
use ottla_protocol::frame::Request;

use super::{decode, respond, str_bytes, HandlerError, Reply};
use crate::security::sasl::HandshakeOutcome;
use crate::security::Session;

/// The reply, and whether the connection closes after it (an unsupported mechanism).
pub fn handle(session: &mut Session, request: &Request) -> Result<(Reply, bool), HandlerError> {
    let body: SaslHandshakeRequest = decode(request)?;
    let Some(sasl) = session.sasl.as_mut() else {
        let response = SaslHandshakeResponse::default()
            .with_error_code(ResponseError::IllegalSaslState.code());
        return Ok((respond(request, &response)?, false));
    };
    let mechanisms = sasl
        .enabled_mechanisms()
        .iter()
        .map(|m| str_bytes(m.clone()))
        .collect();
    let outcome = sasl.handshake(body.mechanism.as_str(), request.version() == 0);
    let (error, close) = match outcome {
        HandshakeOutcome::Accepted => (None, false),
        HandshakeOutcome::Unsupported => {
            super::sasl_authenticate::log_failure(
                session,
                &format!("Unsupported SASL mechanism {}", body.mechanism.as_str()),
            );
            (Some(ResponseError::UnsupportedSaslMechanism), true)
        }
        HandshakeOutcome::IllegalState => (Some(ResponseError::IllegalSaslState), false),
    };
    let response = SaslHandshakeResponse::default()
        .with_error_code(error.map_or(0, |e| e.code()))
        .with_mechanisms(mechanisms);
    Ok((respond(request, &response)?, close))
}
