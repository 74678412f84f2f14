//! SaslAuthenticate (key 36): one SASL token of the mechanism SaslHandshake chose.
//! Success makes the connection's principal the authenticated user; a failure answers
//! SASL_AUTHENTICATION_FAILED with Kafka's message, is logged with the client's
//! address, and closes the connection after the reply.

use std::time::Instant;

use kafka_protocol::messages::{SaslAuthenticateRequest, SaslAuthenticateResponse};
use kafka_protocol::ResponseError;
use ottla_protocol::frame::Request;

use super::{decode, respond, str_bytes, HandlerError, Reply};
use crate::security::sasl::TokenOutcome;
use crate::security::Session;

/// The reply, and whether the connection closes after it.
pub fn handle(session: &mut Session, request: &Request) -> Result<(Reply, bool), HandlerError> {
    let body: SaslAuthenticateRequest = decode(request)?;
    let Some(sasl) = session.sasl.as_mut() else {
        let response = SaslAuthenticateResponse::default()
            .with_error_code(ResponseError::IllegalSaslState.code())
            .with_error_message(Some(str_bytes(
                "SaslAuthenticate request received on a listener without SASL".to_string(),
            )));
        return Ok((respond(request, &response)?, false));
    };
    let version = request.version();
    // KIP-368: v1+ clients learn the session lifetime and can re-authenticate.
    let outcome = sasl.authenticate(&body.auth_bytes, Instant::now(), version >= 1);
    let (response, close) = match outcome {
        TokenOutcome::Complete {
            principal,
            reply,
            session_lifetime_ms,
        } => {
            tracing::debug!("{} authenticated as {principal}", session.peer);
            if principal != session.principal {
                session.set_principal(principal);
            }
            let mut response = SaslAuthenticateResponse::default().with_auth_bytes(reply.into());
            if version >= 1 {
                response = response.with_session_lifetime_ms(session_lifetime_ms);
            }
            (response, false)
        }
        TokenOutcome::Continue(reply) => (
            SaslAuthenticateResponse::default().with_auth_bytes(reply.into()),
            false,
        ),
        TokenOutcome::Failed { message, reason } => {
            log_failure(session, &reason);
            (
                SaslAuthenticateResponse::default()
                    .with_error_code(ResponseError::SaslAuthenticationFailed.code())
                    .with_error_message(Some(str_bytes(message))),
                true,
            )
        }
        TokenOutcome::IllegalState => (
            SaslAuthenticateResponse::default()
                .with_error_code(ResponseError::IllegalSaslState.code())
                .with_error_message(Some(str_bytes(
                    "Unexpected SaslAuthenticate request: no SASL handshake chose a mechanism"
                        .to_string(),
                ))),
            true,
        ),
    };
    Ok((respond(request, &response)?, close))
}

/// Kafka's `SocketServer` line for a failed login, which operators grep for.
pub fn log_failure(session: &Session, message: &str) {
    tracing::info!(
        "[SocketServer listenerType=BROKER, listener={}] Failed authentication with /{} ({message})",
        session.listener.name,
        session.peer.ip()
    );
}
